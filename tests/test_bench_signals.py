"""scripts/bench stopped by SIGTERM or SIGHUP cleans up as SIGINT does: its temporary
directory removed, its PostgreSQL cluster stopped (with its directory and the initdb
template), then it exits 128 + the signal's number. No timing is checked."""

import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts", "bench")
PG_CTL = "/usr/lib/postgresql/15/bin/pg_ctl"


def _reachable_dir():
    """A directory of the test's own that the cluster's server can reach: run as root, it
    runs as postgres, which cannot go through pytest's (0700) temporary directories."""
    path = tempfile.mkdtemp(prefix="bench-signal-")
    os.chmod(path, 0o711)
    return path


def _servers_in(path):
    """The pids of the processes whose command line names `path` (a postgres -D there)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if path.encode() in f.read():
                    found.append(int(pid))
        except OSError:
            pass
    return found


def _stop_leftovers(path):
    """Stop any server left running in `path` (only when the test has failed), then remove it."""
    for pid_file in glob.glob(os.path.join(path, "**", "postmaster.pid"), recursive=True):
        datadir = os.path.dirname(pid_file)
        argv = [PG_CTL, "-D", datadir, "stop", "-m", "immediate"]
        if os.geteuid() == 0:
            argv = ["runuser", "-u", "postgres", "--"] + argv
        subprocess.run(argv, capture_output=True, timeout=60)
    shutil.rmtree(path, ignore_errors=True)


def _wait_for(proc, ready, what, timeout=300):
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"the bench ended ({proc.returncode}) before {what}"
        assert time.monotonic() < deadline, f"no {what} after {timeout} s"
        time.sleep(0.05)


def _stop_bench_in_pg(tmp_path, signum, ready, workdir=None):
    """Run `scripts/bench --quick --only pg` with TMPDIR (and --workdir) directories of the
    test's own; send `signum` once ready(tmpdir, workdir, stderr file); return the bench's
    status and its stderr, and that both directories are empty and no server runs there."""
    if not os.path.exists(PG_CTL):
        pytest.skip("no PostgreSQL 15")
    tmpdir = _reachable_dir()
    work = _reachable_dir() if workdir else None
    log = tmp_path / "stderr"
    try:
        with open(log, "w") as err:
            argv = [sys.executable, BENCH, "--quick", "--only", "pg"] + (["--workdir", work] if work else [])
            proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, env=dict(os.environ, TMPDIR=tmpdir))
        try:
            _wait_for(proc, lambda: ready(tmpdir, work, log), "the moment to stop it")
            proc.send_signal(signum)
            status = proc.wait(timeout=180)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        left = {d: sorted(os.listdir(d)) for d in filter(None, (tmpdir, work))}
        servers = [pid for d in left for pid in _servers_in(d)]
        return status, log.read_text(), left, servers
    finally:
        for path in filter(None, (tmpdir, work)):
            _stop_leftovers(path)


def _measuring(tmpdir, work, log):
    """The PostgreSQL rows are being measured (pipelines of pg_dump, psql, encpipe-backup)."""
    return "commands x 1 rounds" in log.read_text() and glob.glob(os.path.join(work or tmpdir, "encpipe-pg-*"))


def _started(tmpdir, work, log):
    """The bench has made its temporary directory (it is making its inputs)."""
    return glob.glob(os.path.join(work or tmpdir, "encpipe-bench-*"))


@pytest.mark.slow
@pytest.mark.parametrize("signum, ready, status, workdir", [
    (signal.SIGTERM, _measuring, 128 + signal.SIGTERM, False),
    (signal.SIGHUP, _started, 128 + signal.SIGHUP, False),
    (signal.SIGINT, _measuring, -signal.SIGINT, False),  # KeyboardInterrupt: Python dies of SIGINT at the end
    (signal.SIGHUP, _measuring, 128 + signal.SIGHUP, True),
], ids=["SIGTERM-measuring", "SIGHUP-starting", "SIGINT-measuring", "SIGHUP-measuring-workdir"])
def test_a_stopped_bench_stops_the_cluster_and_removes_every_file(tmp_path, signum, ready, status, workdir):
    """SIGTERM or SIGINT while the PostgreSQL rows run: the pipeline's children killed,
    the cluster stopped, the bench's directory, the cluster's and its initdb template all
    gone from TMPDIR; SIGHUP as the bench starts: its directory gone. SIGTERM and SIGHUP
    exit 128 + the signal's number. With --workdir the cluster is there, not in TMPDIR,
    and gone from both."""
    found, stderr, left, servers = _stop_bench_in_pg(tmp_path, signum, ready, workdir)
    assert found == status, stderr
    if signum != signal.SIGINT:
        assert f"bench: stopped by {signal.Signals(signum).name}" in stderr
    assert servers == [] and all(files == [] for files in left.values()), (left, servers, stderr)
