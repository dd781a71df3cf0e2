"""Failures of encpipe-backup and encpipe-restore leave nothing half done.

A failed backup leaves no file in the backup directory; a failed restore leaves
the target database byte for byte as it was and no temporary database; a backup
killed with SIGKILL at any point leaves only complete backups and at most one
temporary file, which the next run removes.
"""

import os
import random
import shlex
import signal
import subprocess
import time

import pytest

from test_backup_restore import (
    BACKUP,
    BACKUP_NAME,
    RESTORE,
    backup,
    databases,
    dir_entries,
    dump,
    encpipe,
    ensure_awkward,
    ensure_small,
    leftover_databases,
    make_key,
    restore,
    run,
    script_env,
)

KILL_ITERATIONS = 30  # seeded: the same 30 points each run, at every stage of a backup of 1.2 runs' length


def _fake_pg_dump(tmp_path, body):
    fake = tmp_path / "fakebin"
    fake.mkdir(exist_ok=True)
    (fake / "pg_dump").write_text("#!/bin/sh\n" + body)
    (fake / "pg_dump").chmod(0o755)
    return fake


def _with_path_first(env, directory):
    env["PATH"] = "%s:%s" % (directory, env["PATH"])
    return env


# --- backups that fail ---------------------------------------------------------


def test_pg_dump_failing_part_way_leaves_no_file(pg, tools, key_file, tmp_path):
    real = pg.bin("pg_dump")
    fake = _fake_pg_dump(tmp_path, '%s "$@" | head -c 3000\nexit 1\n' % shlex.quote(real))
    db = ensure_small(pg, "bk_small")
    directory = tmp_path / "b"
    proc = run([BACKUP, "--dir", directory, "--key-file", key_file, db],
               _with_path_first(script_env(pg, tools), fake))
    assert proc.returncode == 1
    assert proc.stdout == b""
    assert b"backup of bk_small failed" in proc.stderr
    assert dir_entries(directory) == []


def test_no_server_is_one_error_and_no_hint_about_superusers(pg, tools, key_file, tmp_path):
    """pg_dump and pg_dumpall both fail to connect: the hint about pg_dumpall's privilege
    (for a dump that worked beside globals that did not) would mislead."""
    env = script_env(pg, tools)
    env["PGHOST"] = str(tmp_path / "no-server-here")
    directory = tmp_path / "b"
    proc = run([BACKUP, "--dir", directory, "--key-file", key_file, "anydb"], env)
    assert (proc.returncode, proc.stdout) == (1, b"")
    ours = [line for line in proc.stderr.decode().splitlines() if line.startswith("encpipe-backup:")]
    assert ours == ["encpipe-backup: error: backup of anydb failed (status 1): pg_dump exited with status 1; "
                    "nothing was stored"]
    assert dir_entries(directory) == []


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGHUP], ids=["SIGKILL", "SIGHUP"])
def test_pg_dump_killed_by_a_signal_leaves_no_file(pg, tools, key_file, tmp_path, signum):
    """Worded alike for every signal, SIGHUP's too (129 is no status of pg_dump's own)."""
    fake = _fake_pg_dump(tmp_path, "printf 'CREATE TABLE t (x int);\\n'\nkill -%d $$\n" % signum)
    directory = tmp_path / "b"
    proc = run([BACKUP, "--dir", directory, "--key-file", key_file, "anydb"],
               _with_path_first(script_env(pg, tools), fake))
    assert (proc.returncode, proc.stdout) == (128 + signum, b"")
    assert proc.stderr.decode() == (f"encpipe-backup: error: backup of anydb failed (status {128 + signum}): pg_dump "
                                    f"killed by signal {int(signum)}; nothing was stored\n")
    assert dir_entries(directory) == []


