"""Attacks on encpipe-backup and encpipe-restore by a database user without
superuser rights (here `mallory`, who owns the database backed up and restored,
or may create objects in the maintenance database, as every role could in the
public schema of a cluster made before PostgreSQL 15 and upgraded since).

The backup reads the database's properties connected to the database itself, and
the restore runs its administrative statements in the maintenance database, both
as a superuser: a function those statements call that mallory's objects or
settings can stand in for would run her code as that superuser. Each test checks
that mallory gains nothing (she stays an ordinary role, her trap never fired as a
superuser) and that what was recorded or restored is exactly what the catalog
holds, not what her functions say.
"""

import json
import os

import pytest
from pgcluster import BOOTSTRAP_ROLE as BOOTSTRAP, PgCluster

from encpipe.pgfetch import globals_name
from test_backup_restore import (
    backup,
    dump,
    encpipe,
    ensure_small,
    key_file,  # noqa: F401 (fixture)
    leftover_databases,
    restore,
    tools,  # noqa: F401 (fixture)
)

ATTACKER = "mallory"
ADMIN = "dr_admin"

# Run by a superuser, it makes mallory one and leaves a row saying who ran it.
TRAP = """
CREATE TABLE IF NOT EXISTS {schema}.loot (who text);
GRANT ALL ON {schema}.loot TO PUBLIC;
CREATE FUNCTION {schema}.trap() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO {schema}.loot VALUES (current_user);
  IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
    EXECUTE 'ALTER ROLE mallory SUPERUSER';
  END IF;
END $$;
"""

# Functions the properties query calls, as better matches (public) or ahead of
# pg_catalog (a schema first in the database's search_path).
OVERLOADS = """
CREATE FUNCTION {schema}.shobj_description(oid, text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN PERFORM {schema}.trap(); RETURN 'forged'; END $$;
"""
SHADOWS = """
CREATE FUNCTION {schema}.pg_get_userbyid(oid) RETURNS name LANGUAGE plpgsql AS $$
BEGIN PERFORM {schema}.trap(); RETURN 'forged'; END $$;
"""
TERMINATE = """
CREATE FUNCTION {schema}.pg_terminate_backend(integer, integer) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN PERFORM {schema}.trap(); RETURN pg_catalog.pg_terminate_backend($1, $2::bigint); END $$;
"""


@pytest.fixture
def mallory(pg):
    pg.psql("DROP ROLE IF EXISTS mallory; CREATE ROLE mallory LOGIN;")
    yield ATTACKER
    pg.psql("ALTER ROLE mallory NOSUPERUSER;")
    for db in ("mal_shop", "mal_shop_restored", "mal_target"):
        pg.dropdb(db)
    pg.psql("DROP OWNED BY mallory; REVOKE CREATE ON SCHEMA public FROM mallory;")
    pg.psql("DROP ROLE mallory;")


def is_superuser(pg, role):
    return pg.psql("SELECT rolsuper FROM pg_roles WHERE rolname = '%s'" % role).strip() == "t"


def recorded_properties(globals_path, key):
    proc = encpipe(["open", "--key-file", key, globals_path])
    assert proc.returncode == 0, proc.stderr.decode()
    prefix = "-- encpipe-database-properties: "
    lines = [line for line in proc.stdout.decode().splitlines() if line.startswith(prefix)]
    assert len(lines) == 1, lines
    return json.loads(lines[0][len(prefix):])


@pytest.mark.parametrize("trick", ["public overload", "search_path ahead of pg_catalog"])
def test_the_database_owner_gains_nothing_from_the_backups_properties_query(pg, tools, key_file, tmp_path,
                                                                             mallory, trick):
    pg.psql("CREATE DATABASE mal_shop OWNER mallory;")
    if trick == "public overload":  # since 15, public belongs to the database's owner
        pg.psql(TRAP.format(schema="public") + OVERLOADS.format(schema="public"), db="mal_shop", user=ATTACKER)
    else:  # an owner may set her database's search_path
        pg.psql("CREATE SCHEMA evil;" + TRAP.format(schema="evil") + SHADOWS.format(schema="evil")
                + "ALTER DATABASE mal_shop SET search_path = evil, pg_catalog;", db="mal_shop", user=ATTACKER)
    path, report = backup(pg, tools, str(tmp_path / "b"), "mal_shop", "--key-file", key_file)
    assert not is_superuser(pg, ATTACKER)
    schema = "public" if trick == "public overload" else "evil"
    assert pg.psql("SELECT count(*) FROM %s.loot" % schema, db="mal_shop").strip() == "0"
    props = recorded_properties(globals_name(path), key_file)
    assert (props["name"], props["owner"], props["comment"]) == ("mal_shop", ATTACKER, None)


