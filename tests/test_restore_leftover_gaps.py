"""What a restore drops of what earlier runs left, and what it leaves (a hand mutation
review of pgleftovers and pgcommit.drop_scratch found these lines untested).

- `--drop-pre-restore-older-than DAYS DBNAME` drops DBNAME's copies only: another
  database's `<db>_pre_restore_<time>` copy is its DBA's last way back.
- A dead run's scratch database that a session uses (a DBA looking at the data a
  failed restore left) is left alone, that session not ended (no FORCE), and said so.
- A scratch database named after this run's own time (a run started later) is not
  this run's to drop (README: only the scratch databases of runs older than its own).
- A dead run's scratch database whose subscription is enabled is dropped too: the
  subscription is disabled before its slot is let go (SET (slot_name = NONE) refuses
  an enabled one)."""

import subprocess
import threading
import time

import pytest

from test_backup_restore import RESTORE, databases, run, script_env

TARGET = "gap_target"
OTHER = "gap_other"


def _copies_left_by_drop_older_than(pg, tools, days, names):
    """The `_pre_restore_` copies left once `--drop-pre-restore-older-than DAYS TARGET`
    ran over the copies `names`, made first (and dropped after)."""
    for name in names:
        pg.dropdb(name)
        pg.createdb(name)
    try:
        done = run([RESTORE, "--drop-pre-restore-older-than", days, TARGET], script_env(pg, tools))
        assert (done.returncode, done.stdout) == (0, b""), done.stderr.decode()
        return {d for d in databases(pg) if "_pre_restore_" in d} & set(names)
    finally:
        for name in names:
            pg.dropdb(name)


def test_drop_pre_restore_of_one_database_keeps_another_databases_copies(pg, tools):
    mine, theirs = TARGET + "_pre_restore_20200101T000000Z", OTHER + "_pre_restore_20200101T000000Z"
    assert _copies_left_by_drop_older_than(pg, tools, "0", [mine, theirs]) == {theirs}


def _in_process(pg, monkeypatch):
    from encpipe import pgleftovers

    for name, value in pg.env.items():
        monkeypatch.setenv(name, value)
    return pgleftovers


