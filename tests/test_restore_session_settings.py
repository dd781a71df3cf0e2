"""A server whose settings are not the defaults (a DBA's review): what the restore's and
the backup's own sessions inherit from `ALTER ROLE ... SET`, `ALTER DATABASE ... SET`
and PGOPTIONS, and what the server's log is given.

- The restore's lock session (pgleftovers.RunLock, pgclient.Session) ran its first
  statements (NO_TIMEOUTS: `... WHERE name IN ('statement_timeout', ...)`, the
  advisory-lock queries) with the search_path the maintenance database, the restoring
  role or PGOPTIONS gave it, not `pg_catalog` alone as every run_sql session: an
  operator `=` (text, text) of a schema ahead of pg_catalog ran as the superuser. The
  owner of the maintenance database may set its search_path and create that schema:
  she made herself a superuser.
- `ALTER DATABASE maint SET role = mallory`, by its owner: the restore acted as her.
- With `log_statement = 'all'` the roles step's `ALTER ROLE ... PASSWORD 'SCRAM-...'`
  (or an md5 hash, which logs in as that role) landed in the server's log.
- A database's `statement_timeout` of a millisecond cancelled NO_TIMEOUTS itself, the
  statement meant to turn it off (pg_dump's plain `SET statement_timeout = 0` first is
  never cancelled): the backup failed where pg_dump alone succeeds.
Held (a guard): template1's and the maintenance database's event triggers do not run.
"""

import json
import subprocess
import time

import pytest

from test_backup_restore import BACKUP, backup, dump, ensure_small, leftover_databases, restore, script_env

MAINT = "mal_maint"

EVIL_OPERATOR = """
CREATE SCHEMA evil;
CREATE TABLE evil.loot (who text);
CREATE FUNCTION evil.eq(text, text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO evil.loot VALUES (current_user);
  IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
    EXECUTE 'ALTER ROLE mallory SUPERUSER';
  END IF;
  RETURN pg_catalog.texteq($1, $2);
END $$;
CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.eq);
"""


def _backup_and_new_maintenance_db(pg, tools, key_file, tmp_path, target):
    """(source, a backup of it): the maintenance database MAINT made anew, mallory's, and no `target`."""
    source = ensure_small(pg, "set_source")
    path, _ = backup(pg, tools, str(tmp_path / "b"), source, "--key-file", key_file)
    pg.dropdb(MAINT)
    pg.dropdb(target)
    pg.psql("CREATE DATABASE %s OWNER mallory;" % MAINT)
    return source, path


@pytest.mark.parametrize("how", ["database owner", "restoring role", "PGOPTIONS"])
def test_no_operator_of_a_schema_ahead_of_pg_catalog_runs_in_the_restores_sessions(pg, tools, key_file, tmp_path,
                                                                                    mallory, how):
    target = "set_target"
    source, path = _backup_and_new_maintenance_db(pg, tools, key_file, tmp_path, target)
    pg.psql(EVIL_OPERATOR, db=MAINT, user="mallory")
    env = {}
    if how == "database owner":  # an owner may set her database's search_path
        pg.psql("ALTER DATABASE %s SET search_path = evil, pg_catalog;" % MAINT, user="mallory")
    elif how == "restoring role":
        pg.psql("DROP ROLE IF EXISTS set_dba; CREATE ROLE set_dba SUPERUSER LOGIN;"
                "ALTER ROLE set_dba SET search_path = evil, pg_catalog;")
        env["PGUSER"] = "set_dba"
    else:
        env["PGOPTIONS"] = "-c search_path=evil,pg_catalog"
    try:
        proc = restore(pg, tools, path, target, "--key-file", key_file, "--maintenance-db", MAINT, env_extra=env)
        assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
        assert pg.psql("SELECT count(*) FROM evil.loot", db=MAINT).strip() == "0"
        assert pg.psql("SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory'").strip() == "f"
        assert dump(pg, target) == dump(pg, source)
        assert leftover_databases(pg) == set()
    finally:
        pg.dropdb(MAINT)
        pg.dropdb(target)
        if how == "restoring role":
            pg.psql("DROP ROLE set_dba;")


