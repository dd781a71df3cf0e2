"""What a DBA checks after restoring onto an empty server, beyond test_disaster_recovery.py.

A database in a non-default encoding (LATIN1, from template0), owned by one
role, with schemas and tables owned by others, default privileges of two
roles, database grants, `ALTER DATABASE ... SET` and `ALTER ROLE ... IN
DATABASE ... SET` for roles the empty server lacks, pg_trgm and pgcrypto, a
sequence moved on, a populated and an unpopulated materialized view, a large
object with its owner, an event trigger, comments. Each format is backed up on
cluster A and restored on a freshly initdb'd cluster B; then tablespaces, and a
scratch database whose creation fails.
"""

import os

import pytest

from pgcluster import PgCluster
from test_backup_restore import (
    backup,
    dump,
    leftover_databases,
    restore,
    run,
    RESTORE,
    script_env,
)

DB = "Shop DB"

_CLUSTER_SQL = """
CREATE ROLE owner1 LOGIN PASSWORD 'pw-owner1';
CREATE ROLE grp NOLOGIN;
CREATE ROLE member1 LOGIN PASSWORD 'pw-member1' IN ROLE grp;
CREATE ROLE adm NOLOGIN;
GRANT grp TO adm WITH ADMIN OPTION;
CREATE ROLE "Weird Role" LOGIN;
CREATE ROLE schema_owner NOLOGIN;
CREATE DATABASE "Shop DB" OWNER owner1 TEMPLATE template0 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C';
ALTER DATABASE "Shop DB" SET work_mem = '7MB';
ALTER DATABASE "Shop DB" SET search_path = "$user", app, public;
ALTER ROLE member1 IN DATABASE "Shop DB" SET statement_timeout = '3s';
ALTER ROLE "Weird Role" IN DATABASE "Shop DB" SET application_name = 'weird';
GRANT CREATE, TEMP ON DATABASE "Shop DB" TO member1;
REVOKE TEMP ON DATABASE "Shop DB" FROM PUBLIC;
COMMENT ON DATABASE "Shop DB" IS 'shop''s db';
"""

_CONTENT_SQL = """
CREATE EXTENSION pg_trgm;
CREATE EXTENSION pgcrypto;
CREATE SCHEMA app AUTHORIZATION schema_owner;
CREATE SCHEMA other AUTHORIZATION "Weird Role";
ALTER DEFAULT PRIVILEGES FOR ROLE schema_owner IN SCHEMA app GRANT SELECT ON TABLES TO member1;
ALTER DEFAULT PRIVILEGES FOR ROLE owner1 GRANT USAGE ON SEQUENCES TO grp;
SET ROLE schema_owner;
CREATE TABLE app.items (id serial PRIMARY KEY, name text, h text);
INSERT INTO app.items (name, h)
    SELECT 'item ' || g, encode(public.digest(g::text, 'sha1'), 'hex') FROM generate_series(1, 1000) g;
CREATE INDEX items_trgm ON app.items USING gin (name public.gin_trgm_ops);
CREATE SEQUENCE app.counter START 5;
SELECT setval('app.counter', 12345);
CREATE MATERIALIZED VIEW app.mv AS SELECT count(*) AS n FROM app.items;
CREATE MATERIALIZED VIEW app.mv_empty AS SELECT count(*) AS n FROM app.items WITH NO DATA;
RESET ROLE;
CREATE TABLE other.t (x text);
INSERT INTO other.t VALUES ('caf\u00e9');
ALTER TABLE other.t OWNER TO "Weird Role";
COMMENT ON TABLE other.t IS 'a comment';
SELECT lo_from_bytea(777, 'large object bytes');
ALTER LARGE OBJECT 777 OWNER TO owner1;
CREATE FUNCTION public.evt() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN RAISE NOTICE 'ddl'; END $$;
CREATE EVENT TRIGGER evt ON ddl_command_start EXECUTE FUNCTION public.evt();
"""

