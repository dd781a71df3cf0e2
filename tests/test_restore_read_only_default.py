"""A server whose maintenance database (or the restoring role) defaults to read-only
transactions (`ALTER DATABASE ... SET default_transaction_read_only = on`, as some
sites set on a standby-like primary's postgres database): the restore's own sessions
turn it off, as pg_dumpall's output does. Before, it failed with `cannot execute
CREATE DATABASE in a read-only transaction`, and a later restore could not drop a
killed run's scratch database either."""

import pytest

from test_backup_restore import backup, databases, dump, ensure_small, leftover_databases, restore

MAINT = "ro_maint"


def test_a_read_only_maintenance_database_does_not_stop_a_restore(pg, tools, key_file, tmp_path):
    source = ensure_small(pg, "edge_source")
    path, _ = backup(pg, tools, str(tmp_path / "b"), source, "--key-file", key_file)
    target = "ro_target"
    for name in (MAINT, target):
        pg.dropdb(name)
    pg.psql("CREATE DATABASE %s;" % MAINT)
    pg.psql("ALTER DATABASE %s SET default_transaction_read_only = on;" % MAINT)
    try:
        proc = restore(pg, tools, path, target, "--key-file", key_file, "--maintenance-db", MAINT)
        assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
        assert dump(pg, target) == dump(pg, source)
        assert leftover_databases(pg) == set()
        assert target in databases(pg)
    finally:
        pg.dropdb(MAINT)
        pg.dropdb(target)


@pytest.mark.parametrize("kind", ["plain", "custom"])
def test_a_restoring_role_whose_transactions_default_to_read_only_still_restores(pg, tools, key_file, tmp_path,
                                                                                 kind):
    """`ALTER ROLE ... SET default_transaction_read_only = on` of the role that
    restores: its scratch database, its roles' step and the load of the dump (psql's
    --single-transaction, or an archive's own BEGIN) each begin read-write."""
    source = ensure_small(pg, "edge_source")
    path, _ = backup(pg, tools, str(tmp_path / "b"), source, "--key-file", key_file,
                     *(["--format", "custom"] if kind == "custom" else []))
    target = "ro_role_target"
    pg.dropdb(target)
    pg.psql("DROP ROLE IF EXISTS ro_admin; CREATE ROLE ro_admin SUPERUSER LOGIN;"
            "ALTER ROLE ro_admin SET default_transaction_read_only = on;")
    try:
        proc = restore(pg, tools, path, target, "--key-file", key_file, env_extra={"PGUSER": "ro_admin"})
        assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
        assert dump(pg, target) == dump(pg, source)
        assert leftover_databases(pg) == set()
    finally:
        pg.dropdb(target)
        pg.psql("DROP ROLE ro_admin;")


def test_a_backups_sessions_keep_a_read_only_default():
    """Only a restore's sessions turn default_transaction_read_only off: a backup's only
    read, and a backup role may be made read-only on purpose."""
    from encpipe import pgclient

    assert "read_only" not in pgclient.SESSION_SETUP
    assert "read_only" not in pgclient.SERVER_ENCODING
