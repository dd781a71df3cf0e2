"""encpipe-restore's steps that commit on the server (the swap, the --drop-old drop,
the drop of old copies, the drop of its scratch database on failure): what it says
is what the server holds.

A Ctrl-C from a terminal (SIGINT), or its hangup (SIGHUP), goes to the whole
foreground process group: the restore, which holds it through the swap, and the
psql running the swap, which did not. That psql cancelled the swap, or died of
it, and the restore, its signal held "until psql answers", ended as if stopped
before the swap; a psql that died as the server committed made it say
"... could not swap it in (...); database DBNAME is unchanged" with DBNAME
already the restored database. Each such psql now runs in a process group of
its own: a signal to the restore's group is not its, and the step completes.
And when the psql of a step fails all the same (killed, its connection lost),
the restore ends that psql's session if the server still runs it, then asks
the server what it holds, and says that: the swap made, or not; the database
dropped, or not. (The server runs a statement whose client is gone to its end:
a COMMIT received is committed; its session is ended and waited for, so that
what the restore then sees is the outcome for good.)

The signal goes to the restore's process group while the swap waits for a lock
another session holds; the swap's psql is killed while the server commits (its
COMMIT waiting for a synchronous standby that never comes: committed locally,
not yet seen by others); or a psql stand-in on PATH dies (SIGKILL) just before
or just after the real psql ran a given step: the server did it, or not, and
its client is gone."""

import contextlib
import os
import signal
import subprocess
import time

import pytest

from procs import members
from spies import python_head
from test_backup_restore import RESTORE, backup, databases, drop_matching, dump, ensure_small, script_env
from test_signal_commits import IDS, SIGNALS

TARGET = "swapout_target"
WAIT = 60

STAND_IN = '''{head}
import os, signal, subprocess, sys
real = {real!r}
if "-0" not in sys.argv:  # not a statement of run_sql (the lock's session, --version, the dump's psql)
    os.execv(real, [real] + sys.argv[1:])
data = sys.stdin.buffer.read()
hit = None
for number, (when, words) in enumerate({rules!r}):
    mark = {done!r} + str(number)
    if all(word.encode() in data for word in words) and not os.path.exists(mark):
        open(mark, "w").close()  # once each
        hit = when
        break
if hit == "before":
    os.kill(os.getpid(), signal.SIGKILL)
env = dict(os.environ)
if hit == "refuse":  # no server there: psql cannot connect, and sends nothing
    env["PGHOST"] = {done!r} + "-nowhere"
status = subprocess.run([real] + sys.argv[1:], input=data, env=env).returncode
if hit == "after":
    os.kill(os.getpid(), signal.SIGKILL)
sys.exit(status if status >= 0 else 128 - status)
'''

SWAP = ["RENAME TO", "encpipe_restore_"]
DROP_OLD = ["DROP DATABASE", "_pre_restore_"]
UNDO = ["DROP DATABASE IF EXISTS", "encpipe_restore_"]


@pytest.fixture(scope="module")
def source_backup(pg, tools, key_file, tmp_path_factory):
    db = ensure_small(pg, "swapout_source", rows=100)
    path, _ = backup(pg, tools, str(tmp_path_factory.mktemp("swapout") / "b"), db, "--key-file", key_file)
    return path, db


pytestmark = pytest.mark.usefixtures("swap_leftovers_dropped")


def _defaults():
    for sig in SIGNALS:
        signal.signal(sig, signal.SIG_DFL)


def _fresh_target(pg):
    drop_matching(pg, lambda d: d.startswith(TARGET) or d.startswith("encpipe_restore_"))
    pg.createdb(TARGET)
    pg.psql("CREATE TABLE old_stuff (x int); INSERT INTO old_stuff VALUES (1);", db=TARGET)
    return dump(pg, TARGET)


def _copies(pg):
    return sorted(d for d in databases(pg) if d.startswith(TARGET + "_pre_restore_"))


def _scratch(pg):
    return [d for d in databases(pg) if d.startswith("encpipe_restore_")]


