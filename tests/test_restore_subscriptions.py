"""A restored database that holds a logical replication subscription. pg_dump writes
it with connect = false (it comes back disabled, naming the publisher's slot), and
PostgreSQL refuses to drop a database that holds one, FORCE or not. Before, a scratch
database with one stayed, the restored data in it, when the swap failed (`could not
drop the scratch database ...; a later restore drops it`), and every later restore
left it alone. Now the subscriptions in it are dropped first, with no slot (the
publisher's, which the live database's subscription may use, is not touched), then
the database (encpipe/pgcommit.py, drop_scratch)."""

import subprocess
import time

from test_backup_restore import RESTORE, backup, databases, dump, ensure_small, leftover_databases, restore, \
    script_env
from test_restore_edges import UNTIL_TARGET_IS_IN_USE, _end, _hold
from test_restore_hardening import TARGET, _fresh_target, _seal

SOURCE = "sub_source"
SUBSCRIBE = ("CREATE SUBSCRIPTION %s CONNECTION 'dbname=nowhere host=/nonexistent' PUBLICATION p "
             "WITH (connect = false)")


def _subscriptions(pg):
    return pg.psql("SELECT d.datname || ':' || s.subname FROM pg_subscription s JOIN pg_database d "
                   "ON d.oid = s.subdbid ORDER BY 1").split()


def _with_subscription(pg):
    if SOURCE not in databases(pg):
        pg.createdb(SOURCE)
        pg.psql("CREATE TABLE t (x int); INSERT INTO t VALUES (1);", db=SOURCE)
        pg.psql(SUBSCRIBE % "sub_s", db=SOURCE)
    return SOURCE


def test_a_scratch_database_holding_a_subscription_is_dropped_when_the_swap_fails(pg, tools, key_file, tmp_path):
    before = _fresh_target(pg)
    path = _seal(tmp_path, key_file, UNTIL_TARGET_IS_IN_USE + dump(pg, _with_subscription(pg)), "sub.sql.enc")
    proc = subprocess.Popen([RESTORE, "--key-file", key_file, path, TARGET], env=script_env(pg, tools),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not [d for d in databases(pg) if d.startswith("encpipe_restore_")]:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    holder = _hold(pg, TARGET)  # the swap's rename fails: TARGET is in use
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        _end(holder)
    assert (proc.returncode, out) == (1, b""), err.decode()
    lines = [line for line in err.decode().splitlines()  # but the load's `subscription was created, but is not
             if not (line.startswith("psql:<stdin>:") and line.endswith(" WARNING:  01000"))]  # connected`
    assert len(lines) == 2 and "but could not swap it in" in lines[0], lines  # no `could not drop` warning
    assert dump(pg, TARGET) == before
    assert leftover_databases(pg) == set()
    assert _subscriptions(pg) == [SOURCE + ":sub_s"]  # the source's own, untouched
    pg.dropdb(TARGET)


def test_a_killed_runs_scratch_database_holding_a_subscription_is_dropped_by_the_next_restore(pg, tools, key_file,
                                                                                           tmp_path):
    leftover = "encpipe_restore_20200101T000000Z_1"  # as a run killed after its dump loaded leaves it
    pg.psql('CREATE DATABASE "%s";' % leftover)
    pg.psql(SUBSCRIBE % "left_s", db=leftover)
    path, _ = backup(pg, tools, str(tmp_path / "b"), ensure_small(pg, "edge_source"), "--key-file", key_file,
                     "--no-globals")
    pg.dropdb(TARGET)
    proc = restore(pg, tools, path, TARGET, "--key-file", key_file, "--no-globals")
    assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
    assert ("encpipe-restore: dropped scratch database(s) left by killed restores: " + leftover) in \
        proc.stderr.decode().splitlines()
    assert leftover not in databases(pg)
    assert not [s for s in _subscriptions(pg) if s.startswith(leftover)]
    pg.dropdb(TARGET)
