"""A server whose maintenance database (or the restoring role) defaults to read-only
transactions (`ALTER DATABASE ... SET default_transaction_read_only = on`, as some
sites set on a standby-like primary's postgres database): the restore's own sessions
turn it off, as pg_dumpall's output does. Before, it failed with `cannot execute
CREATE DATABASE in a read-only transaction`, and a later restore could not drop a
killed run's scratch database either."""

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
