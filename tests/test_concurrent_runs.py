"""Runs beside one another in one backup directory.

encpipe-verify takes no lock (it changes nothing): a prune, or encpipe-backup's own
pruning, may remove a file it listed before it reads it. Before, such a file was a
failure of the verification (66, `cannot read NAME: No such file or directory`, "ok":
false): a verify timer that met the nightly backup's pruning reported backups as
failed that had only been pruned. Now a file gone from the directory since it was
listed is a note, as a file the listing never saw would be nothing.
"""

import pytest

from encpipe import safefile
from test_backup_dir import make_valid, run
from test_backup_dir_hostile import hours_ago


@pytest.mark.parametrize("when", ["listing", "verifying"])
def test_verify_notes_a_file_a_prune_removed_after_it_was_listed(tmp_path, monkeypatch, when):
    """`listing`: removed before its header is read (the scan); `verifying`: once read,
    before it is authenticated."""
    d = tmp_path / "b"
    d.mkdir()
    newest, gone = (f"shop_{hours_ago(h)}.sql.enc" for h in (1, 48))
    make_valid(d, newest)
    make_valid(d, gone)
    opened = []

    def hook(step, directory, name, *rest):  # names sorted: the older (gone) is listed, then read, first
        if step == "opening":
            opened.append(name)
            if (len(opened) == 1) if when == "listing" else (name == gone and newest in opened):
                (d / gone).unlink()  # as a prune that holds DIR's lock does

    monkeypatch.setattr(safefile, "hook", hook)
    code, report, err = run("verify", str(d))
    assert (code, err) == (0, "")
    results = {r["filename"]: r for r in report["results"]}
    assert (report["ok"], report["verified"], report["failed"], report["not_verified"]) == (True, 1, 0, 1)
    assert results[newest]["ok"] is True
    assert (results[gone]["ok"], results[gone]["error"]) == (None, None)
    assert results[gone]["note"] == "removed since it was listed (a prune, or another run, meanwhile)"


def _backup_starts_in(d):
    """What encpipe-backup does in DIR as it starts, once it holds DIR's lock: the
    temporary files of killed runs removed (pgbackup.Backup.lock)."""
    import os

    from encpipe import pgbackup
    from encpipe.backup.localstore import Local

    backup = pgbackup.Backup.__new__(pgbackup.Backup)
    backup.o, backup.stores = {"dir": str(d), "lock_wait": 0, "db": "shop", "ext": "sql"}, [Local(str(d))]
    backup.db = "shop"
    assert backup.lock()
    os.close(backup.lock_fd)


def test_a_backup_starting_leaves_the_temporary_file_of_a_rewrap_in_place_being_written(tmp_path):
    """`encpipe rewrap --in-place` (and `seal -o`) in DIR takes no lock of DIR, and its
    hidden file is named as encpipe-backup's (`.encpipe-tmp.*`). Before, a backup that
    started meanwhile took it for a killed run's and removed it: the rewrap failed, 75
    (`... was replaced while it was written`), though no one had touched it. Now its
    writer holds a lock on it (flock) while it writes, and a backup leaves it."""
    d = tmp_path / "b"
    d.mkdir(mode=0o700)
    target = d / "shop_20260101T000000Z.sql.enc"
    target.write_bytes(b"old")

    def write(out):
        out.write(b"new ")
        _backup_starts_in(d)
        out.write(b"bytes")

    safefile.write_atomically(str(target), write)
    assert target.read_bytes() == b"new bytes"
    assert sorted(p.name for p in d.iterdir()) == [target.name]


def test_a_backup_starting_removes_a_killed_runs_temporary_file(tmp_path):
    d = tmp_path / "b"
    d.mkdir(mode=0o700)
    (d / ".encpipe-tmp.0123456789abcdef").write_bytes(b"left by a killed rewrap")
    (d / ".encpipe-tmp.20260101T000000Z_123_456").write_bytes(b"left by a killed backup")
    _backup_starts_in(d)
    assert list(d.iterdir()) == []


def _with_a_hold(tmp_path):
    """DIR with a backup of an hour ago and one of two days ago, and a hold directory a
    killed prune left, its marker in it: (DIR, newest's name, old's name, the hold directory)."""
    from encpipe.backup.removal import HOLD_MARKER, HOLD_PREFIX

    d = tmp_path / "b"
    d.mkdir(mode=0o700)
    newest, old = (f"shop_{hours_ago(h)}.sql.enc" for h in (1, 48))
    for name in (newest, old):
        make_valid(d, name)
    hold = d / (HOLD_PREFIX + "0123456789abcdef")
    hold.mkdir(mode=0o700)
    (hold / HOLD_MARKER).write_bytes(b"")
    return d, newest, old, hold


