"""encpipe-backup interrupted: SIGINT exits 130, SIGTERM 143, after stopping its
children, removing its temporary files and recording the failed run."""

import os
import shutil
import signal
import subprocess
import time

import pytest

from test_backup_faults import _fake_pg_dump, _with_path_first
from test_backup_monitoring import samples
from procs import alive, ended_afterwards
from test_backup_restore import (
    BACKUP,
    dir_entries,
    script_env,
)


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_a_signal_stops_the_backup_and_leaves_nothing(pg, tools, key_file, tmp_path, signum, status):
    """SIGHUP too: it once ended the run at once, by run_script's Terminated, its
    temporary files left behind and the failed run not recorded. One line says so
    (cron mails standard error: before, an interrupted run printed nothing there)."""
    started = tmp_path / "pg_dump-started"
    body = f"echo 'CREATE TABLE t (x int);'\ntouch {started}\nexec sleep 60\n"
    env = _with_path_first(script_env(pg, tools), _fake_pg_dump(tmp_path, body))
    directory, prom = tmp_path / "b", tmp_path / "encpipe.prom"
    proc = subprocess.Popen([BACKUP, "--dir", directory, "--key-file", key_file, "--metrics-file", prom, "anydb"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signum, signal.SIG_DFL))  # not nohup's, if so run
    deadline = time.monotonic() + 30
    while not (started.exists() and len(dir_entries(directory)) == 2):  # the dump's and the globals' temps
        assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()
        time.sleep(0.05)
    begun = time.monotonic()
    proc.send_signal(signum)  # the backup alone, as `kill` would
    out, err = proc.communicate(timeout=30)
    assert time.monotonic() - begun < 10  # pg_dump's sleep did not hold it up
    assert (proc.returncode, out) == (status, b""), err
    assert err.decode() == "encpipe-backup: error: backup of anydb interrupted; nothing was stored\n"
    assert dir_entries(directory) == []
    assert samples(prom)[("encpipe_backup_last_attempt_success", "anydb")] == 0