def _with_stand_in(pg, tools, tmp_path, rules, script=None):
    """script_env with a psql on PATH that dies as `rules` say: [(before|after, [words of its input])]
    (or, `refuse`, runs psql where no server is: it cannot connect); `script`, a stand-in of
    another module's, in place of this one's (STAND_IN)."""
    folder = tmp_path / "standin"
    folder.mkdir()
    (folder / "psql").write_text((script or STAND_IN).format(head=python_head("-S"), real=pg.bin("psql"), rules=rules,
                                                 done=str(tmp_path / "hit")))
    (folder / "psql").chmod(0o755)
    env = script_env(pg, tools)
    env["PATH"] = os.pathsep.join([str(folder), env["PATH"]])
    return env


def _restored_with_stand_in(pg, tools, tmp_path, key_file, path, rules, *options):
    """TARGET made afresh, then encpipe-restore of `path` into it with the psql
    stand-in of `rules` (_with_stand_in): (TARGET's dump before, the restore)."""
    before = _fresh_target(pg)
    return before, subprocess.run([RESTORE, *options, "--key-file", key_file, path, TARGET],
                                  env=_with_stand_in(pg, tools, tmp_path, rules), capture_output=True, timeout=WAIT)


def _hits(tmp_path):
    return sorted(name for name in os.listdir(tmp_path) if name.startswith("hit"))


# --- a signal to the restore's process group while the swap waits for a lock --------------


def _waiting(pg):
    """Whether the swap's rename of TARGET waits for a lock."""
    return pg.psql("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE "
                   "'ALTER DATABASE \"%s\" RENAME TO %%'" % TARGET).strip() != "0"


def _until(condition, proc=None):
    """Waits until `condition()` holds; fails when `proc` (one that should still run) ended first."""
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline and (proc is None or proc.poll() is None), proc and proc.poll()
        time.sleep(0.05)


def _pending(pgid, sig):
    """Whether a live process of group `pgid` has not taken `sig` yet (a zombie shows
    the one it died of as pending)."""
    bit = 1 << (sig - 1)
    for pid in members("pgrp", pgid):
        try:
            with open(f"/proc/{pid}/status") as f:
                status = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        pending = int(status["SigPnd"], 16) | int(status["ShdPnd"], 16)
        if not status["State"].strip().startswith("Z") and pending & bit:
            return True
    return False


