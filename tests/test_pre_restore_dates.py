"""A database named as a pre-restore copy but dated on no day (`shop_pre_restore_20241399T999999Z`,
which any role that may create databases can make) is no copy encpipe-restore made: it is
neither listed nor dropped, and the copies beside it are. Before, reading its date failed:
`--list-pre-restore` and `--drop-pre-restore-older-than` ended in an internal error (70), and
so did every restore of `shop` that kept the old database, once restored, before the swap."""

import json

from test_backup_restore import RESTORE, backup, ensure_small, restore, run, script_env

NO_DAY = "shop_pre_restore_20241399T999999Z"
A_COPY = "shop_pre_restore_20240101T000000Z"


def _names(pg):
    return set(pg.psql("SELECT datname FROM pg_catalog.pg_database").split())


def test_a_name_dated_on_no_day_is_no_copy_and_stops_nothing(pg, tools, key_file, tmp_path):
    for name in (NO_DAY, A_COPY):
        pg.dropdb(name)
        pg.createdb(name)
    env = script_env(pg, tools)
    try:
        listed = run([RESTORE, "--list-pre-restore"], env)
        assert (listed.returncode, listed.stderr) == (0, b""), listed.stderr.decode()
        assert [c["name"] for c in json.loads(listed.stdout)] == [A_COPY]
        source = ensure_small(pg, "dates_source")
        path, _ = backup(pg, tools, str(tmp_path / "b"), source, "--no-globals", "--key-file", key_file)
        pg.dropdb("shop")
        pg.createdb("shop")
        done = restore(pg, tools, path, "shop", "--no-globals", "--key-file", key_file)  # in place: a copy kept
        assert (done.returncode, done.stdout) == (0, b""), done.stderr.decode()
        dropped = run([RESTORE, "--drop-pre-restore-older-than", "0"], env)
        assert (dropped.returncode, dropped.stdout) == (0, b""), dropped.stderr.decode()
        left = {n for n in _names(pg) if "_pre_restore_" in n}
        assert left == {NO_DAY}
    finally:
        for name in (NO_DAY, A_COPY, "shop"):
            pg.dropdb(name)


YEAR_ONE = "shop_pre_restore_00010101T000000Z"
FUTURE = "shop_pre_restore_99991231T235959Z"


def test_copies_dated_year_one_and_in_the_future_are_listed_and_dropped_as_asked(pg, tools):
    """Year 1 was listed as created "1-01-01T00:00:00Z" (strftime's %Y), which a drop
    then failed to read back (70); and `--drop-pre-restore-older-than 0`, "all", left a
    copy dated in the future (made while the clock was ahead)."""
    for name in (YEAR_ONE, A_COPY, FUTURE):
        pg.dropdb(name)
        pg.createdb(name)
    env = script_env(pg, tools)
    try:
        listed = run([RESTORE, "--list-pre-restore"], env)
        assert (listed.returncode, listed.stderr) == (0, b""), listed.stderr.decode()
        assert [(c["name"], c["created"]) for c in json.loads(listed.stdout)] == [
            (YEAR_ONE, "0001-01-01T00:00:00Z"), (A_COPY, "2024-01-01T00:00:00Z"), (FUTURE, "9999-12-31T23:59:59Z")]
        dropped = run([RESTORE, "--drop-pre-restore-older-than", "1"], env)
        assert (dropped.returncode, dropped.stdout) == (0, b""), dropped.stderr.decode()
        assert {n for n in _names(pg) if "_pre_restore_" in n} == {FUTURE}
        dropped = run([RESTORE, "--drop-pre-restore-older-than", "0"], env)
        assert (dropped.returncode, dropped.stdout) == (0, b""), dropped.stderr.decode()
        assert {n for n in _names(pg) if "_pre_restore_" in n} == set()
    finally:
        for name in (YEAR_ONE, A_COPY, FUTURE):
            pg.dropdb(name)
