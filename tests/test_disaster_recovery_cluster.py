"""A whole cluster, lost, restored database by database onto a new, empty server.

Cluster A holds several databases (one whose name starts with `-`, one with quotes,
spaces, mixed case and non-ASCII, a LATIN1 one) with what a DBA counts on: roles with
SCRAM and md5 verifiers, attributes and memberships granted by another role, extensions,
event triggers, publications, materialized views populated or not, sequences, large
objects with owners, ACLs and comments, column grants, default privileges, row level
security, foreign servers with user mappings, a non-default tablespace. Each database's
newest backup is restored onto B as README's "Disaster recovery" says, and the two
clusters' pg_dumpall must agree but for what README says stays behind.
"""

import json
import os
import re
import subprocess

import pytest

from pgcluster import PgCluster
from encpipe.backup import label
from encpipe.pgfetch import globals_name
from test_backup_restore import BACKUP, RESTORE, encpipe, leftover_databases, run, script_env
from test_restore_dba import _tablespace

DATABASES = ("shop", "-dash db", 'Odd "Q" Db ü', "latin")

_ROLES_SQL = """
CREATE ROLE dba SUPERUSER LOGIN PASSWORD 'dba pw';
CREATE ROLE app_owner LOGIN CREATEDB PASSWORD 'owner secret' VALID UNTIL '2031-01-01 00:00:00+00';
CREATE ROLE app_writer NOLOGIN NOINHERIT;
CREATE ROLE app_reader LOGIN PASSWORD 'reader secret' CONNECTION LIMIT 7 IN ROLE app_writer;
CREATE ROLE repl LOGIN REPLICATION BYPASSRLS PASSWORD 'r';
CREATE ROLE mgr CREATEROLE LOGIN;
SET password_encryption = 'md5';
CREATE ROLE legacy_md5 LOGIN PASSWORD 'old md5';
RESET password_encryption;
CREATE ROLE "Weird ""Role"" ü" LOGIN;
GRANT app_writer TO mgr WITH ADMIN OPTION;
SET ROLE mgr;
GRANT app_writer TO "Weird ""Role"" ü";
RESET ROLE;
GRANT pg_read_all_data TO app_reader;
GRANT pg_monitor TO repl WITH ADMIN OPTION;
ALTER ROLE app_reader SET work_mem = '12MB';
ALTER ROLE app_reader SET search_path = "$user", app;
ALTER ROLE ALL SET statement_timeout = '77s';
COMMENT ON ROLE "Weird ""Role"" ü" IS 'weird ü';
CREATE DATABASE shop OWNER app_owner TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C.utf8' LC_CTYPE 'C.utf8'
    CONNECTION LIMIT 50 TABLESPACE ts_fast;
CREATE DATABASE "Odd ""Q"" Db ü" OWNER "Weird ""Role"" ü";
CREATE DATABASE "-dash db" OWNER app_owner;
CREATE DATABASE latin OWNER app_owner TEMPLATE template0 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C';
GRANT CREATE ON DATABASE "Odd ""Q"" Db ü" TO app_owner;
REVOKE CONNECT, TEMPORARY ON DATABASE shop FROM PUBLIC;
GRANT CONNECT ON DATABASE shop TO app_reader;
GRANT CREATE, TEMPORARY ON DATABASE shop TO app_writer WITH GRANT OPTION;
ALTER DATABASE shop SET search_path = app, public;
ALTER ROLE app_reader IN DATABASE shop SET statement_timeout = '5s';
ALTER ROLE ALL IN DATABASE latin SET client_min_messages = 'warning';
COMMENT ON DATABASE "-dash db" IS 'dash';
GRANT CREATE ON TABLESPACE ts_fast TO app_owner;
COMMENT ON TABLESPACE ts_fast IS 'fast disk';
ALTER TABLESPACE ts_fast OWNER TO mgr;
ALTER TABLESPACE ts_fast SET (random_page_cost = 1.5);
COMMENT ON DATABASE "Odd ""Q"" Db ü" IS 'odd ü';
"""

