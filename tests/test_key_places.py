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
import struct
import subprocess
import sys

import pytest

from cliutil import KEY_A, assert_one_line_error, run_process, write_secret
from test_backup_restore import (RESTORE, SCRIPTS, backup, dump, ensure_small, leftover_databases, python_env, restore,
                                 run, script_env)
from test_migrate import FEW, make_backups, migrate, snapshot
from test_rotate import World, rotate

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


def encpipe(*args, stdin=b"", env=None, cwd=None):
    return run_process(list(args), stdin, env, cwd=cwd)


def signing_key(path, *options):
    done = encpipe("keygen", "--sign", *options, "-o", str(path))
    assert done.returncode == 0, done.stderr
    return done.stdout.decode().strip()


def x25519(path):
    done = encpipe("keygen", "--x25519", "-o", str(path))
    assert done.returncode == 0, done.stderr
    return done.stdout.decode().strip()


def operator_keys(tmp_path, shared_name):
    """The operator's x25519 identity (backup.id) and signing key (op.sign), and
    signer.pub, its verify key, in a directory `shared_name` postgres can write:
    (the identity's path, its public key, the verify key, signer.pub's path)."""
    identity = tmp_path / "backup.id"
    public = x25519(identity)
    verify = signing_key(tmp_path / "op.sign")
    signer = os.path.join(group_writable_dir(tmp_path / shared_name), "signer.pub")
    with open(signer, "w") as f:
        f.write(verify + "\n")
    return identity, public, verify, signer


def as_postgres(path):
    """What user postgres can do in a directory it can write: replace `path` (a file of root's)."""
    os.unlink(path)


# --- the attacks ----------------------------------------------------------------------------


def test_a_signer_file_in_a_directory_postgres_can_write_is_refused(tmp_path):
    """The forgery: postgres replaces the verify key file with its own verify key
    and signs its own file, sealed to the operator's public key. Before, open
    printed the attacker's plaintext (0)."""
    identity, public, mine, signer = operator_keys(tmp_path, "backups")
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


def test_a_key_file_owned_by_another_user_gets_a_hint_that_helps(tmp_path):
    """README's own set-up: backup.key owned by postgres, which root's tools refuse
    (73). The hint said `keep it where only root can write (chmod go-w)`: chmod
    changes nothing for a file another user owns (0600 already), and a key chown'ed
    to root is one the nightly run as postgres cannot read. It says what works."""
    key = write_secret(tmp_path / "backup.key", KEY_A + "\n")
    os.chown(key, *POSTGRES)
    done = encpipe("seal", "--key-file", key, stdin=DATA)
    refused(done, key, "the file itself can be written by user postgres (its owner)")
    assert done.stderr.decode().splitlines()[1] == (
        "encpipe: hint: run this as its owner, or give root a copy of its own, or pass --allow-shared-dir")
    group = write_secret(tmp_path / "group.key", KEY_A + "\n", mode=0o620)
    os.chown(group, 0, POSTGRES[1])  # root's file that postgres's group can write: chmod go-w does help
    done = encpipe("seal", "--key-file", group, stdin=DATA)
    assert done.stderr.decode().splitlines()[1] == (
        "encpipe: hint: keep it where only root can write (chmod go-w), or pass --allow-shared-dir")


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


def acl_lets_postgres_write(path):
    """An access ACL on `path` (chmod shows its mask as the group bits) that gives user postgres rwx."""
    entries = [(0x01, 7, 0xFFFFFFFF), (0x02, 7, POSTGRES[0]), (0x04, 5, 0xFFFFFFFF), (0x10, 7, 0xFFFFFFFF),
               (0x20, 5, 0xFFFFFFFF)]  # user::rwx user:postgres:rwx group::r-x mask::rwx other::r-x
    os.setxattr(path, "system.posix_acl_access",
                struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *entry) for entry in entries))


