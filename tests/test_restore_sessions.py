"""The psql sessions an encpipe-restore opens, counted by a spy for psql (#16).

Before the restore begins it asks the server, in one psql, whether DBNAME exists
and is in use, the connecting role, DBNAME's properties (kept for the swap) and
the cluster's roles (which a new database's owner and grants must name). Before,
the properties and the roles were a psql each, once the run's lock was taken:
every restore spent a psql start-up and a connection more than it needed. The
properties and roles the restore then gives the database are what they were.
"""

import pytest

from spies import install, records
from test_backup_restore import backup, ensure_small, restore, script_env

QUIET = ["-v", "VERBOSITY=sqlstate", "-v", "SHOW_CONTEXT=never"]


def _sessions(log):
    """The psql that connected (not `psql --version`), in their order: the restore's
    own statements, its lock's session, the dump's psql, the swap's."""
    return [r["argv"] for r in records(log) if r["tool"] == "psql" and r["argv"] != ["--version"]]


def _properties(pg, db):
    return pg.psql("SELECT pg_get_userbyid(datdba), datacl, shobj_description(oid, 'pg_database') "
                   "FROM pg_database WHERE datname = '%s'" % db)


@pytest.fixture
def source(pg):
    pg.psql("DROP ROLE IF EXISTS sessions_owner; CREATE ROLE sessions_owner;")
    db = ensure_small(pg, "sessions_source")
    pg.psql("ALTER DATABASE sessions_source OWNER TO sessions_owner; "
            "COMMENT ON DATABASE sessions_source IS 'sessions comment'; "
            "GRANT CONNECT ON DATABASE sessions_source TO sessions_owner;")
    yield db
    for name in pg.psql("SELECT datname FROM pg_database WHERE datname LIKE 'sessions_%'").split():
        pg.dropdb(name)
    pg.psql("DROP ROLE IF EXISTS sessions_owner;")


@pytest.mark.parametrize("onto", ["new", "existing"])
def test_a_restore_asks_the_state_the_properties_and_the_roles_in_one_psql(pg, tools, key_file, tmp_path, source,
                                                                          onto):
    path, _ = backup(pg, tools, str(tmp_path / "b"), source, "--key-file", key_file)
    target = "sessions_copy"
    pg.dropdb(target)
    if onto == "existing":
        assert restore(pg, tools, path, target, "--key-file", key_file).returncode == 0
    log = tmp_path / "psql.log"
    install(tmp_path / "spies", {"psql": pg.bin("psql")}, log)
    proc = restore(pg, tools, path, target, "--key-file", key_file, "--drop-old",
                   env_extra={"PATH": "%s:%s" % (tmp_path / "spies", script_env(pg, tools)["PATH"])})
    assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
    sessions = _sessions(log)
    # state (with the properties and roles), the lock, the leftovers; over DBNAME, the roles again, read
    # once FILE authenticated; CREATE DATABASE, the scratch database made private, the dump; over
    # DBNAME, its copy's free name; the swap; over DBNAME, --drop-old's DROP
    assert len(sessions) == (10 if onto == "existing" else 7), sessions
    assert sum(QUIET == argv[argv.index("--single-transaction") + 1:][:4] for argv in sessions
               if "--single-transaction" in argv) == 1
    assert _properties(pg, target) == _properties(pg, source)
