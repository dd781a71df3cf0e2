"""A backup restores on an empty server with its roles, ownership, grants and settings.

Cluster A holds a database that uses what pg_dump alone leaves out: an owner
role, REVOKE CONNECT FROM PUBLIC, ALTER DATABASE ... SET, a per-role setting in
the database, a comment, pgcrypto and hstore, large objects with grants, row
level security policies, default privileges, a function whose EXECUTE moved.
It is backed up with encpipe-backup and restored with encpipe-restore on a
freshly initdb'd cluster B, and in place on A.
"""

import json
import os
import re
import subprocess
import threading

import pytest

from pgcluster import PgCluster, PgClusterError
from test_backup_restore import (
    BACKUP,
    backup,
    dump,
    encpipe,
    leftover_databases,
    RESTORE,
    restore,
    run,
    script_env,
)

DR_DB = "Ärger db"
ROLES = ("app_owner", "app_reader", "app_writer", "no_connect", "fn_runner")

_ROLES_SQL = """
CREATE ROLE app_owner LOGIN PASSWORD 'owner secret';
CREATE ROLE app_writer NOLOGIN;
CREATE ROLE app_reader LOGIN PASSWORD 'reader secret' CONNECTION LIMIT 7 IN ROLE app_writer;
CREATE ROLE no_connect LOGIN PASSWORD 'no connect';
CREATE ROLE fn_runner NOLOGIN;
ALTER ROLE app_reader SET work_mem = '12MB';
COMMENT ON ROLE app_owner IS 'owns the app, it''s said';
CREATE DATABASE "Ärger db" OWNER app_owner TEMPLATE template0 LC_COLLATE 'C.utf8' LC_CTYPE 'C.utf8'
    CONNECTION LIMIT 50;
REVOKE CONNECT ON DATABASE "Ärger db" FROM PUBLIC;
GRANT CONNECT ON DATABASE "Ärger db" TO app_reader;
ALTER DATABASE "Ärger db" SET search_path = app, public;
ALTER ROLE app_reader IN DATABASE "Ärger db" SET statement_timeout = '5s';
COMMENT ON DATABASE "Ärger db" IS 'Ärger: a database with a comment';
"""

_CONTENT_SQL = """
CREATE EXTENSION pgcrypto;
CREATE EXTENSION hstore;
SET ROLE app_owner;
CREATE EXTENSION citext;
CREATE SCHEMA app;
ALTER DEFAULT PRIVILEGES IN SCHEMA app GRANT SELECT ON TABLES TO app_reader;
CREATE TABLE app.accounts (id int PRIMARY KEY, owner_name text, secret bytea, attrs hstore);
INSERT INTO app.accounts SELECT g, CASE WHEN g % 2 = 0 THEN 'app_reader' ELSE 'someone' END,
       public.digest('secret ' || g, 'sha256'), public.hstore('k', g::text) FROM generate_series(1, 200) g;
ALTER TABLE app.accounts ENABLE ROW LEVEL SECURITY;
CREATE POLICY reader_sees_own ON app.accounts FOR SELECT TO app_reader USING (owner_name = current_user);
GRANT USAGE ON SCHEMA app TO app_reader;
CREATE TABLE app.big (id int, filler text);
INSERT INTO app.big SELECT g, repeat('x', 100) FROM generate_series(1, 5000) g;
CREATE FUNCTION app.answer() RETURNS int LANGUAGE sql AS 'SELECT 42';
REVOKE EXECUTE ON FUNCTION app.answer() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.answer() TO fn_runner;
SELECT lo_from_bytea(424242, convert_to('a large object, ß', 'UTF8'));
GRANT SELECT ON LARGE OBJECT 424242 TO app_reader;
"""

ROLE_SQL = ("SELECT rolname, rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, rolconnlimit, "
            "rolpassword, (SELECT setconfig FROM pg_db_role_setting WHERE setrole = a.oid AND setdatabase = 0), "
            "shobj_description(oid, 'pg_authid') FROM pg_authid a "
            "WHERE rolname IN (%s) ORDER BY 1" % ", ".join("'%s'" % r for r in ROLES))
