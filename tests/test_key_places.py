"""Key files another user could replace are refused (73), as ssh's StrictModes
refuses an authorized_keys file in a directory others can write.

encpipe refused to write into a directory another user can write, but read its
keys from anywhere. The threat model has a local user (here postgres) who can
write the backup directory: with the verify key file (--signer-file) there, that
user swaps in their own verify key and their signed forgery opens (and
encpipe-restore runs its SQL as the superuser); with a --recipient-file or a
--key-file there, every later backup is sealed to them. Now a key file named by
a path is read only when nobody but the caller and root can change it, its
directory, a directory above it or a symbolic link on the way; --allow-shared-dir
accepts such a place. Standard input and /dev/fd/N are the caller's own: never
refused.
"""

import os
import subprocess
import sys

import pytest

from cliutil import KEY_A, assert_one_line_error, run_process, write_secret

POSTGRES = (101, 104)
DATA = b"the genuine backup\n" * 100
EVIL = b"DROP TABLE customers; -- the attacker's SQL\n"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="another user (postgres) owns or writes the places")


def group_writable_dir(path):
    """A directory root owns that user postgres can write (its group's)."""
    os.makedirs(path)
    os.chown(path, 0, POSTGRES[1])
    os.chmod(path, 0o770)
    return str(path)


def refused(done, *names):
    assert (done.returncode, done.stdout) == (73, b""), done.stderr
    assert_one_line_error(done.stderr)
    text = done.stderr.decode()
    assert "refusing to read a key from it" in text and "--allow-shared-dir" in text, text
    for name in names:
        assert name in text, text


def encpipe(*args, stdin=b"", env=None):
    return run_process(list(args), stdin, env)


def signing_key(path, *options):
    done = encpipe("keygen", "--sign", *options, "-o", str(path))
    assert done.returncode == 0, done.stderr
    return done.stdout.decode().strip()


def x25519(path):
    done = encpipe("keygen", "--x25519", "-o", str(path))
    assert done.returncode == 0, done.stderr
    return done.stdout.decode().strip()


def as_postgres(path):
    """What user postgres can do in a directory it can write: replace `path` (a file of root's)."""
    os.unlink(path)


# --- the attacks ----------------------------------------------------------------------------


def test_a_signer_file_in_a_directory_postgres_can_write_is_refused(tmp_path):
    """The forgery: postgres replaces the verify key file with its own verify key
    and signs its own file, sealed to the operator's public key. Before, open
    printed the attacker's plaintext (0)."""
    identity = tmp_path / "backup.id"
    public = x25519(identity)
    mine = signing_key(tmp_path / "op.sign")
    shared = group_writable_dir(tmp_path / "backups")
    signer = os.path.join(shared, "signer.pub")
    with open(signer, "w") as f:
        f.write(mine + "\n")
    genuine = encpipe("seal", "--recipient", public, "--sign-key", str(tmp_path / "op.sign"), stdin=DATA)
    assert genuine.returncode == 0, genuine.stderr
    # postgres's move: its own signing key, its verify key in signer.pub, its forgery
    theirs = signing_key(tmp_path / "attacker.sign")
    as_postgres(signer)
    with open(signer, "w") as f:
        f.write(theirs + "\n")
    forged = encpipe("seal", "--recipient", public, "--sign-key", str(tmp_path / "attacker.sign"), stdin=EVIL)
    assert forged.returncode == 0, forged.stderr
    done = encpipe("open", "--identity", str(identity), "--signer-file", signer, stdin=forged.stdout)
    refused(done, signer, "group postgres")
    # the genuine file, the genuine signer.pub: refused all the same, the place is the fault
    with open(signer, "w") as f:
        f.write(mine + "\n")
    refused(encpipe("open", "--identity", str(identity), "--signer-file", signer, stdin=genuine.stdout), signer)
    refused(encpipe("inspect", "--verify", "--identity", str(identity), "--signer-file", signer,
                    stdin=genuine.stdout), signer)
    allowed = encpipe("open", "--allow-shared-dir", "--identity", str(identity), "--signer-file", signer,
                      stdin=genuine.stdout)
    assert (allowed.returncode, allowed.stdout) == (0, DATA), allowed.stderr