def test_an_interrupted_run_whose_metrics_cannot_be_written_says_so_in_one_line(pg, tools, key_file, tmp_path):
    """Before: `job abort`'s own error for the metrics file, a line that named no run."""
    started = tmp_path / "pg_dump-started"
    body = f"echo 'CREATE TABLE t (x int);'\ntouch {started}\nexec sleep 60\n"
    env = _with_path_first(script_env(pg, tools), _fake_pg_dump(tmp_path, body))
    directory, prom = tmp_path / "b", tmp_path / "encpipe.prom"
    prom.mkdir()
    proc = subprocess.Popen([BACKUP, "--dir", directory, "--no-globals", "--key-file", key_file, "--metrics-file",
                             prom, "anydb"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not (started.exists() and len(dir_entries(directory)) == 1):
        assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert (proc.returncode, out) == (143, b""), err
    assert err.decode() == ("encpipe-backup: error: backup of anydb interrupted; nothing was stored; metrics not "
                            f"written: {prom} is not a regular file\n")
    assert dir_entries(directory) == []


def _blocked(status_text):
    return int(next(line.split()[1] for line in status_text.splitlines() if line.startswith("SigBlk:")), 16)


def test_only_the_main_thread_takes_a_signal(pg, tools, key_file, tmp_path):
    """A signal taken by another thread waited for the main thread's blocked read
    (the dump's pipe, held open by a stalled pg_dump): SIGTERM went unheeded for as
    long as pg_dump stalled, about one run in 25 under load. Every other thread now
    blocks SIGINT, SIGTERM and SIGHUP, so the kernel gives them to the main thread."""
    started = tmp_path / "pg_dump-started"
    fake = _fake_pg_dump(tmp_path, f"echo 'CREATE TABLE t (x int);'\ntouch {started}\nexec sleep 60\n")
    (fake / "pg_dumpall").write_text(f"#!/bin/sh\necho '-- roles'\ntouch {started}-all\nexec sleep 60\n")
    (fake / "pg_dumpall").chmod(0o755)
    env = _with_path_first(script_env(pg, tools), fake)
    directory = tmp_path / "b"
    proc = subprocess.Popen([BACKUP, "--dir", directory, "--key-file", key_file, "anydb"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not (started.exists() and (tmp_path / "pg_dump-started-all").exists()
                   and len(dir_entries(directory)) == 2):
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()
            time.sleep(0.05)
        tasks = {}
        for tid in os.listdir(f"/proc/{proc.pid}/task"):
            with open(f"/proc/{proc.pid}/task/{tid}/status") as f:
                tasks[int(tid)] = _blocked(f.read())
        handled = sum(1 << (s - 1) for s in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM))
        others = {tid: mask for tid, mask in tasks.items() if tid != proc.pid}
        assert others, "the globals thread is running"
        assert all(mask & handled == handled for mask in others.values()), tasks
        assert tasks[proc.pid] & handled == 0
        begun = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        assert time.monotonic() - begun < 10
        assert (proc.returncode, out) == (143, b""), err
        assert dir_entries(directory) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


HANDLED = sum(1 << (s - 1) for s in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM))
RECORD_MASK = 'while read -r key value; do [ "$key" = SigBlk: ] && echo "$value" >> {log}; done < /proc/$$/status\n'


def test_the_globals_children_start_with_the_signals_unblocked(pg, tools, key_file, tmp_path):
    """pg_dumpall and psql, started by the globals thread (which blocks SIGINT,
    SIGTERM and SIGHUP, so that the main thread takes them), once inherited its
    mask through exec: a `kill -TERM` of one of them, or a systemd stop, went
    unheeded until SIGKILL. Each records its own mask (/proc/$$/status of the
    shell that execs it)."""
    log = tmp_path / "masks"
    fake = _fake_pg_dump(tmp_path, "echo 'CREATE TABLE t (x int);'\n")
    env = script_env(pg, tools)
    for name in ("pg_dumpall", "psql"):
        real = shutil.which(name, path=env["PATH"])
        (fake / name).write_text("#!/bin/sh\n" + RECORD_MASK.format(log=log) + f'exec {real} "$@"\n')
        (fake / name).chmod(0o755)
    env = _with_path_first(env, fake)
    done = subprocess.run([BACKUP, "--dir", tmp_path / "b", "--key-file", key_file, "postgres"], env=env,
                          capture_output=True)
    assert done.returncode == 0, done.stderr
    masks = [int(line, 16) for line in log.read_text().split()]
    assert len(masks) >= 2 and all(mask & HANDLED == 0 for mask in masks), [hex(m) for m in masks]


# A sitecustomize.py (PYTHONPATH) that signals the backup at one exact point of a child's start.
LATE_GLOBALS = """
import os, signal, subprocess, threading, time

real = subprocess.Popen

class Late(real):  # the globals thread, about to start pg_dumpall: the run is interrupted first
    def __init__(self, args, *rest, **options):
        if args[0] == "pg_dumpall":
            os.kill(os.getpid(), signal.SIGTERM)
            deadline = time.monotonic() + 20
            while not threading.current_thread().stopped and time.monotonic() < deadline:
                time.sleep(0.01)
        super().__init__(args, *rest, **options)

subprocess.Popen = Late
"""

FORKED = """
import os, signal, subprocess, time

real = subprocess.Popen._execute_child

def execute(self, args, *rest, **options):  # pg_dump forked and exec'd, Popen not yet returned
    real(self, args, *rest, **options)
    if args[0] == "pg_dump":
        with open({pidfile!r}, "w") as f:
            f.write(str(self.pid))
        os.kill(os.getpid(), signal.SIGINT)
        deadline = time.monotonic() + 1
        while time.monotonic() < deadline:  # bytecodes: any of them could run the handler
            pass

subprocess.Popen._execute_child = execute
"""


def _customized(env, tmp_path, code):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(code)
    env["PYTHONPATH"] = f"{site}{os.pathsep}{env['PYTHONPATH']}"
    return env


def _backup_into_files(argv, env, tmp_path):
    """The backup's output in files, not pipes: a child that outlives it would hold a pipe open."""
    with open(tmp_path / "out", "wb") as out, open(tmp_path / "err", "wb") as err:
        return subprocess.Popen([BACKUP, *argv], env=env, stdout=out, stderr=err)


def _outputs(tmp_path):
    return (tmp_path / "out").read_bytes(), (tmp_path / "err").read_bytes()


def test_a_run_interrupted_while_the_globals_child_starts_kills_it(pg, tools, key_file, tmp_path):
    """The run stopped the globals thread's children before that thread had started
    pg_dumpall: it then started it all the same, and the run waited 60 s for that
    thread (a stalled pg_dumpall outlived the run). A stopped pipeline starts no
    child, and stop() waits for one being started, then kills it."""
    started = tmp_path / "pg_dumpall-started"
    fake = _fake_pg_dump(tmp_path, "echo 'CREATE TABLE t (x int);'\nexec sleep 60\n")
    (fake / "pg_dumpall").write_text(f"#!/bin/sh\necho $$ > {started}\nexec sleep 300\n")  # outlasts join(60)
    (fake / "pg_dumpall").chmod(0o755)
    env = _customized(_with_path_first(script_env(pg, tools), fake), tmp_path, LATE_GLOBALS)
    directory = tmp_path / "b"
    proc = _backup_into_files(["--dir", directory, "--key-file", key_file, "anydb"], env, tmp_path)
    with ended_afterwards(proc) as children:
        proc.wait(timeout=90)  # it waited 60 s for the thread
        out, err = _outputs(tmp_path)
        said = started.read_text() if started.exists() else ""  # made, but killed before it wrote: empty
        pg_dumpall = int(said) if said else None  # killed before it said so: none
        if pg_dumpall:
            children.append(pg_dumpall)
        assert (proc.returncode, out) == (143, b""), err
        assert not (pg_dumpall and alive(pg_dumpall))
        assert dir_entries(directory) == []


def test_a_signal_while_the_dump_starts_kills_pg_dump(pg, tools, key_file, tmp_path):
    """SIGINT raised inside Popen once pg_dump was forked: the run never knew its
    pg_dump, which outlived it (waiting for a lock, say). The start of a child and
    its record are one step for a raising handler."""
    pidfile = tmp_path / "pg_dump.pid"
    fake = _fake_pg_dump(tmp_path, "exec sleep 60\n")
    env = _customized(_with_path_first(script_env(pg, tools), fake), tmp_path, FORKED.format(pidfile=str(pidfile)))
    directory = tmp_path / "b"
    proc = _backup_into_files(["--dir", directory, "--key-file", key_file, "--no-globals", "anydb"], env, tmp_path)
    with ended_afterwards(proc) as children:
        proc.wait(timeout=30)
        out, err = _outputs(tmp_path)
        pg_dump = int(pidfile.read_text())
        children.append(pg_dump)
        assert (proc.returncode, out) == (130, b""), err
        assert not alive(pg_dump)
        assert dir_entries(directory) == []