MEMBER_SQL = ("SELECT r.rolname, m.rolname, g.rolname, a.admin_option FROM pg_auth_members a "
              "JOIN pg_roles r ON r.oid = a.roleid JOIN pg_roles m ON m.oid = a.member "
              "JOIN pg_roles g ON g.oid = a.grantor ORDER BY 1, 2")
DB_SQL = ("SELECT pg_get_userbyid(datdba), datacl, pg_encoding_to_char(encoding), datcollate, datctype, "
          "datconnlimit, datallowconn, shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = '%s'")
SHDEPEND_SQL = ("SELECT s.refobjid::regrole, s.deptype FROM pg_shdepend s JOIN pg_database d ON d.oid = s.objid "
                "WHERE s.classid = 'pg_database'::regclass AND d.datname = '%s' ORDER BY 1, 2")
SETTINGS_SQL = ("SELECT coalesce(r.rolname, '-'), s.setconfig FROM pg_db_role_setting s "
                "JOIN pg_database d ON d.oid = s.setdatabase LEFT JOIN pg_roles r ON r.oid = s.setrole "
                "WHERE d.datname = '%s' ORDER BY 1")


def make_awkward_dr_database(cluster):
    cluster.psql(_ROLES_SQL)
    cluster.psql(_CONTENT_SQL, db=DR_DB)


def snapshot(cluster, db=DR_DB):
    """Everything acceptance 1 compares: the dump, the roles, the database's properties."""
    return {
        "dump": dump(cluster, db),
        "roles": cluster.psql(ROLE_SQL),
        "members": cluster.psql(MEMBER_SQL),
        "database": cluster.psql(DB_SQL % db),
        "settings": cluster.psql(SETTINGS_SQL % db),
    }


def can_connect(cluster, role, db=DR_DB):
    env = cluster.env
    env["PGUSER"] = role
    proc = subprocess.run([cluster.bin("psql"), "-X", "-A", "-t", "-d", db, "-c", "SELECT 1"], env=env,
                          capture_output=True)
    return proc.returncode == 0, proc.stderr


def globals_of(path):
    """The globals file of the run that wrote backup `path`."""
    return re.sub(r"\.(sql\.zst|sql\.gz|sql|dump)\.enc$", ".globals.sql.enc", path)


def restore_with(cluster, tools, options, path, db, *tool_options):
    """encpipe-restore [options] FILE DBNAME -- tool options."""
    return run([RESTORE, *options, path, db, "--", *tool_options], script_env(cluster, tools))


@pytest.fixture(scope="module")
def cluster_a():
    with PgCluster() as cluster:
        make_awkward_dr_database(cluster)
        yield cluster


@pytest.fixture
def cluster_b(empty_cluster):
    return empty_cluster


