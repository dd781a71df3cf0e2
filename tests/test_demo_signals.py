"""The demo stopped half way (Ctrl-C, a kill, its terminal closed) stops its
throwaway server and removes its directory: no server left running, no copy of
the sample database left on disk."""

import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from test_backup_restore import SCRIPTS, script_env


def processes_naming(text):
    found = []
    for cmdline in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            with open(cmdline, "rb") as f:
                if text.encode() in f.read():
                    found.append(cmdline.split("/")[2])
        except OSError:
            pass
    return found


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_the_demo_stopped_once_its_server_runs_stops_it_and_removes_everything(pg, tools, signum, status):
    """Before, SIGHUP (the terminal closed, the ssh session gone) killed the demo as
    it was: its PostgreSQL server ran on, its data directory (the sample database)
    left in TMPDIR."""
    workdir = tempfile.mkdtemp(prefix="encpipe-demo-test-")
    os.chmod(workdir, 0o711)  # the demo's server may run as another user
    env = script_env(pg, tools, TMPDIR=workdir, PG_BINDIR=pg.bindir)
    for name in ("PGHOST", "PGPORT", "PGUSER", "PGDATABASE"):
        del env[name]
    proc = subprocess.Popen([SCRIPTS / "encpipe-demo"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        # encpipe-backup made backups/: the server is up, the sample database on disk
        while not glob.glob(f"{workdir}/encpipe-demo.*/backups") and proc.poll() is None:
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()
        os.killpg(proc.pid, signum)  # to the whole process group, as a terminal does
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == status, err
        assert os.listdir(workdir) == []
        assert processes_naming(workdir) == []
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for data in glob.glob(f"{workdir}/encpipe-demo.*/pg/data"):  # a server left by a failed run
            runuser = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
            subprocess.run([*runuser, f"{pg.bindir}/pg_ctl", "stop", "-s", "-m", "immediate", "-D", data])
        shutil.rmtree(workdir, ignore_errors=True)