_CONTENT_SQL = """
SET client_encoding = 'UTF8';
CREATE SCHEMA ext;
CREATE EXTENSION citext SCHEMA ext;
CREATE EXTENSION hstore SCHEMA ext;
CREATE EXTENSION pgcrypto SCHEMA ext;
CREATE EXTENSION pg_trgm SCHEMA ext;
CREATE EXTENSION ltree SCHEMA ext;
CREATE EXTENSION postgres_fdw;
CREATE EXTENSION insert_username;
GRANT USAGE ON SCHEMA ext TO PUBLIC;
CREATE SERVER remote_pg FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host 'elsewhere');
CREATE USER MAPPING FOR app_owner SERVER remote_pg OPTIONS (password 'fdw secret');
GRANT USAGE ON FOREIGN SERVER remote_pg TO app_owner;
CREATE FUNCTION public.evt_fn() RETURNS event_trigger LANGUAGE plpgsql AS $$BEGIN NULL; END$$;
CREATE EVENT TRIGGER evt_ddl ON ddl_command_end WHEN TAG IN ('CREATE TABLE') EXECUTE FUNCTION public.evt_fn();
CREATE EVENT TRIGGER evt_off ON sql_drop EXECUTE FUNCTION public.evt_fn();
ALTER EVENT TRIGGER evt_off DISABLE;
ALTER SCHEMA public OWNER TO app_owner;
COMMENT ON SCHEMA public IS 'public, commented';
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO PUBLIC;
ALTER DEFAULT PRIVILEGES FOR ROLE app_owner REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
SET ROLE app_owner;
CREATE SCHEMA app;
ALTER DEFAULT PRIVILEGES IN SCHEMA app GRANT SELECT, USAGE ON SEQUENCES TO app_reader;
GRANT USAGE ON SCHEMA app TO app_reader, app_writer;
CREATE TABLE app.accounts (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, owner_name text, note ext.citext);
INSERT INTO app.accounts (owner_name, note) SELECT 'o' || g % 3, 'Nö' || g FROM generate_series(1, 100) g;
ALTER TABLE app.accounts ENABLE ROW LEVEL SECURITY;
ALTER TABLE app.accounts FORCE ROW LEVEL SECURITY;
CREATE POLICY reader_sees_own ON app.accounts FOR SELECT TO app_reader USING (owner_name = current_user);
CREATE POLICY writers_restrict ON app.accounts AS RESTRICTIVE FOR INSERT TO app_writer WITH CHECK (id > 0);
GRANT SELECT (id, owner_name), UPDATE (note) ON app.accounts TO app_writer;
CREATE SEQUENCE app.counter START 10 INCREMENT 5;
SELECT setval('app.counter', 12345);
CREATE SEQUENCE app.unused_seq;
SELECT setval('app.unused_seq', 42, false);
GRANT USAGE ON SEQUENCE app.counter TO app_writer;
CREATE TABLE app.spaced (x int) TABLESPACE ts_fast;
INSERT INTO app.spaced SELECT generate_series(1, 10);
CREATE TABLE app.parted (k int, v text) PARTITION BY RANGE (k);
CREATE TABLE app.parted_1 PARTITION OF app.parted FOR VALUES FROM (0) TO (100);
INSERT INTO app.parted VALUES (1, 'a'), (50, 'b');
CREATE MATERIALIZED VIEW app.mv_full AS SELECT count(*) AS n FROM app.parted;
CREATE MATERIALIZED VIEW app.mv_empty AS SELECT k FROM app.parted WITH NO DATA;
SELECT lo_from_bytea(424242, '\\x6c6f20c39f'::bytea);
SELECT lo_from_bytea(424243, 'second'::bytea);
GRANT SELECT, UPDATE ON LARGE OBJECT 424242 TO app_reader;
COMMENT ON LARGE OBJECT 424243 IS 'lo comment';
RESET ROLE;
SELECT lo_from_bytea(500000, 'a superuser''s'::bytea);
ALTER LARGE OBJECT 500000 OWNER TO app_reader;
CREATE PUBLICATION pub_some FOR TABLE app.accounts, app.parted WITH (publish = 'insert', publish_via_partition_root);
CREATE PUBLICATION pub_schema FOR TABLES IN SCHEMA app;
ALTER PUBLICATION pub_some OWNER TO app_owner;
CREATE TABLE public.trig (id int, who text);
CREATE TRIGGER t_user BEFORE INSERT ON public.trig FOR EACH ROW EXECUTE FUNCTION insert_username(who);
"""

