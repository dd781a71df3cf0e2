"""No client of the scripts takes its own SQL for a password, nor asks for one but pg_dump.

encpipe-restore's psql children ran without -w (the swap and the DROP steps excepted):
with password authentication and no password in PGPASSWORD or a password file, the
first one asked on the terminal (`Password for user pw:`), then every next one again;
without a terminal each read the password from its standard input and took the first
line of its SQL (`SET search_path = pg_catalog;`, a lock query, the dump's own
`\\restrict KEY` line, a custom archive's first bytes for pg_restore -d) for it, sent
to the server, which logged a failed authentication. encpipe-backup's pg_dumpall and
the psql reading the database's properties likewise, beside pg_dump, which asked too.
Now every client runs with -w but encpipe-backup's pg_dump (the one that may ask, on
the terminal): the restore fails before it changes anything, one line and a hint.
A real cluster with scram-sha-256 for two roles; psql wrapped to record its arguments.
"""

import os
import re
import subprocess

import pytest

from pgcluster import PgCluster
from test_backup_cluster_marker_password import PASSWORD, on_a_terminal
from test_backup_restore import BACKUP, RESTORE, databases, ensure_small, run, script_env
from test_backup_restore import make_key as _make_key

REFUSED = b"password authentication failed"
HINT = ("encpipe-restore: hint: encpipe-restore's clients never ask for a password: give it in PGPASSWORD or a "
        "password file (~/.pgpass, or the one PGPASSFILE names)")


@pytest.fixture(scope="module")
def locked(tools, tmp_path_factory):
    """`pw` (a superuser) logs in with a password everywhere, `pwshop` (one too) in database
    shop only; the others, trust. `backup`: a plain backup of shop (globals too) by a trusted role;
    `archive`: a custom one; database `live`, a restore's target, holds a row of its own."""
    with PgCluster() as pg:
        ensure_small(pg, "shop")
        for live in ("live", "live_tty"):
            ensure_small(pg, live)
            pg.psql("INSERT INTO t VALUES (-1, 'live only');", db=live)
        pg.psql(f"CREATE ROLE pw SUPERUSER LOGIN PASSWORD '{PASSWORD}';"
                f"CREATE ROLE pwshop SUPERUSER LOGIN PASSWORD '{PASSWORD}';")
        with open(os.path.join(pg.datadir, "pg_hba.conf"), "w") as f:
            f.write("local all pw scram-sha-256\nlocal shop pwshop scram-sha-256\nlocal all all trust\n")
        pg.psql("SELECT pg_reload_conf();")
        d = tmp_path_factory.mktemp("backups")
        pg.key = _make_key(d / "backup.key")
        made = {}
        for fmt in ("plain", "custom"):
            done = run([BACKUP, "--dir", d / fmt, "--format", fmt, "--key-file", pg.key, "shop"],
                       script_env(pg, tools))
            assert done.returncode == 0, done.stderr
            made[fmt] = next(str(p) for p in (d / fmt).iterdir() if not p.name.endswith(".globals.sql.enc")
                             and p.name.startswith("shop_"))
        pg.backup, pg.archive = made["plain"], made["custom"]
        yield pg


@pytest.fixture
def spy(tools, tmp_path):
    """`tools` and a psql that appends its arguments (one line) to tmp_path/psql-argv, then
    runs the real one; one that says it is 15.2 (no \\restrict) with OLD_PSQL set."""
    spy = tmp_path / "spy"
    spy.mkdir()
    (spy / "psql").write_text(
        f'#!/bin/sh\nif [ -n "$OLD_PSQL" ] && [ "$1" = --version ]; then echo "psql (PostgreSQL) 15.2"; exit 0; fi\n'
        f'echo "$*" >> "{tmp_path}/psql-argv"\nexec /usr/lib/postgresql/15/bin/psql "$@"\n')
    (spy / "psql").chmod(0o755)
    (spy / "encpipe").symlink_to(tools / "encpipe")
    return spy


