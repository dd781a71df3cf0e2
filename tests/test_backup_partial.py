"""A dump of part of a database is no backup of it (pg_dump's -t, -n, -a, -s, --section...).

encpipe-backup names its file DB_T... as it names a full backup, and retention counts
files by their names and makers: `encpipe-backup shop --keep-last 1 -- -t orders`
stored one table as the newest backup of shop and removed the last full one,
authenticated and all; a restore of the latest gave that table only. Now such an
option is refused (64) before anything runs; an exclusion still makes a backup.
"""

import json
import os

import pytest

from test_backup_restore import BACKUP, RESTORE, run, script_env

DB = "partial_shop"
REFUSAL = [
    "encpipe-backup: error: pg_dump option -t (-t, --table) is not allowed: a dump of part of a database is not a "
    "backup of it (retention would count it as the newest, and a restore of it gives that part only)",
    "encpipe-backup: hint: make it with `pg_dump ... | encpipe seal` into a file outside the backup locations",
]


@pytest.fixture(scope="module")
def shop(pg):
    if DB not in pg.psql("SELECT datname FROM pg_database").split():
        pg.createdb(DB)
        pg.psql("CREATE TABLE customers (id int PRIMARY KEY, name text);"
                "CREATE TABLE orders (id int PRIMARY KEY, customer int REFERENCES customers);"
                "INSERT INTO customers SELECT g, 'c' || g FROM generate_series(1, 20) AS g;"
                "INSERT INTO orders SELECT g, 1 + g % 20 FROM generate_series(1, 30) AS g;", db=DB)
    return DB


def _contents(directory):
    """Every entry of `directory`: its name, bytes and mode."""
    return {name: (open(os.path.join(directory, name), "rb").read(), os.stat(os.path.join(directory, name)).st_mode)
            for name in sorted(os.listdir(directory))}


def _full_backup(pg, tools, key_file, directory):
    done = run([BACKUP, "--dir", directory, "--key-file", key_file, "--keep-last", "1", DB], script_env(pg, tools))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["filename"]


@pytest.mark.parametrize("marker", [True, False], ids=["marker", "no-marker"])
def test_a_dump_of_one_table_is_refused_and_the_full_backup_stays(pg, tools, key_file, shop, tmp_path, marker):
    directory = str(tmp_path / "b")
    full = _full_backup(pg, tools, key_file, directory)
    if not marker:  # as a location an earlier version wrote: the refused run writes none
        os.unlink(os.path.join(directory, ".encpipe-cluster"))
    before = _contents(directory)
    assert full in before
    done = run([BACKUP, "--dir", directory, "--key-file", key_file, DB, "--keep-last", "1", "--", "-t", "orders"],
               script_env(pg, tools))
    assert (done.returncode, done.stdout) == (64, b""), done.stderr
    assert done.stderr.decode().splitlines() == REFUSAL
    assert _contents(directory) == before


def test_an_exclusion_still_makes_a_backup(pg, tools, key_file, shop, tmp_path):
    """--exclude-table-data defines what every backup of the database holds: orders
    without its rows, customers whole."""
    directory = str(tmp_path / "b")
    env = script_env(pg, tools)
    done = run([BACKUP, "--dir", directory, "--key-file", key_file, DB, "--", "--exclude-table-data=orders"], env)
    assert done.returncode == 0, done.stderr
    name = json.loads(done.stdout)["filename"]
    assert name.startswith(DB + "_") and name in os.listdir(directory)
    target = "partial_shop_copy"
    pg.dropdb(target)
    done = run([RESTORE, "--no-globals", "--key-file", key_file, os.path.join(directory, name), target], env)
    assert done.returncode == 0, done.stderr
    assert pg.psql("SELECT count(*) FROM orders; SELECT count(*) FROM customers", db=target).split() == ["0", "20"]
    pg.dropdb(target)