def test_a_dead_runs_scratch_database_in_use_is_left_alone_and_its_session_kept(pg, monkeypatch):
    pgleftovers = _in_process(pg, monkeypatch)
    dead = "encpipe_restore_20200101T000000Z_21"
    pg.dropdb(dead)
    pg.createdb(dead)
    looker = subprocess.Popen([pg.bin("psql"), "-X", "-q", "-d", dead], env=pg.env, stdin=subprocess.PIPE,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        looker.stdin.write(b"SELECT 1;\n")
        looker.stdin.flush()
        deadline = time.monotonic() + 30
        while pg.psql("SELECT count(*) FROM pg_stat_activity WHERE datname = '%s'" % dead).strip() != "1":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        with pgleftovers.RunLock("postgres", "encpipe_restore_20250101T000000Z_22") as lock:
            lock.take()
            dropped, busy = lock.clean("postgres")
        assert dropped == []
        assert [name for name, _ in busy] == [dead]
        assert "is being accessed by other users" in busy[0][1]
        assert dead in databases(pg)
        assert looker.poll() is None  # its session not ended
        looker.stdin.write(b"SELECT 1;\n")
        looker.stdin.flush()
        time.sleep(0.3)
        assert looker.poll() is None
    finally:
        looker.kill()
        looker.wait()
        pg.dropdb(dead)


def test_a_scratch_database_named_after_this_runs_time_is_not_dropped(pg, monkeypatch):
    pgleftovers = _in_process(pg, monkeypatch)
    older, later = "encpipe_restore_20200101T000000Z_31", "encpipe_restore_20250101T000001Z_32"
    for name in (older, later):
        pg.dropdb(name)
        pg.createdb(name)
    try:
        with pgleftovers.RunLock("postgres", "encpipe_restore_20250101T000000Z_33") as lock:
            lock.take()
            assert lock.clean("postgres") == ([older], [])
        assert later in databases(pg)
    finally:
        for name in (older, later):
            pg.dropdb(name)


def test_a_dead_runs_scratch_database_holding_an_enabled_subscription_is_dropped(pg, monkeypatch):
    pgleftovers = _in_process(pg, monkeypatch)
    dead = "encpipe_restore_20200101T000000Z_41"
    pg.dropdb(dead)
    pg.createdb(dead)
    pg.psql("CREATE SUBSCRIPTION on_s CONNECTION 'dbname=nowhere host=/nonexistent' PUBLICATION p "
            "WITH (connect = false); ALTER SUBSCRIPTION on_s ENABLE;", db=dead)
    try:
        with pgleftovers.RunLock("postgres", "encpipe_restore_20250101T000000Z_42") as lock:
            lock.take()
            assert lock.clean("postgres") == ([dead], [])
        assert dead not in databases(pg)
    finally:
        if dead in databases(pg):
            pg.psql("ALTER SUBSCRIPTION on_s DISABLE; ALTER SUBSCRIPTION on_s SET (slot_name = NONE); "
                    "DROP SUBSCRIPTION on_s;", db=dead)
            pg.dropdb(dead)


def test_a_maintenance_database_without_standard_conforming_strings_reads_a_backslash_name(pg, tools, key_file,
                                                                                         tmp_path):
    """The run's sessions turn standard_conforming_strings on (pgclient.SESSION_SETUP), which
    literal() quotes for: in a session where it is off (`ALTER DATABASE ... SET`, a legacy
    application's), a backslash in a quoted name escapes the next character, and a name
    holding `\\'` would end its literal early. Here DBNAME `gap\\target` exists: read as
    `gaptarget`, it was taken for a new database, and the swap failed."""
    from test_backup_restore import backup, dump, ensure_small, leftover_databases, restore

    maint, target = "scs_maint", "gap\\target"
    source = ensure_small(pg, "edge_source")
    path, _ = backup(pg, tools, str(tmp_path / "b"), source, "--key-file", key_file, "--no-globals")
    for name in (maint, target):
        pg.dropdb(name)
    pg.createdb(maint)
    pg.psql("ALTER DATABASE %s SET standard_conforming_strings = off;" % maint)
    pg.createdb(target)
    try:
        proc = restore(pg, tools, path, target, "--key-file", key_file, "--no-globals", "--maintenance-db", maint,
                       "--drop-old")
        assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
        assert "previous database dropped" in proc.stderr.decode()
        assert dump(pg, target) == dump(pg, source)
        assert leftover_databases(pg) == set()
    finally:
        for name in (maint, target):
            pg.dropdb(name)


def test_a_recorded_setting_of_a_role_the_server_lacks_is_left_out_and_the_rest_restored(empty_cluster, tools,
                                                                                       key_file, tmp_path):
    """`ALTER ROLE r IN DATABASE d SET ...` recorded for a role the server no longer has (dropped
    since, and --no-create-roles): Roles.check says it is left out, and finish_sql's INSERT
    of it selects no row (`... AND role IS NOT NULL`). Without that, the swap wrote a NULL
    setrole, the server refused it, and the whole restore failed at its end."""
    import json
    import os

    from test_backup_restore import BACKUP

    pg, env, directory = empty_cluster, script_env(empty_cluster, tools), str(tmp_path / "b")
    pg.psql("CREATE ROLE gone_r NOLOGIN; CREATE ROLE kept_r NOLOGIN; CREATE DATABASE sets_src")
    pg.psql("CREATE TABLE t (x int); INSERT INTO t VALUES (1)", db="sets_src")
    pg.psql("ALTER ROLE gone_r IN DATABASE sets_src SET work_mem = '8MB';"
            "ALTER ROLE kept_r IN DATABASE sets_src SET work_mem = '9MB';"
            "ALTER DATABASE sets_src SET maintenance_work_mem = '70MB';")
    proc = run([BACKUP, "--dir", directory, "--key-file", key_file, "sets_src"], env)
    assert proc.returncode == 0, proc.stderr.decode()
    path = os.path.join(directory, json.loads(proc.stdout)["filename"])
    pg.psql("DROP ROLE gone_r")
    proc = run([RESTORE, "--key-file", key_file, "--no-create-roles", path, "sets_new"], env)
    assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
    assert ("encpipe-restore: warning: settings for role(s) this server lacks are left out: gone_r"
            in proc.stderr.decode().splitlines())
    assert pg.psql("SELECT x FROM t", db="sets_new") == "1\n"
    assert pg.psql("SELECT coalesce(r.rolname, '-') || ' ' || s.setconfig::text FROM pg_db_role_setting s "
                   "JOIN pg_database d ON d.oid = s.setdatabase LEFT JOIN pg_roles r ON r.oid = s.setrole "
                   "WHERE d.datname = 'sets_new' ORDER BY 1").splitlines() == [
        "- {maintenance_work_mem=70MB}", "kept_r {work_mem=9MB}"]


def test_a_restored_acls_grantees_are_recorded_as_its_dependents(empty_cluster, tools, key_file, tmp_path):
    """The recorded ACL is written in the catalog by the swap, after a GRANT to each role it
    names (pgprops._dependencies_sql): the server records that the database's privileges name
    them, and refuses to drop such a role (DROP OWNED BY, REASSIGN OWNED find it). Without the
    GRANTs, DROP ROLE succeeded and left the role's oid in the restored database's ACL."""
    import json
    import os

    from test_backup_restore import BACKUP

    pg, env, directory = empty_cluster, script_env(empty_cluster, tools), str(tmp_path / "b")
    pg.psql("CREATE ROLE acl_g NOLOGIN; CREATE DATABASE acl_src")
    pg.psql("GRANT CONNECT, CREATE ON DATABASE acl_src TO acl_g")
    proc = run([BACKUP, "--dir", directory, "--key-file", key_file, "acl_src"], env)
    assert proc.returncode == 0, proc.stderr.decode()
    path = os.path.join(directory, json.loads(proc.stdout)["filename"])
    proc = run([RESTORE, "--key-file", key_file, path, "acl_new"], env)
    assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
    assert "acl_g=Cc/" in pg.psql("SELECT datacl::text FROM pg_database WHERE datname = 'acl_new'")
    assert pg.psql("SELECT count(*) FROM pg_shdepend s JOIN pg_database d ON s.classid = 'pg_database'::regclass "
                   "AND s.objid = d.oid WHERE d.datname = 'acl_new' AND s.refobjid = 'acl_g'::regrole "
                   "AND s.deptype = 'a'") == "1\n"
    dropped = pg.psql("DROP ROLE acl_g", check=False)  # refused: the restored database's privileges name it
    assert pg.psql("SELECT count(*) FROM pg_roles WHERE rolname = 'acl_g'") == "1\n", dropped


def test_drop_pre_restore_counts_days_not_hours(pg, tools):
    """--drop-pre-restore-older-than 1 keeps a copy made two hours ago, and drops one made two days ago."""
    from datetime import datetime, timedelta, timezone

    now = datetime.now(timezone.utc)
    recent, old = ("%s_pre_restore_%s" % (TARGET, (now - age).strftime("%Y%m%dT%H%M%SZ"))
                   for age in (timedelta(hours=2), timedelta(days=2)))
    assert _copies_left_by_drop_older_than(pg, tools, "1", [recent, old]) == {recent}


def _holding(pg, user, sql):
    """A psql session of `user` (in postgres) that ran `sql`, a transaction left open."""
    holder = subprocess.Popen([pg.bin("psql"), "-X", "-q", "-At", "-U", user, "-d", "postgres"], env=pg.env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    holder.stdin.write(sql.encode() + b"\nSELECT 'held';\n")
    holder.stdin.flush()
    assert holder.stdout.readline() == b"held\n"
    return holder


@pytest.mark.parametrize("subscription", [False, True], ids=["none", "one"])
def test_a_locked_leftover_named_like_a_scratch_database_cannot_make_the_clean_up_wait_for_ever(
        pg, monkeypatch, subscription):
    """A role with CREATEDB makes a database named like a dead run's scratch database and
    keeps its row locked (an ALTER DATABASE ... RENAME left open). The DROP gives up after
    the lock_timeout; before, drop_scratch then connected to it to look for subscriptions,
    and a new session's start-up waits for that lock with no lock_timeout yet: the restore
    waited for ever. Now the maintenance database is asked first (a superuser's session in
    a database another role owns only when it holds subscriptions), and that connection is
    bounded (connect_timeout)."""
    from encpipe import pgclient, pgcommit

    pgleftovers = _in_process(pg, monkeypatch)
    # the run's lock_timeout (10 s) and connect_timeout (10 s) made short: the waits are the same
    monkeypatch.setattr(pgclient, "SESSION_SETUP",
                        pgclient.SESSION_SETUP.replace("lock_timeout = '10s'", "lock_timeout = '1s'"))
    monkeypatch.setattr(pgcommit, "CONNECT_TIMEOUT", 2)  # libpq's least
    dead = "encpipe_restore_20200101T000000Z_51"
    asked = []
    real_value = pgcommit.value
    monkeypatch.setattr(pgcommit, "value", lambda db, sql: asked.append(db) or real_value(db, sql))
    pg.psql("DROP ROLE IF EXISTS mallory57; CREATE ROLE mallory57 LOGIN CREATEDB;")
    pg.psql('CREATE DATABASE "%s" OWNER mallory57;' % dead)
    if subscription:
        pg.psql("CREATE SUBSCRIPTION held_s CONNECTION 'dbname=nowhere host=/nonexistent' PUBLICATION p "
                "WITH (connect = false)", db=dead)
    holder = _holding(pg, "mallory57", 'BEGIN; ALTER DATABASE "%s" RENAME TO mallory57_x;' % dead)
    result = []

    def clean():
        with pgleftovers.RunLock("postgres", "encpipe_restore_20250101T000000Z_52") as lock:
            lock.take()
            result.append(lock.clean("postgres"))

    thread = threading.Thread(target=clean, daemon=True)
    try:
        thread.start()
        thread.join(90)
        assert result, "the clean-up waited for ever for a leftover another role keeps locked"
        dropped, busy = result[0]
        assert (dropped, [name for name, _ in busy]) == ([], [dead])
        into_it = [db for db in asked if dead in db]
        assert into_it == (["dbname='%s' connect_timeout=2" % dead] if subscription else [])
    finally:
        holder.kill()
        holder.wait()
        if thread.is_alive():
            thread.join(60)
        if subscription and dead in databases(pg):
            pg.psql("ALTER SUBSCRIPTION held_s DISABLE; ALTER SUBSCRIPTION held_s SET (slot_name = NONE); "
                    "DROP SUBSCRIPTION held_s;", db=dead)
        pg.psql('DROP DATABASE IF EXISTS "%s"; DROP ROLE mallory57;' % dead)


def test_a_dead_runs_subscriptions_with_awkward_names_are_dropped_in_a_latin1_database(pg, monkeypatch):
    """Names with quotes, a semicolon and letters beyond ASCII, in a LATIN1 database:
    each subscription dropped by its own name (format's %I), then the database."""
    pgleftovers = _in_process(pg, monkeypatch)
    dead = "encpipe_restore_20200101T000000Z_61"
    pg.psql("CREATE DATABASE \"%s\" ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0;" % dead)
    for name in ['a"b', "c'd; DROP DATABASE postgres", "café ü"]:
        pg.psql("CREATE SUBSCRIPTION \"%s\" CONNECTION 'dbname=nowhere host=/nonexistent' PUBLICATION p "
                "WITH (connect = false)" % name.replace('"', '""'), db=dead)
    with pgleftovers.RunLock("postgres", "encpipe_restore_20250101T000000Z_62") as lock:
        lock.take()
        assert lock.clean("postgres") == ([dead], [])
    assert dead not in databases(pg)
    assert pg.psql("SELECT count(*) FROM pg_subscription").strip() == "0"