def test_server_side_failure_mid_dump_leaves_no_file(pg, tools, key_file, tmp_path):
    """pg_dump waits for a table lock; its server session is then terminated."""
    db = ensure_small(pg, "bk_locked")
    holder = subprocess.Popen([pg.bin("psql"), "-X", "-q", "-d", db], env=pg.env, stdin=subprocess.PIPE,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    backup_proc = None
    try:
        holder.stdin.write(b"BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE;\n")
        holder.stdin.flush()
        _wait_for(pg, "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                      "WHERE c.relname = 't' AND l.mode = 'AccessExclusiveLock' AND l.granted", db)
        directory = tmp_path / "b"
        backup_proc = subprocess.Popen([BACKUP, "--dir", str(directory), "--key-file", key_file, db],
                                       env=script_env(pg, tools), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        waiting = ("FROM pg_stat_activity WHERE application_name = 'pg_dump' AND wait_event_type = 'Lock'")
        _wait_for(pg, "SELECT count(*) " + waiting)
        pg.psql("SELECT pg_terminate_backend(pid) " + waiting)
        out, errors = backup_proc.communicate(timeout=120)
        assert backup_proc.returncode != 0
        assert out == b""
        assert b"terminat" in errors
        assert dir_entries(directory) == []
    finally:
        if backup_proc and backup_proc.poll() is None:
            backup_proc.kill()
            backup_proc.wait()
        holder.stdin.close()
        holder.wait(timeout=60)


def _wait_for(pg, count_sql, db=None):
    deadline = time.monotonic() + 60
    while pg.psql(count_sql, db=db).strip() in ("", "0"):
        assert time.monotonic() < deadline, "waited a minute for: " + count_sql
        time.sleep(0.05)


def test_unreadable_key_file_fails_and_leaves_no_file(pg, tools, tmp_path):
    db = ensure_small(pg, "bk_small")
    directory = tmp_path / "b"
    proc = run([BACKUP, "--dir", directory, "--key-file", tmp_path / "missing.key", db], script_env(pg, tools))
    assert proc.returncode == 66
    assert proc.stdout == b""
    assert dir_entries(directory) == []


# --- restores that fail ----------------------------------------------------------


@pytest.fixture(scope="module")
def sealed(pg, tools, key_file, tmp_path_factory):
    """A good backup of the awkward database (several chunks) and a target database."""
    db = ensure_awkward(pg)
    path, _ = backup(pg, tools, str(tmp_path_factory.mktemp("b")), db, "--key-file", key_file)
    pg.dropdb("bk_fault_target")
    pg.createdb("bk_fault_target")
    pg.psql("CREATE TABLE precious (x text); INSERT INTO precious VALUES ('keep me');", db="bk_fault_target")
    return path


def _damaged(sealed, tmp_path, how):
    data = bytearray(open(sealed, "rb").read())
    if how == "truncated":
        data = data[: len(data) - 1000]
    elif how == "tampered":
        data[len(data) // 2] ^= 0x01
    elif how == "extended":
        data += b"\0" * 16
    path = tmp_path / ("damaged.%s.sql.enc" % how)
    path.write_bytes(bytes(data))
    return str(path)


def _seal(tmp_path, key, plaintext, name):
    path = tmp_path / name
    encpipe(["seal", "--key-file", key, "-o", str(path)], input=plaintext, check=True)
    return str(path)


def _assert_restore_fails_cleanly(pg, tools, path, key, expected_status, says=b"bk_fault_target"):
    before = dump(pg, "bk_fault_target")
    proc = restore(pg, tools, path, "bk_fault_target", "--key-file", key)
    assert proc.returncode == expected_status, proc.stderr.decode()
    assert proc.stdout == b""
    assert says in proc.stderr, proc.stderr.decode()
    assert dump(pg, "bk_fault_target") == before
    assert leftover_databases(pg) == set()
    assert "bk_fault_target" in databases(pg)
    return proc.stderr.decode()


@pytest.mark.parametrize("how", ["truncated", "tampered", "extended"])
def test_restore_of_a_damaged_backup_changes_nothing(pg, tools, key_file, sealed, tmp_path, how):
    _assert_restore_fails_cleanly(pg, tools, _damaged(sealed, tmp_path, how), key_file, 65)


def test_restore_with_the_wrong_key_changes_nothing(pg, tools, sealed, tmp_path):
    """Refused at the globals file beside the backup, before the server is asked
    anything: the line says nothing was changed (it need not name the target)."""
    other = make_key(tmp_path / "other.key")
    _assert_restore_fails_cleanly(pg, tools, sealed, other, 77, says=b"; nothing was changed\n")


def test_restore_whose_sql_fails_half_way_drops_the_temporary_database(pg, tools, key_file, tmp_path):
    """Decrypts fine, then an SQL error after some statements ran in the temp database."""
    bad = b"CREATE TABLE restored_part (x int);\nINSERT INTO restored_part VALUES (1);\nSELECT 1/0;\n"
    path = _seal(tmp_path, key_file, bad, "bad.sql.enc")
    pg.dropdb("bk_fault_target")
    pg.createdb("bk_fault_target")
    _assert_restore_fails_cleanly(pg, tools, path, key_file, 1)


def test_restore_of_a_broken_custom_archive_changes_nothing(pg, tools, key_file, tmp_path):
    db = ensure_small(pg, "bk_small")
    archive = subprocess.run([pg.bin("pg_dump"), "-Fc", db], env=pg.env, capture_output=True, check=True).stdout
    path = _seal(tmp_path, key_file, archive[: len(archive) // 2], "cut.dump.enc")
    pg.dropdb("bk_fault_target")
    pg.createdb("bk_fault_target")
    err = _assert_restore_fails_cleanly(pg, tools, path, key_file, 1)
    # pg_restore -f - says what is wrong with the archive; psql, which ran what it wrote, did not fail
    assert err.startswith("pg_restore: error: ") and err.count("\n") == 2, err
    assert "hint" not in err, err


@pytest.mark.parametrize("ending", [
    "\nexit 1\n",  # all of its SQL written, COMMIT too, then a failure
    " | head -c 3000\nexit 1\n",  # cut short: BEGIN, no COMMIT
    " | head -c 3000\nkill -9 $$\n",
])
def test_restore_whose_pg_restore_fails_changes_nothing(pg, tools, key_file, tmp_path, ending):
    """psql runs the SQL that pg_restore -f - writes: a pg_restore that fails fails the
    restore (1), whatever psql made of what it got, and nothing is swapped in."""
    db = ensure_small(pg, "bk_small")
    archive = subprocess.run([pg.bin("pg_dump"), "-Fc", db], env=pg.env, capture_output=True, check=True).stdout
    path = _seal(tmp_path, key_file, archive, "whole.dump.enc")
    fake = tmp_path / "fakebin"
    fake.mkdir()
    (fake / "pg_restore").write_text("#!/bin/sh\n%s \"$@\"%s" % (shlex.quote(pg.bin("pg_restore")), ending))
    (fake / "pg_restore").chmod(0o755)
    pg.dropdb("bk_fault_target")
    pg.createdb("bk_fault_target")
    pg.psql("CREATE TABLE precious (x text); INSERT INTO precious VALUES ('keep me');", db="bk_fault_target")
    before = dump(pg, "bk_fault_target")
    proc = run([RESTORE, "--key-file", key_file, path, "bk_fault_target"], _with_path_first(script_env(pg, tools), fake))
    assert (proc.returncode, proc.stdout) == (1, b""), proc.stderr.decode()
    assert proc.stderr.decode().endswith("database bk_fault_target is unchanged\n"), proc.stderr.decode()
    assert dump(pg, "bk_fault_target") == before
    assert leftover_databases(pg) == set()


def test_restore_whose_psql_is_killed_changes_nothing_and_gives_no_hint_about_its_errors(pg, tools, key_file,
                                                                                         tmp_path):
    """The psql that runs a custom archive's SQL killed by a signal (the OOM killer, say)
    named no error: the restore fails (1), nothing is swapped in, and no hint speaks of
    the SQLSTATE codes psql printed (it printed none)."""
    db = ensure_small(pg, "bk_small")
    archive = subprocess.run([pg.bin("pg_dump"), "-Fc", db], env=pg.env, capture_output=True, check=True).stdout
    path = _seal(tmp_path, key_file, archive, "whole.dump.enc")
    fake = tmp_path / "fakebin"
    fake.mkdir()
    (fake / "psql").write_text('#!/bin/sh\ncase "$*" in *VERBOSITY=sqlstate*) head -c 100 >/dev/null; kill -9 $$;;'
                               ' esac\nexec %s "$@"\n' % shlex.quote(pg.bin("psql")))
    (fake / "psql").chmod(0o755)
    pg.dropdb("bk_fault_target")
    pg.createdb("bk_fault_target")
    pg.psql("CREATE TABLE precious (x text); INSERT INTO precious VALUES ('keep me');", db="bk_fault_target")
    before = dump(pg, "bk_fault_target")
    env = _with_path_first(script_env(pg, tools), fake)
    proc = run([RESTORE, "--key-file", key_file, path, "bk_fault_target"], env)
    err = proc.stderr.decode()
    assert (proc.returncode, proc.stdout) == (1, b""), err
    assert err.splitlines()[-1] == (f"encpipe-restore: error: restoring {path} failed;"
                                    " database bk_fault_target is unchanged")
    assert "hint" not in err, err
    assert dump(pg, "bk_fault_target") == before
    assert leftover_databases(pg) == set()

def test_restore_of_an_empty_backup_changes_nothing(pg, tools, key_file, tmp_path):
    path = _seal(tmp_path, key_file, b"", "empty.sql.enc")
    pg.dropdb("bk_fault_target")
    pg.createdb("bk_fault_target")
    _assert_restore_fails_cleanly(pg, tools, path, key_file, 65)


# --- SIGKILL at random points ------------------------------------------------------


def _check_directory(directory, db, key, verified):
    """Only complete, verifying backups, each with its run's globals file, plus at most
    the temporary files of one run: for the dump and for the globals, the script's
    and the new file written beside it to rename over it."""
    names = dir_entries(directory)
    temps = [n for n in names if n.startswith(".encpipe-tmp.")]
    finals = [n for n in names if BACKUP_NAME.match(n) and n.startswith(db + "_")]
    marker = [n for n in names if n == ".encpipe-cluster"]  # the location's cluster, once a run stored a backup
    assert sorted(temps + finals + marker) == names, names
    assert len(temps) <= 4, temps
    for name in finals:
        assert BACKUP_NAME.match(name)["db"] + "_" + BACKUP_NAME.match(name)["ts"] + ".globals.sql.enc" in finals
    for name in finals:
        if name not in verified:
            proc = encpipe(["inspect", "--verify", "--key-file", key, os.path.join(directory, name)])
            assert proc.returncode == 0, (name, proc.stderr)
            verified.add(name)
    return temps


@pytest.mark.slow
def test_backup_killed_at_random_points(pg, tools, key_file, tmp_path):
    db = ensure_small(pg, "bk_kill", rows=20)
    directory = str(tmp_path / "b")
    env = script_env(pg, tools)
    started = time.monotonic()
    backup(pg, tools, directory, db, "--key-file", key_file)
    full_run = time.monotonic() - started
    rng = random.Random(20240607)
    verified = set()
    for i in range(KILL_ITERATIONS):
        proc = subprocess.Popen([BACKUP, "--dir", directory, "--key-file", key_file, db], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        time.sleep(rng.uniform(0, 1.2 * full_run))
        if i % 2:
            os.killpg(proc.pid, signal.SIGKILL)  # the script and everything it started
        else:
            proc.kill()  # the script alone: its children run on as orphans
        proc.wait()
        _check_directory(directory, db, key_file, verified)
    backup(pg, tools, directory, db, "--key-file", key_file)
    assert _check_directory(directory, db, key_file, verified) == []
    assert len(verified) >= 2