# what no pg_dumpall line shows: a sequence's state, a materialized view's
_STATE_SQL = ("SELECT sequencename, last_value FROM pg_sequences ORDER BY 1; "
              "SELECT matviewname, ispopulated FROM pg_matviews ORDER BY 1; "
              "SELECT oid, pg_get_userbyid(lomowner), lomacl FROM pg_largeobject_metadata ORDER BY 1")


def dumpall(cluster):
    """pg_dumpall (UTF8), less the random \\restrict key lines and the tablespace's location."""
    text = subprocess.run([cluster.bin("pg_dumpall"), "-E", "UTF8"], env=cluster.env, capture_output=True,
                          check=True).stdout.decode()
    return [re.sub(r"^(CREATE TABLESPACE ts_fast OWNER \w+) LOCATION '[^']*';$", r"\1", line)
            for line in text.splitlines() if not line.startswith(("\\restrict ", "\\unrestrict "))]


def state(cluster):
    return [cluster.psql("SET client_encoding = 'UTF8'; " + _STATE_SQL, db=db) for db in DATABASES]


def restore_argv(key_file, path, db, *options):
    """encpipe-restore as README says: a DBNAME that starts with `-` after `--`."""
    return [RESTORE, "--key-file", key_file, *options, "--", path, db]


FORMATS = {"custom": ["--format", "custom"], "plain": ["--format", "plain"]}


@pytest.fixture(scope="module")
def lost_cluster(tools, key_file, tmp_path_factory):
    """Cluster A, built once, backed up database by database in each format (a
    directory of its own each), then gone: {format: (directory, {db: path})},
    its pg_dumpall and its state."""
    backups = {}
    with PgCluster() as old:
        _tablespace(old, "ts_fast")
        old.psql(_ROLES_SQL)
        for db in DATABASES:
            old.psql(_CONTENT_SQL, db=db)
        before, before_state = dumpall(old), state(old)
        assert old.psql("SELECT setconfig FROM pg_db_role_setting WHERE setrole = 0 AND setdatabase = 0") == \
            "{statement_timeout=77s}\n"
        for name, fmt in FORMATS.items():
            directory, paths = str(tmp_path_factory.mktemp(name) / "b"), {}
            for db in DATABASES:
                proc = run([BACKUP, "--dir", directory, *fmt, "--key-file", key_file, "--", db],
                           script_env(old, tools))
                assert proc.returncode == 0, proc.stderr.decode()
                paths[db] = os.path.join(directory, json.loads(proc.stdout)["filename"])
            backups[name] = directory, paths
    return backups, before, before_state


