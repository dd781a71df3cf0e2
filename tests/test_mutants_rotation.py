"""Mutation review of encpipe-rotate and encpipe-migrate: behaviours no other test pinned.

rotate checks what rewrap wrote (`inspect --verify` with the new keys) before the
rename: an encpipe whose rewrap leaves an old slot in, or leaves a --sign-key's
signature out, or whose check does not say "verified", must leave the original as
it was, the file's line an error (step "verify", 70), and the run's status 1."""

import json
import os
import sys

import pytest

from cliutil import assert_one_line_error, ok, run, write_secret
from test_migrate import FEW, make_backups, migrate
from test_rotate import World, lines, rotate, rotate_env
from test_rotate_signers import Signed


def _encpipe(tmp_path, body):
    """An ENCPIPE command: `body` (sh) may rewrite "$@" before the real encpipe runs."""
    script = tmp_path / "encpipe-liar"
    script.write_text("#!/bin/sh\n" f"{body}\n" f'exec "{sys.executable}" -m encpipe "$@"\n')
    script.chmod(0o700)
    return str(script)


def _dropping(tmp_path, prefix):
    """An encpipe whose rewrap ignores each of its words that starts with `prefix`."""
    return _encpipe(tmp_path, 'if [ "$1" = rewrap ]; then\n'
                              '  for a; do shift; case "$a" in ' + prefix + '*) continue;; esac; set -- "$@" "$a"; done\n'
                              'fi')


def _refused_at_verify(world, done, name):
    assert done.returncode == 1, done.stderr
    line = lines(done)[name]
    assert (line["status"], line["step"], line["exit"]) == ("error", "verify", 70), line
    assert (world.dir / name).read_bytes() == world.originals[name]
    assert world.temps() == []


@pytest.fixture
def world(tmp_path):
    return World(tmp_path)


def test_a_rewrap_that_keeps_an_old_slot_is_refused_and_the_original_kept(world):
    """A new file an old key still opens (rewrap ignored --remove) never replaces the original."""
    world.add("a-old.enc", "--key-file", world.old_a, "--key-file", world.new, size=1000)
    done = rotate(world.args(escrow=False), env=rotate_env(ENCPIPE=_dropping(world.tmp, "--remove=")))
    _refused_at_verify(world, done, "a-old.enc")
    assert "does not hold the expected slots" in lines(done)["a-old.enc"]["error"]


def test_a_rewrap_that_does_not_sign_is_refused_and_the_original_kept(tmp_path):
    """A new file lacking a --sign-key's signature (rewrap ignored it) never replaces the original."""
    world = Signed(tmp_path)
    world.add("a-old.enc", "--key-file", world.old_a, size=1000)
    done = rotate(["--sign-key", world.sign1, *world.args(escrow=False)],
                  env=rotate_env(ENCPIPE=_dropping(world.tmp, "--sign-key=")))
    _refused_at_verify(world, done, "a-old.enc")
    assert "not signed by every --sign-key" in lines(done)["a-old.enc"]["error"]


def test_a_check_that_does_not_say_verified_is_refused_and_the_original_kept(world):
    """The new file replaces the original only when inspect --verify reports it "verified"."""
    world.add("a-old.enc", "--key-file", world.old_a, size=1000)
    liar = _encpipe(world.tmp, 'case " $* " in *" --verify "*)\n'
                               f'  "{sys.executable}" -m encpipe "$@" | sed \'s/"verified": true/"verified": false/\'\n'
                               '  exit 0;;\nesac')
    done = rotate(world.args(escrow=False), env=rotate_env(ENCPIPE=liar))
    _refused_at_verify(world, done, "a-old.enc")
    again = rotate(world.args(escrow=False))
    assert again.returncode == 0, again.stderr
    sealed = (world.dir / "a-old.enc").read_bytes()
    assert ok(run(["open", "--key-file", world.new], sealed)) == world.plain["a-old.enc"]
    assert lines(again)["a-old.enc"]["status"] == "rotated"