def test_a_directory_an_acl_lets_postgres_write_is_refused(tmp_path):
    # its group is root's alone, and the group bits (the ACL's mask) say g+w: the ACL says who
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o755)
    acl_lets_postgres_write(keys)
    assert os.stat(keys).st_mode & 0o777 == 0o775 and os.stat(keys).st_gid == 0
    key = write_secret(keys / "backup.key", KEY_A + "\n")
    refused(encpipe("seal", "--key-file", key, stdin=DATA), key, f"its directory {keys}", "ACL")
    # the file itself, by an ACL of its own
    safe = tmp_path / "safe"
    safe.mkdir(mode=0o700)
    own = write_secret(safe / "backup.key", KEY_A + "\n")
    acl_lets_postgres_write(own)
    refused(encpipe("seal", "--key-file", own, stdin=DATA), own, "the file itself", "ACL")
    # nor is a sealed file written there
    done = encpipe("seal", "-o", str(keys / "b.enc"), stdin=DATA, env={"ENCPIPE_KEY": KEY_A})
    assert (done.returncode, done.stdout) == (73, b""), done.stderr
    assert not os.path.exists(keys / "b.enc")


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
    # said as not there: a mistyped name is not taken for a file someone else made
    text = encpipe("seal", "--key-file", missing, stdin=DATA).stderr.decode()
    assert text.startswith(f"encpipe: error: --key-file {missing}: no such file, and its directory {sticky} "
                           "can be written by every user"), text
    assert "who could make it" in text, text


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
    # `..` after a link leaves where the link leads (as the kernel reads it), not where the link is
    inner = os.path.join(shared, "inner")
    os.mkdir(inner, 0o700)
    os.symlink(inner, safe / "to-inner")
    dotdot = f"{safe}/to-inner/../real.key"
    refused(encpipe("seal", "--key-file", dotdot, stdin=DATA), dotdot, f"{shared}, where a .. on the way turns back")
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


def test_a_dotdot_out_of_a_directory_postgres_can_write_is_refused(tmp_path):
    # where x/.. leads is where x is: a directory postgres can write holds the name x, and
    # postgres can put a link there (between the check and the open) so that x/.. is theirs
    safe = tmp_path / "safe"
    safe.mkdir(mode=0o700)
    write_secret(safe / "backup.key", KEY_A + "\n")
    shared = group_writable_dir(safe / "shared")
    os.mkdir(os.path.join(shared, "sub"), 0o700)
    through = f"{shared}/sub/../../backup.key"
    refused(encpipe("seal", "--key-file", through, stdin=DATA), through, f"{shared}, where a .. on the way turns back")
    # a relative path from a working directory postgres can move: its .. is wherever postgres put it
    done = encpipe("seal", "--key-file", "../../backup.key", stdin=DATA, cwd=os.path.join(shared, "sub"))
    refused(done, "../../backup.key", shared)
    # a directory of postgres's in a sticky one: postgres can replace it by a link
    sticky = safe / "tmp"
    sticky.mkdir()
    os.chmod(sticky, 0o1777)
    theirs = sticky / "theirs"
    theirs.mkdir()
    os.chown(theirs, *POSTGRES)
    through = f"{theirs}/../../backup.key"
    refused(encpipe("seal", "--key-file", through, stdin=DATA), through, "user postgres (its owner)")
    # a .. out of a directory only root can change, or out of one postgres can write: read as ever
    mine = sticky / "mine"
    mine.mkdir(mode=0o700)
    for good in (f"{mine}/../../backup.key", f"{shared}/../backup.key"):
        done = encpipe("seal", "--key-file", good, stdin=DATA)
        assert done.returncode == 0, (good, done.stderr)
    allowed = encpipe("seal", "--allow-shared-dir", "--key-file", f"{shared}/sub/../../backup.key", stdin=DATA)
    assert allowed.returncode == 0, allowed.stderr


