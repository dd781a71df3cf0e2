"""encpipe-backup's lock, and its removal of a killed run's temporary files, in the
directory it writes in. The writer of DIR's parent (--allow-shared-dir) swaps DIR
for a link to another directory once the run has opened it (its store): the lock
was taken, the temporary files removed and the names looked for by the path again,
so in the other directory, while the backup went on into the one opened. A prune
holding the lock of the directory written in did not hold the backup back, and a
file `.encpipe-tmp.*` of another run (seal -o, rewrap --in-place, a backup) in the
other directory was removed. Now each step is relative to the directory opened
once (README, "Users with partial access"). No server: the run fails at its dump,
after the steps looked at."""

import fcntl
import os
import time

import pytest

from encpipe import pgbackup
from encpipe.backup import job
from encpipe.backup.names import STAMP


@pytest.fixture
def swapped(tmp_path, monkeypatch):
    """(DIR, the directory it was, the directory it leads to now, argv): DIR swapped for
    a link just after the run opened it."""
    parent = tmp_path / "shared"
    parent.mkdir()
    d, moved, outside = parent / "b", parent / ".moved", tmp_path / "outside"
    d.mkdir()
    outside.mkdir()
    key = tmp_path / "k.key"
    key.write_text(bytes(range(32)).hex() + "\n")
    key.chmod(0o600)
    real = job.stores

    def stores(*args):
        found = real(*args)
        if not d.is_symlink():
            d.rename(moved)
            d.symlink_to(outside)
        return found

    monkeypatch.setattr(job, "stores", stores)
    monkeypatch.setenv("PGHOST", str(tmp_path / "no-server"))
    monkeypatch.setenv("ENCPIPE_LOCK_WAIT", "0")
    return d, moved, outside, ["encpipe-backup", "--dir", str(d), "--allow-shared-dir", "--key-file", str(key),
                               "--no-globals", "shop"]


def test_the_killed_runs_files_removed_are_those_of_the_directory_written_in(swapped, capfd):
    d, moved, outside, argv = swapped
    (d / ".encpipe-tmp.20240101T000000Z_1_2").write_bytes(b"a killed run's")  # moved with it
    (outside / ".encpipe-tmp.20240101T000000Z_3_4").write_bytes(b"another run's, going on")
    assert pgbackup.main(argv) != 0
    assert d.is_symlink()  # the swap was made
    assert os.listdir(outside) == [".encpipe-tmp.20240101T000000Z_3_4"]
    assert os.listdir(moved) == []
    assert capfd.readouterr().out == ""


def test_the_lock_taken_is_that_of_the_directory_written_in(swapped, capfd):
    d, moved, outside, argv = swapped
    holder = os.open(d, os.O_RDONLY | os.O_DIRECTORY)  # a prune of the directory (moved with it)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        assert pgbackup.main(argv) == 75
    finally:
        os.close(holder)
    out, err = capfd.readouterr()
    assert out == ""
    assert err.splitlines()[-2:] == [
        f"encpipe-backup: error: backup of shop failed (status 75): {d}: its lock (flock on the directory) is still"
        " held after 0 s; not waiting longer; nothing was stored",
        "encpipe-backup: hint: a backup, a prune, a rotation or a migration in it, or any user who can open it, holds"
        " it; ENCPIPE_LOCK_WAIT sets the wait in seconds"]


def _names_taken(directory, seconds=60):
    """This backup's globals name for each second from just before now to `seconds` on:
    every name the run may look for is taken in `directory`."""
    now = time.time()
    for second in range(-2, seconds):
        (directory / f"shop_{time.strftime(STAMP, time.gmtime(now + second))}.globals.sql.enc").write_bytes(b"x")


def test_the_names_looked_for_are_those_of_the_directory_written_in(swapped, capfd, monkeypatch):
    """Names taken in the directory the run writes in (moved with it) are taken: it waits
    for free ones, then gives up (74, here at once), never looking at the other one's."""
    d, moved, outside, argv = swapped
    monkeypatch.setattr(pgbackup, "NAME_WAIT", 0)
    _names_taken(d)
    assert pgbackup.main(argv) == 74
    assert d.is_symlink() and os.listdir(outside) == []
    out, err = capfd.readouterr()
    assert out == "" and err.startswith(f"encpipe-backup: error: backup of shop failed (status 74): {d}/shop_"), err
    assert "already exists, as did this backup's names for each second of the last 0 s; not overwritten" in err, err


def test_names_taken_in_another_directory_hold_no_run_back(swapped, capfd, monkeypatch):
    """The directory DIR's name leads to now has every name taken: the run, which writes
    in the one it opened, goes on (to its dump, which fails here: no server)."""
    d, moved, outside, argv = swapped
    monkeypatch.setattr(pgbackup, "NAME_WAIT", 0)
    _names_taken(outside)
    assert pgbackup.main(argv) == 1
    out, err = capfd.readouterr()
    assert out == "" and "already exists" not in err, err
    assert err.splitlines()[-1] == ("encpipe-backup: error: backup of shop failed (status 1): pg_dump exited with "
                                    "status 1; nothing was stored"), err