def test_a_file_no_given_key_opens_is_an_error_without_escrow_too(world):
    """Without an escrow recipient, a file under none of the given keys is error 77, not "skipped"."""
    stranger = write_secret(world.tmp / "stranger.key", os.urandom(32).hex())
    world.add("b-stranger.enc", "--key-file", stranger, size=100)
    done = rotate(world.args(escrow=False))
    assert (done.returncode, done.stderr) == (1, b"encpipe-rotate: error: 1 file(s) could not be rotated\n")
    line = lines(done)["b-stranger.enc"]
    assert (line["status"], line["exit"]) == ("error", 77), line
    assert (world.dir / "b-stranger.enc").read_bytes() == world.originals["b-stranger.enc"]


def test_a_file_lacking_one_of_two_new_keys_gets_its_slot(world):
    """A file holding one key of a two-key --new-key-file is rotated to hold both, not "skipped"."""
    second = os.urandom(32).hex()
    both = write_secret(world.tmp / "keys" / "both.key", f"{world.new_hex}\n{second}\n")
    world.add("a.enc", "--key-file", world.new, size=100)
    done = rotate(["--new-key-file", both, str(world.dir)])
    assert done.returncode == 0, done.stderr
    assert lines(done)["a.enc"]["status"] == "rotated"
    sealed = (world.dir / "a.enc").read_bytes()
    only_second = write_secret(world.tmp / "keys" / "second.key", second + "\n")
    assert ok(run(["open", "--key-file", only_second], sealed)) == world.plain["a.enc"]


def test_a_new_key_file_given_under_two_spellings_gets_one_slot(world):
    """--new-key-file FILE and ./FILE's other spelling are one key file: one slot, not two."""
    world.add("a.enc", "--key-file", world.old_a, size=100)
    other = os.path.join(os.path.dirname(world.new), ".", os.path.basename(world.new))
    done = rotate(["--old-key-file", world.old, "--new-key-file", world.new, "--new-key-file", other,
                   str(world.dir)])
    assert done.returncode == 0, done.stderr
    assert lines(done)["a.enc"]["slots"] == world.ids(world.new)


def test_an_old_key_that_is_also_the_escrow_recipient_is_a_usage_error(world):
    """An old identity whose public key is an --escrow-recipient is refused (64), no file touched."""
    world.add("a.enc", "--identity", world.escrow_id, "--key-file", world.old_a, size=100)
    done = rotate(["--old-key-file", world.escrow_id, "--new-key-file", world.new,
                   "--escrow-recipient", world.escrow_pub, str(world.dir)])
    assert (done.returncode, done.stdout) == (64, b""), done.stderr
    assert done.stderr == b"encpipe-rotate: error: a key is both old and new (or escrow)\n"
    assert (world.dir / "a.enc").read_bytes() == world.originals["a.enc"]


def test_migrate_exits_with_the_status_of_the_first_failed_file(tmp_path, keys):
    """Two files fail (65 too short, then 73 a kept name taken): the run's status is the first's."""
    directory = tmp_path / "backups"
    make_backups(directory, FEW, python_made=False)
    (directory / "0_short.sql.enc").write_bytes(b"too short")
    (directory / "a_backup.sql.enc.legacy").write_bytes(b"something else")
    status, found, _ = migrate(directory, "--keep-originals", keys=keys)
    by_name = {line["file"]: line for line in found}
    assert (by_name["0_short.sql.enc"]["exit_code"], by_name["a_backup.sql.enc"]["exit_code"]) == (65, 73)
    assert status == 65


def test_migrate_leaves_a_hidden_legacy_file_and_a_visible_migrate_tmp_name_alone(tmp_path, keys):
    """Hidden .NAME.sql.enc is never converted; a visible NAME.migrate-tmp is no leftover and stays."""
    directory = tmp_path / "backups"
    make_backups(directory, FEW, python_made=False)
    hidden = directory / ".hidden.sql.enc"
    original = (directory / "a_backup.sql.enc").read_bytes()
    hidden.write_bytes(original)
    visible = directory / "notes.migrate-tmp"
    visible.write_bytes(b"a user's own file\n")
    status, found, err = migrate(directory, keys=keys)
    assert status == 0, err
    assert err == ""
    assert not {line["file"] for line in found} & {".hidden.sql.enc", "notes.migrate-tmp"}
    assert hidden.read_bytes() == original
    assert visible.read_bytes() == b"a user's own file\n"


