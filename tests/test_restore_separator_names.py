"""Names holding the byte psql's rows are split on (0x1f, the restore's field
separator): any role with CREATEDB can make a database so named, any role with
CREATEROLE a role. A database whose name starts like a restore's scratch one was
split into two fields, and the restore's clean-up of killed runs' scratch
databases ended every restore on the server in an internal error (70); a role so
named was taken for the role named by its first part. Every name read is now the
whole name. So did a database named as a restore's copy of another (`--drop-old`,
`--list-pre-restore`)."""

from test_backup_restore import backup, dump, ensure_small, leftover_databases, restore

from encpipe.pgroles import Roles

ODD_DB = "encpipe_restore_\x1fplanted"
ODD_COPY = "x\x1fy_pre_restore_20200101T000000Z"  # named as a restore's copy of database "x\x1fy"
ODD_ROLE = "sep\x1frole"


def test_a_database_named_with_the_separator_ends_no_restore(pg, tools, key_file, tmp_path):
    source = ensure_small(pg, "sep_source")
    path, _ = backup(pg, tools, str(tmp_path / "b"), source, "--key-file", key_file)
    pg.dropdb("sep_target")
    pg.createdb(ODD_DB)
    pg.createdb(ODD_COPY)
    try:
        proc = restore(pg, tools, path, "sep_target", "--key-file", key_file)
        assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
        assert dump(pg, "sep_target") == dump(pg, source)
        again = restore(pg, tools, path, "sep_target", "--key-file", key_file, "--drop-old")  # a swap: copies listed
        assert (again.returncode, again.stdout) == (0, b""), again.stderr.decode()
        assert ODD_DB in pg.psql("SELECT datname FROM pg_catalog.pg_database;")  # not a scratch one: left
    finally:
        for name in (ODD_DB, ODD_COPY, "sep_target"):
            pg.dropdb(name)
    assert leftover_databases(pg) == set()


def test_a_role_named_with_the_separator_is_read_whole(pg, monkeypatch):
    for name, value in pg.env.items():
        monkeypatch.setenv(name, value)
    pg.psql('CREATE ROLE "%s";' % ODD_ROLE)
    try:
        names = Roles("postgres", print).names()
        assert ODD_ROLE in names and "sep" not in names
    finally:
        pg.psql('DROP ROLE "%s";' % ODD_ROLE)