def test_a_recipient_file_in_a_directory_postgres_can_write_is_refused_nothing_written(tmp_path):
    """postgres puts its own public key in the list: every later backup opens for it."""
    public = x25519(tmp_path / "backup.id")
    shared = group_writable_dir(tmp_path / "conf")
    recipients = os.path.join(shared, "recipients")
    with open(recipients, "w") as f:
        f.write(public + "\n")
    out = tmp_path / "out" / "b.enc"
    out.parent.mkdir()
    done = encpipe("seal", "--recipient-file", recipients, "-o", str(out), stdin=DATA)
    refused(done, recipients, "group postgres")
    assert os.listdir(out.parent) == []
    refused(encpipe("seal", "--recipient-file", recipients, stdin=DATA), recipients)
    refused(encpipe("keyid", "--recipient-file", recipients), recipients)
    allowed = encpipe("seal", "--allow-shared-dir", "--recipient-file", recipients, "-o", str(out), stdin=DATA)
    assert allowed.returncode == 0, allowed.stderr
    assert encpipe("open", "--identity", str(tmp_path / "backup.id"), str(out)).stdout == DATA


def test_a_key_file_owned_by_another_user_is_refused(tmp_path):
    key = write_secret(tmp_path / "backup.key", KEY_A + "\n")
    os.chown(key, *POSTGRES)  # mode 0600, but its owner can chmod and rewrite it
    sealed = encpipe("seal", stdin=DATA, env={"ENCPIPE_KEY": KEY_A}).stdout
    refused(encpipe("seal", "--key-file", key, stdin=DATA), key, "user postgres (its owner)")
    refused(encpipe("open", "--key-file", key, stdin=sealed), key, "user postgres (its owner)")
    refused(encpipe("rewrap", "--add-key-file", key, stdin=sealed, env={"ENCPIPE_KEY": KEY_A}), key)
    refused(encpipe("keyid", "--key-file", key), key)
    allowed = encpipe("open", "--allow-shared-dir", "--key-file", key, stdin=sealed)
    assert (allowed.returncode, allowed.stdout) == (0, DATA), allowed.stderr


def test_a_key_file_its_group_can_write_is_refused(tmp_path):
    key = write_secret(tmp_path / "backup.key", KEY_A + "\n", mode=0o620)
    os.chown(key, 0, POSTGRES[1])
    refused(encpipe("seal", "--key-file", key, stdin=DATA), key, "group postgres (mode g+w)")
    passphrase = write_secret(tmp_path / "pass", "a passphrase\n", mode=0o602)
    refused(encpipe("seal", "--passphrase-file", passphrase, "--work-factor", "10", stdin=DATA), passphrase,
            "every user (mode o+w)")
    # a group of root's alone (root: no other member) may write it: as for a directory
    os.chown(key, 0, 0)
    done = encpipe("seal", "--key-file", key, stdin=DATA)
    assert done.returncode == 0, done.stderr


def test_a_sign_key_and_a_pubkey_file_in_a_shared_directory_are_refused(tmp_path):
    shared = group_writable_dir(tmp_path / "keys")
    sign = os.path.join(shared, "op.sign")
    signing_key(sign, "--allow-shared-dir")
    refused(encpipe("seal", "--sign-key", sign, stdin=DATA, env={"ENCPIPE_KEY": KEY_A}), sign)
    refused(encpipe("pubkey", sign), sign)
    refused(encpipe("keyid", "--sign-key", sign), sign)
    assert encpipe("pubkey", "--allow-shared-dir", sign).returncode == 0


def test_a_directory_above_postgres_can_write_is_refused(tmp_path):
    shared = group_writable_dir(tmp_path / "etc")
    inner = os.path.join(shared, "encpipe")
    os.mkdir(inner, 0o700)  # postgres can rename it away and put its own in its place
    key = write_secret(os.path.join(inner, "backup.key"), KEY_A + "\n")
    refused(encpipe("seal", "--key-file", key, stdin=DATA), key, f"{shared} (above {inner})")


