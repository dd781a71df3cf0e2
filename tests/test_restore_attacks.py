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
import re
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import pytest
from pgcluster import BOOTSTRAP_ROLE as BOOTSTRAP, PgCluster, waiting_until

from encpipe.pgfetch import globals_name
from encpipe.pgleftovers import LOCK_CLASS
from test_backup_restore import (
    backup,
    dump,
    encpipe,
    ensure_small,
    REPO,
    RESTORE,
    leftover_databases,
    restore,
    script_env,
)

ATTACKER = "mallory"
ADMIN = "dr_admin"
FIXED_PID = 434343

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
        # the run's globals file is gone: refused for that first (66), and with --no-globals for what FILE holds
        proc = restore(fresh, tools, path, "mal_shop", "--key-file", key_file, env_extra={"PGUSER": ADMIN})
        assert (proc.returncode, proc.stdout) == (66, b""), proc.stderr.decode()
        proc = restore(fresh, tools, path, "mal_shop", "--no-globals", "--key-file", key_file,
                       env_extra={"PGUSER": ADMIN})
        assert (proc.returncode, proc.stdout) == (65, b""), proc.stderr.decode()
        assert proc.stderr.decode().splitlines()[-1] == (
            "encpipe-restore: error: the file holds pg_dumpall's dump of a cluster (a globals file under a dump's "
            "name?), not a database's dump; nothing was changed")
        assert fresh.psql("SELECT rolname, rolpassword FROM pg_authid ORDER BY 1", user=ADMIN) == roles
        assert fresh.psql("SELECT datname FROM pg_database ORDER BY 1", user=ADMIN).split() == [
            "postgres", "template0", "template1"]


