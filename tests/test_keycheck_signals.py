"""A script stopped (SIGTERM, SIGINT) while it checks its keys before the long run
(keycheck: `encpipe keyid` in a child, which may hang on a key file on a stuck
mount, or a slow ENCPIPE) dies of the signal at once, nothing on standard
output or error, and leaves neither that child nor what it started running.
Before, the child was waited with a plain wait: the script died, and the keyid
child (here a stand-in for ENCPIPE that waits on a `sleep`) ran on."""

import signal
import subprocess
import time

import pytest

from procs import alive, ended_afterwards, shell_status
from test_backup_restore import RESTORE, python_env
from test_signal_commits import IDS, SIGNALS, killing_marked, marked, run, signalled, signalled_env


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["TERM", "INT"])
def test_a_restore_stopped_during_its_key_check_leaves_no_child(tmp_path, signum, status):
    pids = tmp_path / "pids"
    encpipe = tmp_path / "encpipe"  # `encpipe keyid` that never ends, with a child of its own
    encpipe.write_text(f"#!/bin/sh\nsleep 1000 &\necho $$ $! > {pids}.tmp && mv {pids}.tmp {pids}\nwait\n")
    encpipe.chmod(0o755)
    key = tmp_path / "k"
    key.write_text("ab" * 32 + "\n")
    key.chmod(0o600)
    proc = subprocess.Popen([RESTORE, "--key-file", str(key), str(tmp_path / "db_20250101T000000Z.sql.enc"), "db"],
                            env={**python_env(), "ENCPIPE": str(encpipe)}, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    with ended_afterwards(proc) as children:
        deadline = time.monotonic() + 60
        while not pids.exists():
            assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        children += map(int, pids.read_text().split())  # the keyid stand-in, its sleep
        begun = time.monotonic()
        proc.send_signal(signum)  # the restore alone, as `kill` would
        out, err = proc.communicate(timeout=60)
        took = time.monotonic() - begun
        time.sleep(0.2)  # a process killed is reaped by init
        assert (shell_status(proc.returncode), out, err) == (status, b"", b"")
        assert took < 5
        assert [pid for pid in children if alive(pid)] == []



@pytest.mark.parametrize("sig", SIGNALS, ids=IDS)
def test_a_signal_just_as_the_key_check_child_starts_stops_it(tmp_path, sig):
    """The signal came inside Popen, the keyid child forked and exec'd but not yet
    recorded: the restore died of it and the child, never recorded, ran on (once in a
    while under load, by timing). It is now started and recorded in one step, then stopped."""
    mark = f"KEYCHECK_MARK={tmp_path}"
    encpipe = tmp_path / "encpipe"  # `encpipe keyid` that never ends, with a child of its own
    encpipe.write_text("#!/bin/sh\nsleep 1000 &\nwait\n")
    encpipe.chmod(0o755)
    key = tmp_path / "k"
    key.write_text("ab" * 32 + "\n")
    key.chmod(0o600)
    env = signalled_env(tmp_path, "_execute_child", "'keyid' in args[1]", sig,
                        {**python_env(), "ENCPIPE": str(encpipe), mark.split("=")[0]: str(tmp_path)},
                        owner="subprocess.Popen")
    with killing_marked(mark):
        done = run([RESTORE, "--key-file", str(key), str(tmp_path / "db_20250101T000000Z.sql.enc"), "db"], env)
        assert signalled(tmp_path)
        assert (shell_status(done.returncode), done.stdout, done.stderr) == (128 + sig, b"", b"")
        time.sleep(0.5)  # a process killed is reaped by init
        assert marked(mark) == []
