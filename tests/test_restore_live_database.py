"""What a DBA's live database holds beyond its contents, restored in place or onto a new name.

An in-place restore changes the contents and never who may connect, nor what
the database is to the server: `ALLOW_CONNECTIONS false`, `IS_TEMPLATE true` and
its connection limit stay; its default tablespace too (a database kept on a
large disk was restored into pg_default). What keeps the live database busy
without being a client session (a walsender, a subscription's apply worker, a
prepared transaction) is found before anything is restored: the whole restore
ran, then its swap failed. A DBNAME PostgreSQL cannot hold (over 63 bytes) is
refused: it became a database of another, shorter name. A server stopped while
the dump loads leaves the live database as it was, and one error line.
"""

import subprocess
import time

import pytest

from pgcluster import PgCluster
from test_restore_dba import _tablespace
from test_backup_restore import (RESTORE, backup, databases, dump, encpipe, ensure_small, leftover_databases, restore,
                                 script_env)

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


def _drop(cluster, name):
    """`name` and its copies dropped, templates or not."""
    for db in databases(cluster):
        if db == name or db.startswith(name + "_pre_restore_"):
            cluster.psql("ALTER DATABASE \"%s\" IS_TEMPLATE false" % db)
            cluster.dropdb(db)


def _fresh(cluster, name):
    _drop(cluster, name)
    cluster.createdb(name)
    cluster.psql("CREATE TABLE precious (x text); INSERT INTO precious VALUES ('keep me');", db=name)
    return dump(cluster, name)


def _copies(cluster, name):
    return [db for db in databases(cluster) if db.startswith(name + "_pre_restore_")]


FLAGS = "SELECT datistemplate, datallowconn, datconnlimit FROM pg_database WHERE datname = '%s'"


def test_an_in_place_restore_keeps_allow_connections_is_template_and_the_connection_limit(cluster, tools, key_file,
                                                                                          made):
    path, source = made
    before = _fresh(cluster, "live_flags")
    cluster.psql("ALTER DATABASE live_flags CONNECTION LIMIT 3; ALTER DATABASE live_flags IS_TEMPLATE true; "
                 "ALTER DATABASE live_flags ALLOW_CONNECTIONS false;")
    proc = restore(cluster, tools, path, "live_flags", "--key-file", key_file)
    assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
    assert cluster.psql(FLAGS % "live_flags") == "t|f|3\n"  # before: f|t|3, anyone granted CONNECT could
    [copy] = _copies(cluster, "live_flags")
    assert cluster.psql(FLAGS % copy) == "f|f|3\n"  # the template is the name's, not the copy's: it may be dropped
    cluster.psql("ALTER DATABASE \"%s\" ALLOW_CONNECTIONS true" % copy)
    assert dump(cluster, copy) == before
    # and again, the previous one dropped: it was a template (before, "cannot drop a template database")
    proc = restore(cluster, tools, path, "live_flags", "--key-file", key_file, "--drop-old")
    assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
    assert cluster.psql(FLAGS % "live_flags") == "t|f|3\n"
    assert _copies(cluster, "live_flags") == [copy]
    cluster.psql("ALTER DATABASE live_flags ALLOW_CONNECTIONS true")
    assert dump(cluster, "live_flags") == dump(cluster, source)
    _drop(cluster, "live_flags")
    assert leftover_databases(cluster) == set()


def test_a_template_restores_as_one_onto_a_new_name(cluster, tools, key_file, tmp_path):
    _fresh(cluster, "live_template")
    cluster.psql("ALTER DATABASE live_template IS_TEMPLATE true")
    path, _ = backup(cluster, tools, str(tmp_path / "b"), "live_template", "--key-file", key_file)
    cluster.psql("ALTER DATABASE live_template IS_TEMPLATE false")
    cluster.dropdb("live_template")
    proc = restore(cluster, tools, path, "live_template", "--key-file", key_file)
    assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
    assert cluster.psql(FLAGS % "live_template") == "t|t|-1\n"
    _drop(cluster, "live_template")


SPACE = ("SELECT t.spcname FROM pg_database d JOIN pg_tablespace t ON t.oid = d.dattablespace "
         "WHERE d.datname = '%s'")