def test_a_role_holding_the_next_runs_advisory_lock_cannot_make_it_wait_for_ever(pg, tools, key_file, tmp_path,
                                                                                  mallory):
    """Any role that may connect to the maintenance database may take any advisory lock. One
    that takes those of the scratch names a restore may use (its time and a pid that `ps`
    shows) made it wait for ever, after it had checked the key and decrypted the globals."""
    source = ensure_small(pg, "mal_source")
    path, _ = backup(pg, tools, str(tmp_path / "b"), source, "--key-file", key_file)
    before = dump(pg, source)
    now = datetime.now(timezone.utc)
    names = ["encpipe_restore_%s_%d" % ((now + timedelta(seconds=s)).strftime("%Y%m%dT%H%M%SZ"), FIXED_PID)
             for s in range(0, 30)]
    env = pg.env
    env["PGUSER"] = ATTACKER
    holder = subprocess.Popen([pg.bin("psql"), "-X", "-q", "-d", "postgres"], env=env, stdin=subprocess.PIPE,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    holder.stdin.write(b"".join(b"SELECT pg_advisory_lock(%d, hashtext('%s'));\n" % (LOCK_CLASS, n.encode())
                                for n in names))
    holder.stdin.flush()
    try:
        while pg.psql("SELECT count(*) FROM pg_locks JOIN pg_stat_activity USING (pid) "
                      "WHERE locktype = 'advisory' AND usename = 'mallory'").strip() != str(len(names)):
            assert holder.poll() is None
            time.sleep(0.05)
        driver = ("import os, sys; os.getpid = lambda: %d; from encpipe.pgrestore import main; "
                  "sys.exit(main(sys.argv[1:]))" % FIXED_PID)
        proc = subprocess.run([sys.executable, "-c", driver, "--key-file", key_file, path, source],
                              env=script_env(pg, tools, PYTHONPATH=str(REPO)), capture_output=True, timeout=20)
    finally:
        holder.stdin.close()
        holder.wait()
    assert (proc.returncode, proc.stdout) == (75, b""), proc.stderr.decode()
    assert re.fullmatch(rb"encpipe-restore: error: another session holds the lock of this run's scratch database "
                        rb"encpipe_restore_[0-9]{8}T[0-9]{6}Z_%d; nothing was changed\n" % FIXED_PID, proc.stderr)
    assert dump(pg, source) == before
    assert not leftover_databases(pg)


def _scratch(pg):
    rows = pg.psql("SELECT datname FROM pg_database WHERE datname LIKE 'encpipe\\_restore\\_%'").split()
    return rows[0] if rows else None


@pytest.mark.slow
def test_the_owner_holding_the_live_databases_row_cannot_make_the_swap_wait_for_ever(pg, tools, key_file,
                                                                                      tmp_path, mallory):
    """The owner of the live database alters it in a transaction she keeps open. Before, with
    the scratch database hers too, she did that to it, and the swap, having renamed the live
    database away in its own transaction, waited for her lock for ever (and, killed, its psql
    still swapped once she let go); the scratch database is no longer hers (see
    tests/test_restore_scratch.py), but the live one is. The swap gives up after lock_timeout,
    with the live database as it was, and the scratch database dropped."""
    source = ensure_small(pg, "mal_source")
    path = str(tmp_path / "slow.sql.enc")
    held = waiting_until("EXISTS (SELECT FROM pg_stat_activity WHERE usename = '%s' AND state = 'idle in transaction' "
                         "AND query LIKE 'ALTER DATABASE%%')" % ATTACKER)  # her lock taken
    encpipe(["seal", "--key-file", key_file, "-o", path], input=held + dump(pg, source), check=True)
    pg.psql("CREATE DATABASE mal_target OWNER mallory;")
    pg.psql("CREATE TABLE precious (x text); INSERT INTO precious VALUES ('keep me');", db="mal_target")
    before = dump(pg, "mal_target")
    proc = subprocess.Popen([RESTORE, "--key-file", key_file, path, "mal_target"], env=script_env(pg, tools),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    env = pg.env
    env["PGUSER"] = ATTACKER
    holder = None
    try:
        deadline = time.monotonic() + 60
        while not _scratch(pg):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        holder = subprocess.Popen([pg.bin("psql"), "-X", "-q", "-d", "postgres"], env=env, stdin=subprocess.PIPE,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        holder.stdin.write(b'BEGIN;\nALTER DATABASE mal_target CONNECTION LIMIT 7;\n')
        holder.stdin.flush()
        out, err = proc.communicate(timeout=40)
    finally:
        _stop(proc, holder)
    assert (proc.returncode, out) == (1, b""), err.decode()
    assert re.fullmatch(r"encpipe-restore: error: restored into encpipe_restore_\S+ but could not swap it in "
                        r"\(ERROR:  canceling statement due to lock timeout\); database mal_target is unchanged",
                        err.decode().splitlines()[-2]), err.decode()
    assert dump(pg, "mal_target") == before
    assert pg.psql("SELECT datconnlimit FROM pg_database WHERE datname = 'mal_target'").strip() == "-1"
    assert not leftover_databases(pg)


def _stop(proc, holder):
    """The restore killed if still running, and the attacker's session ended."""
    proc.kill()
    proc.communicate()
    if holder:
        holder.stdin.close()
        holder.wait()


def test_a_session_on_the_scratch_database_fails_the_swap_and_leaves_the_live_database(pg, tools, key_file, tmp_path,
                                                                                       mallory):
    """A superuser (no other role may: tests/test_restore_scratch.py) connected to the scratch
    database while the dump runs, which --terminate-connections does not end (it ends DBNAME's
    sessions). The swap cannot rename the scratch database then: it fails in one transaction,
    so the live database is never left renamed away with nothing in its place."""
    source = ensure_small(pg, "mal_source")
    path = str(tmp_path / "slow.sql.enc")
    held = waiting_until("EXISTS (SELECT FROM pg_stat_activity WHERE datname = current_database() AND usename = '%s' "
                         "AND pid <> pg_backend_pid())" % BOOTSTRAP)  # the superuser's session on it
    encpipe(["seal", "--key-file", key_file, "-o", path], input=held + dump(pg, source), check=True)
    pg.psql("CREATE DATABASE mal_target; ALTER DATABASE mal_target OWNER TO mallory;")
    pg.psql("CREATE TABLE precious (x text); INSERT INTO precious VALUES ('keep me');", db="mal_target")
    before = dump(pg, "mal_target")
    proc = subprocess.Popen([RESTORE, "--terminate-connections", "--drop-old", "--key-file", key_file, path,
                             "mal_target"], env=script_env(pg, tools), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    env = pg.env
    env["PGUSER"] = BOOTSTRAP
    holder = None
    try:
        deadline = time.monotonic() + 60
        while not (scratch := _scratch(pg)) or pg.psql(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = '%s' AND usename = '%s'" % (scratch, BOOTSTRAP)
        ).strip() == "0":
            assert time.monotonic() < deadline and proc.poll() is None
            if scratch and (holder is None or holder.poll() is not None):  # allowed once connections are
                holder = subprocess.Popen([pg.bin("psql"), "-X", "-q", "-d", scratch], env=env,
                                          stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.05)
        out, err = proc.communicate(timeout=60)
    finally:
        _stop(proc, holder)
    assert (proc.returncode, out) == (1, b""), err.decode()
    assert re.fullmatch(r'encpipe-restore: error: restored into (encpipe_restore_\S+) but could not swap it in '
                        r'\(ERROR:  database "\1" is being accessed by other users\); database mal_target is unchanged',
                        err.decode().splitlines()[-1]), err.decode()
    assert dump(pg, "mal_target") == before
    assert not leftover_databases(pg)