def test_a_role_that_may_create_in_the_maintenance_database_gains_nothing_from_a_restore(pg, tools, key_file,
                                                                                          tmp_path, mallory):
    source = ensure_small(pg, "mal_source")
    path, _ = backup(pg, tools, str(tmp_path / "b"), source, "--key-file", key_file)
    pg.dropdb("mal_target")
    pg.psql("CREATE DATABASE mal_target OWNER mallory; COMMENT ON DATABASE mal_target IS 'live';")
    pg.psql("GRANT CREATE ON SCHEMA public TO mallory;")  # as before PostgreSQL 15
    pg.psql(TRAP.format(schema="public") + OVERLOADS.format(schema="public") + TERMINATE.format(schema="public"),
            user=ATTACKER)
    proc = restore(pg, tools, path, "mal_target", "--key-file", key_file, "--terminate-connections", "--drop-old")
    assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
    assert not is_superuser(pg, ATTACKER)
    assert pg.psql("SELECT count(*) FROM public.loot").strip() == "0"
    assert dump(pg, "mal_target") == dump(pg, source)
    assert pg.psql("SELECT pg_catalog.shobj_description(oid, 'pg_database'), pg_get_userbyid(datdba) "
                   "FROM pg_database WHERE datname = 'mal_target'").strip() == "live|mallory"
    assert not leftover_databases(pg)


@pytest.mark.xfail(strict=True, reason="a cluster dump is restored as if it were a database's dump")
def test_a_globals_file_renamed_to_a_dumps_name_is_refused_on_a_fresh_server(pg, tools, key_file, tmp_path, mallory):
    """A writer of the backup directory, without any key, renames a run's globals file to its
    dump's name: it authenticates (same key, same maker). Restored on a server that lacks the
    roles (disaster recovery), psql ran pg_dumpall's CREATE ROLE and ALTER ROLE statements as
    the superuser and the restore reported success with an empty database. pg_dumpall writes a
    CREATE ROLE for every role, its own too, so this needs a server whose superuser has a name
    no role of the backed-up cluster has (initdb -U admin), as here."""
    pg.psql("ALTER ROLE mallory SUPERUSER PASSWORD 'mallory secret';")  # a role of the backed-up cluster
    source = ensure_small(pg, "mal_source")
    path, _ = backup(pg, tools, str(tmp_path / "b"), source, "--key-file", key_file, "--format", "plain",
                     "--compress", "none")
    os.rename(globals_name(path), path)
    with PgCluster() as fresh:
        fresh.psql("ALTER ROLE %s RENAME TO dr_admin;" % BOOTSTRAP)  # its only role, named unlike any of pg's
        fresh.psql('DROP ROLE "%s";' % fresh.user, user=ADMIN)
        roles = fresh.psql("SELECT rolname, rolpassword FROM pg_authid ORDER BY 1", user=ADMIN)
        proc = restore(fresh, tools, path, "mal_shop", "--key-file", key_file, env_extra={"PGUSER": ADMIN})
        assert (proc.returncode, proc.stdout) == (65, b""), proc.stderr.decode()
        assert proc.stderr.decode().splitlines()[-1] == (
            "encpipe-restore: error: the file holds pg_dumpall's dump of a cluster (a globals file under a dump's "
            "name?), not a database's dump; nothing was changed")
        assert fresh.psql("SELECT rolname, rolpassword FROM pg_authid ORDER BY 1", user=ADMIN) == roles
        assert fresh.psql("SELECT datname FROM pg_database ORDER BY 1", user=ADMIN).split() == [
            "postgres", "template0", "template1"]