def test_the_database_keeps_its_default_tablespace(cluster, tools, key_file, tmp_path):
    _tablespace(cluster, "big_disk")
    for db in databases(cluster):
        if db.startswith("live_spaced"):
            cluster.dropdb(db)
    cluster.psql("CREATE DATABASE live_spaced TABLESPACE big_disk")
    cluster.psql("CREATE TABLE t AS SELECT 1 AS x", db="live_spaced")
    path, _ = backup(cluster, tools, str(tmp_path / "b"), "live_spaced", "--key-file", key_file)
    proc = restore(cluster, tools, path, "live_spaced", "--key-file", key_file)  # in place
    assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
    assert cluster.psql(SPACE % "live_spaced") == "big_disk\n"  # before: pg_default
    for db in databases(cluster):
        if db.startswith("live_spaced"):
            cluster.dropdb(db)
    proc = restore(cluster, tools, path, "live_spaced", "--key-file", key_file)  # onto a server without it
    assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
    assert cluster.psql(SPACE % "live_spaced") == "big_disk\n"
    assert cluster.psql("SELECT x FROM t", db="live_spaced") == "1\n"


def test_a_recorded_tablespace_the_server_lacks_is_done_without(tools, key_file, tmp_path, empty_cluster):
    """As tablespaces of the dump's tables: named in the warning, not made (the database
    goes to the server's default); a plain dump whose tables name none restores."""
    with PgCluster() as source:
        _tablespace(source, "far_disk")
        source.psql("CREATE DATABASE spaced TABLESPACE far_disk")
        source.psql("CREATE TABLE t AS SELECT 1 AS x", db="spaced")
        path, _ = backup(source, tools, str(tmp_path / "b"), "spaced", "--key-file", key_file)
    empty = empty_cluster
    proc = restore(empty, tools, path, "spaced", "--key-file", key_file)
    assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
    assert proc.stderr.splitlines()[0] == PREFIX + b"warning: tablespaces this server lacks are not created: " \
                                                   b"far_disk"
    assert empty.psql(SPACE % "spaced") == "pg_default\n"
    assert empty.psql("SELECT x FROM t", db="spaced") == "1\n"


def _refused(cluster, tools, key_file, path, db, options, error, hint):
    """The restore of `path` into `db` refused before anything: 75, one error line and its hint."""
    proc = restore(cluster, tools, path, db, "--key-file", key_file, *options)
    assert (proc.returncode, proc.stdout) == (75, b""), proc.stderr.decode()
    assert proc.stderr == PREFIX + b"error: " + error + b"\n" + PREFIX + b"hint: " + hint + b"\n"


@pytest.mark.parametrize("options", [[], ["--terminate-connections"]])
def test_a_prepared_transaction_on_the_database_is_refused_before_anything_is_restored(cluster, tools, key_file,
                                                                                      made, options):
    """No session holds it, and none can end it: --terminate-connections cannot either.
    Before, the whole dump was restored, then the swap failed (1): `being accessed by other users`."""
    path, _ = made
    before = _fresh(cluster, "live_prepared")
    cluster.psql("BEGIN; INSERT INTO precious VALUES ('in doubt'); PREPARE TRANSACTION 'live_prepared_tx';",
                 db="live_prepared")
    try:
        _refused(cluster, tools, key_file, path, "live_prepared", options,
                 b"database live_prepared has 1 prepared transaction(s), which no session holds; nothing was changed",
                 b"commit or roll them back first (COMMIT PREPARED or ROLLBACK PREPARED, as pg_prepared_xacts lists "
                 b"them)")
        assert leftover_databases(cluster) == set()
    finally:
        cluster.psql("ROLLBACK PREPARED 'live_prepared_tx'", db="live_prepared")
    assert dump(cluster, "live_prepared") == before


def _workers(cluster, db):
    return int(cluster.psql("SELECT count(*) FROM pg_stat_activity WHERE datname = '%s' "
                            "AND backend_type = 'logical replication worker'" % db))


