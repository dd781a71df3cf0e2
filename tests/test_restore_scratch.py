"""The scratch database while the dump runs: nobody but the restoring role (and
superusers) may connect to it, and no recorded property reaches the dump's session.

A restore pipes the authenticated dump into a scratch database as a superuser,
then swaps it in. Created with the live database's owner and ACL, that scratch
database let its owner (`mallory`, no superuser) connect while the dump ran and
prepare objects the superuser's session then used: here, a trusted extension the
dump creates with `CREATE EXTENSION IF NOT EXISTS`, made by her in a schema of
her own first, and a domain of hers under the extension's type name, whose CHECK
ran her function as the superuser on every row the dump copied.
"""

import subprocess
import time

import pytest
from test_backup_restore import (
    RESTORE,
    backup,
    dump,
    encpipe,
    ensure_small,
    leftover_databases,
    restore,
    script_env,
)
from test_restore_attacks import ATTACKER, TRAP, _scratch, _stop, is_superuser

# In the scratch database, before the dump's CREATE EXTENSION IF NOT EXISTS citext WITH SCHEMA public.
SQUAT = TRAP.format(schema="public") + """
CREATE SCHEMA squat;
CREATE EXTENSION citext SCHEMA squat;
CREATE FUNCTION public.gate(text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN PERFORM public.trap(); RETURN true; END $$;
CREATE DOMAIN public.citext AS text CHECK (public.gate(VALUE));
"""


def _citext_source(pg):
    pg.dropdb("mal_citext")
    pg.psql("CREATE DATABASE mal_citext;")
    pg.psql("CREATE EXTENSION citext; CREATE TABLE names (n citext); INSERT INTO names VALUES ('Alice'), ('bob');",
            db="mal_citext")
    return "mal_citext"


