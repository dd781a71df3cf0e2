"""What a DBA's live database holds beyond its contents, restored in place or onto a new name.

A DBNAME PostgreSQL cannot hold (over 63 bytes) is refused: it became a
database of another, shorter name.
"""

import pytest

from pgcluster import PgCluster
from test_backup_restore import backup, databases, ensure_small, leftover_databases, restore

PREFIX = b"encpipe-restore: "


@pytest.fixture(scope="module")
def cluster():
    with PgCluster(settings={"max_prepared_transactions": "2", "wal_level": "logical"}) as c:
        yield c


@pytest.fixture(scope="module")
def made(cluster, tools, key_file, tmp_path_factory):
    """A backup of a small database: (path, its database)."""
    source = ensure_small(cluster, "live_source")
    path, _ = backup(cluster, tools, str(tmp_path_factory.mktemp("b")), source, "--key-file", key_file)
    return path, source


def test_a_dbname_postgresql_cannot_hold_is_refused(cluster, tools, key_file, made):
    """Over 63 bytes: PostgreSQL cuts a name there (not inside a character), and the restore
    made a database of the cut name while it said it had restored the whole one."""
    path, _ = made
    name = "a" * 62 + "\u00e9" + "tail"  # the é from byte 63 on: cut, it is 62 a's
    proc = restore(cluster, tools, path, name, "--key-file", key_file)
    assert (proc.returncode, proc.stdout) == (64, b""), proc.stderr.decode()
    assert proc.stderr == (PREFIX + ("error: database name %s is longer than PostgreSQL's 63 bytes; nothing was "
                                     "changed\n" % name).encode() +
                           PREFIX + b"hint: see encpipe-restore --help\n")
    assert not [db for db in databases(cluster) if db.startswith("aaaa")]
    assert leftover_databases(cluster) == set()
