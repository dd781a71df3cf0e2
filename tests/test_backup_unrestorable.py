"""A backup must restore on an empty server: pg_dump options whose dump never restores
there are refused (64) before anything runs.

encpipe-restore loads a dump into a new, empty scratch database, with psql stopping at
the first error. A plain dump made with pg_dump's -c (--clean) starts with DROP
statements for every object, which fail there (42P01): `encpipe-backup shop -- -c`
stored, exit 0, counted by retention as the newest backup of shop (--keep-last 1
removed the last one that restored), a backup no restore could load. So did
--binary-upgrade, either format (its dump calls binary_upgrade_* functions, 55P02
outside pg_upgrade's binary upgrade mode). -c with --if-exists (DROP ... IF EXISTS,
nothing to drop) restores, and so does -c for a custom archive (pg_dump ignores it
there): both still make a backup that restores."""

import json
import os

import pytest

from test_backup_partial import _contents
from test_backup_restore import BACKUP, RESTORE, dump, ensure_small, run, script_env

DB = "unrestorable_shop"
CLEAN = ("encpipe-backup: error: pg_dump option %s (-c, --clean) is not allowed without --if-exists in a plain dump: "
         "its DROP statements fail in the empty database a restore loads it into, and the backup would never restore")
UPGRADE = ("encpipe-backup: error: pg_dump option --binary-upgrade (--binary-upgrade) is not allowed: its dump "
           "restores only into a server in pg_upgrade's binary upgrade mode, and the backup would never restore")


@pytest.fixture(scope="module")
def shop(pg):
    return ensure_small(pg, DB, rows=20)


@pytest.mark.parametrize("options,error", [
    (["-c"], CLEAN % "-c"),
    (["--clean"], CLEAN.replace("%s (-c, --clean)", "--clean (-c, --clean)")),
    (["-Oc", "--no-acl"], CLEAN % "-Oc"),
    (["--format", "plain", "--", "--binary-upgrade"], UPGRADE),
    (["--format", "custom", "--", "--binary-upgrade"], UPGRADE),
], ids=["c", "clean", "Oc", "binary-upgrade-plain", "binary-upgrade-custom"])
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
    hint = [] if error == UPGRADE else ["encpipe-backup: hint: leave it out (a restore needs no DROP), or add "
                                        "--if-exists"]
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