@pytest.mark.parametrize("fmt", ["plain", "custom"])
def test_restore_on_a_fresh_server_brings_roles_and_properties(cluster_a, cluster_b, tools, key_file, tmp_path,
                                                                fmt):
    before = snapshot(cluster_a)
    assert before["database"].startswith("app_owner|{=T/app_owner,app_owner=CTc/app_owner,app_reader=c/app_owner}"
                                          "|UTF8|C.utf8|C.utf8|50|")
    path, report = backup(cluster_a, tools, str(tmp_path / "b"), DR_DB, "--format", fmt, "--key-file", key_file)
    assert os.path.exists(globals_of(path))

    proc = restore(cluster_b, tools, path, DR_DB, "--key-file", key_file)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == b""
    created = re.search(r"created roles: (.*)", proc.stderr.decode())[1].split(", ")
    assert sorted(created) == sorted(ROLES)
    assert snapshot(cluster_b) == before
    assert not can_connect(cluster_b, "no_connect")[0]
    assert b"permission denied" in can_connect(cluster_b, "no_connect")[1]
    assert can_connect(cluster_b, "app_reader")[0]
    assert leftover_databases(cluster_b) == set()
    # the server knows the roles its privileges name (pg_shdepend): a grantee is not dropped
    # while it holds one, and DROP OWNED BY takes it back. Before, the ACL was written in the
    # catalog alone: DROP ROLE app_reader succeeded and left its oid in the database's ACL
    assert cluster_b.psql(SHDEPEND_SQL % DR_DB) == cluster_a.psql(SHDEPEND_SQL % DR_DB) == "app_owner|o\napp_reader|a\n"
    with pytest.raises(PgClusterError, match="privileges for database"):
        cluster_b.psql("DROP ROLE app_reader")
    # as README says, an extension's owner is the restoring role's (pg_dump records none)
    owners = "SELECT extname, pg_get_userbyid(extowner) FROM pg_extension WHERE extname = 'citext'"
    assert (cluster_a.psql(owners, db=DR_DB), cluster_b.psql(owners, db=DR_DB)) == (
        "citext|app_owner\n", "citext|%s\n" % cluster_b.user)

    # Again onto the same server: every role exists now, none is touched or reported.
    cluster_b.psql("ALTER ROLE app_reader SET work_mem = '1MB'")
    proc = restore(cluster_b, tools, path, "second copy", "--key-file", key_file)
    assert proc.returncode == 0, proc.stderr.decode()
    assert b"created roles" not in proc.stderr
    assert "work_mem=1MB" in cluster_b.psql(ROLE_SQL)


SCRATCH_SQL = ("SELECT datname, datallowconn, datacl FROM pg_database "
               "WHERE datname LIKE 'encpipe\\_restore\\_%' ORDER BY 1")


def _acl(text):
    return sorted(text.strip("{}").split(",")) if text else None


def test_in_place_restore_never_lets_the_no_connect_role_in(cluster_a, tools, key_file, tmp_path):
    before = snapshot(cluster_a)
    path, _ = backup(cluster_a, tools, str(tmp_path / "b"), DR_DB, "--key-file", key_file)
    connected, seen, errors, stop = [], [], [], threading.Event()

    def poll(step):
        try:
            while not stop.is_set():
                step()
        except Exception as e:  # the test fails on it, not the thread alone
            errors.append(e)

    def try_to_connect():
        names = [DR_DB] + [d for d in cluster_a.psql("SELECT datname FROM pg_database").split("\n")
                           if d.startswith("encpipe_restore_")]
        for name in names:
            if can_connect(cluster_a, "no_connect", name)[0]:
                connected.append(name)

    def read_the_catalog():
        # Not a matter of timing: whenever a scratch database is seen, it is closed to
        # connections, or private: the restoring role's alone (the live ACL comes at the swap).
        for line in cluster_a.psql(SCRATCH_SQL).splitlines():
            name, allow, acl = line.split("|")
            seen.append((name, allow, _acl(acl)))

    pollers = [threading.Thread(target=poll, args=(step,)) for step in (try_to_connect, read_the_catalog)]
    for poller in pollers:
        poller.start()
    try:
        proc = restore(cluster_a, tools, path, DR_DB, "--key-file", key_file, "--drop-old")
    finally:
        stop.set()
        for poller in pollers:
            poller.join()
    assert errors == []
    assert proc.returncode == 0, proc.stderr.decode()
    assert connected == []
    assert seen, "the catalog poller never saw the scratch database"
    assert [s for s in seen if s[1] == "t" and s[2] != ["%s=CTc/%s" % (cluster_a.user, cluster_a.user)]] == []
    assert snapshot(cluster_a) == before
    assert b"created roles" not in proc.stderr
    assert leftover_databases(cluster_a) == set()


