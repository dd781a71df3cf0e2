"""A public key or verify key that is not one is named by where it was given: the
option, and which of its values when it was given more than once (`--recipient
(2nd of 3)`); a line of a recipient or signer file by its line, as a key file's
is. Before, `encpipe seal --recipient A --recipient B --recipient C` said
`--recipient: not an encpipe public key` of any of them, and a signer file named
no line."""

import os

from cliutil import KEY_A, ok, run
from test_rotate import World, rotate

PUBLIC = "public key (it must start with encpipe1)"
VERIFY = "verify key (it must start with encpipesign1)"


def _keys(tmp_path):
    ok(run(["keygen", "--x25519", "-o", str(tmp_path / "id")]))
    ok(run(["keygen", "--sign", "-o", str(tmp_path / "s.sign")]))
    public = ok(run(["pubkey", str(tmp_path / "id")])).decode().strip()
    verify = ok(run(["pubkey", str(tmp_path / "s.sign")])).decode().strip()
    return public, verify


def _refused(result, message):
    assert (result.code, result.stdout, result.stderr) == (64, b"", f"encpipe: error: {message}\n")


def test_the_recipient_that_is_not_a_public_key_is_named_by_its_place(tmp_path):
    public, _ = _keys(tmp_path)
    _refused(run(["seal", "--recipient", public, "--recipient", "bogus", "--recipient", public]),
             f"--recipient (2nd of 3): not an encpipe {PUBLIC}")
    _refused(run(["seal", "--recipient", public + "x", "--recipient", public]),
             "--recipient (1st of 2): malformed public key: not base32")
    _refused(run(["seal", "--recipient", "bogus"]), f"--recipient: not an encpipe {PUBLIC}")  # one: no place


def test_a_secret_given_as_a_later_recipient_is_named_by_its_place_not_shown(tmp_path):
    public, _ = _keys(tmp_path)
    identity = (tmp_path / "id").read_text().splitlines()[-1]
    result = run(["seal", "--recipient", public, "--recipient", identity])
    assert (result.code, result.stdout) == (64, b"")
    assert result.stderr.startswith("encpipe: error: --recipient (2nd of 2): a secret key (")
    assert identity not in result.stderr and identity.upper() not in result.stderr


def test_a_bad_line_of_a_recipient_file_is_named_by_its_line(tmp_path):
    public, _ = _keys(tmp_path)
    path = tmp_path / "recipients"
    path.write_text(f"# escrow\n{public}\n\nbogus\n")
    os.chmod(path, 0o600)
    _refused(run(["seal", "--recipient-file", str(path)]), f"{path}, line 4: not an encpipe {PUBLIC}")


def test_the_signer_that_is_not_a_verify_key_is_named_by_its_place(tmp_path):
    _, verify = _keys(tmp_path)
    sealed = ok(run(["seal"], b"data", {"ENCPIPE_KEY": KEY_A}))
    _refused(run(["open", "--signer", verify, "--signer", "bogus"], sealed, {"ENCPIPE_KEY": KEY_A}),
             f"--signer (2nd of 2): not an encpipe {VERIFY}")


def test_a_bad_line_of_a_signer_file_is_named_by_its_line(tmp_path):
    _, verify = _keys(tmp_path)
    path = tmp_path / "signers"
    path.write_text(f"{verify}\n# old\n{verify} bogus\n")
    os.chmod(path, 0o600)
    sealed = ok(run(["seal"], b"data", {"ENCPIPE_KEY": KEY_A}))
    _refused(run(["open", "--signer-file", str(path)], sealed, {"ENCPIPE_KEY": KEY_A}),
             f"{path}, line 3: not an encpipe {VERIFY}")


def test_the_escrow_recipient_that_is_not_a_public_key_is_named_by_its_place(tmp_path):
    world = World(tmp_path)
    world.mixed()
    done = rotate(["--old-key-file", world.old, "--new-key-file", world.new, "--escrow-recipient", world.escrow_pub,
                   "--escrow-recipient", "bogus", "--dry-run", str(world.dir)])
    assert (done.returncode, done.stdout, done.stderr.decode()) == (
        64, b"", f"encpipe-rotate: error: --escrow-recipient (2nd of 2): not an encpipe {PUBLIC}\n")


def test_restore_refuses_a_signer_that_is_no_verify_key_before_any_child(tmp_path):
    """encpipe-restore only asked whether a --signer was a secret pasted: another
    value went to each encpipe's ENCPIPE_SIGNER, once the server was reached, and
    was refused there under that variable's name. It is read as encpipe reads it,
    64 before anything runs, named by its place."""
    import subprocess

    import spies
    from test_backup_restore import RESTORE, python_env

    _, verify = _keys(tmp_path)
    log = tmp_path / "encpipe.log"
    spies.write(tmp_path / "encpipe-spy", "encpipe", [__import__("sys").executable, "-m", "encpipe"], log)
    (tmp_path / "key").write_text(os.urandom(32).hex() + "\n")
    (tmp_path / "key").chmod(0o600)
    (tmp_path / "f.enc").write_bytes(ok(run(["seal", "--key-file", str(tmp_path / "key")], b"SELECT 1;\n")))
    env = {**python_env(), "ENCPIPE": str(tmp_path / "encpipe-spy"), "PGHOST": str(tmp_path)}
    done = subprocess.run([RESTORE, "--key-file", str(tmp_path / "key"), "--signer", verify, "--signer", "bogus",
                           str(tmp_path / "f.enc"), "db"], env=env, capture_output=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr.decode()) == (
        64, b"", f"encpipe-restore: error: --signer (2nd of 2): not an encpipe {VERIFY}\n"
                 "encpipe-restore: hint: see encpipe-restore --help\n")
    assert not log.exists()


def test_rewraps_added_recipient_that_is_not_a_public_key_is_named_as_given(tmp_path):
    """rewrap's --add-recipient is named so, not as seal's --recipient, which rewrap
    does not take (before: `--recipient (2nd of 2): ...` of an --add-recipient value)."""
    public, _ = _keys(tmp_path)
    sealed = ok(run(["seal"], b"data", {"ENCPIPE_KEY": KEY_A}))
    _refused(run(["rewrap", "--add-recipient", public, "--add-recipient", "bogus"], sealed, {"ENCPIPE_KEY": KEY_A}),
             f"--add-recipient (2nd of 2): not an encpipe {PUBLIC}")
    result = run(["rewrap", "--add-recipient", KEY_A], sealed, {"ENCPIPE_KEY": KEY_A})
    assert (result.code, result.stdout) == (64, b"") and KEY_A not in result.stderr, result.stderr
    assert result.stderr.startswith("encpipe: error: --add-recipient: a raw key (a secret, not shown)"), result.stderr