@pytest.mark.parametrize("name", list(FORMATS))
@pytest.mark.slow
def test_a_lost_cluster_comes_back_database_by_database(tools, key_file, lost_cluster, name):
    fmt = FORMATS[name]
    backups, before, before_state = lost_cluster
    directory, paths = backups[name]
    with PgCluster(own_initdb=True) as new:  # a new server: its own initdb, its own system identifier
        _tablespace(new, "ts_fast")  # first, as README says
        for db in DATABASES:
            proc = run(restore_argv(key_file, paths[db], db), script_env(new, tools))
            assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
            assert ("created roles: " in proc.stderr.decode()) == (db == DATABASES[0])
            assert "restored %s into new database %s\n" % (paths[db], db) in proc.stderr.decode()
        assert dumpall(new) != before  # the tablespace's owner, privileges, comment, options: not restored
        # README's step 4: the owner CREATE TABLESPACE names, then the other lines of the tablespace
        lines = encpipe(["open", "--key-file", key_file, globals_name(paths["shop"])], check=True).stdout.decode()
        owner = re.search(r"^CREATE TABLESPACE ts_fast OWNER (\w+) ", lines, re.M)[1]
        run_after = [line for line in lines.splitlines()
                     if re.match(r"(GRANT|REVOKE|COMMENT|ALTER) .*\bTABLESPACE ts_fast\b", line)]
        new.psql("\n".join(["ALTER TABLESPACE ts_fast OWNER TO %s;" % owner] + run_after))
        assert dumpall(new) == before
        assert state(new) == before_state
        # as README says, what pg_dumpall leaves out: the settings of every role in every database
        assert new.psql("SELECT count(*) FROM pg_db_role_setting WHERE setrole = 0 AND setdatabase = 0") == "0\n"
        # again, each in place: nothing changes but the copies it keeps
        for db in DATABASES:
            proc = run(restore_argv(key_file, paths[db], db, "--drop-old"), script_env(new, tools))
            assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
            assert b"warning" not in proc.stderr
        assert dumpall(new) == before
        assert leftover_databases(new) == set()
        # README's step 5: the lost server's location is the new one's once taken over, on purpose
        backup = [BACKUP, "--dir", directory, *fmt, "--key-file", key_file]
        proc = run([*backup, "shop"], script_env(new, tools))
        assert (proc.returncode, proc.stdout) == (73, b"") and b"run once with --new-cluster" in proc.stderr
        proc = run([*backup, "--new-cluster", "shop"], script_env(new, tools))
        assert proc.returncode == 0, proc.stderr.decode()
        assert os.path.exists(paths["shop"])  # the lost server's backups stay


_DB_SQL = ("SELECT pg_get_userbyid(datdba), datacl, datconnlimit, shobj_description(oid, 'pg_database'), "
           "(SELECT setconfig FROM pg_db_role_setting WHERE setdatabase = d.oid AND setrole = 0) "
           "FROM pg_database d WHERE datname = 'postgres'")


def test_the_postgres_database_a_new_server_has_keeps_its_own_properties_and_says_so(tools, key_file, tmp_path):
    """Every new server has a `postgres` database, so its backup is restored in place there,
    and kept the new server's properties: PUBLIC could connect again where the lost server had
    revoked it, the owner and settings were lost, and nothing said so. Now a warning names the
    recorded properties not applied; renamed first, as README says, it gets them."""
    with PgCluster() as old:
        old.psql("CREATE ROLE boss LOGIN; ALTER DATABASE postgres OWNER TO boss; COMMENT ON DATABASE postgres IS "
                 "'main'; ALTER DATABASE postgres SET work_mem = '9MB'; REVOKE ALL ON DATABASE postgres FROM PUBLIC; "
                 "GRANT CONNECT ON DATABASE postgres TO boss; CREATE TABLE kept (x int); INSERT INTO kept VALUES (7);")
        before = old.psql(_DB_SQL)
        proc = run([BACKUP, "--dir", str(tmp_path / "b"), "--key-file", key_file, "postgres"], script_env(old, tools))
        assert proc.returncode == 0, proc.stderr.decode()
        path = os.path.join(str(tmp_path / "b"), json.loads(proc.stdout)["filename"])
    assert before == "boss|{boss=CTc/boss}|-1|main|{work_mem=9MB}\n"
    with PgCluster() as new:
        fresh = new.psql(_DB_SQL)
        env = script_env(new, tools)
        proc = run(restore_argv(key_file, path, "postgres", "--maintenance-db", "template1"), env)
        assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
        assert [line for line in proc.stderr.decode().splitlines() if "warning" in line] == [
            "encpipe-restore: warning: postgres exists: restored in place, it keeps its own owner, privileges, "
            "settings, comment; the globals file records others, not applied (rename postgres first to have them)"]
        assert new.psql(_DB_SQL, db="template1") == fresh
        assert new.psql("SELECT x FROM kept") == "7\n"

        new.psql("ALTER DATABASE postgres RENAME TO postgres_empty", db="template1")
        proc = run(restore_argv(key_file, path, "postgres", "--maintenance-db", "template1"), env)
        assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
        assert b"warning" not in proc.stderr
        assert new.psql(_DB_SQL, db="template1") == before
        proc = run(restore_argv(key_file, path, "postgres", "--maintenance-db", "template1", "--drop-old"), env)
        assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
        assert b"warning" not in proc.stderr  # in place, the same properties
        assert new.psql(_DB_SQL, db="template1") == before


