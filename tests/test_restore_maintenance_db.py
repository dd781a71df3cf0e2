"""encpipe-restore's --maintenance-db takes a database's name. It goes to psql as
`-d`, which reads a value holding `=`, or starting postgresql:// or postgres://, as
a whole connection string: the maintenance connection (the scratch database's
CREATE, the swap, the drops, the lock) could reach another server, user or options
than every other client of the run, which PGHOST, PGPORT and PGUSER name. Such a
value is refused, 64 and one line, before anything runs (README, "Restoring").
Every other database name that reaches a client's -d goes as `dbname='...'`
(pgclient.conninfo) or is the restore's own scratch name; pg_dump gets PGDATABASE,
which libpq never reads as a connection string."""

import os
import subprocess
import sys

import pytest

from test_backup_restore import REPO, RESTORE

KEY = "00" * 32


@pytest.fixture
def fake_psql(tmp_path):
    return psql_recorder(tmp_path)


def psql_recorder(tmp_path):
    """(the scripts' environment with a psql that records its arguments and answers
    nothing, the record's path)."""
    bindir, log = tmp_path / "bin", tmp_path / "psql.args"
    bindir.mkdir()
    (bindir / "psql").write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" >> "{log}"\ncat > /dev/null\n')
    (bindir / "psql").chmod(0o755)
    env = {"PATH": os.pathsep.join([str(bindir), os.path.dirname(sys.executable), os.environ["PATH"]]),
           "PYTHONPATH": str(REPO), "PGHOST": str(tmp_path / "no-server"), "ENCPIPE_KEY": KEY}
    return env, log


def restore(env, *argv):
    return subprocess.run([RESTORE, *argv], env=env, capture_output=True, stdin=subprocess.DEVNULL, timeout=60)


MODES = {"restore": ["FILE", "shop"], "list": ["--list-pre-restore"],
         "drop": ["--drop-pre-restore-older-than", "1", "shop"]}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("given", ["host=/elsewhere dbname=postgres", "dbname=postgres", "user=mallory",
                                   "options=-csearch_path=evil", "postgres=", "postgresql:///postgres",
                                   "postgres://db2/postgres", "postgresql://mallory@db2:5433/postgres?sslmode=disable"])
def test_a_connection_string_as_the_maintenance_db_is_refused_before_anything_runs(fake_psql, tmp_path, mode, given):
    env, log = fake_psql
    (tmp_path / "FILE").write_bytes(b"not read")
    argv = [str(tmp_path / w) if w == "FILE" else w for w in MODES[mode]]
    done = restore(env, "--maintenance-db", given, *argv)
    assert (done.returncode, done.stdout) == (64, b""), done.stderr
    assert done.stderr.decode() == (f"encpipe-restore: error: --maintenance-db {given}: a connection string, not a "
                                    "database's name: give the database's name, and the server in PGHOST and "
                                    "PGPORT\nencpipe-restore: hint: see encpipe-restore --help\n")
    assert not log.exists()  # no psql ran


def test_a_connection_strings_password_is_still_masked(fake_psql):
    env, log = fake_psql
    done = restore(env, "--maintenance-db", "host=db2 password=hunter2 dbname=postgres", "--list-pre-restore")
    assert (done.returncode, done.stdout) == (64, b""), done.stderr
    assert done.stderr.decode().splitlines()[0] == ("encpipe-restore: error: --maintenance-db host=db2 password=*** "
                                                    "dbname=postgres: a connection string with a password, not a "
                                                    "database's name")
    assert not log.exists()


@pytest.mark.parametrize("name", ["template1", "postgresql", "postgres:x", "my db", "a:/b", "Postgres://x"])
def test_a_name_is_given_to_psql_as_it_is(fake_psql, name):
    """What libpq does not read as a connection string (`=` nowhere, neither prefix,
    which it compares case-sensitively) is a name, and goes to psql's -d as it is."""
    env, log = fake_psql
    done = restore(env, "--maintenance-db", name, "--list-pre-restore")
    assert (done.returncode, done.stdout, done.stderr) == (0, b"[]\n", b"")
    args = log.read_text().splitlines()
    assert args[args.index("-d") + 1] == name


@pytest.mark.parametrize("given", [None, "shop"])
def test_restoring_the_maintenance_db_itself_is_refused_and_says_which(fake_psql, tmp_path, given):
    """Restoring `postgres` (a new server's, in disaster recovery) without --maintenance-db
    said `--maintenance-db must not be postgres`, of an option not given, with no way out."""
    env, log = fake_psql
    (tmp_path / "FILE").write_bytes(b"not read")
    db = given or "postgres"
    done = restore(env, *(["--maintenance-db", given] if given else []), str(tmp_path / "FILE"), db)
    assert (done.returncode, done.stdout) == (64, b""), done.stderr
    said = ("--maintenance-db must not be shop, the database restored" if given else
            "restoring postgres needs another --maintenance-db (its default, postgres, is the database restored)")
    assert done.stderr.decode() == ("encpipe-restore: error: %s\nencpipe-restore: hint: give --maintenance-db "
                                    "template1\n" % said)
    assert not log.exists()
