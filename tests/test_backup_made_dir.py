"""A failed encpipe-backup removes the --dir it made (every level it made), if it
is still empty; a directory that existed before, or that holds something, stays.
No server is needed: pg_dump fails to connect (no socket), or the run is
interrupted while its key command runs."""

import fcntl
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from test_backup_restore import BACKUP, make_key, python_env

from encpipe import dirlock
from encpipe.errors import Changed, UsageError

WAIT = 60


@pytest.fixture(scope="module")
def key(tmp_path_factory):
    return make_key(tmp_path_factory.mktemp("made_dir_key") / "backup.key")


def env(tmp_path):
    return {**python_env(), "PGHOST": str(tmp_path / "no-server"), "PGDATABASE": "db", "ENCPIPE_PYTHON": sys.executable,
            "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]])}


def backup(tmp_path, directory, *options):
    return subprocess.run([BACKUP, "--dir", str(directory), *options, "db"], env=env(tmp_path), capture_output=True,
                          timeout=WAIT)


def test_a_failed_run_removes_the_directories_it_made(tmp_path, key):
    directory = tmp_path / "made" / "backups"
    done = backup(tmp_path, directory, "--key-file", key)
    assert (done.returncode, done.stdout) == (1, b""), done.stderr
    assert done.stderr.decode().splitlines()[-1] == "encpipe-backup: error: backup of db failed (status 1): " \
                                                    "pg_dump exited with status 1; nothing was stored"
    assert not (tmp_path / "made").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_directory_that_existed_stays(tmp_path, key):
    directory = tmp_path / "backups"
    directory.mkdir(mode=0o700)
    done = backup(tmp_path, directory, "--key-file", key)
    assert (done.returncode, done.stdout) == (1, b""), done.stderr
    assert directory.is_dir() and list(directory.iterdir()) == []


def test_only_the_levels_made_are_removed(tmp_path, key):
    (tmp_path / "there").mkdir(mode=0o700)
    done = backup(tmp_path, tmp_path / "there" / "new", "--key-file", key)
    assert (done.returncode, done.stdout) == (1, b""), done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["there"]
    assert list((tmp_path / "there").iterdir()) == []


def test_a_directory_made_that_holds_something_stays(tmp_path, key):
    """The failed run's metrics file in it: the directory and the file stay."""
    directory = tmp_path / "made"
    metrics = directory / "backup.prom"
    done = backup(tmp_path, directory, "--key-file", key, "--metrics-file", str(metrics))
    assert (done.returncode, done.stdout) == (1, b""), done.stderr
    assert sorted(p.name for p in directory.iterdir()) == ["backup.prom", "backup.prom.lock"]
    assert metrics.stat().st_size > 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_an_interrupted_run_removes_the_directory_it_made(tmp_path, key, sig):
    directory = tmp_path / "made"
    marker = tmp_path / "asked"
    child = subprocess.Popen([BACKUP, "--dir", str(directory), "--key-command", f": > {marker}; exec sleep {WAIT}",
                              "db"], env=env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + WAIT
        while not marker.exists():
            assert time.monotonic() < deadline, "the key command never ran"
            time.sleep(0.02)
        assert directory.is_dir()
        child.send_signal(sig)
        status = child.wait(timeout=WAIT)
    finally:
        child.kill()
        child.wait()
    assert (status, child.stdout.read()) == (128 + sig, b"")
    assert not directory.exists()


def test_a_run_waiting_for_the_lock_of_a_directory_removed_meanwhile_makes_it_again(tmp_path, key):
    """Run A made DIR and holds its lock; run B waits for it; A is interrupted and
    removes DIR. B, given the lock of a directory no longer there, makes DIR again
    and goes on (to pg_dump, which finds no server: 1), then removes it in turn;
    it is not `cannot use DIR` (74)."""
    directory = tmp_path / "made"
    marker = tmp_path / "asked"
    first = subprocess.Popen([BACKUP, "--dir", str(directory), "--key-command", f": > {marker}; exec sleep {WAIT}",
                              "db"], env=env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    second = None
    try:
        deadline = time.monotonic() + WAIT
        while not marker.exists():
            assert time.monotonic() < deadline, "the key command never ran"
            time.sleep(0.02)
        second = subprocess.Popen([BACKUP, "--dir", str(directory), "--key-file", key, "db"], env=env(tmp_path),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        line = second.stderr.readline()
        assert line == f"encpipe-backup: waiting for another run in {directory}\n".encode()
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=WAIT) == 128 + signal.SIGTERM
        status = second.wait(timeout=WAIT)
        rest = second.stderr.read().decode()
    finally:
        for child in (first, second):
            if child is not None:
                child.kill()
                child.wait()
    assert (status, second.stdout.read()) == (1, b""), rest
    assert "cannot use" not in rest and rest.splitlines()[-1] == \
        "encpipe-backup: error: backup of db failed (status 1): pg_dump exited with status 1; nothing was stored"
    assert not directory.exists()


# --- dirlock on its own ------------------------------------------------------------------------


@pytest.mark.parametrize("text, seconds", [(None, 5 * 3600), ("0", 0), ("1000000", 1000000), ("2.5", 2.5)])
def test_lock_wait_takes_seconds_from_0_to_1000000(text, seconds):
    assert dirlock.lock_wait({} if text is None else {"ENCPIPE_LOCK_WAIT": text}) == seconds


@pytest.mark.parametrize("text", ["1000000.5", "-1", "", " 5", "5s", "inf", "nan", "1e3"])
def test_lock_wait_refuses_anything_else(text):
    with pytest.raises(UsageError) as raised:
        dirlock.lock_wait({"ENCPIPE_LOCK_WAIT": text})
    assert str(raised.value) == f"ENCPIPE_LOCK_WAIT must be a number of seconds from 0 to 1000000, not {text!r}"


def _held(directory):
    """The directory's lock, held through a descriptor of its own (flock is per open file)."""
    fd = os.open(directory, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def test_take_gets_a_free_lock_at_once_without_saying_it_waits(tmp_path):
    waited, fd = [], os.open(tmp_path, os.O_RDONLY)
    other = os.open(tmp_path, os.O_RDONLY)
    try:
        assert dirlock.take(fd, str(tmp_path), 0, lambda: waited.append(1)) is True
        assert waited == []
        with pytest.raises(BlockingIOError):
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)
        os.close(other)


def test_take_gives_up_after_the_wait_it_was_given(tmp_path):
    holder, waited, fd = _held(tmp_path), [], os.open(tmp_path, os.O_RDONLY)
    try:
        started = time.monotonic()
        with pytest.raises(Changed) as raised:
            dirlock.take(fd, str(tmp_path), 2, lambda: waited.append(1))
        took = time.monotonic() - started
    finally:
        os.close(holder)
        os.close(fd)
    assert waited == [1] and 2 <= took < 3.5  # not twice the wait: a loaded machine still fits
    assert raised.value.exit_code == 75 and str(raised.value) == (
        f"{tmp_path}: its lock (flock on the directory) is still held after 2 s; not waiting longer")


def test_take_gets_the_lock_soon_after_it_is_let_go(tmp_path):
    holder = _held(tmp_path)
    threading.Timer(0.3, os.close, (holder,)).start()
    started, fd = time.monotonic(), os.open(tmp_path, os.O_RDONLY)
    assert dirlock.take(fd, str(tmp_path), 60, lambda: None) is True
    took = time.monotonic() - started
    os.close(fd)
    assert 0.3 <= took < 10  # not the whole 60 s wait


def test_take_gives_no_lock_of_a_directory_removed_while_it_waited(tmp_path):
    directory = tmp_path / "made"
    directory.mkdir()
    holder = _held(directory)

    def remove_then_let_go():
        directory.rmdir()
        os.close(holder)

    threading.Timer(0.3, remove_then_let_go).start()
    fd = os.open(directory, os.O_RDONLY)
    try:
        assert dirlock.take(fd, str(directory), 60, lambda: None) is False
    finally:
        os.close(fd)


def test_remove_made_removes_only_what_make_directories_made_and_stops_at_a_replaced_one(tmp_path):
    (tmp_path / "there").mkdir()
    made = dirlock.make_directories(str(tmp_path / "there" / "a" / "b"))
    assert [path for path, _ in made] == [str(tmp_path / "there" / "a"), str(tmp_path / "there" / "a" / "b")]
    dirlock.remove_made(made)
    assert os.listdir(tmp_path / "there") == []
    made = dirlock.make_directories(str(tmp_path / "there" / "a" / "b"))
    os.rename(tmp_path / "there" / "a" / "b", tmp_path / "elsewhere")
    (tmp_path / "there" / "a" / "b").mkdir()  # another directory under its name: stays, and so does its parent
    dirlock.remove_made(made)
    assert os.listdir(tmp_path / "there" / "a") == ["b"]


def test_each_directory_made_is_made_durable_in_its_parent(tmp_path, monkeypatch):
    """A backup's rename is made durable by an fsync of DIR; a DIR (or a level above it)
    the run made needs one of the directory holding it too, else a crash can lose it,
    the backup reported stored with it. Before, none was asked (strace: mkdir, mkdir,
    then fsync of DIR alone)."""
    (tmp_path / "there").mkdir()
    synced, fsync = [], os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(os.fstat(fd).st_ino) or fsync(fd))
    dirlock.make_directories(str(tmp_path / "there" / "a" / "b"))
    assert synced == [os.stat(tmp_path / "there").st_ino, os.stat(tmp_path / "there" / "a").st_ino]
    synced.clear()
    dirlock.make_directories(str(tmp_path / "there" / "a" / "b"))  # there already: nothing to make durable
    assert synced == []
