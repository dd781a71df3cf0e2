"""Sanity checks for the throwaway PostgreSQL harness."""

import os
import subprocess
import time

from pgcluster import MARKERS, PgCluster, seed_awkward_database


def test_select_1(pg):
    assert pg.psql("select 1") == "1\n"
    assert pg.psql("select current_user").strip() == pg.user
    assert pg.psql("select rolsuper from pg_roles where rolname = current_user") == "t\n"
    assert pg.psql("show listen_addresses") == "\n"
    assert pg.psql("show server_version_num").startswith("15")


def test_env_points_clients_at_cluster(pg):
    env = pg.env
    assert env["PGHOST"] == pg.socket_dir
    assert env["PGPORT"] == str(pg.port)
    assert env["PGUSER"] == pg.user
    assert env["PGDATABASE"] == "postgres"
    assert os.path.exists(os.path.join(pg.socket_dir, ".s.PGSQL.%d" % pg.port))
    out = subprocess.run(
        ["psql", "-XAtc", "select 40 + 2"], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert out == "42\n"


def test_seed_awkward_database(pg):
    seed_awkward_database(pg, "seed_check")
    try:
        q = pg.psql
        db = "seed_check"
        assert q("select count(*) from pg_namespace where nspname in "
                 "('app', 'Weird Schema', 'archive')", db=db) == "3\n"
        assert q("select to_regclass('app.ticket_seq') is not null", db=db) == "t\n"
        assert q("select to_regclass('app.notes_title_idx') is not null", db=db) == "t\n"
        assert q("select to_regclass('app.note_summary') is not null", db=db) == "t\n"
        assert q("select app.shout('ab')", db=db) == "AB!\n\n"
        assert q("select count(*) from app.note_summary", db=db).strip().isdigit()
        assert q("select max(length(big)) > 1000000 from archive.blobs", db=db) == "t\n"
        assert q("select max(length(blob)) >= 1000000 from archive.blobs", db=db) == "t\n"
        assert q("select count(*) > 0 from app.notes where body is null", db=db) == "t\n"
        assert q("select body from app.notes where title = 'unicode'", db=db).startswith(
            "Straße, 日本語, emoji 🐘")
        assert q("select body = E'line one\\nline two\\r\\nline three\\n' "
                 "from app.notes where title = 'newlines'", db=db) == "t\n"
    finally:
        pg.dropdb("seed_check")


def test_pg_dump_of_seeded_db_contains_markers(pg):
    seed_awkward_database(pg, "seed_dump")
    try:
        dump = subprocess.run(
            ["pg_dump", "-d", "seed_dump"], env=pg.env, capture_output=True, check=True
        ).stdout
        assert len(dump) > 3_000_000
        for marker in MARKERS:
            assert marker.encode() in dump, marker
        assert "日本".encode() in dump
    finally:
        pg.dropdb("seed_dump")


def test_second_cluster_starts_and_cleans_up(pg):
    t0 = time.monotonic()
    with PgCluster() as other:
        assert other.socket_dir != pg.socket_dir
        assert other.psql("select 2") == "2\n"
        base = other.base_dir
    assert not os.path.exists(base)
    assert time.monotonic() - t0 < 30
    assert pg.psql("select 1") == "1\n"


def test_no_secret_of_the_tests_reaches_a_server_or_its_clients(pg, monkeypatch):
    """The server's processes and the clients' environment get a minimal
    environment: none of the caller's secrets."""
    secrets = {"ENCPIPE_KEY": "00" * 32, "PGPASSWORD": "pg-secret", "RCLONE_CONFIG_PASS": "rclone-secret",
               "BACKUP_ENCRYPTION_KEY": "legacy-secret"}
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    with PgCluster() as other:
        with open(os.path.join(other.datadir, "postmaster.pid")) as f:
            pid = int(f.readline())
        with open(f"/proc/{pid}/environ", "rb") as f:
            server_env = f.read()
        client_env = other.env
        assert other.psql("select 3") == "3\n"
    for name, value in secrets.items():
        assert name.encode() not in server_env and value.encode() not in server_env
        assert name not in client_env and value not in client_env.values()
    assert set(client_env) <= {"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "PYTHONPATH",
                                "PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "GOGC", "GOMEMLIMIT"}


def test_an_empty_cluster_is_handed_out_again_only_as_new():
    """tests/emptycluster.py: what a restore onto an empty server leaves (databases, roles
    owning objects in them and settings) is reset and the same cluster handed out again;
    a change the reset does not undo (ALTER SYSTEM, an object in template1, a tablespace)
    and the next test gets a new cluster."""
    from emptycluster import EmptyClusters

    clusters = EmptyClusters()
    try:
        first = clusters.take()
        new = first.psql("SELECT datname FROM pg_database ORDER BY 1"), first.psql("SELECT rolname FROM pg_roles ORDER BY 1")
        first.psql("CREATE ROLE ec_owner; CREATE ROLE ec_reader; GRANT ec_reader TO ec_owner; "
                   "ALTER ROLE ec_reader SET work_mem = '8MB'; CREATE DATABASE ec_db OWNER ec_owner; "
                   "COMMENT ON DATABASE ec_db IS 'restored'; COMMENT ON ROLE ec_owner IS 'theirs'")
        first.psql("CREATE TABLE t (x int); ALTER TABLE t OWNER TO ec_owner; ALTER DATABASE ec_db SET work_mem = '9MB'",
                   db="ec_db")
        first.psql("CREATE TABLE kept_by_postgres (x int); ALTER TABLE kept_by_postgres OWNER TO ec_owner")
        holder = subprocess.Popen([first.bin("psql"), "-X", "-d", "ec_db"], env=first.env, stdin=subprocess.PIPE,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # a session left open
        try:
            # Connected before the reset: one still starting as the database was dropped stays
            # a 'client backend' a moment longer, and the cluster then is not handed out again.
            idle = "SELECT count(*) FROM pg_stat_activity WHERE datname = 'ec_db' AND state = 'idle'"
            deadline = time.monotonic() + 10
            while first.psql(idle).strip() != "1":
                assert time.monotonic() < deadline and holder.poll() is None, "the session never connected"
                time.sleep(0.02)
            clusters.give(first)
            again = clusters.take()
        finally:
            holder.stdin.close()
            holder.wait()
        assert again is first
        assert (again.psql("SELECT datname FROM pg_database ORDER BY 1"),
                again.psql("SELECT rolname FROM pg_roles ORDER BY 1")) == new
        for change in ("ALTER SYSTEM SET work_mem = '7MB'; SELECT pg_reload_conf()",
                       "CREATE TABLE left_in_template1 (x int)", "ALTER DATABASE postgres SET work_mem = '6MB'",
                       "ALTER ROLE postgres SET work_mem = '5MB'", "ALTER DATABASE template1 CONNECTION LIMIT 3"):
            dirty = clusters.take()
            dirty.psql(change, db="template1" if "template1 (" in change else None)
            clusters.give(dirty)
            fresh = clusters.take()
            assert fresh is not dirty and not os.path.exists(dirty.base_dir), change
            clusters.give(fresh)
    finally:
        clusters.close()
