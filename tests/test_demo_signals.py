"""The demo stopped half way (Ctrl-C, a kill, its terminal closed) stops its
throwaway server and removes its directory: no server left running, no copy of
the sample database left on disk."""

import glob
import os
import shutil
import signal
import subprocess
import sys
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


# A stand-in server: initdb makes the data directory, pg_ctl start a postmaster.pid;
# psql (the tour's first step) says it runs and waits; pg_ctl stop says it stops,
# waits for $SYNC/go, then says it stopped. Each dies of SIGHUP, as the real ones.
FAKE = {
    "initdb": 'mkdir -p -- "$2"\n',
    "pg_ctl": 'case "$1" in\n'
              'start) : >"$5/postmaster.pid" ;;\n'
              'stop) : >"$SYNC/stopping"; while [ ! -e "$SYNC/go" ]; do sleep 0.05; done\n'
              '      rm -f -- "$7/postmaster.pid"; : >"$SYNC/stopped" ;;\n'
              'esac\n',
    "psql": ': >"$SYNC/touring"; exec sleep 600\n',
}


def wait_for(path, proc):
    while not os.path.exists(path) and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()


def test_a_second_signal_while_the_server_stops_waits_for_the_stop(tmp_path):
    """A terminal that closes can send SIGHUP more than once (the shell passes it
    on, a session's stop sends SIGTERM then SIGHUP), and a second Ctrl-C is what
    one does when the first seems slow. The second came while the demo stopped
    its server: it cut the stop short (pg_ctl killed, as each child a signal
    interrupts the wait of; and pg_ctl, in the terminal's process group, got the
    signal too): the server ran on. Now the clean-up finishes first, then the
    demo dies by its status."""
    workdir = tempfile.mkdtemp(prefix="encpipe-demo-test-")
    os.chmod(workdir, 0o711)
    shared = tempfile.mkdtemp(prefix="encpipe-demo-fake-")  # the stand-ins run as the server's user
    os.chmod(shared, 0o755)
    bindir, sync = os.path.join(shared, "bin"), os.path.join(shared, "sync")
    os.mkdir(bindir, 0o755)
    os.mkdir(sync)
    os.chmod(sync, 0o777)
    for name, body in FAKE.items():
        with open(os.path.join(bindir, name), "w") as f:
            f.write("#!/bin/sh\n" + body)
        os.chmod(os.path.join(bindir, name), 0o755)
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(SCRIPTS.parent), "TMPDIR": workdir,
           "PG_BINDIR": bindir, "SYNC": sync, "ENCPIPE_DEMO_SCRIPTS": str(SCRIPTS)}
    proc = subprocess.Popen([sys.executable, "-m", "encpipe.demo"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        wait_for(os.path.join(sync, "touring"), proc)
        os.killpg(proc.pid, signal.SIGHUP)
        wait_for(os.path.join(sync, "stopping"), proc)
        os.killpg(proc.pid, signal.SIGHUP)  # again, as the server stops
        open(os.path.join(sync, "go"), "w").close()
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 129, err
        assert os.path.exists(os.path.join(sync, "stopped")), err  # the stop ran to its end
        assert os.listdir(workdir) == []
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(shared, ignore_errors=True)
