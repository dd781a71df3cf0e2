"""A backup on a server that wants a password (scram-sha-256 for local connections): given
in PGPASSWORD or a password file, it is used; given none, the run fails at once, one line,
exit 1, nothing stored, and no client asks on the terminal. Before, pg_dump was the one
client started without -w: it wrote `Password: ` into a cron job's mail, waited on a
terminal for a password that could not help (pg_dumpall, -w, had already failed), and
stopped a run in a shell's background (a DBA's review)."""

import os
import pty
import select
import signal
import subprocess
import time

import pytest

from pgcluster import PgCluster
from test_backup_restore import BACKUP, dir_entries, run, script_env

SECRET = "s3cr3t-Pa55-review"


def _ctl(pg, *args):
    return pg._server_cmd([pg.bin("pg_ctl"), *args, "-D", pg.datadir, "-w", "-t", "60"])


@pytest.fixture(scope="module")
def scram():
    """A cluster whose local connections need a scram-sha-256 password."""
    with PgCluster(settings={"password_encryption": "'scram-sha-256'"}) as cluster:
        cluster.psql("ALTER ROLE \"%s\" PASSWORD '%s'; ALTER ROLE postgres PASSWORD '%s'"
                     % (cluster.user, SECRET, SECRET))
        cluster.createdb("shop")
        cluster.psql("CREATE TABLE t (id int PRIMARY KEY, v text); "
                     "INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 20000) g", db="shop")
        cluster._server_cmd(["sh", "-c", "echo 'local all all scram-sha-256' > %s"
                             % os.path.join(cluster.datadir, "pg_hba.conf")])
        _ctl(cluster, "reload")
        time.sleep(0.5)
        yield cluster


@pytest.mark.parametrize("given", ["PGPASSWORD", "PGPASSFILE"])
def test_scram_password_from_the_environment_or_a_file(scram, tools, key_file, tmp_path, given):
    passfile = tmp_path / "pgpass"
    passfile.write_text("*:*:*:*:%s\n" % SECRET)
    passfile.chmod(0o600)
    env = dict(script_env(scram, tools), **({"PGPASSWORD": SECRET} if given == "PGPASSWORD"
                                              else {"PGPASSFILE": str(passfile)}))
    proc = run([BACKUP, "--dir", tmp_path / "b", "--key-file", key_file, "shop"], env)
    assert proc.returncode == 0, proc.stderr
    assert SECRET.encode() not in proc.stdout + proc.stderr


def test_no_password_and_no_terminal_writes_no_prompt(scram, tools, key_file, tmp_path):
    """As cron runs it: no terminal, no password configured. FAILS on current code: pg_dump
    (the one client started without -w) writes `Password: ` to standard error (simple_prompt
    falls back to stderr with no /dev/tty) before its fe_sendauth line."""
    env = dict(script_env(scram, tools), PGPASSFILE=str(tmp_path / "none"))
    proc = run([BACKUP, "--dir", tmp_path / "b", "--key-file", key_file, "shop"], env, timeout=60,
               stdin=subprocess.DEVNULL, start_new_session=True)
    assert (proc.returncode, proc.stdout) == (1, b"")
    assert b"fe_sendauth: no password supplied" in proc.stderr
    assert b"Password:" not in proc.stderr
    assert dir_entries(tmp_path / "b") == []


def test_no_password_on_a_terminal_fails_without_asking_when_globals_are_wanted(scram, tools, key_file, tmp_path):
    """On a terminal, no password configured, globals wanted (the default): pg_dumpall (-w)
    fails at once, so no password pg_dump could be given makes the run succeed. FAILS on
    current code: pg_dump asks `Password: ` on the terminal and waits; typed, the whole
    database is dumped, then the run fails (1) for pg_dumpall all the same."""
    env = dict(script_env(scram, tools), PGPASSFILE=str(tmp_path / "none"))
    argv = [BACKUP, "--dir", str(tmp_path / "b"), "--key-file", key_file, "shop"]
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(argv[0], argv, env)
    said, deadline, status = b"", time.monotonic() + 30, None
    try:
        while time.monotonic() < deadline:
            if select.select([fd], [], [], 0.2)[0]:
                try:
                    said += os.read(fd, 4096)
                except OSError:
                    pass
            done, st = os.waitpid(pid, os.WNOHANG)
            if done:
                status = os.waitstatus_to_exitcode(st)
                break
    finally:
        if status is None:
            os.killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(fd)
    assert status == 1, "still waiting after 30 s; the terminal shows: %r" % said
    assert b"Password:" not in said
    assert dir_entries(tmp_path / "b") == []