_SERVER_SQL = """
SELECT 'role', rolname, rolinherit, rolcanlogin, rolpassword FROM pg_authid
    WHERE rolname IN ('owner1', 'grp', 'member1', 'adm', 'Weird Role', 'schema_owner') ORDER BY 2;
SELECT 'member', r.rolname, m.rolname, a.admin_option FROM pg_auth_members a JOIN pg_roles r ON r.oid = a.roleid
    JOIN pg_roles m ON m.oid = a.member WHERE r.rolname = 'grp' ORDER BY 2, 3;
SELECT 'db', pg_get_userbyid(datdba), datacl, pg_encoding_to_char(encoding), datcollate, datctype,
    shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = '%(db)s';
SELECT 'setting', coalesce(r.rolname, '-'), s.setconfig FROM pg_db_role_setting s
    JOIN pg_database d ON d.oid = s.setdatabase LEFT JOIN pg_roles r ON r.oid = s.setrole
    WHERE d.datname = '%(db)s' ORDER BY 2;
"""

_DATABASE_SQL = """
SELECT 'defacl', pg_get_userbyid(defaclrole), defaclnamespace::regnamespace, defaclobjtype,
    array(SELECT unnest(defaclacl)::text ORDER BY 1) FROM pg_default_acl ORDER BY 2, 3, 4;
SELECT 'ext', extname, extversion FROM pg_extension ORDER BY 2;
SELECT 'schema', nspname, pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname IN ('app', 'other') ORDER BY 2;
SELECT 'seq', last_value, is_called FROM app.counter;
SELECT 'mv', matviewname, ispopulated FROM pg_matviews ORDER BY 2;
SELECT 'lo', oid, pg_get_userbyid(lomowner), encode(lo_get(oid), 'escape') FROM pg_largeobject_metadata;
SELECT 'evt', evtname, evtevent, evtenabled FROM pg_event_trigger;
SELECT 'rel', relname, pg_get_userbyid(relowner), obj_description(oid, 'pg_class') FROM pg_class
    WHERE relnamespace IN ('app'::regnamespace, 'other'::regnamespace) ORDER BY 2;
SELECT 'row', x, convert_to(x, 'LATIN1') FROM other.t;
"""


def snapshot(cluster, db=DB):
    return (cluster.psql(_SERVER_SQL % {"db": db}), cluster.psql(_DATABASE_SQL, db=db), dump(cluster, db))


@pytest.fixture(scope="module")
def cluster_a():
    with PgCluster() as cluster:
        cluster.psql(_CLUSTER_SQL)
        cluster.psql(_CONTENT_SQL, db=DB)
        yield cluster


@pytest.fixture
def cluster_b(empty_cluster):
    return empty_cluster


@pytest.mark.parametrize("options", [("--format", "plain", "--compress", "zstd"),
                                     ("--format", "plain", "--compress", "gzip"), ("--format", "custom")])
@pytest.mark.slow
def test_an_empty_server_gets_roles_properties_and_contents_back(cluster_a, cluster_b, tools, key_file, tmp_path,
                                                                 options):
    before = snapshot(cluster_a)
    assert "db|owner1|{=c/owner1,owner1=CTc/owner1,member1=CT/owner1}|LATIN1|C|C|shop's db" in before[0]
    path, _ = backup(cluster_a, tools, str(tmp_path / "b"), DB, *options, "--key-file", key_file)
    proc = restore(cluster_b, tools, path, DB, "--key-file", key_file)
    assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
    assert snapshot(cluster_b) == before
    # The settings of member1 and "Weird Role" were restored: no warning may say they were left out.
    assert b"left out" not in proc.stderr, proc.stderr.decode()
    assert leftover_databases(cluster_b) == set()


