"""A backup must restore on an empty server: pg_dump options whose dump never restores
there are refused (64) before anything runs.

encpipe-restore loads a dump into a new, empty scratch database, with psql stopping at
the first error. A plain dump made with pg_dump's -c (--clean) starts with DROP
statements for every object, which fail there (42P01): `encpipe-backup shop -- -c`
stored, exit 0, counted by retention as the newest backup of shop (--keep-last 1
removed the last one that restored), a backup no restore could load. So did
--binary-upgrade, either format (its dump calls binary_upgrade_* functions, 55P02
outside pg_upgrade's binary upgrade mode). And --include-foreign-data: its dump's COPY
into each foreign table wrote the rows into the foreign server's table on every restore
(one more copy of them there each time, a database outside the restore's), and failed
where that server cannot be reached or written. -c with --if-exists (DROP ... IF EXISTS,
nothing to drop) restores, and so does -c for a custom archive (pg_dump ignores it
there): both still make a backup that restores."""

import json
import os

import pytest

from test_backup_partial import _contents
from test_backup_restore import BACKUP, RESTORE, databases, dump, ensure_small, run, script_env

DB = "unrestorable_shop"
CLEAN = ("encpipe-backup: error: pg_dump option %s (-c, --clean) is not allowed without --if-exists in a plain dump: "
         "its DROP statements fail in the empty database a restore loads it into, and the backup would never restore")
CLEAN_HINT = "encpipe-backup: hint: leave it out (a restore needs no DROP), or add --if-exists"
UPGRADE = ("encpipe-backup: error: pg_dump option --binary-upgrade (--binary-upgrade) is not allowed: its dump "
           "restores only into a server in pg_upgrade's binary upgrade mode, and the backup would never restore")
FOREIGN = ("encpipe-backup: error: pg_dump option %s (--include-foreign-data) is not allowed: a restore of its dump "
           "writes the foreign tables' rows into their foreign servers (one more copy there each time), and fails "
           "where those cannot be reached")


@pytest.fixture(scope="module")
def shop(pg):
    """A small database with a foreign table of server srv (its own table t, through postgres_fdw)."""
    if DB not in databases(pg):
        ensure_small(pg, DB, rows=20)
        pg.psql("CREATE EXTENSION postgres_fdw; CREATE SERVER srv FOREIGN DATA WRAPPER postgres_fdw OPTIONS "
                "(host '%s', port '%d', dbname '%s'); CREATE USER MAPPING FOR CURRENT_USER SERVER srv; "
                "CREATE FOREIGN TABLE ft (id int, v text) SERVER srv OPTIONS (table_name 't')"
                % (pg.host, pg.port, DB), db=DB)
    return DB


@pytest.mark.parametrize("options,error", [
    (["-c"], CLEAN % "-c"),
    (["--clean"], CLEAN.replace("%s (-c, --clean)", "--clean (-c, --clean)")),
    (["-Oc", "--no-acl"], CLEAN % "-Oc"),
    (["--format", "plain", "--", "--binary-upgrade"], UPGRADE),
    (["--format", "custom", "--", "--binary-upgrade"], UPGRADE),
    (["--include-foreign-data=srv"], FOREIGN % "--include-foreign-data=srv"),
    (["--format", "custom", "--", "--include-foreign", "srv"], FOREIGN % "--include-foreign"),
], ids=["c", "clean", "Oc", "binary-upgrade-plain", "binary-upgrade-custom", "foreign-data", "foreign-custom"])
def test_a_dump_that_would_never_restore_is_refused_and_the_last_backup_stays(pg, tools, key_file, shop, tmp_path,
                                                                              options, error):
    directory = str(tmp_path / "b")
    done = run([BACKUP, "--dir", directory, "--key-file", key_file, "--keep-last", "1", DB], script_env(pg, tools))
    assert done.returncode == 0, done.stderr
    full = json.loads(done.stdout)["filename"]
    before = _contents(directory)
    assert full in before
    ours, theirs = (options[:options.index("--")], options[options.index("--"):]) if "--" in options else \
        ([], ["--", *options])
    done = run([BACKUP, "--dir", directory, "--key-file", key_file, "--keep-last", "1", *ours, DB, *theirs],
               script_env(pg, tools))
    assert (done.returncode, done.stdout) == (64, b""), done.stderr
    hint = [CLEAN_HINT] if "(-c, --clean)" in error else []
    assert done.stderr.decode().splitlines() == [error, *hint]
    assert _contents(directory) == before


@pytest.mark.parametrize("options", [["--", "-c", "--if-exists"], ["--", "--if-exists", "--clean"],
                                     ["--format", "custom", "--", "-c"]],
                         ids=["if-exists", "if-exists-first", "custom"])
def test_clean_that_still_restores_on_an_empty_server_makes_a_backup(pg, tools, key_file, shop, tmp_path, options):
    directory, env, target = str(tmp_path / "b"), script_env(pg, tools), "partial_shop_cleaned"
    ours, theirs = options[:options.index("--")], options[options.index("--"):]
    done = run([BACKUP, "--dir", directory, "--key-file", key_file, *ours, DB, *theirs], env)
    assert done.returncode == 0, done.stderr
    pg.dropdb(target)
    try:
        done = run([RESTORE, "--key-file", key_file, os.path.join(directory, json.loads(done.stdout)["filename"]),
                    target], env)
        assert (done.returncode, done.stdout) == (0, b""), done.stderr
        assert dump(pg, target) == dump(pg, DB)
    finally:
        pg.dropdb(target)