def test_a_passphrase_typed_for_a_path_in_a_shared_working_directory_is_not_shown(tmp_path):
    # a bare word that names no file may be the passphrase itself: 73 (anyone could make that
    # name in /tmp), its line naming the directory, never the word
    sticky = tmp_path / "tmp"
    sticky.mkdir()
    os.chmod(sticky, 0o1777)
    for secret in ("hunter2", "Tr0ub4dor&3"):
        done = encpipe("seal", "--passphrase-file", secret, "--work-factor", "10", stdin=DATA, cwd=sticky)
        refused(done, "--passphrase-file FILE (its name not shown", f"its directory {sticky}")
        assert secret.encode() not in done.stderr, done.stderr
        done = rotate(["--old-key-file", secret, "--new-key-file", secret, str(sticky)], cwd=sticky)
        script_refused(done, "encpipe-rotate", "--old-key-file FILE (its name not shown")
        assert secret.encode() not in done.stderr, done.stderr
    # a name with a / or a . is a path, mistyped most likely: shown
    refused(encpipe("seal", "--key-file", "keys/backup.key", stdin=DATA, cwd=sticky), "--key-file keys/backup.key")


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


# --- the scripts: each refuses where it first reads the path, and passes the override on ---------------------


def script_refused(done, prog, *names):
    assert (done.returncode, done.stdout) == (73, b""), done.stderr
    assert_one_line_error(done.stderr, prog)
    for name in names:
        assert name.encode() in done.stderr, done.stderr


@pytest.fixture
def signed_backup(pg, tools, tmp_path):
    """A backup sealed to an x25519 identity and signed; signer.pub, its verify key,
    in a directory postgres can write."""
    identity, public, _, signer = operator_keys(tmp_path, "shared")
    db = ensure_small(pg, "keyplace_live")
    path, _ = backup(pg, tools, str(tmp_path / "b"), db, "--recipient", public, "--sign-key", tmp_path / "op.sign")
    return db, path, str(identity), public, signer


def test_restore_with_a_signer_file_postgres_can_replace_is_refused_database_untouched(pg, tools, signed_backup,
                                                                                        tmp_path):
    """The whole attack: postgres writes its SQL, sealed to the backups' public key and
    signed with its own key, over the backup, and its verify key over signer.pub.
    Before, encpipe-restore ran that SQL (as the superuser) into the live database."""
    db, path, identity, public, signer = signed_backup
    before = dump(pg, db)
    theirs = signing_key(tmp_path / "attacker.sign")
    evil = b"CREATE TABLE forged (x int);\n"
    forged = encpipe("seal", "--recipient", public, "--sign-key", str(tmp_path / "attacker.sign"), stdin=evil)
    assert forged.returncode == 0, forged.stderr
    genuine = open(path, "rb").read()
    open(path, "wb").write(forged.stdout)
    with open(signer, "w") as f:
        f.write(theirs + "\n")
    proc = restore(pg, tools, path, db, "--no-globals", "--drop-old", "--identity", identity, "--signer-file", signer)
    script_refused(proc, "encpipe-restore", signer, "group postgres")
    assert dump(pg, db) == before and leftover_databases(pg) == set()
    # the genuine backup and signer.pub: refused all the same (the place is the fault); accepted when told
    open(path, "wb").write(genuine)
    with open(signer, "w") as f:
        f.write(encpipe("pubkey", str(tmp_path / "op.sign")).stdout.decode())
    proc = restore(pg, tools, path, db, "--drop-old", "--identity", identity, "--signer-file", signer)
    script_refused(proc, "encpipe-restore", signer)
    assert dump(pg, db) == before and leftover_databases(pg) == set()
    proc = restore(pg, tools, path, db, "--drop-old", "--identity", identity, "--signer-file", signer,
                   "--allow-shared-dir")
    assert proc.returncode == 0, proc.stderr.decode()
    assert dump(pg, db) == before