def test_a_restore_writes_no_password_hash_into_a_server_log_of_every_statement(pg, empty_cluster, tools, key_file,
                                                                                  tmp_path):
    """pg_dumpall's output piped to psql logs them too; the restore's roles step, a
    superuser's session, turns its statements' logging off (pgroles.QUIET_LOG)."""
    pg.psql("DROP DATABASE IF EXISTS pw_db; DROP ROLE IF EXISTS pw_scram; DROP ROLE IF EXISTS pw_md5;"
            "CREATE ROLE pw_scram LOGIN PASSWORD 'scram secret'; SET password_encryption = 'md5';"
            "CREATE ROLE pw_md5 LOGIN PASSWORD 'md5 secret'; CREATE DATABASE pw_db OWNER pw_scram;"
            "GRANT CONNECT ON DATABASE pw_db TO pw_md5;")
    try:
        hashes = pg.psql("SELECT rolpassword FROM pg_authid WHERE rolname LIKE 'pw\\_%' ORDER BY 1").split()
        path, _ = backup(pg, tools, str(tmp_path / "b"), "pw_db", "--key-file", key_file)
    finally:
        pg.psql("DROP DATABASE pw_db; DROP ROLE pw_scram; DROP ROLE pw_md5;")
    assert len(hashes) == 2
    logging = {"PGOPTIONS": "-c log_statement=all -c log_min_duration_statement=0"}
    proc = restore(empty_cluster, tools, path, "pw_db", "--key-file", key_file, env_extra=logging)
    assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
    assert empty_cluster.psql("SELECT rolpassword FROM pg_authid WHERE rolname LIKE 'pw\\_%' ORDER BY 1").split() \
        == hashes
    with open(empty_cluster.logfile, errors="replace") as f:
        log = f.read()
    assert "CREATE DATABASE" in log  # the log has the restore's statements: not the password hashes
    assert [h for h in hashes if h in log] == []


