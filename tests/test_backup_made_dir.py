"""A failed encpipe-backup removes the --dir it made (every level it made), if it
is still empty; a directory that existed before, or that holds something, stays.
No server is needed: pg_dump fails to connect (no socket), or the run is
interrupted while its key command runs."""

import os
import signal
import subprocess
import sys
import time

import pytest

from test_backup_restore import BACKUP, make_key, python_env

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
        assert line == f"encpipe-backup: waiting for another backup into {directory}\n".encode()
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