def called(tmp_path):
    return (tmp_path / "psql-argv").read_text().splitlines()


def logged_since(pg, offset):
    with open(pg.logfile, "rb") as log:
        log.seek(offset)
        return log.read()


def live_rows(pg, db="live"):
    return pg.psql("SELECT count(*), min(id) FROM t;", db=db)


def unreached(pg):
    return (f'psql: error: connection to server on socket "{pg.host}/.s.PGSQL.{pg.port}" failed: fe_sendauth: '
            "no password supplied")


def test_without_a_password_or_a_terminal_the_restore_fails_before_anything(locked, spy, tmp_path):
    """Before, the first psql read `SET search_path = pg_catalog;` from its standard input
    as the password (refused, logged); now one line and a hint, 1, nothing changed."""
    before, rows, logged = databases(locked), live_rows(locked), os.path.getsize(locked.logfile)
    done = run([RESTORE, "--key-file", locked.key, locked.backup, "live"], script_env(locked, spy, PGUSER="pw"),
               start_new_session=True, stdin=subprocess.DEVNULL)
    assert (done.returncode, done.stdout) == (1, b""), done.stderr
    assert done.stderr.decode().splitlines() == [
        f"encpipe-restore: error: {unreached(locked)}; nothing was changed", HINT]
    assert REFUSED not in logged_since(locked, logged)
    assert (databases(locked), live_rows(locked)) == (before, rows)
    assert all("-w" in line.split() for line in called(tmp_path) if "--version" not in line), called(tmp_path)


def test_on_a_terminal_no_client_of_the_restore_asks(locked, spy, tmp_path):
    """Before, each psql asked (`Password for user pw:`), one after the other."""
    before, rows = databases(locked), live_rows(locked, "live_tty")
    done, screen = on_a_terminal([RESTORE, "--key-file", locked.key, locked.backup, "live_tty"],
                                 script_env(locked, spy, PGUSER="pw"), PASSWORD)
    assert re.findall(rb"Password[^:\n]*: ", screen) == [], screen
    assert (done.returncode, done.stdout) == (1, b""), done.stderr
    assert done.stderr.decode().splitlines() == [
        f"encpipe-restore: error: {unreached(locked)}; nothing was changed", HINT]
    assert (databases(locked), live_rows(locked, "live_tty")) == (before, rows)


@pytest.mark.parametrize("given", ["PGPASSWORD", "PGPASSFILE"])
def test_with_a_password_given_the_restore_works(locked, spy, tmp_path, given):
    """Every psql given -w (the version's excepted: it reaches no server), and the password used."""
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"*:*:*:pw:{PASSWORD}\n")
    passfile.chmod(0o600)
    target = "restored_" + given.lower()
    env = script_env(locked, spy, PGUSER="pw", **{given: PASSWORD if given == "PGPASSWORD" else str(passfile)})
    done = run([RESTORE, "--key-file", locked.key, locked.backup, target], env, start_new_session=True,
               stdin=subprocess.DEVNULL)
    assert (done.returncode, done.stdout) == (0, b""), done.stderr
    assert locked.psql("SELECT count(*) FROM t;", db=target) == "50\n"
    lines = [line for line in called(tmp_path) if "--version" not in line]
    assert len(lines) > 5 and all("-w" in line.split() for line in lines), lines