@contextlib.contextmanager
def _swap_waiting(pg, env, key_file, path, start_new_session=False):
    """A session holding a lock on TARGET (its ALTER DATABASE in a transaction left
    open), then encpipe-restore of `path` into TARGET (in a session of its own, if
    `start_new_session`), once its swap waits for that lock: (the holder's psql,
    the restore). Whichever still runs at the block's end is killed (the restore's
    group, in a session of its own) and reaped."""
    holder = subprocess.Popen([pg.bin("psql"), "-X", "-q", "-d", "postgres"], env=pg.env, stdin=subprocess.PIPE,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proc = None
    try:
        holder.stdin.write(b"BEGIN;\nALTER DATABASE %s CONNECTION LIMIT 7;\n" % TARGET.encode())
        holder.stdin.flush()
        _until(lambda: pg.psql("SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction' AND "
                               "query LIKE 'ALTER DATABASE %s%%'" % TARGET).strip() == "1", holder)
        proc = subprocess.Popen([RESTORE, "--key-file", key_file, path, TARGET], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=start_new_session, preexec_fn=_defaults)
        _until(lambda: _waiting(pg), proc)
        yield holder, proc
    finally:
        if proc is not None and proc.poll() is None:
            if start_new_session:
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                proc.kill()
            proc.communicate()
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def _let_go(holder):
    """The holder's ROLLBACK: its lock let go, its psql ended."""
    holder.stdin.write(b"ROLLBACK;\n")
    holder.stdin.close()
    holder.wait(timeout=WAIT)


@pytest.mark.parametrize("sig", SIGNALS, ids=IDS)
def test_a_signal_to_the_restore_s_group_during_the_swap_lets_the_swap_finish(pg, tools, key_file, source_backup,
                                                                           tmp_path, sig):
    """Ctrl-C (the terminal's SIGINT to its foreground group), a hangup, `kill -- -PGID`,
    while the swap waits for a lock another session holds: psql, in the restore's group,
    cancelled the swap (SIGINT) or died of it, and the restore ended by the signal, the
    swap not made, where README promised the signal waits for the swap. Now only the
    restore gets it, holds it, and the swap is made once the lock is let go: the restore
    says so and exits 0, and the server holds what it says."""
    path, source = source_backup
    before = _fresh_target(pg)
    with _swap_waiting(pg, script_env(pg, tools), key_file, path, start_new_session=True) as (holder, proc):
        os.killpg(proc.pid, sig)
        _until(lambda: not _pending(proc.pid, sig), holder)
        deadline = time.monotonic() + 2  # a psql that got it: its cancel, or its death, reaches the server
        while _waiting(pg) and time.monotonic() < deadline:
            time.sleep(0.05)
        _let_go(holder)
        out, err = proc.communicate(timeout=WAIT)
    copies = _copies(pg)
    assert (proc.returncode, out) == (0, b""), err.decode()
    assert len(copies) == 1, (copies, err.decode())
    assert err.decode() == f"encpipe-restore: restored {path} into {TARGET}; previous database kept as {copies[0]}\n"
    assert dump(pg, TARGET) == dump(pg, source)
    assert dump(pg, copies[0]) == before
    assert _scratch(pg) == []


# --- a swap's psql killed while the server commits it --------------------------------------


SYNCHRONOUS = {"PGOPTIONS": "-c synchronous_commit=on"}  # the test cluster's is off


@contextlib.contextmanager
def _standby_awaited(pg):
    """Every commit of a session with SYNCHRONOUS waits for a synchronous standby that never
    comes: committed, and not yet seen as such by other sessions, until its session ends
    or this block does."""
    pg.psql("CREATE TABLE IF NOT EXISTS swapout_probe (x int);")
    env = {**pg.env, **SYNCHRONOUS, "PGAPPNAME": "swapout_probe"}
    deadline = time.monotonic() + WAIT
    try:
        pg.psql("ALTER SYSTEM SET synchronous_standby_names = 'swapout_nobody';\nSELECT pg_reload_conf();")
        while True:  # until a commit does wait (the checkpointer took the setting)
            assert time.monotonic() < deadline
            probe = subprocess.Popen([pg.bin("psql"), "-X", "-q", "-c", "INSERT INTO swapout_probe VALUES (1)"],
                                     env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            _until(lambda: probe.poll() is not None or pg.psql(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'swapout_probe' AND "
                "wait_event = 'SyncRep'").strip() == "1")
            if probe.poll() is None:
                pg.psql("SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'swapout_probe'")
                probe.wait(timeout=WAIT)
                break
        yield
    finally:
        pg.psql("ALTER SYSTEM RESET synchronous_standby_names;\nSELECT pg_reload_conf();")
        subprocess.run([pg.bin("psql"), "-X", "-q", "-c", "INSERT INTO swapout_probe VALUES (2)"], env=env,
                       check=True, timeout=WAIT)  # ends once commits wait no longer


def _swap_psql(restore_pid):
    """The pid of the restore's psql that runs the swap (--single-transaction)."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rpartition(")")[2].split()[1])
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if ppid == restore_pid and os.path.basename(argv[0]) == b"psql" and b"--single-transaction" in argv:
            return int(pid)
    return None


def _killed_while_committing(pg, env, key_file, path):
    """The restore of `path` into TARGET, whose swap's psql is killed while the server
    commits the swap (waiting for a synchronous standby): (its status, stdout, stderr)."""
    with _swap_waiting(pg, env, key_file, path) as (holder, proc), _standby_awaited(pg):
        _let_go(holder)
        _until(lambda: pg.psql("SELECT count(*) FROM pg_stat_activity WHERE query = 'COMMIT' AND "
                               "wait_event = 'SyncRep'").strip() == "1", proc)
        os.kill(_swap_psql(proc.pid), signal.SIGKILL)
        out, err = proc.communicate(timeout=WAIT)
    return proc.returncode, out, err.decode()


def _said_swapped(pg, path, done):
    copies = _copies(pg)
    status, out, err = done
    assert (status, out) == (0, b""), err
    assert len(copies) == 1, (copies, err)
    assert err == (f"encpipe-restore: warning: psql failed (psql exited -9) once the server had swapped it in\n"
                   f"encpipe-restore: restored {path} into {TARGET}; previous database kept as {copies[0]}\n")
    assert pg.psql("SELECT count(*) FROM pg_class WHERE relname = 'old_stuff'", db=TARGET).strip() == "0"
    assert _scratch(pg) == []


def test_a_swap_whose_psql_dies_while_the_server_commits_it_is_said_as_it_ends(pg, tools, key_file, source_backup,
                                                                             tmp_path):
    """The swap's COMMIT sent, the server committing it (here: waiting for a synchronous
    standby, the transaction committed locally), and its psql killed. The restore said
    "could not swap it in (psql exited -9); database ... is unchanged" (and its scratch
    database's drop, waiting for the swap's lock, failed), while the server went on to
    finish the swap: TARGET the restored database. Now the restore ends that session
    (its commit then seen by all) and waited for, and says what the server holds."""
    path, source = source_backup
    before = _fresh_target(pg)
    _said_swapped(pg, path, _killed_while_committing(pg, {**script_env(pg, tools), **SYNCHRONOUS}, key_file, path))
    assert dump(pg, TARGET) == dump(pg, source)
    assert dump(pg, _copies(pg)[0]) == before


# --- a step's psql killed just before or just after the server made it ---------------------


def test_a_swap_whose_psql_dies_once_the_server_made_it_is_said_made(pg, tools, key_file, source_backup, tmp_path):
    """The swap committed, then its psql died (killed; its connection lost as the answer
    came). The restore said "could not swap it in (psql exited -9); database ... is
    unchanged", exit 1, with TARGET the restored database. It now asks the server."""
    path, source = source_backup
    before, done = _restored_with_stand_in(pg, tools, tmp_path, key_file, path, [("after", SWAP)])
    assert _hits(tmp_path) == ["hit0"]
    _said_swapped(pg, path, (done.returncode, done.stdout, done.stderr.decode()))
    assert dump(pg, TARGET) == dump(pg, source)
    assert dump(pg, _copies(pg)[0]) == before


def test_a_swap_whose_psql_dies_before_it_ran_is_said_not_made(pg, tools, key_file, source_backup, tmp_path):
    """The swap's psql died before the server saw it, and the undo's DROP of the scratch
    database died once the server had dropped it: TARGET is unchanged (said so, 1), and no
    "could not drop temporary database" for a database that is gone (said before)."""
    path, _ = source_backup
    before, done = _restored_with_stand_in(pg, tools, tmp_path, key_file, path, [("before", SWAP), ("after", UNDO)])
    err = done.stderr.decode()
    assert _hits(tmp_path) == ["hit0", "hit1"]
    assert (done.returncode, done.stdout) == (1, b""), err
    lines = err.splitlines()
    assert len(lines) == 2, err
    assert lines[0].startswith("encpipe-restore: error: restored into encpipe_restore_"), err
    assert lines[0].endswith(f" but could not swap it in (psql exited -9); database {TARGET} is unchanged"), err
    assert lines[1].startswith("encpipe-restore: hint: "), err
    assert dump(pg, TARGET) == before
    assert _copies(pg) == [] and _scratch(pg) == []


def test_a_swap_whose_outcome_cannot_be_asked_is_said_unknown(pg, tools, key_file, source_backup, tmp_path):
    """The swap's psql failed, and so did the psql that asks the server what it holds (a
    server gone, say): neither "unchanged" nor "restored", which the restore cannot know,
    but that, and where to look; 1. (The server, here, never saw the swap.)"""
    path, _ = source_backup
    rules = [("before", SWAP), ("before", ["pg_terminate_backend", "application_name"])]
    before, done = _restored_with_stand_in(pg, tools, tmp_path, key_file, path, rules)
    err = done.stderr.decode()
    assert _hits(tmp_path) == ["hit0", "hit1"]
    assert (done.returncode, done.stdout) == (1, b""), err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("encpipe-restore: error: restored into encpipe_restore_"), err
    assert err.endswith(", but cannot tell whether it was swapped in (psql exited -9; asking the server: psql exited "
                        f"-9); see whether database {TARGET} is the restored one\n"), err
    assert dump(pg, TARGET) == before
    assert _copies(pg) == [] and _scratch(pg) == []


def test_a_drop_old_whose_psql_dies_once_the_server_dropped_is_said_dropped(pg, tools, key_file, source_backup,
                                                                           tmp_path):
    """--drop-old: its DROP DATABASE done, its psql dead. Before: "restored ..., but could
    not drop the previous database ...", exit 1, the database gone."""
    path, source = source_backup
    _, done = _restored_with_stand_in(pg, tools, tmp_path, key_file, path, [("after", DROP_OLD)], "--drop-old")
    assert _hits(tmp_path) == ["hit0"]
    assert (done.returncode, done.stdout) == (0, b""), done.stderr.decode()
    assert done.stderr.decode() == f"encpipe-restore: restored {path} into {TARGET}; previous database dropped\n"
    assert dump(pg, TARGET) == dump(pg, source)
    assert _copies(pg) == [] and _scratch(pg) == []


def test_a_drop_old_whose_outcome_cannot_be_asked_is_said_so(pg, tools, key_file, source_backup, tmp_path):
    """--drop-old: its psql failed, and so did the look at the server: the line says both,
    1 (the server, here, never saw the DROP: the copy is there)."""
    path, source = source_backup
    rules = [("before", DROP_OLD), ("before", ["pg_terminate_backend", "application_name"])]
    _, done = _restored_with_stand_in(pg, tools, tmp_path, key_file, path, rules, "--drop-old")
    copies = _copies(pg)
    assert _hits(tmp_path) == ["hit0", "hit1"]
    assert (done.returncode, done.stdout) == (1, b""), done.stderr.decode()
    assert len(copies) == 1, (copies, done.stderr.decode())
    assert done.stderr.decode() == (
        f"encpipe-restore: error: restored {path} into {TARGET}, but could not drop the previous database "
        f"{copies[0]} (psql exited -9, and the server could not be asked whether it is gone (psql exited -9))\n")
    assert dump(pg, TARGET) == dump(pg, source)
    drop_matching(pg, lambda d: d.startswith(TARGET))


def _copies_dropped_with(pg, tools, tmp_path, when):
    """Two old copies of TARGET, then encpipe-restore --drop-pre-restore-older-than 0
    with the first DROP's psql killed `when` ("before"/"after") the server ran it:
    (the copies, the restore)."""
    copies = [f"{TARGET}_pre_restore_20200101T000000Z", f"{TARGET}_pre_restore_20200102T000000Z"]
    drop_matching(pg, lambda d: d.startswith(TARGET))
    for name in copies:
        pg.createdb(name)
    env = _with_stand_in(pg, tools, tmp_path, [(when, DROP_OLD)])
    return copies, subprocess.run([RESTORE, "--drop-pre-restore-older-than", "0", TARGET], env=env,
                                  capture_output=True, timeout=WAIT)


def test_a_copy_whose_drop_s_psql_dies_once_the_server_dropped_it_is_said_dropped(pg, tools, tmp_path):
    """--drop-pre-restore-older-than: the first copy dropped, its psql dead. Before: "could
    not drop NAME: psql exited -9", exit 1, NAME gone."""
    copies, done = _copies_dropped_with(pg, tools, tmp_path, "after")
    assert _hits(tmp_path) == ["hit0"]
    assert (done.returncode, done.stdout) == (0, b""), done.stderr.decode()
    assert done.stderr.decode() == f"encpipe-restore: dropped previous copies: {', '.join(copies)}\n"
    assert _copies(pg) == []


def test_a_copy_whose_drop_s_psql_dies_before_it_ran_is_said_kept(pg, tools, tmp_path):
    """The other way: the server never saw the DROP. The copy is there, and said so (1)."""
    copies, done = _copies_dropped_with(pg, tools, tmp_path, "before")
    assert _hits(tmp_path) == ["hit0"]
    assert (done.returncode, done.stdout) == (1, b""), done.stderr.decode()
    assert done.stderr.decode() == (f"encpipe-restore: dropped previous copies: {copies[1]}\n"
                                    f"encpipe-restore: error: could not drop {copies[0]}: psql exited -9\n")
    assert _copies(pg) == [copies[0]]
    drop_matching(pg, lambda d: d.startswith(TARGET))


def test_the_stand_in_runs_psql_as_is_when_no_rule_matches(pg, tools, key_file, source_backup, tmp_path):
    """The stand-in itself: with a rule that matches nothing, the restore is as without it."""
    path, source = source_backup
    _, done = _restored_with_stand_in(pg, tools, tmp_path, key_file, path, [("after", ["no statement says this"])],
                                      "--drop-old")
    assert _hits(tmp_path) == []
    assert (done.returncode, done.stdout) == (0, b""), done.stderr.decode()
    assert dump(pg, TARGET) == dump(pg, source)
    drop_matching(pg, lambda d: d.startswith(TARGET))
