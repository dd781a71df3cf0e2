"""encpipe-restore stopped by SIGTERM or SIGINT while one of its encpipe children
runs (the legacy check, the globals file's decryption, the dump's): it exits at
once with 143 or 130, nothing on standard output or error, the live database as
it was, and neither the child nor the key command it runs is left behind.

Before: a stop during the legacy check left `encpipe inspect --legacy --verify`
running on (with the key), a stop during the globals file's decryption waited
for that encpipe to end (a whole pass over a large file), and a stop during the
dump's waited 10 s for the key command, which was left running.

So for a remote FILE's fetch: its helper (`python3 -I -m encpipe.backup fetch`)
and the `rclone cat` it runs end with the restore. Before, both were left
downloading into a temporary file the restore had already removed."""

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_backup_restore import (RESTORE, backup, dump, ensure_small, leftover_databases, make_legacy_file,
                                 python_env, read_key, script_env)
from procs import alive, ended_afterwards
from test_remote_listing import upload, wrapper
from test_restore_early_open import _stand_in


def _descendants(pid):
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            children = Path(f"/proc/{pid}/task/{task}/children").read_text().split()
        except OSError:
            children = []
        for child in map(int, children):
            found += [child, *_descendants(child)]
    return found


def _stop_while_the_child_runs(pg, tools, path, db, key_source, tmp_path, signum, *options):
    """Restore `path` into `db` with a key command that waits; signal the restore
    once the command runs; returns (status, stdout, stderr, seconds to exit, the
    encpipe child and its key command's processes)."""
    pids = tmp_path / "pids"
    command = f"echo $$ $PPID > {pids}.tmp && mv {pids}.tmp {pids}; sleep 60; cat {key_source}"
    proc = subprocess.Popen([RESTORE, *options, "--key-command", command, path, db], env=script_env(pg, tools),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not pids.exists():
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    shell, encpipe = map(int, pids.read_text().split())
    children = [encpipe, shell, *_descendants(shell)]
    begun = time.monotonic()
    proc.send_signal(signum)  # the restore alone, as `kill` would
    out, err = proc.communicate(timeout=60)
    took = time.monotonic() - begun
    time.sleep(0.2)  # a process killed is reaped by init
    return proc.returncode, out, err.decode(), took, [pid for pid in children if alive(pid)]


@pytest.fixture
def live(pg):
    db = ensure_small(pg, "stopped_restore_target")
    return db, dump(pg, db)


def _legacy(pg, tools, key_file, tmp_path):
    key = tmp_path / "legacy.key"
    key.write_text("ab" * 32 + "\n")
    return make_legacy_file(tmp_path / "stopped_restore_target_20250101T000000Z.sql.enc", "ab" * 32,
                            b"SELECT 1;\n"), key, ()  # under a run's name, it needs no globals file


def _with_globals(pg, tools, key_file, tmp_path):
    path, _ = backup(pg, tools, str(tmp_path / "b"), "stopped_restore_target", "--key-file", key_file)
    assert list((tmp_path / "b").glob("*.globals.sql.enc"))
    return path, key_file, ()


def _dump_alone(pg, tools, key_file, tmp_path):
    path, _ = backup(pg, tools, str(tmp_path / "b"), "stopped_restore_target", "--no-globals", "--key-file", key_file)
    assert not list((tmp_path / "b").glob("*.globals.sql.enc"))
    return path, key_file, ("--no-globals",)


@pytest.mark.parametrize("stage", [_legacy, _with_globals, _dump_alone], ids=["legacy", "globals", "dump"])
@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["TERM", "INT"])
def test_a_stopped_restore_ends_its_encpipe_child_and_its_key_command(pg, tools, key_file, tmp_path, live, stage,
                                                                      signum, status):
    db, before = live
    path, key, options = stage(pg, tools, key_file, tmp_path)
    assert read_key(key)
    result = _stop_while_the_child_runs(pg, tools, path, db, key, tmp_path, signum, *options)
    assert result[:3] == (status, b"", ""), result
    assert result[3] < 5, result  # not held up by the child, nor by the key command holding its stderr
    assert result[4] == [], result  # the encpipe child and its key command (and its sleep) ended
    assert dump(pg, db) == before and leftover_databases(pg) == set()


