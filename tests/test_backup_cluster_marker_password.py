"""The cluster marker's psql never asks for a password.

encpipe-backup reads the cluster's system identifier with one psql before pg_dump runs
(backup.cluster). That psql ran without -w: with password authentication and no
password in PGPASSWORD or ~/.pgpass it prompted on the terminal (`Password for user
...:`), then pg_dump prompted again; without a terminal it took the first line of its
own standard input, a SQL statement, for the password and sent it to the server. Now
it runs with -w: no prompt, the identifier is not read (a warning, as for a server that
cannot be reached), and pg_dump prompts once, as it would without the marker. With a
password given (PGPASSWORD), the identifier is read and the marker checked as before.
A real cluster with scram-sha-256 for one role; psql wrapped to record its arguments.
"""

import fcntl
import os
import re
import select
import subprocess
import termios

import pytest

from pgcluster import PgCluster
from test_backup_cluster_marker import MARKER, identifier, marker_line
from test_backup_restore import BACKUP, ensure_small, run, script_env
from test_backup_restore import make_key as _make_key

PASSWORD = "scram-pw-4f1d"


@pytest.fixture(scope="module")
def locked():
    """A cluster where role `pw` (a superuser) logs in with a password; the others, trust."""
    with PgCluster() as pg:
        ensure_small(pg, "shop")
        pg.psql(f"CREATE ROLE pw SUPERUSER LOGIN PASSWORD '{PASSWORD}';")
        hba = os.path.join(pg.datadir, "pg_hba.conf")
        with open(hba, "w") as f:
            f.write("local all pw scram-sha-256\nlocal all all trust\n")
        pg.psql("SELECT pg_reload_conf();")
        yield pg


def spy_psql(tools, tmp_path):
    """`tools` and a psql that appends its arguments (one line) to tmp_path/psql-argv, then runs the real one."""
    spy = tmp_path / "spy"
    spy.mkdir()
    (spy / "psql").write_text(f'#!/bin/sh\necho "$*" >> "{tmp_path}/psql-argv"\nexec /usr/lib/postgresql/15/bin/psql '
                              '"$@"\n')
    (spy / "psql").chmod(0o755)
    (spy / "encpipe").symlink_to(tools / "encpipe")
    return spy


def make_key(tmp_path):
    return _make_key(tmp_path / "backup.key")


def unread(pg):
    return (f"encpipe-backup: warning: cannot read the cluster's system identifier (psql: error: connection to "
            f"server on socket \"{pg.host}/.s.PGSQL.{pg.port}\" failed: fe_sendauth: no password supplied); the "
            f"location's {MARKER} not checked\n").encode()


def on_a_terminal(argv, env, answer):
    """Run `argv` with a pseudo-terminal as its controlling terminal and standard input,
    typing `answer` at each password prompt; (process, what the terminal showed)."""
    leader, follower = os.openpty()

    def take_terminal():
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen([str(a) for a in argv], env=env, stdin=follower, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True, preexec_fn=take_terminal)
    os.close(follower)
    screen, answered = b"", 0
    while True:
        ready, _, _ = select.select([leader], [], [], 300)
        if not ready:  # a prompt not answered: the run waits for ever
            proc.kill()
            break
        try:
            data = os.read(leader, 1024)
        except OSError:  # EIO: every holder of the terminal is gone
            break
        if not data:
            break
        screen += data
        if len(re.findall(rb"Password[^:\n]*: ", screen)) > answered:
            os.write(leader, PASSWORD.encode() + b"\n")
            answered += 1
    out, err = proc.communicate(timeout=300)
    os.close(leader)
    return subprocess.CompletedProcess(argv, proc.returncode, out, err), screen


def test_nothing_prompts_on_the_terminal(locked, tools, tmp_path):
    """No prompt at all (before, psql's `Password for user pw:` came first, then pg_dump's):
    every client runs with -w, the password not given, the run fails at once, one line."""
    spy = spy_psql(tools, tmp_path)
    d = tmp_path / "b"
    done, screen = on_a_terminal([BACKUP, "--dir", d, "--no-globals", "--key-file", make_key(tmp_path), "shop"],
                                 script_env(locked, spy, PGUSER="pw"), PASSWORD)
    assert re.findall(rb"Password[^:\n]*: ", screen) == [], screen
    assert (done.returncode, done.stdout) == (1, b""), done.stderr
    assert done.stderr.decode().splitlines()[-1] == (
        "encpipe-backup: error: backup of shop failed (status 1): pg_dump exited with status 1; nothing was stored")
    assert not d.exists() or os.listdir(d) == []
    called = (tmp_path / "psql-argv").read_text().splitlines()
    assert len(called) == 1 and "-w" in called[0].split(), called


def test_without_a_terminal_no_statement_is_taken_for_the_password(locked, tools, tmp_path):
    """Before, psql read the password from its standard input: the first line of its SQL
    (`SET search_path = pg_catalog;`) went to the server as one, refused (the server's
    log said so); and pg_dump wrote its own prompt, `Password: `, on standard error (a
    cron job's mail). Now no client asks."""
    d = tmp_path / "b"
    logged = os.path.getsize(locked.logfile)
    done = run([BACKUP, "--dir", d, "--no-globals", "--key-file", make_key(tmp_path), "shop"],
               script_env(locked, tools, PGUSER="pw"), start_new_session=True, stdin=subprocess.DEVNULL)
    assert (done.returncode, done.stdout) == (1, b""), done.stderr  # pg_dump, without a password, fails
    assert done.stderr.decode().splitlines() == [
        f'pg_dump: error: connection to server on socket "{locked.host}/.s.PGSQL.{locked.port}" failed: '
        "fe_sendauth: no password supplied",
        "encpipe-backup: error: backup of shop failed (status 1): pg_dump exited with status 1; nothing was stored"]
    with open(locked.logfile, "rb") as log:
        log.seek(logged)
        assert b"password authentication failed" not in log.read()
    assert not d.exists()


@pytest.mark.parametrize("given", ["PGPASSWORD", "PGPASSFILE"])
def test_a_password_given_reads_the_identifier(locked, tools, tmp_path, given):
    """With -w the password of PGPASSWORD or a password file is still used: the marker checked and written."""
    d = tmp_path / "b"
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"*:*:*:pw:{PASSWORD}\n")
    passfile.chmod(0o600)
    env = script_env(locked, tools, PGUSER="pw", **{given: PASSWORD if given == "PGPASSWORD" else str(passfile)})
    argv = [BACKUP, "--dir", d, "--no-globals", "--key-file", make_key(tmp_path), "shop"]
    done = run(argv, env, start_new_session=True, stdin=subprocess.DEVNULL)
    assert (done.returncode, done.stderr) == (0, b"")
    assert (d / MARKER).read_bytes() == marker_line(locked)
    (d / MARKER).write_bytes(marker_line(locked).replace(identifier(locked).encode(), b"42"))
    done = run(argv, env, start_new_session=True, stdin=subprocess.DEVNULL)
    assert (done.returncode, done.stdout) == (73, b"")
    assert b"holds the backups of PostgreSQL cluster 42 (its .encpipe-cluster)" in done.stderr
