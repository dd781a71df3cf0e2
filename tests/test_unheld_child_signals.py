"""psql (sigthreads.run) and a key command (keys.run_secret_command), signalled as they
start or while they run: stopped, never left running.

Both were started unheld: a signal inside Popen, the child forked but not yet
returned, ended the process and left the child running; a key command whose
wait a signal ended was never stopped at all (only its timeout killed it), and
held encpipe's standard error open after encpipe died.
Each is now started inside the `try` that stops it, in one held step.

The process is signalled inside Popen (a sitecustomize.py on PYTHONPATH, as in
tests/test_signal_commits.py), or by the key command itself; every process whose
command line names the test's own directory must be gone."""

import os

import pytest

from fuzz.craft import command
from test_child_start_gaps import HANG, none_left, stopped
from test_signal_commits import IDS, ROOT, SIGNALS, run, signalled, signalled_env

KEY = "3e" * 32


@pytest.mark.parametrize("sig", SIGNALS, ids=IDS)
def test_restore_signalled_as_its_psql_starts_stops_it(tmp_path, sig):
    bin_dir = tmp_path / "bin"  # a psql that hangs, its arguments naming the test's directory
    bin_dir.mkdir()
    (bin_dir / "psql").write_text(f'#!/bin/sh\nexec {HANG} {tmp_path}\n')
    (bin_dir / "psql").chmod(0o755)
    env = signalled_env(tmp_path, "_execute_child", "'psql' in args[1]", sig,
                        {"PATH": os.pathsep.join([str(bin_dir), os.environ["PATH"]])}, owner="subprocess.Popen")
    with none_left(tmp_path):
        done = run([os.path.join(ROOT, "scripts", "encpipe-restore"), "--list-pre-restore"], env)
        assert signalled(tmp_path)
        assert (done.returncode, done.stdout, done.stderr) == (stopped(sig), b"", b"")


def _sealed(tmp_path):
    key = tmp_path / "k"
    key.write_text(KEY + "\n")
    key.chmod(0o600)
    done = run(command("seal", "--key-file", str(key), "-o", str(tmp_path / "f.enc")), {}, b"data")
    assert done.returncode == 0, done.stderr
    return str(tmp_path / "f.enc")


@pytest.mark.parametrize("sig", SIGNALS, ids=IDS)
def test_encpipe_signalled_as_its_key_command_starts_stops_it(tmp_path, sig):
    path = _sealed(tmp_path)
    env = signalled_env(tmp_path, "_execute_child", "args[1].startswith(\"['/bin/sh'\")", sig,
                        owner="subprocess.Popen")
    with none_left(tmp_path):
        done = run(command("open", "--key-command", f"{HANG} {tmp_path}", path), env)
        assert signalled(tmp_path)
        assert (done.returncode, done.stdout, done.stderr) == (-sig, b"", b"")


@pytest.mark.parametrize("sig", SIGNALS, ids=IDS)
def test_encpipe_signalled_while_its_key_command_runs_stops_it(tmp_path, sig):
    """The key command signals encpipe, then hangs: before, encpipe died and left it running."""
    path = _sealed(tmp_path)
    env = signalled_env(tmp_path, "getpid", "False", sig)  # signals nothing: its PYTHONPATH only
    with none_left(tmp_path):
        done = run(command("open", "--key-command", f"kill -{int(sig)} $PPID; {HANG} {tmp_path}", path), env)
        assert (done.returncode, done.stdout, done.stderr) == (-sig, b"", b"")
