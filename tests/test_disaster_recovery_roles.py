"""Disaster recovery of several databases whose newest runs are of different times:
each run's globals file holds the roles as they were then. Restored one after
another, an older run's file created again a role dropped since (a revoked login,
its password and memberships with it), silently. README's procedure restores the
newest run first, which creates the roles, and the others with --no-create-roles,
which creates none: a role dropped since stays dropped, and a database that needs a
role the server lacks is refused (1), nothing changed."""

import json
import os

from pgcluster import PgCluster
from test_backup_restore import BACKUP, RESTORE, run, script_env
from test_disaster_recovery_cluster import restore_argv

ROLES = "SELECT rolname FROM pg_roles WHERE rolname IN ('alice', 'bob', 'contractor', 'gone') ORDER BY 1"


def _backup(cluster, tools, key_file, directory, db):
    proc = run([BACKUP, "--dir", str(directory), "--key-file", key_file, db], script_env(cluster, tools))
    assert proc.returncode == 0, proc.stderr.decode()
    return os.path.join(str(directory), json.loads(proc.stdout)["filename"])


def _lost_server(tools, key_file, directory):
    """Backups of crm (when contractor and gone existed), then, once they were dropped,
    of shop; and of owned (whose owner, gone, was dropped with it)."""
    with PgCluster() as old:
        old.psql("CREATE ROLE alice LOGIN PASSWORD 'a'; CREATE ROLE bob LOGIN; CREATE ROLE app_rw NOLOGIN;"
                 "CREATE ROLE contractor LOGIN PASSWORD 'c' IN ROLE app_rw; CREATE ROLE gone LOGIN;"
                 "CREATE DATABASE crm OWNER alice; CREATE DATABASE shop OWNER bob; CREATE DATABASE owned OWNER gone")
        old.psql("CREATE TABLE t (x int); INSERT INTO t VALUES (1)", db="crm")
        crm, owned = (_backup(old, tools, key_file, directory, db) for db in ("crm", "owned"))
        old.psql("DROP DATABASE owned; DROP ROLE contractor; DROP ROLE gone")
        shop = _backup(old, tools, key_file, directory, "shop")
    return crm, shop, owned


def test_an_older_runs_globals_file_creates_no_role_dropped_since(tools, key_file, tmp_path, empty_cluster):
    crm, shop, owned = _lost_server(tools, key_file, tmp_path / "b")
    new, env = empty_cluster, script_env(empty_cluster, tools)
    proc = run(restore_argv(key_file, shop, "shop"), env)  # the newest run first: it creates the roles
    assert proc.returncode == 0, proc.stderr.decode()
    assert new.psql(ROLES).split() == ["alice", "bob"]
    proc = run(restore_argv(key_file, crm, "crm", "--no-create-roles"), env)
    assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
    lines = proc.stderr.decode().splitlines()
    assert lines[0] == ("encpipe-restore: roles of the globals file this server lacks are not created "
                        "(--no-create-roles): contractor, gone")
    assert lines[-1] == "encpipe-restore: restored %s into new database crm" % crm
    assert new.psql(ROLES).split() == ["alice", "bob"]  # contractor and gone stay dropped
    assert new.psql("SELECT x FROM t", db="crm") == "1\n"
    assert new.psql("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'crm'") == "alice\n"
    databases = new.psql("SELECT datname FROM pg_database ORDER BY 1")
    proc = run(restore_argv(key_file, owned, "owned", "--no-create-roles"), env)  # its owner was dropped
    assert (proc.returncode, proc.stdout) == (1, b"")
    assert proc.stderr.decode().splitlines()[-2:] == [
        "encpipe-restore: error: database owned needs role(s) this server lacks: gone; nothing was changed",
        "encpipe-restore: hint: create them, or restore without --no-create-roles to take them from its globals "
        "file"]
    assert new.psql("SELECT datname FROM pg_database ORDER BY 1") == databases
    assert new.psql(ROLES).split() == ["alice", "bob"]
    # without the option, the older file creates them again (what the procedure avoids)
    proc = run(restore_argv(key_file, crm, "crm2"), env)
    assert proc.returncode == 0, proc.stderr.decode()
    assert "encpipe-restore: created roles: contractor, gone" in proc.stderr.decode().splitlines()
    assert new.psql(ROLES).split() == ["alice", "bob", "contractor", "gone"]


def test_no_create_roles_and_no_globals_are_not_given_together(pg, tools, key_file, tmp_path):
    proc = run(restore_argv(key_file, str(tmp_path / "x.sql.enc"), "x", "--no-create-roles", "--no-globals"),
               script_env(pg, tools))
    assert (proc.returncode, proc.stdout) == (64, b"")
    assert proc.stderr.decode() == ("encpipe-restore: error: --no-globals reads no globals file, so it creates no "
                                    "role: give one of them\n"
                                    "encpipe-restore: hint: see encpipe-restore --help\n")


def test_an_empty_passphrase_file_is_refused_before_the_server_is_reached(pg, tools, tmp_path):
    empty = tmp_path / "empty.pass"
    empty.write_bytes(b"\n")
    empty.chmod(0o600)
    proc = run([RESTORE, "--passphrase-file", str(empty), "--", str(tmp_path / "x_20250101T000000Z.sql.enc"), "x"],
               script_env(pg, tools))
    assert (proc.returncode, proc.stdout) == (64, b"")
    assert proc.stderr.decode() == (f"encpipe-restore: error: --passphrase-file: {empty}: the passphrase is empty\n"
                                    "encpipe-restore: hint: see encpipe-restore --help\n")