def test_restore_with_a_key_file_in_a_shared_directory_is_refused_before_the_server(pg, tools, signed_backup,
                                                                                    tmp_path):
    db, path, identity, _, _ = signed_backup
    shared = os.path.dirname(signed_backup[4])
    moved = os.path.join(shared, "backup.id")
    os.rename(identity, moved)
    before = dump(pg, db)
    proc = restore(pg, tools, path, db, "--drop-old", "--identity", moved, "--allow-unauthenticated")
    script_refused(proc, "encpipe-restore", moved, "group postgres")
    assert dump(pg, db) == before and leftover_databases(pg) == set()
    # told: each encpipe it runs (keyid, open) reads the identity there too
    proc = restore(pg, tools, path, db, "--drop-old", "--identity", moved, "--allow-unauthenticated",
                   "--allow-shared-dir")
    assert proc.returncode == 0, proc.stderr.decode()
    # a /dev/fd/N is the caller's own: lent to each encpipe, never refused
    fd = os.open(moved, os.O_RDONLY)
    try:
        proc = run([RESTORE, "--drop-old", "--identity", f"/dev/fd/{fd}", "--allow-unauthenticated", path, db],
                   script_env(pg, tools), pass_fds=[fd])
    finally:
        os.close(fd)
    assert proc.returncode == 0, proc.stderr.decode()
    assert dump(pg, db) == before


def test_backup_with_a_recipient_file_in_a_shared_directory_is_refused_nothing_stored(pg, tools, tmp_path):
    public = x25519(tmp_path / "backup.id")
    shared = group_writable_dir(tmp_path / "shared")
    recipients = os.path.join(shared, "recipients")
    with open(recipients, "w") as f:
        f.write(public + "\n")
    db = ensure_small(pg, "keyplace_backup")
    out = tmp_path / "b"
    proc = backup(pg, tools, str(out), db, "--recipient-file", recipients, check=False)
    script_refused(proc, "encpipe-backup", recipients, "group postgres")
    assert not out.exists() or os.listdir(out) == []
    path, _ = backup(pg, tools, str(out), db, "--recipient-file", recipients, "--allow-shared-dir")
    assert os.path.exists(path)


def _verify_script(name):
    return str(SCRIPTS / f"encpipe-{name}")


def test_verify_prune_check_with_a_key_file_in_a_shared_directory(tmp_path):
    shared = group_writable_dir(tmp_path / "shared")
    key = write_secret(os.path.join(shared, "backup.key"), KEY_A + "\n")
    backups = tmp_path / "backups"
    backups.mkdir()
    (backups / "db_20260101T000000Z.sql.enc").write_bytes(encpipe("seal", stdin=DATA,
                                                                 env={"ENCPIPE_KEY": KEY_A}).stdout)
    env = python_env()
    for name, args in (("verify", []), ("prune", ["--keep-last", "1", "--dry-run"])):
        done = run([_verify_script(name), *args, "--key-file", key, str(backups)], env)
        script_refused(done, f"encpipe-{name}", key, "group postgres")
        allowed = run([_verify_script(name), *args, "--allow-shared-dir", "--key-file", key, str(backups)], env)
        assert allowed.returncode == 0, allowed.stderr.decode()
    done = run([_verify_script("check"), "--max-age", "48000", "--verify", "--key-file", key, str(backups)], env)
    assert done.returncode == 2, done.stderr  # a monitor says CRITICAL, as of a key it cannot read
    assert done.stdout.startswith(b"CRITICAL: cannot load the keys for --verify: --key-file ")
    assert b"refusing to read a key from it" in done.stdout
    allowed = run([_verify_script("check"), "--max-age", "48000", "--verify", "--allow-shared-dir", "--key-file", key,
                   str(backups)], env)
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr


def test_rotate_with_a_new_key_file_in_a_shared_directory_is_refused_nothing_changed(tmp_path):
    world = World(tmp_path)
    world.add("a.enc", "--key-file", world.old_a)
    shared = group_writable_dir(tmp_path / "shared")
    new = os.path.join(shared, "new.key")
    os.rename(world.new, new)
    before = (world.dir / "a.enc").read_bytes()
    args = ["--old-key-file", world.old_a, "--new-key-file", new, str(world.dir)]
    done = rotate(args)
    script_refused(done, "encpipe-rotate", new, "group postgres")
    assert (world.dir / "a.enc").read_bytes() == before
    done = rotate(["--allow-shared-dir", *args])
    assert done.returncode == 0, done.stderr.decode()
    assert encpipe("open", "--key-file", new, "--allow-shared-dir", str(world.dir / "a.enc")).stdout == \
        world.plain["a.enc"]


def test_migrate_with_a_key_file_in_a_shared_directory_is_refused_nothing_changed(tmp_path, migrate_keys):
    directory = tmp_path / "backups"
    make_backups(directory, FEW, python_made=False)
    before = snapshot(directory)
    shared = group_writable_dir(tmp_path / "shared")
    new = os.path.join(shared, "new.key")
    os.rename(migrate_keys["new_key"], new)
    keys = {**migrate_keys, "new_key": new}
    status, lines, stderr = migrate(directory, keys=keys)
    assert (status, lines) == (73, []), stderr
    assert_one_line_error(stderr, "encpipe-migrate")
    assert new in stderr and "group postgres" in stderr
    assert snapshot(directory) == before
    status, lines, stderr = migrate(directory, "--allow-shared-dir", keys=keys)
    assert status == 0, stderr


def test_the_prune_after_a_backup_judges_the_key_files_again(tmp_path):
    """encpipe-backup judges its key files at its start; its prune (job commit, which
    reads them again) does too: one another user could replace by then is not used
    to decide what to remove. The backup stays; it is said, exit 1."""
    import io

    from encpipe.backup.job import main as job_main

    shared = group_writable_dir(tmp_path / "shared")
    key = write_secret(os.path.join(shared, "backup.key"), KEY_A + "\n")
    (tmp_path / "b").mkdir()
    def sealed():  # each its own file (copies are never counted)
        return encpipe("seal", stdin=b"SELECT 1;\n", env={"ENCPIPE_KEY": KEY_A}).stdout

    (tmp_path / "b" / "shop_20250101T000000Z.sql.enc").write_bytes(sealed())
    (tmp_path / "b" / ".encpipe-tmp.x").write_bytes(sealed())
    out, err = io.BytesIO(), io.StringIO()
    code = job_main(["commit", "--dir", str(tmp_path / "b"), "--database", "shop", "--started", "1", "--kind", "sql",
                     "--keep-last", "1", "--key-file", key, ".encpipe-tmp.x", "shop_20260101T000000Z.sql.enc"],
                    stdout=out, stderr=err, env={})
    assert code == 1, err.getvalue()
    assert err.getvalue().startswith(f"encpipe-backup: error: backup written, but not pruned: --key-file {key}: ")
    assert "refusing to read a key from it" in err.getvalue()
    assert sorted(os.listdir(tmp_path / "b")) == ["shop_20250101T000000Z.sql.enc", "shop_20260101T000000Z.sql.enc"]
    out, err = io.BytesIO(), io.StringIO()
    (tmp_path / "b" / ".encpipe-tmp.y").write_bytes(sealed())
    code = job_main(["commit", "--dir", str(tmp_path / "b"), "--allow-shared-dir", "--database", "shop", "--started",
                     "2", "--kind", "sql", "--keep-last", "1", "--key-file", key, ".encpipe-tmp.y",
                     "shop_20260102T000000Z.sql.enc"], stdout=out, stderr=err, env={})
    assert code == 0, err.getvalue()
    assert os.listdir(tmp_path / "b") == ["shop_20260102T000000Z.sql.enc"]
