"""A libpq service (PGSERVICE, PGSERVICEFILE) naming another database: libpq ranks
a service's dbname above PGDATABASE, which pg_dump was given DBNAME in, so the
backup of DBNAME held the service's database, under DBNAME's name and label,
status 0, and --keep-last removed the real backups. pg_dump now gets DBNAME as a
connection string of its name alone, which a service's dbname does not override;
the service's other settings (its host, port, user) still hold, as for psql."""

from encpipe.backup import label
from test_backup_restore import backup, encpipe


def test_a_services_database_never_stands_in_for_dbname(pg, tools, key_file, tmp_path):
    for db, table in (("svc_real", "real_table"), ("svc_other", "other_table")):
        pg.dropdb(db)
        pg.createdb(db)
        pg.psql("CREATE TABLE %s (x int);" % table, db=db)
    service = tmp_path / "pg_service.conf"
    service.write_text("[elsewhere]\ndbname=svc_other\n")
    env = {"PGSERVICEFILE": str(service), "PGSERVICE": "elsewhere"}
    try:
        for fmt, options in (("plain", ["--compress", "none"]), ("custom", [])):
            path, _ = backup(pg, tools, str(tmp_path / fmt), "svc_real", "--format", fmt, *options, "--key-file",
                             key_file, env_extra=env)
            plaintext = encpipe(["open", "--key-file", key_file, path], check=True).stdout
            assert b"real_table" in plaintext and b"other_table" not in plaintext
            if fmt == "plain":
                assert plaintext.startswith(b"-- " + label.VERSION + b" db=svc_real ")
    finally:
        pg.dropdb("svc_real")
        pg.dropdb("svc_other")