def test_ones_own_file_in_a_sticky_directory_is_accepted_another_users_is_not(tmp_path):
    sticky = tmp_path / "tmp"
    sticky.mkdir()
    os.chmod(sticky, 0o1777)
    key = write_secret(sticky / "backup.key", KEY_A + "\n")
    done = encpipe("seal", "--key-file", key, stdin=DATA)
    assert done.returncode == 0, done.stderr
    os.chown(key, *POSTGRES)
    refused(encpipe("seal", "--key-file", key, stdin=DATA), key, "user postgres (its owner)")
    # a name not there yet in a sticky directory: anyone may make it
    missing = str(sticky / "not-yet")
    refused(encpipe("seal", "--key-file", missing, stdin=DATA), missing, f"its directory {sticky}")


def test_symbolic_links_are_judged_where_they_live_and_where_they_lead(tmp_path):
    safe = tmp_path / "safe"
    safe.mkdir(mode=0o700)
    key = write_secret(safe / "backup.key", KEY_A + "\n")
    shared = group_writable_dir(tmp_path / "shared")
    # a link postgres can repoint: refused, wherever it leads now
    planted = os.path.join(shared, "key")
    os.symlink(key, planted)
    refused(encpipe("seal", "--key-file", planted, stdin=DATA), planted, f"holding its symbolic link {planted}")
    # a link of root's in a safe place to a file in a shared one: the file's place counts
    shared_key = write_secret(os.path.join(shared, "real.key"), KEY_A + "\n")
    link = str(safe / "to-shared")
    os.symlink(shared_key, link)
    refused(encpipe("seal", "--key-file", link, stdin=DATA), link, f"its directory {shared}")
    # a link owned by postgres in a sticky directory: postgres can replace it
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    os.chmod(sticky, 0o1777)
    theirs = str(sticky / "key")
    os.symlink(key, theirs)
    os.lchown(theirs, *POSTGRES)
    refused(encpipe("seal", "--key-file", theirs, stdin=DATA), theirs, "user postgres (its owner)")
    # links all of root's, in places only root can write: read as ever
    good = str(safe / "link")
    os.symlink("backup.key", good)
    done = encpipe("seal", "--key-file", good, stdin=DATA)
    assert done.returncode == 0, done.stderr


def test_standard_input_and_a_descriptor_are_the_callers_own(tmp_path):
    shared = group_writable_dir(tmp_path / "shared")
    key = write_secret(os.path.join(shared, "backup.key"), KEY_A + "\n")
    sealed = tmp_path / "b.enc"
    sealed.write_bytes(encpipe("seal", stdin=DATA, env={"ENCPIPE_KEY": KEY_A}).stdout)
    done = encpipe("open", "--key-file", "-", str(sealed), stdin=(KEY_A + "\n").encode())
    assert (done.returncode, done.stdout) == (0, DATA), done.stderr
    fd = os.open(key, os.O_RDONLY)  # opened by the caller, who answers for it
    try:
        done = subprocess.run([sys.executable, "-m", "encpipe", "open", "--key-file", f"/dev/fd/{fd}", str(sealed)],
                              capture_output=True, pass_fds=[fd], env={**os.environ, "ENCPIPE_KEY": ""})
    finally:
        os.close(fd)
    assert (done.returncode, done.stdout) == (0, DATA), done.stderr


def test_keygen_o_into_a_directory_postgres_can_write_is_refused(tmp_path):
    shared = group_writable_dir(tmp_path / "keys")
    for kind in ([], ["--x25519"], ["--sign"]):
        path = os.path.join(shared, "new.key")
        done = encpipe("keygen", *kind, "-o", path)
        assert (done.returncode, done.stdout) == (73, b""), done.stderr
        assert_one_line_error(done.stderr)
        assert b"refusing to write in it" in done.stderr and b"--allow-shared-dir" in done.stderr
        assert os.listdir(shared) == []
        allowed = encpipe("keygen", *kind, "--allow-shared-dir", "-o", path)
        assert allowed.returncode == 0, allowed.stderr
        os.unlink(path)