def _restore_slowly(pg, tools, key_file, tmp_path, source):
    """encpipe-restore, started, of a dump of `source` that sleeps 2 seconds first, in
    place of mal_target (made, mallory's)."""
    path = str(tmp_path / "slow.sql.enc")
    encpipe(["seal", "--key-file", key_file, "-o", path], input=b"SELECT pg_sleep(2);\n" + dump(pg, source),
            check=True)
    pg.psql("CREATE DATABASE mal_target OWNER mallory;")
    return subprocess.Popen([RESTORE, "--key-file", key_file, "--drop-old", path, "mal_target"],
                            env=script_env(pg, tools), stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _attempts(pg, proc, sql, db=None):
    """mallory running `sql` (its {scratch} the scratch database's name) in `db` (else the scratch
    database itself) as soon as the scratch database exists, again until it ran or the restore
    ended; returns her psql's standard errors, joined, and whether it ran."""
    env = pg.env
    env["PGUSER"] = ATTACKER
    deadline, errors = time.monotonic() + 60, []
    while proc.poll() is None and time.monotonic() < deadline:
        scratch = _scratch(pg)
        if scratch:
            run = subprocess.run([pg.bin("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db or scratch,
                                  "-c", sql.replace("{scratch}", scratch)], env=env, capture_output=True)
            if run.returncode == 0:
                return b"".join(errors), True
            errors.append(run.stderr)
        time.sleep(0.02)
    return b"".join(errors), False


def test_the_live_databases_owner_cannot_reach_the_scratch_database_while_the_dump_runs(pg, tools, key_file,
                                                                                        tmp_path, mallory):
    """The dump (a long one: it sleeps 2 seconds first) is restored in place of mal_target,
    which mallory owns. Before, she connected to the scratch database, which was hers, and
    her trap ran as the superuser on every row COPY wrote into `names` (she became one);
    now the scratch database belongs to the restoring role, with no privilege for anyone
    else, until the swap gives it mal_target's owner and ACL."""
    source = _citext_source(pg)
    proc = _restore_slowly(pg, tools, key_file, tmp_path, source)
    try:
        refused, ran = _attempts(pg, proc, SQUAT)
        out, err = proc.communicate(timeout=60)
    finally:
        _stop(proc, None)
    assert (proc.returncode, out) == (0, b""), err.decode()
    assert not is_superuser(pg, ATTACKER)
    assert not ran and b"permission denied for database" in refused, refused.decode()
    assert pg.psql("SELECT to_regclass('public.loot') IS NULL, to_regtype('public.citext')::text, "
                   "pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()",
                   db="mal_target").strip() == "t|citext|mallory"
    assert dump(pg, "mal_target") == dump(pg, source)
    assert not leftover_databases(pg)


@pytest.mark.parametrize("statement", [
    'BEGIN; ALTER DATABASE "{scratch}" CONNECTION LIMIT 7; SELECT pg_sleep(15);',
    'ALTER DATABASE "{scratch}" SET default_transaction_read_only = on;',
], ids=["row locked", "setting"])
def test_the_live_databases_owner_cannot_alter_the_scratch_database(pg, tools, key_file, tmp_path, mallory,
                                                                    statement):
    """Before, mallory owned the scratch database of a restore in place of hers: she locked its
    row in a transaction kept open, and the swap failed after lock_timeout, every time; or she
    gave it settings that every later session, the dump's too when she was quick, and the
    restored database, would have. Now she is refused, and the restore goes on."""
    source = ensure_small(pg, "mal_source")
    proc = _restore_slowly(pg, tools, key_file, tmp_path, source)
    try:
        refused, ran = _attempts(pg, proc, statement, db="postgres")
        out, err = proc.communicate(timeout=60)
    finally:
        _stop(proc, None)
    assert (proc.returncode, out) == (0, b""), err.decode()
    assert not ran and b"must be owner of database" in refused, refused.decode()
    assert dump(pg, "mal_target") == dump(pg, source)
    assert pg.psql("SELECT count(*) FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase "
                   "WHERE datname = 'mal_target'").strip() == "0"
    assert not leftover_databases(pg)


@pytest.mark.parametrize("in_place", [False, True], ids=["new database", "in place"])
def test_recorded_database_settings_do_not_reach_the_dumps_session(pg, tools, key_file, tmp_path, in_place):
    """The database's own settings (`ALTER DATABASE ... SET`) are the restored database's,
    set at the swap: given to the scratch database before the dump's session connected
    (as under a deliberate break), `default_transaction_read_only` fails every restore."""
    pg.dropdb("ro_source")
    pg.dropdb("ro_copy")
    pg.psql("CREATE DATABASE ro_source;")
    pg.psql("CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2);", db="ro_source")
    pg.psql("ALTER DATABASE ro_source SET default_transaction_read_only = on;")
    path, _ = backup(pg, tools, str(tmp_path / "b"), "ro_source", "--key-file", key_file)
    target = "ro_source" if in_place else "ro_copy"
    proc = restore(pg, tools, path, target, "--key-file", key_file, "--drop-old")
    assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
    assert pg.psql("SELECT setconfig FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase "
                   "WHERE datname = '%s'" % target).strip() == "{default_transaction_read_only=on}"
    assert pg.psql("SELECT sum(x) FROM t", db=target).strip() == "3"
    assert not leftover_databases(pg)
    pg.dropdb("ro_source")
    pg.dropdb("ro_copy")


def test_a_restoring_role_without_superuser_gives_the_new_database_the_default_privileges(pg, tools, key_file,
                                                                                         tmp_path):
    """A role that may only create databases restores a dump without a globals file: the
    scratch database, private while the dump ran, gets PUBLIC's CONNECT and TEMPORARY back
    at the swap by GRANT, since only a superuser may write the catalog's NULL (the default)."""
    source = ensure_small(pg, "mal_source")
    path = str(tmp_path / "plain.sql.enc")
    encpipe(["seal", "--key-file", key_file, "-o", path], input=dump(pg, source, "--no-owner", "--no-privileges"),
            check=True)
    pg.psql("DROP ROLE IF EXISTS db_maker; CREATE ROLE db_maker LOGIN CREATEDB;")
    pg.dropdb("made_by_db_maker")
    try:
        proc = restore(pg, tools, path, "made_by_db_maker", "--key-file", key_file,
                       env_extra={"PGUSER": "db_maker"})
        assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
        assert pg.psql("SELECT pg_get_userbyid(datdba), datacl FROM pg_database "
                       "WHERE datname = 'made_by_db_maker'").strip() == "db_maker|{db_maker=CTc/db_maker,=Tc/db_maker}"
        assert dump(pg, "made_by_db_maker", "--no-owner", "--no-privileges") == dump(
            pg, source, "--no-owner", "--no-privileges")
        assert not leftover_databases(pg)
    finally:
        pg.dropdb("made_by_db_maker")
        pg.psql("DROP ROLE db_maker;")
