"""encpipe-migrate keeps a file's owner, group, mode and access ACL, or leaves it.

A sticky backup directory passes migrate's check (other users can add names, not
replace the files there), so a local user can plant a file there: a copy of a file
of the previous tool (any of them: nothing in one says which key made it, and its
one tag authenticates it whatever its name) under a newer name, theirs, with the
modification time they like. Migrate, run as the directory's owner, converted it as
any other: the new file was the caller's, mode 0600, with the planter's time, and
counted from then on as the backup its name says (the owner of a file is what
prune and check trust: tests/test_planted_archives.py). Not run as root, migrate
cannot give the new file to another user, nor to a group the caller is not in:
such a file is now `failed` (73) and left as it is, as encpipe-rotate leaves it
(tests/test_rotate_planted_owner.py). Root keeps every file's owner and group; and
every new file gets the old one's mode and access ACL (a group of readers, or one
reader an ACL names, could read the old file; before, none could read the new one).

Migrate runs in this process as a user who is not root (os.geteuid), for whom
os.fchown to another user fails as the kernel's does; the tests run as root, which
chowns the planter's file."""

import json
import os
import shutil
import stat

import pytest

from encpipe import migrate as migrate_module
from notroot import OPERATOR, PLANTER, READERS
from test_migrate import ENCPIPE, FEW, VECTORS, is_encpipe, make_backups
from test_rotate_acl import ACL, READER_ONLY

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the planter is another user: root chowns their files")

PLANTED = "c_backup.sql.enc"
PLANTED_TIME = 1740794400


@pytest.fixture
def directory(tmp_path, monkeypatch):
    """A sticky directory of OPERATOR's with two files of OPERATOR's and one PLANTER put there."""
    directory = tmp_path / "backups"
    make_backups(directory, FEW, python_made=False)
    planted = directory / PLANTED
    shutil.copyfile(os.path.join(VECTORS, "hex-key.sql.enc"), planted)
    os.chmod(planted, 0o644)
    for name in FEW:
        os.chown(directory / name, OPERATOR, OPERATOR)
    os.chown(directory, OPERATOR, OPERATOR)
    os.chmod(directory, 0o1777)
    os.chown(planted, PLANTER, PLANTER)
    os.utime(planted, (PLANTED_TIME, PLANTED_TIME))
    monkeypatch.setenv("ENCPIPE", ENCPIPE)
    for name in [n for n in os.environ if n.startswith("ENCPIPE_") or n == "BACKUP_ENCRYPTION_KEY"]:
        monkeypatch.delenv(name)
    return directory


def run_migrate(directory, keys, capsys, *argv):
    """encpipe-migrate in this process: (status, {file: its line}, standard error)."""
    code = migrate_module.main(["--legacy-key-file", keys["old_key"], "--legacy-passphrase-file", keys["old_pass"],
                                "--key-file", keys["new_key"], *argv, str(directory)])
    out, err = capsys.readouterr()
    return code, {line["file"]: line for line in map(json.loads, out.splitlines())}, err


def fixed(path):
    info = os.stat(path)
    return path.read_bytes(), info.st_ino, info.st_uid, info.st_gid, info.st_mode, info.st_mtime_ns


def test_a_file_another_user_planted_is_left_theirs_and_as_it_was(directory, as_operator, migrate_keys, capsys):
    planted = directory / PLANTED
    before = fixed(planted)
    expected = {"file": PLANTED, "status": "failed", "exit_code": 73,
                "reason": "owned by uid 4242, not by the user running migrate: migrated, it would be yours (only "
                          "root keeps another user's file theirs); left alone"}
    code, got, err = run_migrate(directory, migrate_keys, capsys, "--dry-run")  # says so too
    assert (code, got[PLANTED], got["a_backup.sql.enc"]["status"]) == (73, expected, "would-migrate"), err
    code, got, err = run_migrate(directory, migrate_keys, capsys)
    assert (code, got[PLANTED], err) == (73, expected, "")
    assert [got[name]["status"] for name in FEW] == ["migrated", "migrated"]
    assert fixed(planted) == before
    assert [os.stat(directory / name).st_uid for name in FEW] == [OPERATOR, OPERATOR]