def test_migrate_with_recipients_only_is_refused_before_any_file(tmp_path, keys):
    """--recipient alone cannot verify the new files: 64 with one line, nothing converted."""
    directory = tmp_path / "backups"
    make_backups(directory, FEW, python_made=False)
    before = {name: (directory / name).read_bytes() for name in FEW}
    pub = ok(run(["keygen", "--x25519", "-o", str(tmp_path / "escrow.id")])).decode().strip()
    status, found, err = migrate(directory, "--legacy-key-file", keys["old_key"], "--legacy-passphrase-file",
                                 keys["old_pass"], "--recipient", pub)
    assert (status, found) == (64, []), err
    assert_one_line_error(err.encode(), "encpipe-migrate")
    assert "--recipient cannot open them" in err
    assert {name: (directory / name).read_bytes() for name in FEW} == before


def test_migrate_keeps_the_original_when_the_check_does_not_say_verified(tmp_path, keys):
    """A new file replaces the legacy one only when inspect --verify reports it "verified"."""
    directory = tmp_path / "backups"
    make_backups(directory, FEW, python_made=False)
    before = {name: (directory / name).read_bytes() for name in FEW}
    liar = _encpipe(tmp_path, 'if [ "$1" = inspect ]; then\n'
                              f'  "{sys.executable}" -m encpipe "$@" | sed \'s/"verified": true/"verified": false/\'\n'
                              '  exit 0\nfi')
    status, found, err = migrate(directory, keys=keys, encpipe=liar)
    assert status == 70, err
    assert {line["file"]: (line["status"], line["exit_code"]) for line in found if line["file"] in FEW} == \
        {name: ("failed", 70) for name in FEW}
    assert {name: (directory / name).read_bytes() for name in FEW} == before
    assert not [n for n in os.listdir(directory) if n.endswith(".migrate-tmp")]


def test_a_file_removed_while_it_is_rotated_is_not_put_back(world):
    """The original's name removed after the check, before the rename: no rotated file appears under it."""
    world.add("a.enc", "--key-file", world.old_a, size=100)
    hook = '[ "$1" = verified ] && [ "$4" = a.enc ] && rm "$2/$4"; exit 0'
    done = rotate(world.args(escrow=False), env=rotate_env(ENCPIPE_TEST_HOOK=hook))
    assert done.returncode == 1, done.stderr
    line = lines(done)["a.enc"]
    assert (line["status"], line["step"]) == ("error", "rename"), line
    assert world.names() == []


def test_a_rewrap_that_leaves_the_escrow_recipient_out_is_refused_and_the_original_kept(world):
    """A new file without the --escrow-recipient's slot (rewrap ignored it) never replaces the original."""
    world.add("a-old.enc", "--key-file", world.old_a, size=1000)
    done = rotate(world.args(), env=rotate_env(ENCPIPE=_dropping(world.tmp, "--add-recipient=")))
    _refused_at_verify(world, done, "a-old.enc")


def test_rotate_warns_once_of_a_key_file_others_can_read(world):
    """A --new-key-file readable by group or others is named in one warning, and the run goes on."""
    os.chmod(world.new, 0o644)
    done = rotate(["--new-key-file", world.new, str(world.dir)])
    assert (done.returncode, done.stdout) == (0, b""), done.stderr
    assert done.stderr == (f"encpipe-rotate: warning: {world.new} is readable by group or others: "
                           f"chmod 600 {world.new}\n").encode()


def test_migrate_passes_chunk_size_on_to_seal(tmp_path, keys):
    """encpipe-migrate --chunk-size 16K seals the new files in 16 KiB chunks."""
    directory = tmp_path / "backups"
    make_backups(directory, FEW, python_made=False)
    status, found, err = migrate(directory, "--chunk-size", "16K", keys=keys)
    assert status == 0, err
    for name in FEW:
        report = json.loads(ok(run(["inspect", "--json"], (directory / name).read_bytes())))
        assert report["chunk_size"] == 16384, name