def test_properties_read_on_two_servers_are_compared_as_sets():
    """A server lists settings by its roles' oids, and may list an ACL's items in another
    order: the same properties read on another server are not taken for others."""
    from encpipe import pgprops
    live = {"owner": "o", "acl": ["o=CTc/o", "=c/o"], "connlimit": -1, "encoding": "UTF8", "collate": "C",
            "ctype": "C", "tablespace": "pg_default", "comment": None,
            "settings": [{"role": "b", "config": ["work_mem=1MB"]}, {"role": None, "config": ["a=1", "b=2"]}]}
    recorded = dict(live, acl=["=c/o", "o=CTc/o"], settings=[{"role": None, "config": ["b=2", "a=1"]},
                                                              {"role": "b", "config": ["work_mem=1MB"]}])
    assert pgprops.unapplied("db", "me", False, live, recorded) == []
    assert pgprops.unapplied("db", "me", False, live, {k: v for k, v in recorded.items() if k != "tablespace"}) == []
    assert pgprops.unapplied("db", "me", False, live, None) == []
    assert pgprops.unapplied("db", "me", False, live, dict(recorded, comment="x", connlimit=3)) == [
        "db exists: restored in place, it keeps its own connection limit, comment; the globals file records "
        "others, not applied (rename db first to have them)"]


def test_a_change_of_locale_provider_is_said_and_a_default_acl_is_no_other():
    """An ICU database restored in place over a libc one keeps the libc provider: its
    sort order changes, and nothing said so. A recorded NULL ACL and the same privileges
    written out (as a role that is no superuser gives them, by grants) are not others.
    Each server version's columns of the provider are read alike (15: daticulocale; 17:
    datlocale)."""
    from encpipe import pgprops
    base = {"owner": "o", "acl": None, "connlimit": -1, "encoding": "UTF8", "collate": "C.UTF-8",
            "ctype": "C.UTF-8", "tablespace": "pg_default", "comment": None, "settings": []}
    icu15 = dict(base, row={"datlocprovider": "i", "daticulocale": "de-DE"})
    icu17 = dict(base, row={"datlocprovider": "i", "datlocale": "de-DE", "daticurules": None})
    libc = dict(base, row={"datlocprovider": "c", "daticulocale": None})
    assert pgprops.unapplied("db", "me", False, libc, icu15) == [
        "db exists: restored in place, it keeps its own locale provider; the globals file records others, not "
        "applied (rename db first to have them)"]
    assert pgprops.unapplied("db", "me", False, icu17, icu15) == []
    assert pgprops.unapplied("db", "me", False, libc, base) == []  # recorded before the row was: not compared
    granted = dict(libc, acl=["o=CTc/o", "=Tc/o"])
    assert pgprops.unapplied("db", "me", False, granted, libc) == []
    assert pgprops.unapplied("db", "me", False, dict(granted, acl=["o=CTc/o"]), libc) == [
        "db exists: restored in place, it keeps its own privileges; the globals file records others, not applied "
        "(rename db first to have them)"]
    odd = dict(libc, owner='a "b"', acl=['=Tc/"a ""b"""', '"a ""b"""=CTc/"a ""b"""'])
    assert pgprops.unapplied("db", "me", False, odd, dict(libc, owner='a "b"')) == []