def _stop_while_rclone_fetches(pg, tools, s3, key_file, tmp_path, db, signum, target=None):
    """Restore a remote FILE whose `rclone cat` writes a little, then stalls; signal
    the restore (`target` "helper": the fetch helper alone) once it runs; (status,
    stdout, stderr, seconds to exit, the fetch helper and rclone processes still
    alive). Any left is killed afterwards."""
    name = f"{db}_20250101T000000Z.sql.enc"
    upload(s3, tmp_path, "stalled", {name: b"ENCPIPE" + bytes(4096)})
    pids = tmp_path / "pids"
    rclone = wrapper(tmp_path / "rclone", f"printf ENCPIPE; echo $$ $PPID > {pids}.tmp && mv {pids}.tmp {pids}; "
                                          "exec sleep 60")
    env = script_env(pg, tools, **s3.env, RCLONE=rclone)
    proc = subprocess.Popen([RESTORE, "--key-file", key_file, f"{s3.location}/stalled/{name}", db], env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    with ended_afterwards(proc) as children:
        deadline = time.monotonic() + 60
        while not pids.exists():
            assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        children += map(int, pids.read_text().split())  # rclone, the fetch helper
        time.sleep(0.2)  # the helper copying what rclone wrote
        begun = time.monotonic()
        os.kill(children[1] if target == "helper" else proc.pid, signum)  # it alone, as `kill` would
        out, err = proc.communicate(timeout=60)
        took = time.monotonic() - begun
        time.sleep(0.2)  # a process killed is reaped by init
        return proc.returncode, out, err.decode(), took, [pid for pid in children if alive(pid)]


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["TERM", "INT"])
def test_a_restore_stopped_while_fetching_ends_the_fetch_and_its_rclone(pg, tools, s3, key_file, tmp_path, live,
                                                                        signum, status):
    db, before = live
    result = _stop_while_rclone_fetches(pg, tools, s3, key_file, tmp_path, db, signum)
    assert result[:3] == (status, b"", ""), result
    assert result[3] < 5, result
    assert result[4] == [], result  # neither the fetch helper nor its rclone runs on
    assert dump(pg, db) == before and leftover_databases(pg) == set()


def test_a_fetch_helper_killed_by_a_signal_is_the_restore_s_one_line_and_128_plus_n(pg, tools, s3, key_file,
                                                                                      tmp_path, live):
    """Before, its status was -15: the restore's exit status 241, "status -15" in its line."""
    db, before = live
    result = _stop_while_rclone_fetches(pg, tools, s3, key_file, tmp_path, db, signal.SIGTERM, target="helper")
    remote = f"{s3.location}/stalled/{db}_20250101T000000Z.sql.enc"
    assert result[:3] == (143, b"", f"encpipe-restore: error: cannot fetch {remote}: status 143; "
                                    "nothing was changed\n"), result
    assert result[3] < 5 and result[4] == [], result
    assert dump(pg, db) == before and leftover_databases(pg) == set()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=["TERM", "HUP", "INT"])
