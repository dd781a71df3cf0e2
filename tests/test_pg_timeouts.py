"""A role's or a database's own timeouts (ALTER ROLE/DATABASE ... SET statement_timeout,
idle_session_timeout, idle_in_transaction_session_timeout) hold for its clients, not
for the run's own sessions, as pg_dump and pg_dumpall turn them off for theirs: a
statement_timeout failed a backup's reads of the catalog and could fail the swap, and
an idle_session_timeout ended the session that holds a restore's lock while the dump
loads (the run then lost its lock)."""

import subprocess
import time

from encpipe.pgclient import Session, conninfo, run_sql
from test_backup_restore import RESTORE, databases, dump, encpipe, script_env

DB = "timeouts_maint"
SETTINGS = ("statement_timeout", "idle_session_timeout", "idle_in_transaction_session_timeout")


def _with_timeouts(pg, value):
    pg.dropdb(DB)
    pg.psql("CREATE DATABASE %s" % DB)
    for name in SETTINGS:
        pg.psql("ALTER DATABASE %s SET %s = '%s'" % (DB, name, value))


def test_the_runs_sessions_have_no_timeout_of_the_database(pg, monkeypatch):
    for name, value in pg.env.items():
        monkeypatch.setenv(name, value)
    _with_timeouts(pg, "1h")
    try:
        shown = run_sql(conninfo(DB), "\n".join("SHOW %s;" % name for name in SETTINGS))
        assert shown == [["0"], ["0"], ["0"]]
        session = Session(conninfo(DB))
        try:
            session.start()
            assert [session.ask("SHOW %s;" % name) for name in SETTINGS] == ["0", "0", "0"]
        finally:
            session.close()
        assert pg.psql("SHOW statement_timeout", db=DB) == "1h\n"  # a client's own session keeps them
    finally:
        pg.dropdb(DB)


def test_a_restore_keeps_its_lock_past_the_maintenance_databases_idle_session_timeout(pg, tools, key_file, tmp_path):
    source, target = "timeouts_source", "timeouts_target"
    pg.dropdb(source)
    pg.dropdb(target)
    pg.createdb(source)
    pg.psql("CREATE TABLE t (x int); INSERT INTO t VALUES (1);", db=source)
    dumped = dump(pg, source)
    path = str(tmp_path / "slow.sql.enc")
    encpipe(["seal", "--key-file", key_file, "-o", path], input=b"SELECT pg_sleep(3);\n" + dumped, check=True)
    _with_timeouts(pg, "1s")
    held = ("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND database = "
            "(SELECT oid FROM pg_database WHERE datname = '%s')" % DB)
    try:
        proc = subprocess.Popen([RESTORE, "--no-globals", "--maintenance-db", DB, "--key-file", key_file, path,
                                 target], env=script_env(pg, tools), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while not [d for d in databases(pg) if d.startswith("encpipe_restore_")]:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        time.sleep(1.8)  # the dump sleeps 3 s: its lock's session is idle past the database's 1 s
        locks = pg.psql(held).strip()
        out, err = proc.communicate(timeout=120)
        assert (proc.returncode, out) == (0, b""), err.decode()
        assert locks != "0"
        assert dump(pg, target) == dumped
    finally:
        pg.dropdb(DB)
        pg.dropdb(target)
        pg.dropdb(source)