def test_an_in_place_restore_that_fails_leaves_the_database_and_its_properties(cluster_a, tools, key_file,
                                                                               tmp_path):
    """A dump that fails half way through psql: the live database keeps its content, owner,
    ACL, settings and comment, and the roles stay as they were."""
    before = snapshot(cluster_a)
    broken = tmp_path / "broken.sql.enc"
    broken.write_bytes(encpipe(["seal", "--key-file", key_file], input=dump(cluster_a, DR_DB) + b"\nSELECT 1/0;\n",
                               check=True).stdout)
    proc = restore(cluster_a, tools, str(broken), DR_DB, "--key-file", key_file, "--no-globals", "--drop-old")
    assert proc.returncode != 0 and proc.stdout == b""
    assert b"ERROR:  22012\n" in proc.stderr  # division_by_zero (psql reports SQLSTATEs, see test_secret_leaks)
    assert snapshot(cluster_a) == before
    assert leftover_databases(cluster_a) == set()


def test_pass_through_options(cluster_a, cluster_b, tools, key_file, tmp_path):
    directory = str(tmp_path / "b")
    proc = run([BACKUP, "--dir", directory, "--format", "custom", "--key-file", key_file, DR_DB,
                "--", "--exclude-table-data=app.big", "-Z", "9"], script_env(cluster_a, tools))
    assert proc.returncode == 0, proc.stderr.decode()
    path = os.path.join(directory, json.loads(proc.stdout)["filename"])
    # bundled and abbreviated as pg_restore takes them too (before, the database's own owner and ACL came back)
    for copy, options in (("plain copy", ["--no-owner", "--no-acl"]), ("bundled copy", ["-Ox"]),
                          ("abbreviated copy", ["--no-own", "--no-ac"])):
        proc = restore_with(cluster_b, tools, ["--key-file", key_file], path, copy, *options)
        assert proc.returncode == 0, proc.stderr.decode()
        rows = cluster_b.psql("SELECT count(*) FROM app.big; SELECT count(*) FROM app.accounts;"
                              "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'app';"
                              "SELECT count(*) FROM pg_class WHERE relacl IS NOT NULL AND "
                              "relnamespace = 'app'::regnamespace;"
                              "SELECT count(*) FROM pg_proc WHERE proacl IS NOT NULL AND "
                              "pronamespace = 'app'::regnamespace;"
                              "SELECT count(*) FROM pg_largeobject_metadata WHERE lomacl IS NOT NULL;",
                              db=copy)
        assert rows.split() == ["0", "200", cluster_b.user, "0", "0", "0"], copy
        # The database itself: no owner, no ACL from the backup either; its settings and comment stay.
        assert cluster_b.psql(DB_SQL % copy).startswith("%s||UTF8" % cluster_b.user), copy
        assert "search_path=app, public" in cluster_b.psql(SETTINGS_SQL % copy)

    env = script_env(cluster_a, tools)
    for argv, named in (([DR_DB, "--", "-f", "out.sql"], b"-f"), ([DR_DB, "--", "-Fd"], b"-Fd"),
                        ([DR_DB, "--", "--jobs=2"], b"--jobs=2"), ([DR_DB, "--", "-d", "other"], b"-d")):
        proc = run([BACKUP, "--dir", directory, "--key-file", key_file, *argv], env)
        assert (proc.returncode, proc.stdout) == (64, b""), proc.stderr
        assert named in proc.stderr and b"not allowed" in proc.stderr
    for argv, named in ((["--", "-j", "4"], b"-j"), (["--", "--file=x"], b"--file"), (["--", "-d", "x"], b"-d")):
        proc = restore_with(cluster_b, tools, ["--key-file", key_file], path, "other", *argv[1:])
        assert (proc.returncode, proc.stdout) == (64, b""), proc.stderr
        assert named in proc.stderr and b"not allowed" in proc.stderr