def test_a_databases_statement_timeout_does_not_cancel_the_statement_that_turns_it_off(pg, tools, key_file,
                                                                                          tmp_path):
    """`ALTER DATABASE src SET statement_timeout` short enough for NO_TIMEOUTS, a scan of
    pg_settings (a millisecond sufficed, by chance; here made certain: pg_settings locked
    by another session until the backup's session waits for it, then for longer than the
    timeout): the backup failed (`canceling statement due to statement timeout`) where
    pg_dump, whose plain `SET statement_timeout = 0` comes first, does not."""
    source = "set_timeout_source"
    pg.dropdb(source)
    pg.createdb(source)
    pg.psql("CREATE TABLE t (x int); INSERT INTO t VALUES (1);", db=source)
    pg.psql("ALTER DATABASE %s SET statement_timeout = '300ms';" % source)
    holder = subprocess.Popen([pg.bin("psql"), "-X", "-q", "-At", "-d", source], env=pg.env, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        holder.stdin.write(b"SET statement_timeout = 0; BEGIN; LOCK TABLE pg_catalog.pg_settings IN ACCESS EXCLUSIVE "
                           b"MODE; SELECT 'held';\n")
        holder.stdin.flush()
        assert holder.stdout.readline() == b"held\n"
        proc = subprocess.Popen([BACKUP, "--dir", str(tmp_path / "b"), "--key-file", key_file, source],
                                env=script_env(pg, tools), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        waiting = "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'pg_catalog.pg_settings'::regclass"
        deadline = time.monotonic() + 60
        while proc.poll() is None and pg.psql(waiting, db=source).strip() == "0":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(1)  # more than the timeout: a session that had it would have been cancelled
        holder.stdin.write(b"COMMIT;\n")
        holder.stdin.flush()
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
        assert json.loads(out)["database"] == source
    finally:
        holder.kill()
        holder.wait()
        pg.dropdb(source)


EVENT_LOG = """
CREATE TABLE public.evt_log (db text, who text, tag text);
GRANT ALL ON public.evt_log TO PUBLIC;
CREATE FUNCTION public.evt_rec() RETURNS event_trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO public.evt_log VALUES (pg_catalog.current_database(), current_user, tg_tag); END $$;
CREATE EVENT TRIGGER set_evt_end ON ddl_command_end EXECUTE FUNCTION public.evt_rec();
"""


def test_event_triggers_of_template1_and_the_maintenance_database_do_not_run_during_a_restore(
        pg, empty_cluster, tools, key_file, tmp_path):
    """Holds (stop 57): the scratch database is made from template0, so template1's event
    triggers are not in it; and the restore's statements in the maintenance database act on
    shared objects (databases, roles), for which no event trigger fires. (createdb and
    `psql < dump` would have run template1's, as the restoring superuser, for each DDL.)"""
    path, _ = backup(pg, tools, str(tmp_path / "b"), ensure_small(pg, "set_source"), "--key-file", key_file)
    for db in ("template1", "postgres"):
        empty_cluster.psql(EVENT_LOG, db=db)
    try:
        proc = restore(empty_cluster, tools, path, "evt_target", "--key-file", key_file)
        assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
        assert empty_cluster.psql("SELECT count(*) FROM public.evt_log").strip() == "0"
        assert empty_cluster.psql("SELECT count(*) FROM pg_event_trigger", db="evt_target").strip() == "0"
        assert empty_cluster.psql("SELECT count(*) FROM t", db="evt_target").strip() == "50"
    finally:
        empty_cluster.dropdb("evt_target")
        for db in ("template1", "postgres"):
            empty_cluster.psql("DROP EVENT TRIGGER set_evt_end; DROP FUNCTION public.evt_rec(); "
                               "DROP TABLE public.evt_log;", db=db)


def test_the_maintenance_databases_owner_cannot_make_the_restore_act_as_her(pg, tools, key_file, tmp_path, mallory):
    """`ALTER DATABASE maint SET role = mallory`, by the owner of the maintenance database:
    every session of the restore there acted as mallory (a superuser is a member of every
    role). With --no-globals (or a recorded owner that is hers) the scratch database was
    created by her, hers while the superuser's dump loaded into it (she could connect and
    put objects into it, which the restored database kept: pgprops.private_sql keeps any
    such role out), and the restored database was hers. A role that the login role or
    PGOPTIONS chose (tests/test_restore_swap_role.py) is the operator's: not this one."""
    target = "set_role_target"
    source, path = _backup_and_new_maintenance_db(pg, tools, key_file, tmp_path, target)
    pg.psql("ALTER ROLE mallory CREATEDB;")
    pg.psql("ALTER DATABASE %s SET role = 'mallory';" % MAINT, user="mallory")
    try:
        proc = restore(pg, tools, path, target, "--key-file", key_file, "--maintenance-db", MAINT, "--no-globals")
        owners = pg.psql("SELECT datname, pg_get_userbyid(datdba) FROM pg_database WHERE datname NOT IN "
                         "('postgres', 'template0', 'template1') AND datdba = 'mallory'::regrole ORDER BY 1")
        assert owners == "%s|mallory\n" % MAINT, proc.stderr.decode()
        assert b"will belong to mallory" not in proc.stderr
        assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()  # as the login role
        assert dump(pg, target) == dump(pg, source)
        assert leftover_databases(pg) == set()
    finally:
        pg.dropdb(MAINT)
        pg.dropdb(target)


LONG = "m" + "a" * 62  # 63 bytes: NAMEDATALEN - 1


def test_a_maintenance_database_role_longer_than_a_name_is_turned_off_too(pg, tools, key_file, tmp_path, mallory):
    """The server acts on a `role` setting cut to a name's 63 bytes, and keeps it whole: the
    owner of a role of 63 bytes set `role = '<her name>EXTRA'`, which a comparison of the
    stored value with CURRENT_USER never matched, and the restore acted as her."""
    target = "set_long_target"
    source, path = _backup_and_new_maintenance_db(pg, tools, key_file, tmp_path, target)
    pg.psql('DROP ROLE IF EXISTS "%s"; CREATE ROLE "%s" LOGIN CREATEDB; ALTER DATABASE %s OWNER TO "%s";'
            % (LONG, LONG, MAINT, LONG))
    try:
        pg.psql("ALTER DATABASE %s SET role = '%sEXTRA';" % (MAINT, LONG), db=MAINT, user=LONG)
        proc = restore(pg, tools, path, target, "--key-file", key_file, "--maintenance-db", MAINT, "--no-globals")
        assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
        assert LONG.encode() not in proc.stderr, proc.stderr.decode()  # `will belong to maaa...`
        assert pg.psql("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '%s'" % target).strip() \
            == pg.user
        assert dump(pg, target) == dump(pg, source)
        assert leftover_databases(pg) == set()
    finally:
        pg.dropdb(target)
        pg.dropdb(MAINT)
        pg.psql('DROP ROLE "%s";' % LONG)


def test_a_role_pgoptions_gives_is_kept_when_the_maintenance_database_sets_the_same(pg, tools, key_file, tmp_path,
                                                                                     mallory):
    """The owner of the maintenance database may set any role's name (`permission will be
    denied`, a NOTICE): setting the one the operator's PGOPTIONS gives turned the operator's
    own choice off."""
    target, acting = "set_opt_target", "set_acting"
    _, path = _backup_and_new_maintenance_db(pg, tools, key_file, tmp_path, target)
    pg.psql("DROP ROLE IF EXISTS %s; CREATE ROLE %s SUPERUSER NOLOGIN;" % (acting, acting))
    try:
        pg.psql("ALTER DATABASE %s SET role = %s;" % (MAINT, acting), db=MAINT, user="mallory")
        proc = restore(pg, tools, path, target, "--key-file", key_file, "--maintenance-db", MAINT, "--no-globals",
                       env_extra={"PGOPTIONS": "-c role=%s" % acting})
        assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
        assert pg.psql("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '%s'" % target).strip() \
            == acting
    finally:
        pg.dropdb(target)
        pg.dropdb(MAINT)
        pg.psql("DROP ROLE %s;" % acting)