@pytest.mark.parametrize("held", ["old", "newest"])
def test_a_prune_puts_back_what_a_killed_prunes_removal_held(tmp_path, held):
    """A prune moves a file into a directory of its own (`.encpipe-removing.*`) to remove
    it; killed (SIGKILL) between that move and the unlink, it left the directory, the
    file in it, for ever: hidden from list, verify and rotate (a hidden directory). Now
    the next prune of DIR, holding its lock, puts the file back under its name and
    removes the directory, then decides as for any file: `old` goes by the policy;
    `newest` (a file renamed over the name as it was moved, which the killed prune had
    not yet compared) is kept."""
    import os

    d, newest, old, hold = _with_a_hold(tmp_path)
    name = old if held == "old" else newest
    os.rename(d / name, hold / name)
    code, report, err = run("prune", "--keep-last", "1", str(d))
    assert (code, err) == (0, "")
    assert [r["filename"] for r in report["kept"]] == [newest]
    assert [r["filename"] for r in report["removed"]] == [old]
    assert sorted(p.name for p in d.iterdir()) == [newest]


def test_an_unfinished_migrate_file_is_partial_for_list_and_verify(tmp_path):
    """encpipe-migrate writes each new file under a hidden name `.NAME.<16 hex>.migrate-tmp`
    before its rename, and takes DIR's lock, which verify and list do not take; a migrate
    killed leaves it until its next run. Before, list showed it `sealed` and verify of DIR
    authenticated it: half written, 65 (`chunk 1 failed authentication...`), as if a
    backup were damaged. Now it is `partial`, as the other tools' hidden files."""
    from test_backup_dir import sealed_bytes

    d = tmp_path / "b"
    d.mkdir(mode=0o700)
    newest = f"shop_{hours_ago(1)}.sql.enc"
    make_valid(d, newest)
    data = sealed_bytes()[0]
    temp = ".shop_backup_2020-01-01_00-00-00-000Z.sql.enc.0123456789abcdef.migrate-tmp"
    (d / temp).write_bytes(data[: len(data) // 2])
    code, listing, err = run("list", str(d))
    assert (code, err, {e["filename"]: e["status"] for e in listing}) == (0, "", {temp: "partial", newest: "sealed"})
    code, report, err = run("verify", str(d))
    assert (code, err, report["ok"], report["verified"], report["not_verified"]) == (0, "", True, 1, 1)


def test_rotate_leaves_a_temporary_file_another_rotate_is_writing(tmp_path, capsys):
    """encpipe-rotate walks the directories under DIR but holds DIR's lock only: a rotate of
    DIR/sub (its own lock) may be writing `.encpipe-rotate.*.tmp` there. Before, a rotate of
    DIR took it for an interrupted run's and removed it (`removed`), and the other failed,
    75. Now one its writer holds locked (safefile) is `ignored`; one no run holds is
    removed, as before."""
    import fcntl
    import json
    import os

    from encpipe import rotatewalk

    sub = tmp_path / "sub"
    sub.mkdir()
    busy, left = (sub / f".encpipe-rotate.{x * 16}.tmp" for x in "ab")
    busy.write_bytes(b"being written")
    left.write_bytes(b"a killed run's")
    writer = os.open(busy, os.O_RDONLY)
    fd = os.open(sub, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(writer, fcntl.LOCK_EX)
        for path in (busy, left):
            rotatewalk.remove_stale(fd, str(path), rotation=None)
    finally:
        os.close(fd)
        os.close(writer)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(line["file"], line["status"]) for line in lines] == [(str(busy), "ignored"), (str(left), "removed")]
    assert sorted(p.name for p in sub.iterdir()) == [busy.name]


def test_a_held_file_whose_name_was_taken_again_is_said_each_run(tmp_path):
    """The name of the file a killed prune held is another file's by now: it stays where
    it is, and the prune says where (74), rather than leave it unseen."""
    from encpipe.backup.removal import HOLD_PREFIX

    d, newest, old, hold = _with_a_hold(tmp_path)
    make_valid(hold, newest)
    code, report, err = run("prune", "--keep-last", "1", str(d))
    held = f"{HOLD_PREFIX}0123456789abcdef/{newest}"
    assert code == 74
    assert report["errors"] == [{"filename": held, "error": f"{held}: left by a killed prune, cannot be put back (its "
                                 "name is another file's); move it out of DIR, or remove it"}]
    assert err.endswith(f"encpipe-prune: error: {held}: left by a killed prune, cannot be put back (its name is another "
                        "file's); move it out of DIR, or remove it\n")
    assert sorted(p.name for p in d.iterdir()) == sorted([newest, hold.name])
