"""encpipe-prune of a local directory takes turns in it, by the lock encpipe-backup
takes (flock on the directory, waited for up to ENCPIPE_LOCK_WAIT seconds).

Before, a standalone prune took no lock: two prunes of one directory at once (two
timers, an operator's run beside the nightly one), or a prune while encpipe-backup
pruned the same series, each listed the same files and each removed what the policy
drops; the second to reach a file the first had removed reported it as a failure
(`FILE changed while pruning`, 74) though nothing had gone wrong. Now the second
waits until the first is done, then lists what is there: nothing left to remove,
0. --dry-run takes it too, so that what it says is what a run would do.
"""

import fcntl
import os
import subprocess
import sys

from test_backup_dir import ENV, make_valid
from test_backup_dir_hostile import SCRIPT, hours_ago, script


def _series(d):
    """Four backups of one database, newest first; --keep-last 1 drops the three older."""
    names = [f"shop_{hours_ago(h)}.sql.enc" for h in (1, 24, 48, 72)]
    for name in names:
        make_valid(d, name)
    return names


def _env(extra=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCPIPE_")}
    return {**env, **ENV, **(extra or {})}


def _start(d, *more, env):
    return subprocess.Popen([sys.executable, SCRIPT["prune"], "--keep-last", "1", *more, str(d)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def _paused(tmp_path, d):
    """(a prune of `d` that stops at its first removal, DIR's lock held, FIFO `reached`,
    FIFO `release`): it writes a line to `reached`, then goes on once `release` is written."""
    reached, release = tmp_path / "reached", tmp_path / "release"
    os.mkfifo(reached)
    os.mkfifo(release)
    once = tmp_path / "once"
    hook = (f'[ "$1" = removing ] && [ ! -e {once} ] && : > {once} && echo at > {reached} && read go < {release};'
            " true")
    return _start(d, env=_env({"ENCPIPE_TEST_HOOK": hook})), reached, release


def test_two_prunes_at_once_each_remove_a_file_once_and_both_succeed(tmp_path):
    """The first prune stops at its first removal (the test hook) until the second
    has either finished (before: it removed everything, and the first then failed, 74)
    or said that it waits for the lock (now); then the first goes on."""
    import json

    d = tmp_path / "b"
    d.mkdir()
    newest, *dropped = _series(d)
    first, reached, release = _paused(tmp_path, d)
    second = None
    try:
        with open(reached) as at:  # the first holds what it listed, about to remove a file
            assert at.read() == "at\n"
        second = _start(d, env=_env())
        said = second.stderr.readline().decode()  # "" once it has ended (before), else its waiting line
        with open(release, "w") as go:
            go.write("go\n")
        out1, err1 = first.communicate(timeout=60)
        out2, err2 = second.communicate(timeout=60)
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
    assert (first.returncode, err1) == (0, b""), err1
    assert (second.returncode, said + err2.decode()) == (0, f"encpipe-prune: waiting for another run in {d}\n")
    removed = [line["filename"] for out in (out1, out2) for line in json.loads(out)["removed"]]
    assert sorted(removed) == sorted(dropped)  # each once, between the two
    assert os.listdir(d) == [newest]


def _held(d):
    fd = os.open(d, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def test_a_prune_waits_for_the_directory_lock_a_bounded_time_then_fails_75(tmp_path):
    d = tmp_path / "b"
    d.mkdir()
    names = _series(d)
    held = _held(d)
    try:
        for dry in ([], ["--dry-run"]):
            done = script("prune", "--keep-last", "1", *dry, d, env={**ENV, "ENCPIPE_LOCK_WAIT": "0"})
            assert (done.returncode, done.stdout) == (75, b"")
            assert done.stderr.decode() == (
                f"encpipe-prune: waiting for another run in {d}\n"
                f"encpipe-prune: error: {d}: its lock (flock on the directory) is still held after 0 s;"
                " not waiting longer\n"
                "encpipe-prune: hint: a backup, a prune, a rotation or a migration in it, or any user who can"
                " open it, holds it; ENCPIPE_LOCK_WAIT sets the wait in seconds\n")
    finally:
        os.close(held)
    assert sorted(os.listdir(d)) == sorted(names)
    done = script("prune", "--keep-last", "1", d, env={**ENV, "ENCPIPE_LOCK_WAIT": "0"})
    assert (done.returncode, done.stderr) == (0, b"")
    assert os.listdir(d) == [names[0]]


def test_a_malformed_lock_wait_is_a_usage_error_for_prune(tmp_path):
    d = tmp_path / "b"
    d.mkdir()
    names = _series(d)
    done = script("prune", "--keep-last", "1", d, env={**ENV, "ENCPIPE_LOCK_WAIT": "soon"})
    assert (done.returncode, done.stdout) == (64, b"")
    assert done.stderr.decode() == (
        "encpipe-prune: error: ENCPIPE_LOCK_WAIT must be a number of seconds from 0 to 1000000, not 'soon'\n")
    assert sorted(os.listdir(d)) == sorted(names)


def test_a_missing_directory_is_still_66_not_a_lock_error(tmp_path):
    done = script("prune", "--keep-last", "1", tmp_path / "absent", env=ENV)
    assert (done.returncode, done.stdout) == (66, b"")
    assert done.stderr.decode().startswith(f"encpipe-prune: error: cannot read backup directory {tmp_path}/absent")


def test_a_backup_that_finds_a_prune_in_the_directory_does_not_say_another_backup(tmp_path):
    """The lock is DIR's, not a backup's: a backup that finds a prune (or a rotation, a
    migration) holding it said `waiting for another backup into DIR`. Now it says what
    a prune says: `waiting for another run in DIR` (no run records who holds it)."""
    d = tmp_path / "b"
    d.mkdir()
    _series(d)
    prune, reached, release = _paused(tmp_path, d)
    try:
        with open(reached) as at:  # the prune holds DIR's lock, about to remove a file
            assert at.read() == "at\n"
        backup = subprocess.run([os.path.join(os.path.dirname(SCRIPT["prune"]), "encpipe-backup"), "--dir", str(d),
                                 "shop"], stdin=subprocess.DEVNULL, capture_output=True, timeout=60,
                                env=_env({"ENCPIPE_LOCK_WAIT": "0", "PGHOST": str(tmp_path / "no-server")}))
    finally:
        try:  # no reader (the prune never got there): ENXIO, and it is killed
            go = os.open(release, os.O_WRONLY | os.O_NONBLOCK)
            os.write(go, b"go\n")
            os.close(go)
        except OSError:
            prune.kill()
        _, err = prune.communicate(timeout=60)
    assert prune.returncode == 0, err
    assert (backup.returncode, backup.stdout) == (75, b""), backup.stderr
    assert backup.stderr.decode().splitlines()[0] == f"encpipe-backup: waiting for another run in {d}"