def test_a_stopped_fetch_helper_ends_its_rclone(s3, tmp_path, signum):
    """The helper alone stopped (as `kill` would): it dies of the signal, quietly,
    and its `rclone cat` dies with it; before, SIGTERM and SIGHUP left rclone
    running, and SIGINT printed a traceback."""
    name = "x_20250101T000000Z.sql.enc"
    upload(s3, tmp_path, "helper", {name: b"ENCPIPE" + bytes(4096)})
    pids = tmp_path / "pids"
    rclone = wrapper(tmp_path / "rclone", f"printf ENCPIPE; echo $$ > {pids}.tmp && mv {pids}.tmp {pids}; "
                                          "exec sleep 60")
    proc = subprocess.Popen([sys.executable, "-m", "encpipe.backup", "fetch", f"{s3.location}/helper/{name}"],
                            env={**python_env(), **s3.env, "RCLONE": rclone}, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    rclone_pid = None
    try:
        deadline = time.monotonic() + 60
        while not pids.exists():
            assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        rclone_pid = int(pids.read_text())
        time.sleep(0.3)  # the helper reading what rclone wrote
        begun = time.monotonic()
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=30)
        took = time.monotonic() - begun
        time.sleep(0.2)  # a process killed is reaped by init
        assert (proc.returncode, out, err, alive(rclone_pid)) == (-signum, b"", b"", False)
        assert took < 5
    finally:
        proc.kill()
        proc.wait()
        if rclone_pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(rclone_pid, signal.SIGKILL)


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_stop_as_the_scratch_database_is_created_drops_it(pg, tools, key_file, tmp_path, signum, status):
    """Stopped after the server created the scratch database but before the psql
    that created it had ended, the restore did not know it had one, and left it
    (the next restore dropped it as a killed run's). A psql that stops the
    restore just after its CREATE DATABASE makes that moment every time."""
    src = ensure_small(pg, "sig_scratch_src")
    path, _ = backup(pg, tools, tmp_path / "b", src, "--key-file", key_file)
    fake = tmp_path / "fakebin"
    fake.mkdir()
    real = pg.bin("psql")
    (fake / "psql").write_text(f"""#!/bin/sh
case " $* " in *" -f - "*) ;; *) exec {real} "$@" ;; esac
input=$(cat)
printf '%s\\n' "$input" | {real} "$@"
status=$?
case $input in *"CREATE DATABASE"*) kill -{int(signum)} $PPID; sleep 2 ;; esac
exit $status
""")
    (fake / "psql").chmod(0o755)
    env = script_env(pg, tools)
    env["PATH"] = f"{fake}{os.pathsep}{env['PATH']}"
    before = leftover_databases(pg)
    try:
        done = subprocess.run([RESTORE, "--key-file", key_file, path, "sig_scratch_target"], env=env,
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
        assert (done.returncode, done.stdout) == (status, b""), done.stderr
        assert leftover_databases(pg) - before == set()
        assert "sig_scratch_target" not in pg.psql("SELECT datname FROM pg_database").split()
    finally:
        for name in leftover_databases(pg) - before:
            pg.dropdb(name)


# A sitecustomize.py (PYTHONPATH): the restore signalled once encpipe's `WORD` child
# was forked and exec'd, before Popen returned (so before the restore recorded it).
FORKED = """
import os, signal, subprocess, time

real = subprocess.Popen._execute_child

def execute(self, args, *rest, **options):
    real(self, args, *rest, **options)
    if {word!r} in args[1:4]:
        with open({pidfile!r}, "w") as f:
            f.write(str(self.pid))
        os.kill(os.getpid(), {signum})
        deadline = time.monotonic() + 1
        while time.monotonic() < deadline:  # bytecodes: any of them could run the handler
            pass

subprocess.Popen._execute_child = execute
"""


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["TERM", "INT"])
@pytest.mark.parametrize("word", ["keyid", "open"])
def test_a_stop_as_a_child_starts_ends_that_child(pg, tools, key_file, tmp_path, word, signum, status):
    """Signalled inside Popen once ENCPIPE_KEY's `keyid` check or the early `open`
    of FILE was forked, the restore never knew that child, which outlived it (the
    open waiting for ever to write the dump to a pipe no one reads; here a
    stand-in that waits for ever). The start of a child and its record are one
    step for a raising handler."""
    src = ensure_small(pg, "sig_start_src")
    path, _ = backup(pg, tools, tmp_path / "b", src, "--key-file", key_file, "--no-globals")
    pidfile, site = tmp_path / "child.pid", tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(FORKED.format(word=word, pidfile=str(pidfile), signum=int(signum)))
    env = {**script_env(pg, tools), "ENCPIPE_KEY": read_key(key_file), "ENCPIPE": _stand_in(tmp_path, [word])}
    env["PYTHONPATH"] = f"{site}{os.pathsep}{env.get('PYTHONPATH', '')}"
    with open(tmp_path / "out", "wb") as out, open(tmp_path / "err", "wb") as err:  # not pipes a child would hold
        proc = subprocess.Popen([RESTORE, "--no-globals", path, "sig_start_target"], env=env,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=err)
    with ended_afterwards(proc) as children:
        proc.wait(timeout=60)
        child = int(pidfile.read_text())
        children.append(child)
        time.sleep(0.2)
        assert (proc.returncode, (tmp_path / "out").read_bytes()) == (status, b""), (tmp_path / "err").read_bytes()
        assert not alive(child)
    assert "sig_start_target" not in pg.psql("SELECT datname FROM pg_database").split()


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["TERM", "INT"])
def test_a_stop_while_the_server_runs_the_create_leaves_no_scratch_database(pg, tools, key_file, tmp_path, signum,
                                                                             status):
    """Stopped while the server was still running its scratch CREATE DATABASE (here
    held up by a session that holds template0's lock), the restore dropped nothing
    (the database did not exist yet), and the server then finished the CREATE: a
    scratch database left for the next restore to drop. The restore now ends that
    backend first, then drops the database if it exists."""
    src = ensure_small(pg, "sig_create_src")
    path, _ = backup(pg, tools, tmp_path / "b", src, "--key-file", key_file)
    before = leftover_databases(pg)
    holder = subprocess.Popen([pg.bin("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", "postgres"],
                              env={**os.environ, **pg.env}, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    try:
        holder.stdin.write(b"BEGIN; ALTER DATABASE template0 RENAME TO encpipe_held_template0;\n")
        holder.stdin.flush()
        _wait_for(pg, "SELECT count(*) FROM pg_locks WHERE locktype = 'object' AND mode = 'AccessExclusiveLock' "
                      "AND granted AND classid = 'pg_database'::regclass")
        proc = subprocess.Popen([RESTORE, "--key-file", key_file, path, "sig_create_target"],
                                env=script_env(pg, tools), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        _wait_for(pg, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'CREATE DATABASE %encpipe_restore_%' "
                      "AND wait_event_type = 'Lock'")
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=60)
        assert (proc.returncode, out) == (status, b""), err
    finally:
        holder.stdin.write(b"ROLLBACK;\n")
        holder.stdin.close()
        holder.wait(timeout=60)
    try:
        _wait_for(pg, "SELECT 1 - count(*) FROM pg_stat_activity WHERE query LIKE 'CREATE DATABASE %encpipe_restore_%'")
        assert leftover_databases(pg) - before == set()
    finally:
        for name in leftover_databases(pg) - before:
            pg.dropdb(name)


def _wait_for(pg, count_sql):
    deadline = time.monotonic() + 30
    while pg.psql(count_sql).strip() != "1":
        assert time.monotonic() < deadline, count_sql
        time.sleep(0.05)