@pytest.mark.parametrize("owner, reason", [
    ((OPERATOR, READERS), "in group 4244, which the user running migrate is not in: migrated, it would lose that "
     "group (only root keeps it); left alone"),
    ((0, 0), "owned by {root}, not by the user running migrate: migrated, it would be yours (only root keeps "
     "another user's file theirs); left alone"),
])
def test_a_file_whose_owner_or_group_migrate_cannot_keep_is_left_as_it_was(directory, as_operator, migrate_keys,
                                                                            capsys, owner, reason):
    """A file of the previous tool kept 0640 for a group of readers (given it by root's
    chgrp), or one root made: migrate, not root, would have made the new file the
    caller's, 0600: the group's readers could read it no more."""
    from encpipe.backup.listing import user_name

    path = directory / "b_backup.sql.enc"
    os.chmod(path, 0o640)
    os.chown(path, *owner)
    before = fixed(path)
    code, got, err = run_migrate(directory, migrate_keys, capsys)
    assert got["b_backup.sql.enc"] == {"file": "b_backup.sql.enc", "status": "failed", "exit_code": 73,
                                       "reason": reason.format(root=user_name(0))}, err
    assert (code, got["a_backup.sql.enc"]["status"]) == (73, "migrated")
    assert fixed(path) == before


def test_a_group_the_directory_gives_is_kept(directory, as_operator, migrate_keys, capsys):
    """A set-group-ID directory gives each file made in it its group, READERS, which
    OPERATOR is not in: migrate's new file gets it too, so the file is migrated, with
    its mode."""
    os.chown(directory, OPERATOR, READERS)
    os.chmod(directory, 0o2750)
    os.unlink(directory / PLANTED)
    for name in FEW:
        os.chown(directory / name, OPERATOR, READERS)
        os.chmod(directory / name, 0o640)
    code, got, err = run_migrate(directory, migrate_keys, capsys)
    assert (code, err, [got[name]["status"] for name in FEW]) == (0, "", ["migrated", "migrated"])
    for name in FEW:
        info = os.stat(directory / name)
        assert (is_encpipe(directory / name), info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == \
            (True, OPERATOR, READERS, 0o640)


def test_root_keeps_the_planters_file_theirs(directory, migrate_keys, capsys):
    """As root, the owner, group and mode are kept: the planted file stays the
    planter's (prune's rule about it still holds), and is migrated."""
    os.chown(directory, 0, 0)
    os.chmod(directory, 0o755)
    code, got, err = run_migrate(directory, migrate_keys, capsys)
    assert (code, err, got[PLANTED]["status"]) == (0, "", "migrated"), got
    info = os.stat(directory / PLANTED)
    assert (is_encpipe(directory / PLANTED), info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode),
            info.st_mtime) == (True, PLANTER, PLANTER, 0o644, PLANTED_TIME)
    assert [os.stat(directory / name).st_uid for name in FEW] == [OPERATOR, OPERATOR]


def test_a_migrated_file_keeps_its_mode_and_access_acl(directory, migrate_keys, capsys):
    """A file given to one more reader by an access ACL (setfacl -m u:offsite:r, the
    owning group given nothing) keeps it; one without keeps its mode, 0640, and gets
    none. Before, both were 0600: the reader, and the group, could read neither."""
    os.chown(directory, 0, 0)
    os.chmod(directory, 0o755)
    with_acl, without = (directory / name for name in FEW)
    os.setxattr(with_acl, ACL, READER_ONLY)
    os.chmod(without, 0o640)
    assert stat.S_IMODE(os.stat(with_acl).st_mode) == 0o640  # the mask as group bits
    code, got, err = run_migrate(directory, migrate_keys, capsys)
    assert (code, err, [got[name]["status"] for name in FEW]) == (0, "", ["migrated", "migrated"])
    assert (is_encpipe(with_acl), os.getxattr(with_acl, ACL), stat.S_IMODE(os.stat(with_acl).st_mode)) == \
        (True, READER_ONLY, 0o640)
    assert (is_encpipe(without), ACL in os.listxattr(without), stat.S_IMODE(os.stat(without).st_mode)) == \
        (True, False, 0o640)


def test_a_directorys_default_acl_gives_the_migrated_file_no_reader_the_original_had_not(directory, migrate_keys,
                                                                                         capsys):
    """A default ACL of the directory (user:READER:r), put after the files were made:
    the new file inherited it, and the original's mode 0640 (the ACL's mask then) let
    that reader read it, which the original kept out. It now gets no ACL, as the original."""
    os.chown(directory, 0, 0)
    os.chmod(directory, 0o755)
    name = list(FEW)[1]
    without = directory / name
    os.chmod(without, 0o640)
    os.setxattr(directory, "system.posix_acl_default", READER_ONLY)
    code, got, err = run_migrate(directory, migrate_keys, capsys)
    assert (code, err, got[name]["status"]) == (0, "", "migrated")
    assert (is_encpipe(without), ACL in os.listxattr(without), stat.S_IMODE(os.stat(without).st_mode)) == \
        (True, False, 0o640)