@pytest.mark.parametrize("old_psql", [False, True])
def test_the_dumps_client_takes_no_line_of_the_dump_for_the_password(locked, spy, tmp_path, old_psql):
    """--role pw, the restoring user trusted: the client that runs the dump connects as pw.
    Before, without a password, it read one from its standard input: psql the restore's
    `\\restrict KEY` line, pg_restore -d (a psql without \\restrict) the archive's first bytes."""
    before, rows, logged = databases(locked), live_rows(locked), os.path.getsize(locked.logfile)
    env = script_env(locked, spy, **({"OLD_PSQL": "1"} if old_psql else {}))
    argv = [RESTORE, "--no-globals", "--role", "pw", "--key-file", locked.key,
            *(["--allow-unrestricted-psql", locked.archive] if old_psql else [locked.backup]), "live"]
    done = run(argv, env, start_new_session=True, stdin=subprocess.DEVNULL)
    assert (done.returncode, done.stdout) == (1, b""), done.stderr
    assert REFUSED not in logged_since(locked, logged)
    said = done.stderr.decode()
    assert "fe_sendauth: no password supplied" in said, said
    assert said.splitlines()[-2:] == [f"encpipe-restore: error: restoring {argv[-2]} failed; database live is "
                                      "unchanged", HINT], said
    assert (databases(locked), live_rows(locked)) == (before, rows)


def test_without_a_terminal_the_backups_properties_psql_reads_no_password(locked, spy, tmp_path):
    """pwshop needs a password in shop only: pg_dumpall (in postgres) gets in, the psql that
    reads shop's properties does not. Before, it took its SQL's first line for the password."""
    logged = os.path.getsize(locked.logfile)
    d = tmp_path / "b"
    done = run([BACKUP, "--dir", d, "--key-file", locked.key, "shop"], script_env(locked, spy, PGUSER="pwshop"),
               start_new_session=True, stdin=subprocess.DEVNULL)
    assert (done.returncode, done.stdout) == (1, b""), done.stderr
    assert REFUSED not in logged_since(locked, logged)
    assert not d.exists() or [n for n in os.listdir(d) if n.startswith("shop_")] == []


def test_on_a_terminal_nothing_asks(locked, spy, tmp_path):
    """Before, pg_dump, pg_dumpall and the properties' psql each asked; then pg_dump only, a
    prompt that could not help (pg_dumpall, given no password, failed all the same, after the
    whole dump). Now none asks: the run fails at once, pg_dump's line and the run's."""
    d = tmp_path / "b"
    done, screen = on_a_terminal([BACKUP, "--dir", d, "--key-file", locked.key, "shop"],
                                 script_env(locked, spy, PGUSER="pw"), PASSWORD)
    assert re.findall(rb"Password[^:\n]*: ", screen) == [], screen
    assert (done.returncode, done.stdout) == (1, b""), done.stderr
    said = done.stderr.decode().splitlines()
    assert f"pg_dump: error: {unreached(locked)[len('psql: error: '):]}" in said, said
    assert said[-1] == ("encpipe-backup: error: backup of shop failed (status 1): pg_dump exited with status 1; "
                        "nothing was stored"), said
    assert not d.exists() or [n for n in os.listdir(d) if n.startswith("shop_")] == []


def test_with_a_password_given_the_backup_works(locked, spy, tmp_path):
    """Its psql children (the identifier's, the properties') given -w, the password used."""
    d = tmp_path / "b"
    done = run([BACKUP, "--dir", d, "--key-file", locked.key, "shop"],
               script_env(locked, spy, PGUSER="pw", PGPASSWORD=PASSWORD), start_new_session=True,
               stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    lines = called(tmp_path)
    assert len(lines) == 2 and all("-w" in line.split() for line in lines), lines


def test_psqls_password_option_is_refused(locked, tools, tmp_path):
    """psql -W asks whatever the server wants: without a terminal it took the restore's first
    line, `\\restrict KEY`, for the password, and ran the rest of the dump unrestricted."""
    before, rows = databases(locked), live_rows(locked)
    for option in ("-W", "--password"):
        done = run([RESTORE, "--no-globals", "--key-file", locked.key, locked.backup, "live", "--", option],
                   script_env(locked, tools), start_new_session=True, stdin=subprocess.DEVNULL)
        assert (done.returncode, done.stdout) == (64, b""), done.stderr
        assert done.stderr.decode().startswith(f"encpipe-restore: error: psql option {option} "), \
            done.stderr
    assert (databases(locked), live_rows(locked)) == (before, rows)
