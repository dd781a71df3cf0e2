"""A restore loads the dump in one transaction (psql --single-transaction, pg_restore
--single-transaction), which holds a lock on each table, index, sequence and large object
it makes until it commits: a database with more of them than the server's lock table has
slots (max_locks_per_transaction times the sum of max_connections, the worker processes and
max_prepared_transactions: 7,808 with PostgreSQL's defaults; tens of thousands of large
objects, or a few thousand partitions with their indexes) backs up every night and restores on no server so
configured. The restore fails whole, nothing left (1), but said only `ERROR:  53200` and
how to see psql's messages: now its hint names the lock table and what to change."""

import json
import os

import pytest

from pgcluster import PgCluster
from test_backup_restore import BACKUP, RESTORE, run, script_env

HINT = ("encpipe-restore: hint: the server ran out of shared memory (53200), most often of lock slots: a restore "
        "loads the dump in one transaction, which locks each table, index and large object it makes until it "
        "commits; raise max_locks_per_transaction on this server (a restart), then restore again")
_STATE = "SELECT datname FROM pg_database ORDER BY 1; SELECT rolname FROM pg_roles ORDER BY 1"


@pytest.fixture(scope="module")
def backups(tools, key_file, tmp_path_factory):
    """A plain and a custom backup of a database of 4,000 large objects, a role's."""
    where, made = tmp_path_factory.mktemp("locks") / "b", {}
    with PgCluster() as old:
        old.psql("CREATE ROLE docs_owner LOGIN; CREATE DATABASE docs OWNER docs_owner")
        old.psql("SET ROLE docs_owner; SELECT count(lo_from_bytea(0, 'page')) FROM generate_series(1, 4000)", db="docs")
        for fmt in ("plain", "custom"):
            proc = run([BACKUP, "--dir", str(where), "--format", fmt, "--key-file", key_file, "docs"],
                       script_env(old, tools))
            assert proc.returncode == 0, proc.stderr.decode()
            made[fmt] = os.path.join(str(where), json.loads(proc.stdout)["filename"])
    return made


@pytest.fixture(scope="module")
def few_locks():
    """A server whose lock table holds far fewer slots than the backups' objects."""
    with PgCluster(settings={"max_locks_per_transaction": "10", "max_connections": "20"}) as new:
        yield new


@pytest.mark.parametrize("fmt", ["plain", "custom"])
def test_a_restore_that_runs_out_of_lock_slots_says_so_and_what_to_change(tools, key_file, backups, few_locks, fmt):
    path, new = backups[fmt], few_locks
    before, env = new.psql(_STATE), script_env(new, tools)
    proc = run([RESTORE, "--key-file", key_file, path, "docs"], env)
    assert (proc.returncode, proc.stdout) == (1, b"")
    lines = proc.stderr.decode().splitlines()
    assert [line for line in lines if line.endswith("ERROR:  53200")]
    assert lines[-2:] == ["encpipe-restore: error: restoring %s failed; database docs was not created" % path, HINT]
    assert new.psql(_STATE) == before  # no database, no role left
    if fmt == "plain":  # psql's whole message: the same hint
        proc = run([RESTORE, "--key-file", key_file, path, "docs", "--", "-v", "VERBOSITY=default"], env)
        assert (proc.returncode, proc.stdout) == (1, b"")
        assert "max_locks_per_transaction" in proc.stderr.decode()
        assert proc.stderr.decode().splitlines()[-1] == HINT
        assert new.psql(_STATE) == before


def test_the_same_backups_restore_once_the_lock_table_is_raised(tools, key_file, backups):
    with PgCluster(settings={"max_locks_per_transaction": "300", "max_connections": "20"}) as raised:
        for fmt, path in sorted(backups.items()):
            proc = run([RESTORE, "--key-file", key_file, path, f"docs_{fmt}"], script_env(raised, tools))
            assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
            assert raised.psql("SELECT count(*) FROM pg_largeobject_metadata", db=f"docs_{fmt}") == "4000\n"