def test_a_dump_that_fails_for_a_missing_tablespace_says_so_in_its_hint(tools, key_file, tmp_path, empty_cluster):
    """A new server without the lost one's tablespace: the restore of a plain dump that names
    it fails (1, nothing left), and its hint names the tablespace and the way out (before, the
    hint spoke of SQLSTATE codes only, the cause a warning among psql's lines above)."""
    with PgCluster() as old:
        _tablespace(old, "ts_fast")
        old.createdb("spaced")
        old.psql("CREATE TABLE t (x int) TABLESPACE ts_fast; INSERT INTO t VALUES (1)", db="spaced")
        proc = run([BACKUP, "--dir", str(tmp_path / "b"), "--key-file", key_file, "spaced"], script_env(old, tools))
        assert proc.returncode == 0, proc.stderr.decode()
        path = os.path.join(str(tmp_path / "b"), json.loads(proc.stdout)["filename"])
    new = empty_cluster
    databases = new.psql("SELECT datname FROM pg_database ORDER BY 1")
    proc = run(restore_argv(key_file, path, "spaced"), script_env(new, tools))
    assert (proc.returncode, proc.stdout) == (1, b"")
    lines = proc.stderr.decode().splitlines()
    assert lines[0] == "encpipe-restore: warning: tablespaces this server lacks are not created: ts_fast"
    assert lines[-2:] == [
        "encpipe-restore: error: restoring %s failed; database spaced was not created" % path,
        "encpipe-restore: hint: this server lacks tablespace(s) ts_fast, which a dump that names them needs: "
        "create them first (README: Disaster recovery), or restore a custom archive with -- --no-tablespaces"]
    assert new.psql("SELECT datname FROM pg_database ORDER BY 1") == databases
    # psql's whole messages, which name the tablespace: the same hint, after them
    proc = run([RESTORE, "--key-file", key_file, path, "spaced", "--", "-v", "VERBOSITY=default"],
               script_env(new, tools))
    assert (proc.returncode, proc.stdout) == (1, b"")
    lines = proc.stderr.decode().splitlines()
    assert 'DETAIL:  Tablespace "ts_fast" does not exist.' in lines
    assert lines[-1] == "encpipe-restore: hint: this server lacks tablespace(s) ts_fast, which a dump that names " \
        "them needs: create them first (README: Disaster recovery), or restore a custom archive with -- " \
        "--no-tablespaces"
    assert new.psql("SELECT datname FROM pg_database ORDER BY 1") == databases


def test_a_dump_that_fails_for_another_reason_keeps_the_usual_hint(tools, key_file, tmp_path, empty_cluster):
    """The server lacks the globals file's tablespace, but the dump fails for another
    reason (here a division by zero, 22012): the hint is the usual one, which says how to
    see psql's messages. Before, any failed restore got the tablespace hint."""
    with PgCluster() as old:
        _tablespace(old, "ts_fast")
        old.createdb("plainer")
        proc = run([BACKUP, "--dir", str(tmp_path / "b"), "--key-file", key_file, "plainer"], script_env(old, tools))
        assert proc.returncode == 0, proc.stderr.decode()
        backup = os.path.join(str(tmp_path / "b"), json.loads(proc.stdout)["filename"])
    failing = tmp_path / "b" / os.path.basename(backup)  # in its place, as its run's globals file's dump
    stamp = re.search(r"_([0-9]{8}T[0-9]{6}Z)\.", failing.name)[1]  # labelled as its run labels it
    failing.write_bytes(encpipe(["seal", "--key-file", key_file], input=label.prefix("none", "plainer", stamp) +
                                b"CREATE TABLE t (x integer);\nSELECT 1/0;\n").stdout)
    new = empty_cluster
    databases = new.psql("SELECT datname FROM pg_database ORDER BY 1")
    proc = run(restore_argv(key_file, str(failing), "plainer"), script_env(new, tools))
    assert (proc.returncode, proc.stdout) == (1, b"")
    lines = proc.stderr.decode().splitlines()
    assert lines[0] == "encpipe-restore: warning: tablespaces this server lacks are not created: ts_fast"
    assert [line for line in lines if line.endswith("ERROR:  22012")]  # psql's, as it wrote it
    assert lines[-2:] == [
        "encpipe-restore: error: restoring %s failed; database plainer was not created" % failing,
        "encpipe-restore: hint: psql's errors above are SQLSTATE codes and lines of the dump: its messages may "
        "quote the dump's data; to see them, add -- -v VERBOSITY=default"]
    assert new.psql("SELECT datname FROM pg_database ORDER BY 1") == databases