def _tablespace(cluster, name):
    """A tablespace in a directory of the cluster's own, owned by the server's user."""
    location = os.path.join(cluster.base_dir, name)
    os.mkdir(location, 0o700)
    server = os.stat(cluster.datadir)
    os.chown(location, server.st_uid, server.st_gid)
    cluster.psql("CREATE TABLESPACE %s LOCATION '%s'" % (name, location))


def test_tablespaces_are_named_when_the_server_lacks_them(cluster_b, tools, key_file, tmp_path):
    """As README says: a custom archive restores without them with -- --no-tablespaces; a
    plain dump needs them (psql has no such option); a tablespace the server has is not named."""
    with PgCluster() as source:
        _tablespace(source, "ts_data")
        source.createdb("spaced")
        source.psql("CREATE TABLE t (x int) TABLESPACE ts_data; INSERT INTO t VALUES (1), (2)", db="spaced")
        custom, _ = backup(source, tools, str(tmp_path / "b"), "spaced", "--format", "custom", "--key-file", key_file)
        plain, _ = backup(source, tools, str(tmp_path / "b"), "spaced", "--key-file", key_file)
    warning = b"encpipe-restore: warning: tablespaces this server lacks are not created: ts_data"
    proc = run([RESTORE, "--key-file", key_file, custom, "spaced", "--", "--no-tablespaces"],
               script_env(cluster_b, tools))
    assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
    assert warning in proc.stderr
    assert cluster_b.psql("SELECT sum(x) FROM t", db="spaced") == "3\n"
    proc = restore(cluster_b, tools, plain, "spaced plain", "--key-file", key_file)
    assert (proc.returncode, proc.stdout) == (1, b"")
    assert warning in proc.stderr and b"ERROR:  22023\n" in proc.stderr
    _tablespace(cluster_b, "ts_data")
    proc = restore(cluster_b, tools, plain, "spaced plain", "--key-file", key_file)
    assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
    assert b"warning" not in proc.stderr
    assert cluster_b.psql("SELECT sum(x) FROM t", db="spaced plain") == "3\n"
    assert leftover_databases(cluster_b) == set()


def test_a_role_that_cannot_make_the_restore_is_refused_before_a_scratch_database_is_made(
        cluster_a, cluster_b, tools, key_file, tmp_path):
    """A restoring role that may create databases but is no superuser, nor a member of the
    owner: the database's recorded settings need a superuser (only one may write them),
    and the restore says so in one line before anything is created (before, the scratch
    database was created, could not be given its owner, and was dropped again; a role
    that was a member loaded the whole dump and failed at the swap). (The roles exist: a
    role that is not a superuser cannot run pg_dumpall's ALTER ROLE ... NOSUPERUSER.)"""
    path, _ = backup(cluster_a, tools, str(tmp_path / "b"), DB, "--format", "custom", "--key-file", key_file)
    cluster_b.psql('CREATE ROLE dba LOGIN CREATEDB; CREATE ROLE owner1; CREATE ROLE grp; CREATE ROLE member1; '
                   'CREATE ROLE adm; CREATE ROLE "Weird Role"; CREATE ROLE schema_owner;')
    databases = cluster_b.psql("SELECT datname FROM pg_database ORDER BY 1")
    roles = cluster_b.psql("SELECT rolname FROM pg_roles ORDER BY 1")
    proc = run([RESTORE, "--key-file", key_file, path, DB], script_env(cluster_b, tools, PGUSER="dba"))
    assert (proc.returncode, proc.stdout) == (1, b"")
    errors = [line for line in proc.stderr.decode().splitlines() if ": error: " in line]
    assert errors == ["encpipe-restore: error: role dba is no superuser, and restoring Shop DB needs one: to give "
                      "it its recorded settings; database Shop DB was not created"], proc.stderr.decode()
    assert cluster_b.psql("SELECT datname FROM pg_database ORDER BY 1") == databases
    assert cluster_b.psql("SELECT rolname FROM pg_roles ORDER BY 1") == roles
