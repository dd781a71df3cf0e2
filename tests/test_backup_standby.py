"""Backups taken from a hot standby (pg_basebackup -R of a primary), as many sites take
them: every statement a backup sends only reads, and the standby's backup restores on
the primary as the primary's would (one cluster: the same system identifier). A
standby whose WAL replay is paused keeps its data as of the pause however new the run:
the backup says so in a warning (before, nothing did, and encpipe-check called it
fresh); and one whose database has unlogged tables, whose data pg_dump leaves out
there, says that too."""

import os
import time

import pytest

from pgcluster import BOOTSTRAP_ROLE, PgCluster, PgClusterError
from test_backup_restore import backup, dump, restore

PAUSED = ("encpipe-backup: warning: the server is a standby whose WAL replay is paused: this backup holds its data "
          "as of when replay stopped, not as of now (resume it with pg_wal_replay_resume(), or back up another server)")
UNLOGGED = ("encpipe-backup: warning: the server is a standby, from which pg_dump leaves out the data of unlogged "
            "tables and sequences (their definitions are kept): this database has some; back up its primary to keep "
            "it")


class Standby(PgCluster):
    """A hot standby of `primary`, streaming from it over its socket."""

    def __init__(self, primary):
        super().__init__()
        self.primary = primary
        self.user = BOOTSTRAP_ROLE  # a superuser of the primary's: a standby makes no role of its own

    def _init(self):
        os.mkdir(self.socket_dir, 0o755)
        if self._as_root:
            for path in (self.base_dir, self.socket_dir):
                os.chown(path, self._server_uid, self._server_gid)
        proc = self._server_cmd([self.bin("pg_basebackup"), "-D", self.datadir, "-R", "-X", "stream", "-c", "fast", "--no-sync",
                                 "-h", self.primary.socket_dir, "-p", str(self.primary.port), "-U", BOOTSTRAP_ROLE])
        if proc.returncode != 0:
            self._fail("pg_basebackup", proc)
        with open(os.path.join(self.datadir, "postgresql.conf"), "a") as f:
            f.write("port = %d\nunix_socket_directories = '%s'\nhot_standby = on\n" % (self.port, self.socket_dir))
        self._initialized = True


def _until(cluster, sql, expected, db="shop"):
    """Until `sql` answers `expected` in `db` (a database the standby may not have replayed yet)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            found = cluster.psql(sql, db=db).strip()
        except PgClusterError as e:
            found = str(e)
        if found == expected:
            return
        assert time.monotonic() < deadline, found
        time.sleep(0.1)


@pytest.fixture(scope="module")
def pair():
    with PgCluster() as primary:
        primary.psql("CREATE ROLE shop_owner; CREATE DATABASE shop OWNER shop_owner;"
                     "COMMENT ON DATABASE shop IS 'the shop';")
        primary.psql("CREATE TABLE t (x int); INSERT INTO t VALUES (1); ALTER TABLE t OWNER TO shop_owner;", db="shop")
        with Standby(primary) as standby:
            _until(standby, "SELECT count(*) FROM t", "1")
            yield primary, standby


def test_a_standbys_backup_restores_on_the_primary(pair, tools, key_file, tmp_path):
    primary, standby = pair
    path, report = backup(standby, tools, str(tmp_path / "b"), "shop", "--key-file", key_file)
    assert report["filename"].startswith("shop_") and os.path.exists(path)
    primary.dropdb("shop_copy")
    proc = restore(primary, tools, path, "shop_copy", "--key-file", key_file)
    assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
    assert dump(primary, "shop_copy") == dump(primary, "shop")
    assert primary.psql("SELECT shobj_description(oid, 'pg_database') || ' ' || pg_get_userbyid(datdba) "
                        "FROM pg_database WHERE datname = 'shop_copy'").strip() == "the shop shop_owner"
    primary.dropdb("shop_copy")


def test_a_standby_whose_replay_is_paused_is_backed_up_with_a_warning(pair, tools, key_file, tmp_path):
    primary, standby = pair
    standby.psql("SELECT pg_wal_replay_pause()")
    try:
        primary.psql("INSERT INTO t VALUES (2);", db="shop")  # committed before the run, not in its backup
        proc = backup(standby, tools, str(tmp_path / "b"), "shop", "--key-file", key_file, check=False)
        assert proc.returncode == 0, proc.stderr.decode()
        assert PAUSED in proc.stderr.decode().splitlines(), proc.stderr.decode()
    finally:
        standby.psql("SELECT pg_wal_replay_resume()")
    _until(standby, "SELECT count(*) FROM t", "2")
    proc = backup(standby, tools, str(tmp_path / "c"), "shop", "--key-file", key_file, check=False)
    assert (proc.returncode, proc.stderr) == (0, b""), proc.stderr.decode()


@pytest.mark.parametrize("unlogged", ["CREATE UNLOGGED TABLE hits (n int); INSERT INTO hits VALUES (1);",
                                      "CREATE UNLOGGED SEQUENCE hits; SELECT setval('hits', 777);"],
                         ids=["table", "sequence"])
def test_a_standbys_database_with_unlogged_tables_is_backed_up_with_a_warning(pair, tools, key_file, tmp_path,
                                                                               unlogged):
    primary, standby = pair
    primary.psql("CREATE DATABASE cache; ")
    primary.psql(unlogged, db="cache")
    try:
        _until(standby, "SELECT count(*) FROM pg_class WHERE relname = 'hits'", "1", db="cache")
        proc = backup(standby, tools, str(tmp_path / "b"), "cache", "--key-file", key_file, check=False)
        assert proc.returncode == 0, proc.stderr.decode()
        assert proc.stderr.decode().splitlines() == [UNLOGGED]
        proc = backup(primary, tools, str(tmp_path / "c"), "cache", "--key-file", key_file, check=False)
        assert (proc.returncode, proc.stderr) == (0, b""), proc.stderr.decode()  # the primary dumps the data
    finally:
        primary.dropdb("cache")