@pytest.fixture
def subscribed(cluster):
    """live_sub, with an enabled subscription (to live_pub) whose apply worker runs: its dump."""
    _fresh(cluster, "live_pub")
    cluster.psql("CREATE TABLE p (x int PRIMARY KEY); CREATE PUBLICATION live_pub FOR TABLE p;"
                 "SELECT pg_create_logical_replication_slot('live_slot', 'pgoutput');", db="live_pub")
    _fresh(cluster, "live_sub")
    connection = "host=%s port=%s dbname=live_pub user=%s" % (cluster.host, cluster.port, cluster.user)
    cluster.psql("CREATE TABLE p (x int PRIMARY KEY); CREATE SUBSCRIPTION live_sub CONNECTION '%s' "
                 "PUBLICATION live_pub WITH (create_slot = false, slot_name = 'live_slot');" % connection,
                 db="live_sub")
    deadline = time.monotonic() + 60
    while not _workers(cluster, "live_sub"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    yield dump(cluster, "live_sub")
    for db in databases(cluster):
        if db.startswith("live_sub"):
            cluster.psql("ALTER SUBSCRIPTION live_sub DISABLE; ALTER SUBSCRIPTION live_sub SET (slot_name = NONE); "
                         "DROP SUBSCRIPTION live_sub;", db=db, check=False)  # the restored one has none
            cluster.dropdb(db)
    cluster.psql("SELECT pg_drop_replication_slot('live_slot')")


@pytest.mark.parametrize("options", [[], ["--terminate-connections"]])
def test_an_enabled_subscription_is_refused_before_anything_is_restored(cluster, tools, key_file, made, subscribed,
                                                                       options):
    """Its apply worker is no client backend, and was not counted: the restore ran, and its
    swap failed (1, `is being accessed by other users`). Ended by --terminate-connections, the
    worker comes back at once, and the swap failed all the same, or not, by a race."""
    path, source = made
    proc = restore(cluster, tools, path, "live_sub", "--key-file", key_file, *options)
    assert (proc.returncode, proc.stdout) == (75, b""), proc.stderr.decode()
    assert proc.stderr == (PREFIX + b"error: database live_sub has 1 enabled subscription(s), whose workers come "
                                    b"back once ended; nothing was changed\n" +
                           PREFIX + b"hint: disable them first (ALTER SUBSCRIPTION ... DISABLE, in live_sub)\n")
    assert leftover_databases(cluster) == set()
    assert dump(cluster, "live_sub") == subscribed
    cluster.psql("ALTER SUBSCRIPTION live_sub DISABLE", db="live_sub")
    proc = restore(cluster, tools, path, "live_sub", "--key-file", key_file)
    assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
    assert dump(cluster, "live_sub") == dump(cluster, source)
    [copy] = _copies(cluster, "live_sub")
    assert dump(cluster, copy) == subscribed


def _replication_session(cluster, db):
    """A walsender on `db` (a logical replication connection, as a subscriber's), open until its stdin closes."""
    holder = subprocess.Popen([cluster.bin("psql"), "-X", "-d", "dbname=%s replication=database" % db],
                              env=cluster.env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while cluster.psql("SELECT count(*) FROM pg_stat_activity WHERE datname = '%s' AND backend_type = 'walsender'"
                       % db) != "1\n":
        assert time.monotonic() < deadline and holder.poll() is None
        time.sleep(0.05)
    return holder


def test_a_replication_connection_is_a_session_of_the_database(cluster, tools, key_file, made):
    """A walsender is no client backend, and was not counted: the restore ran, and its swap
    failed (1). Now it is 75 before anything, and --terminate-connections ends it at the swap."""
    path, source = made
    before = _fresh(cluster, "live_walsender")
    holder = _replication_session(cluster, "live_walsender")
    try:
        proc = restore(cluster, tools, path, "live_walsender", "--key-file", key_file)
        assert (proc.returncode, proc.stdout) == (75, b""), proc.stderr.decode()
        assert proc.stderr == (PREFIX + b"error: database live_walsender has 1 active connection(s); nothing was "
                                        b"changed\n" + PREFIX + b"hint: close them, or use --terminate-connections\n")
        assert leftover_databases(cluster) == set()
        assert dump(cluster, "live_walsender") == before
        proc = restore(cluster, tools, path, "live_walsender", "--key-file", key_file, "--terminate-connections",
                       "--drop-old")
        assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
        assert dump(cluster, "live_walsender") == dump(cluster, source)
    finally:
        holder.stdin.close()
        holder.wait()
    assert leftover_databases(cluster) == set()


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


def _pg_ctl(cluster, *args):
    done = cluster._server_cmd([cluster.bin("pg_ctl"), *args, "-w", "-D", cluster.datadir, "-l", cluster.logfile])
    assert done.returncode == 0, done.stderr


def test_a_server_stopped_while_the_dump_loads_leaves_the_live_database_and_one_error_line(cluster, tools, key_file,
                                                                                         made, tmp_path):
    """The scratch database cannot be dropped then: a warning says so, and that a later
    restore drops it (it does); the failure is the one error line. Before, "could not drop
    temporary database" was an error line of its own, before the restore's."""
    before = _fresh(cluster, "live_stopped")
    path = tmp_path / "slow.sql.enc"
    encpipe(["seal", "--key-file", key_file, "-o", str(path)], input=b"SELECT pg_sleep(600);\n", check=True)
    proc = subprocess.Popen([RESTORE, "--key-file", key_file, "--no-globals", str(path), "live_stopped"],
                            env=script_env(cluster, tools), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while cluster.psql("SELECT count(*) FROM pg_stat_activity WHERE datname LIKE 'encpipe_restore_%' "
                           "AND query LIKE 'SELECT pg_sleep%'") != "1\n":
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        [scratch] = [db for db in databases(cluster) if db.startswith("encpipe_restore_")]
        _pg_ctl(cluster, "stop", "-m", "fast")
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        _pg_ctl(cluster, "start")
    assert (proc.returncode, out) == (1, b""), err.decode()
    ours = [line for line in err.decode().splitlines() if line.startswith("encpipe-restore: ")]
    assert [line for line in ours if line.startswith("encpipe-restore: error: ")] == [
        "encpipe-restore: error: restoring %s failed; database live_stopped is unchanged" % path], ours
    warning = "encpipe-restore: warning: could not drop the scratch database %s (psql: error: connection" % scratch
    assert [line for line in ours if line.startswith(warning)] and \
        [line for line in ours if line.endswith("); a later restore drops it")], ours
    assert dump(cluster, "live_stopped") == before
    assert scratch in databases(cluster)
    proc = restore(cluster, tools, made[0], "live_stopped", "--key-file", key_file, "--drop-old")
    assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
    assert b"dropped scratch database(s) left by killed restores: %s\n" % scratch.encode() in proc.stderr
    assert leftover_databases(cluster) == set()
    _drop(cluster, "live_stopped")


@pytest.mark.parametrize("options", [[], ["--drop-old"]])
def test_a_logical_replication_slot_is_refused_before_anything_is_restored(cluster, tools, key_file, made, options):
    """A logical slot belongs to its database: an in-place restore left it with the copy
    (the consumer of DBNAME found none), and --drop-old dropped it with the copy, its
    place in the stream lost, status 0, unsaid. Now 75, nothing changed; once the slot
    is dropped, the restore runs."""
    path, source = made
    before = _fresh(cluster, "live_slotted")
    cluster.psql("SELECT pg_create_logical_replication_slot('live_cdc', 'test_decoding')", db="live_slotted")
    try:
        _refused(cluster, tools, key_file, path, "live_slotted", options,
                 b"database live_slotted has 1 logical replication slot(s), which would stay with the database the "
                 b"restore replaces; nothing was changed",
                 b"drop them first (pg_drop_replication_slot, as pg_replication_slots lists them) and make them again "
                 b"after the restore, or restore into another name")
        assert leftover_databases(cluster) == set() and _copies(cluster, "live_slotted") == []
        assert dump(cluster, "live_slotted") == before
        assert cluster.psql("SELECT database FROM pg_replication_slots WHERE slot_name = 'live_cdc'") == \
            "live_slotted\n"
    finally:
        cluster.psql("SELECT pg_drop_replication_slot('live_cdc')")
    proc = restore(cluster, tools, path, "live_slotted", "--key-file", key_file, *options)
    assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
    assert dump(cluster, "live_slotted") == dump(cluster, source)
    _drop(cluster, "live_slotted")
