"""The backup-directory tools against a user who can write the backup directory
(a member of its group, or postgres where root prunes postgres's directory): what
such a user makes of the names the tools give their own files there. Each test
names the hole; the real scripts run.
"""

import json
import os

import pytest

from test_backup_dir import ENV, make_valid
from test_backup_dir_hostile import hours_ago, script
from encpipe.backup.removal import HOLD_MARKER, HOLD_PREFIX


def test_a_directory_of_the_callers_renamed_to_a_hold_name_is_never_emptied_into_dir(tmp_path):
    """A prune puts back what a killed prune left in its hold directory
    (`.encpipe-removing.*`): any directory of that name that is the caller's and mode
    0700. But a writer of DIR (not sticky) can rename any directory in it, and a
    directory of root's, mode 0700, is what root keeps there out of that writer's
    reach: an archive of older backups, a file system's `lost+found`. Renamed to a
    hold name, root's next prune (no option, exit 0, not a word said) moved every file
    out of it into DIR, removed the directory, and then pruned the archived backups
    by the policy: files the writer could neither list, rename nor remove, gone or
    now theirs to rename and remove. A prune's own hold directory never holds more
    than the one file it was removing; this one is no hold, and is left as it is."""
    d = tmp_path / "b"
    d.mkdir(mode=0o700)
    newest = f"shop_{hours_ago(1)}.sql.enc"
    make_valid(d, newest)
    archive = d / "archive"
    archive.mkdir(mode=0o700)
    archived = [f"shop_{hours_ago(h)}.sql.enc" for h in (72, 48)]
    for name in archived:
        make_valid(archive, name)
    (archive / "notes.txt").write_bytes(b"the caller's own\n")
    os.chmod(archive, 0o700)
    before = {p.name: p.read_bytes() for p in archive.iterdir()}
    hold = d / (HOLD_PREFIX + "0123456789abcdef")
    os.rename(archive, hold)  # what the writer of DIR does: a rename in DIR needs no right on the directory
    done = script("prune", "--keep-last", "1", d, env=ENV)
    assert (done.returncode, done.stderr) == (0, b""), done.stderr
    report = json.loads(done.stdout)
    assert report["removed"] == []
    assert sorted(p.name for p in d.iterdir()) == sorted([newest, hold.name])
    assert {p.name: p.read_bytes() for p in hold.iterdir()} == before


def test_a_directory_swapped_in_for_the_hold_directory_loses_no_file_of_its_own(tmp_path, monkeypatch):
    """A prune removes a file by moving it first into a hold directory it has just
    made (`mkdir`), opened by its name and trusted as its own when it is the caller's
    and mode 0700. A writer of DIR (not sticky) who renames that directory away the
    moment it appears and puts in its place another directory of the caller's, mode
    0700 (an archive of older backups that root keeps in DIR), gets the file moved
    into that archive: a rename that replaces the archive's own file of that name (a
    copy of the backup, kept on purpose), whose bytes are then gone for good, and the
    archive, emptied, removed. Now what prune holds a file in must be the directory
    it made, still empty; else nothing is moved and the file is left (74)."""
    from encpipe.backup import removal
    from test_backup_dir import make_valid as valid, run

    d = tmp_path / "b"
    d.mkdir(mode=0o700)
    newest, old = (f"shop_{hours_ago(h)}.sql.enc" for h in (1, 48))
    for name in (newest, old):
        valid(d, name)
    archive = d / "archive"
    archive.mkdir(mode=0o700)
    valid(archive, old)  # the archive's copy of it, a file of its own
    kept = (archive / old).read_bytes()
    real_mkdir = os.mkdir

    def mkdir(path, mode=0o777, *, dir_fd=None):  # the writer of DIR, as the hold directory appears
        real_mkdir(path, mode, dir_fd=dir_fd)
        if str(path).startswith(HOLD_PREFIX):
            os.rename(d / path, d / "moved-away")
            os.rename(archive, d / path)
            monkeypatch.setattr(removal.os, "mkdir", real_mkdir)

    monkeypatch.setattr(removal.os, "mkdir", mkdir)
    code, report, err = run("prune", "--keep-last", "1", str(d))
    assert code == 74, err
    holds = [p for p in d.iterdir() if p.name.startswith(HOLD_PREFIX)]
    assert [p.name for p in holds] and [(p / old).read_bytes() for p in holds] == [kept]
    assert old in os.listdir(d)


def _with_a_hold(tmp_path):
    """DIR with a backup of an hour ago and an empty directory of the caller's under a
    hold name: (DIR, the backup's name, the directory)."""
    d = tmp_path / "b"
    d.mkdir(mode=0o700)
    newest = f"shop_{hours_ago(1)}.sql.enc"
    make_valid(d, newest)
    hold = d / (HOLD_PREFIX + "0123456789abcdef")
    hold.mkdir(mode=0o700)
    return d, newest, hold


@pytest.mark.parametrize("marked, files", [(False, 1), (True, 2)])
def test_only_a_marked_hold_of_one_file_is_put_back(tmp_path, marked, files):
    """A directory under a hold name is put back only as a prune leaves one: its marker
    and at most the one file it was removing. One of the caller's renamed there that
    holds a single backup (no marker), or a marker and two files, is left as it is:
    the backups in it are neither moved into DIR nor pruned."""
    d, newest, hold = _with_a_hold(tmp_path)
    held = [f"shop_{hours_ago(h)}.sql.enc" for h in (72, 48)[:files]]
    for name in held:
        make_valid(hold, name)
    if marked:
        (hold / HOLD_MARKER).write_bytes(b"")
    done = script("prune", "--keep-last", "1", d, env=ENV)
    assert (done.returncode, done.stderr) == (0, b""), done.stderr
    assert json.loads(done.stdout)["removed"] == []
    assert sorted(p.name for p in d.iterdir()) == sorted([newest, hold.name])
    assert sorted(p.name for p in hold.iterdir()) == sorted(held + [HOLD_MARKER] * marked)


@pytest.mark.parametrize("marked", [False, True])
def test_an_empty_hold_a_killed_prune_left_is_removed(tmp_path, marked):
    """Killed after it made its hold directory and before it moved a file in (with or
    without its marker yet), a prune left an empty hold: the next prune removes it."""
    d, newest, hold = _with_a_hold(tmp_path)
    if marked:
        (hold / HOLD_MARKER).write_bytes(b"")
    done = script("prune", "--keep-last", "1", d, env=ENV)
    assert (done.returncode, done.stderr) == (0, b""), done.stderr
    assert sorted(p.name for p in d.iterdir()) == [newest]