def test_a_failed_restore_drops_the_roles_it_created(cluster_a, cluster_b, tools, key_file, tmp_path):
    path, _ = backup(cluster_a, tools, str(tmp_path / "b"), DR_DB, "--key-file", key_file)
    roles_before, databases_before = cluster_b.psql(ROLE_SQL), cluster_b.psql("SELECT datname FROM pg_database")
    # The dump is restored connected as a role that cannot log in: the restore fails after the roles exist.
    proc = restore(cluster_b, tools, path, DR_DB, "--key-file", key_file, "--role", "app_writer")
    assert proc.returncode == 1
    assert proc.stdout == b""
    assert b"created roles: " in proc.stderr and b"dropped the roles this restore had created" in proc.stderr
    assert cluster_b.psql(ROLE_SQL) == roles_before == ""
    assert cluster_b.psql("SELECT datname FROM pg_database") == databases_before


def test_no_globals_and_an_explicit_globals_file(cluster_a, cluster_b, tools, key_file, tmp_path):
    """--no-globals reads no globals file, so nothing says the database needs app_owner
    and app_reader before the dump runs (before, their absence was refused from the
    globals file's properties, 1): the dump's own `ALTER ... OWNER TO app_owner` fails
    it, 1, the scratch database dropped, no role created."""
    path, report = backup(cluster_a, tools, str(tmp_path / "b"), DR_DB, "--key-file", key_file)
    databases_before = cluster_b.psql("SELECT datname FROM pg_database")
    proc = restore(cluster_b, tools, path, DR_DB, "--key-file", key_file, "--no-globals")
    assert (proc.returncode, proc.stdout) == (1, b"")
    ours = [line for line in proc.stderr.decode().splitlines() if line.startswith("encpipe-restore: ")]
    assert ours[:2] == [
        f"encpipe-restore: warning: --no-globals: the database properties a globals file records are not applied "
        f"(owner, privileges, encoding and locale, connection limit, settings, comment): {DR_DB} will belong to "
        f"{cluster_b.user}, with default privileges and template0's encoding and locale",
        f"encpipe-restore: error: restoring {path} failed; database {DR_DB} was not created"]  # cluster B lacks it
    assert b"ERROR:  42704\n" in proc.stderr  # undefined_object: role "app_owner" does not exist
    assert cluster_b.psql(ROLE_SQL) == "" and cluster_b.psql("SELECT datname FROM pg_database") == databases_before

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    moved = str(elsewhere / "copy.sql.zst.enc")
    os.rename(path, moved)
    globals_file = globals_of(path)
    proc = restore(cluster_b, tools, moved, DR_DB, "--key-file", key_file, "--globals", globals_file)
    assert proc.returncode == 0, proc.stderr.decode()
    assert snapshot(cluster_b) == snapshot(cluster_a)


def test_a_backup_without_superuser_needs_no_globals(cluster_a, tools, key_file, tmp_path):
    directory = str(tmp_path / "b")
    proc = run([BACKUP, "--dir", directory, "--key-file", key_file, DR_DB],
               script_env(cluster_a, tools, PGUSER="app_owner"))
    assert proc.returncode != 0 and proc.stdout == b""
    ours = [line for line in proc.stderr.decode().splitlines() if line.startswith("encpipe-backup:")]
    assert ours == [f"encpipe-backup: error: backup of {DR_DB} failed (status 1): pg_dumpall exited with status 1; "
                    "nothing was stored",
                    "encpipe-backup: hint: pg_dumpall connects to the postgres database (else template1) and reads "
                    "pg_authid as a superuser, and asks for no password (PGPASSWORD, a password file); --no-globals "
                    "skips the globals"]
    assert not os.path.exists(directory)  # the failed run removed the directory it made
    proc = run([BACKUP, "--dir", directory, "--key-file", key_file, "--no-globals", DR_DB],
               script_env(cluster_a, tools, PGUSER="app_owner"))
    assert proc.returncode == 0, proc.stderr.decode()
    # the cluster's marker too: a role that is no superuser reads the system identifier
    assert sorted([json.loads(proc.stdout)["filename"], ".encpipe-cluster"]) == sorted(os.listdir(directory))
    assert json.loads(proc.stdout)["globals"] is None
