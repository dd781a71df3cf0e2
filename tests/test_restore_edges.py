"""encpipe-restore end to end at its edges: options passed through after `--`,
a DBNAME in use, a swap that fails.

- An allowed psql option reaches psql (`-v NAME=VALUE` is seen by the dump's
  SQL); an allowed pg_restore option reaches pg_restore (`-t TABLE`).
- A refused option (`-L FILE`: psql would log the dump's statements, plaintext,
  to FILE; `-v ON_ERROR_STOP=0`) is exit 64 with nothing on stdout, no file
  written, the database untouched. So is an argument that is not an option:
  pg_restore would restore that file, never authenticated, into DBNAME.
- A session connected to DBNAME: the restore waits about 3 seconds for it to
  end, then exits 75 with one error line and a hint, and leaves the session,
  the database and the server as they were; once the session ended a restore
  goes through, and one that ends while the restore waits does not stop it.
- A session that connects to DBNAME while the dump is being restored makes
  the swap fail: exit 1, one error line and a hint, DBNAME with its data,
  the scratch database dropped; with --terminate-connections it is ended.
"""

import re
import select
import subprocess
import time

import pytest

from test_backup_restore import (
    RESTORE,
    backup,
    databases,
    dump,
    ensure_small,
    leftover_databases,
    restore,
    script_env,
)
from test_disaster_recovery import restore_with
from test_restore_hardening import TARGET, _fresh_target, _seal

PREFIX = b"encpipe-restore: "


def test_an_allowed_psql_option_reaches_psql(pg, tools, key_file, tmp_path):
    """-v VERBOSITY=default (allowed) reaches psql: its error line says the message, not
    the SQLSTATE alone (the restore's own choice: a message may quote the dump's data)."""
    path = _seal(tmp_path, key_file, b"SELECT 1/0;\n", "failing.sql.enc")
    before = _fresh_target(pg)
    said = {}
    for given in ([], ["-v", "VERBOSITY=default"]):
        proc = restore_with(pg, tools, ["--drop-old", "--key-file", key_file], path, TARGET, *given)
        assert (proc.returncode, proc.stdout) == (1, b""), proc.stderr.decode()
        said[bool(given)] = proc.stderr.decode()
        assert dump(pg, TARGET) == before
    assert "ERROR:  22012\n" in said[False] and "division by zero" not in said[False], said
    assert "ERROR:  division by zero\n" in said[True], said
    assert leftover_databases(pg) == set()
    pg.dropdb(TARGET)


def test_an_allowed_pg_restore_option_reaches_pg_restore(pg, tools, key_file, tmp_path):
    source = "edge_schemas"
    if source not in databases(pg):
        pg.createdb(source)
        pg.psql("CREATE TABLE kept (v text); INSERT INTO kept VALUES ('kept'); CREATE TABLE other (v text);",
                db=source)
    path, _ = backup(pg, tools, str(tmp_path / "b"), source, "--format", "custom", "--key-file", key_file)
    pg.dropdb(TARGET)
    proc = restore_with(pg, tools, ["--key-file", key_file], path, TARGET, "-t", "kept")
    assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
    assert pg.psql("SELECT relname FROM pg_class WHERE relname IN ('kept', 'other')", db=TARGET).split() == ["kept"]
    assert pg.psql("SELECT v FROM kept", db=TARGET).strip() == "kept"
    pg.dropdb(TARGET)


@pytest.mark.parametrize("options, named", [
    (["-L", "{log}"], b"-L, --log-file"),
    (["--log-file={log}"], b"-L, --log-file"),
    (["-e", "-L{log}"], b"-e, --echo-queries"),
    (["-v", "ON_ERROR_STOP=0"], b"-v, --set"),
    (["-v", "tag=from the option"], b"-v, --set"),
])
def test_a_refused_psql_option_changes_nothing(pg, tools, key_file, tmp_path, options, named):
    db = ensure_small(pg, "edge_source")
    path = _seal(tmp_path, key_file, dump(pg, db), "small.sql.enc")
    before = _fresh_target(pg)
    log = tmp_path / "psql.log"
    proc = restore_with(pg, tools, ["--key-file", key_file], path, TARGET,
                        *[o.replace("{log}", str(log)) for o in options])
    assert (proc.returncode, proc.stdout) == (64, b""), proc.stderr.decode()
    lines = proc.stderr.decode().splitlines()
    assert lines[0].startswith("encpipe-restore: error: psql option ") and named.decode() in lines[0]
    assert lines[1:] == ["encpipe-restore: hint: see encpipe-restore --help"]
    assert not log.exists()
    assert dump(pg, TARGET) == before
    assert leftover_databases(pg) == set()
    pg.dropdb(TARGET)


def _hold(pg, db, seconds=None):
    """A psql session connected to `db`, once it is: for `seconds` (once the server
    sees it), or (None) until its standard input is closed, once it has answered a
    query. A session that a restore ends at once (--terminate-connections) may never
    be seen in pg_stat_activity; the answer shows it was there."""
    argv = [pg.bin("psql"), "-X", "-q", "-At", "-d", db] + (["-c", "SELECT pg_sleep(%s)" % seconds] if seconds else [])
    holder = subprocess.Popen(argv, env=pg.env, stdin=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL if seconds else subprocess.PIPE)
    deadline = time.monotonic() + 60
    if not seconds:
        holder.stdin.write(b"SELECT 'held';\n")
        holder.stdin.flush()
        ready, _, _ = select.select([holder.stdout], [], [], 60)
        assert ready and holder.stdout.readline() == b"held\n"
        return holder
    while _sessions(pg, db) == 0:
        assert time.monotonic() < deadline and holder.poll() is None
        time.sleep(0.05)
    return holder


def _end(holder):
    holder.stdin.close()
    try:
        holder.wait(timeout=30)
    finally:
        holder.kill()
        holder.wait()


def _sessions(pg, db):
    return int(pg.psql("SELECT count(*) FROM pg_stat_activity WHERE datname = '%s'" % db).strip())


@pytest.fixture(scope="module")
def made_small_backup(pg, tools, key_file, tmp_path_factory):
    """A backup of a small database, made once for the module (its tests only read it)."""
    db = ensure_small(pg, "edge_source")
    path, _ = backup(pg, tools, str(tmp_path_factory.mktemp("small") / "b"), db, "--key-file", key_file)
    return path, db


def test_a_database_in_use_is_refused_until_its_session_ends(pg, tools, key_file, small_backup):
    path, source = small_backup
    before = _fresh_target(pg)
    holder = _hold(pg, TARGET)
    try:
        started = time.monotonic()
        proc = restore(pg, tools, path, TARGET, "--key-file", key_file)
        waited = time.monotonic() - started
        assert (proc.returncode, proc.stdout) == (75, b""), proc.stderr.decode()
        assert proc.stderr == (PREFIX + b"error: database %s has 1 active connection(s); nothing was changed\n"
                               % TARGET.encode() + PREFIX + b"hint: close them, or use --terminate-connections\n")
        assert waited >= 2.5  # it waited for the session to end
        assert holder.poll() is None and _sessions(pg, TARGET) == 1  # the session was left alone
        assert dump(pg, TARGET) == before
        assert leftover_databases(pg) == set()
    finally:
        _end(holder)
    deadline = time.monotonic() + 30
    while _sessions(pg, TARGET):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc = restore(pg, tools, path, TARGET, "--drop-old", "--key-file", key_file)
    assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
    assert dump(pg, TARGET) == dump(pg, source)
    assert leftover_databases(pg) == set()
    pg.dropdb(TARGET)


def test_a_session_that_ends_while_the_restore_waits_does_not_stop_it(pg, tools, key_file, small_backup):
    path, source = small_backup
    _fresh_target(pg)
    holder = _hold(pg, TARGET, 2)
    try:
        proc = restore(pg, tools, path, TARGET, "--drop-old", "--key-file", key_file)
        assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
        assert holder.wait() == 0  # it ended by itself, not terminated
    finally:
        _end(holder)
    assert dump(pg, TARGET) == dump(pg, source)
    assert leftover_databases(pg) == set()
    pg.dropdb(TARGET)


# The first statement of a dump that waits (a minute at most) until a session is
# connected to TARGET: restored, it holds the restore between its in-use check and
# its swap for as long as that session takes to come, however loaded the machine.
# (pg_stat_activity is read once per transaction unless its snapshot is cleared.)
UNTIL_TARGET_IS_IN_USE = ("DO $$ BEGIN FOR i IN 1..1200 LOOP PERFORM pg_stat_clear_snapshot(); "
                          "EXIT WHEN EXISTS (SELECT FROM pg_stat_activity WHERE datname = '%s'); "
                          "PERFORM pg_sleep(0.05); END LOOP; END $$;\n" % TARGET).encode()


def _slow_dump_held_at_swap(pg, tools, key_file, tmp_path, *options):
    """Restores a dump that waits for a session on TARGET; connects to TARGET once the
    scratch database exists (after the in-use check, before the swap). Returns
    (process, holder)."""
    db = ensure_small(pg, "edge_source")
    path = _seal(tmp_path, key_file, UNTIL_TARGET_IS_IN_USE + dump(pg, db), "slow.sql.enc")
    proc = subprocess.Popen([RESTORE, *options, "--key-file", key_file, path, TARGET],
                            env=script_env(pg, tools), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not [d for d in databases(pg) if d.startswith("encpipe_restore_")]:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    holder = _hold(pg, TARGET)
    return proc, holder


def test_a_session_arriving_during_the_restore_makes_the_swap_fail(pg, tools, key_file, tmp_path):
    before = _fresh_target(pg)
    proc, holder = _slow_dump_held_at_swap(pg, tools, key_file, tmp_path)
    try:
        out, err = proc.communicate(timeout=120)
        assert (proc.returncode, out) == (1, b""), err.decode()
        assert holder.poll() is None  # the session is left alone
    finally:
        _end(holder)
    lines = err.decode().splitlines()
    assert len(lines) == 2, lines
    assert re.fullmatch(r'encpipe-restore: error: restored into encpipe_restore_[0-9]{8}T[0-9]{6}Z_[0-9]+ but could '
                        r'not swap it in \(ERROR:  database "%s" is being accessed by other users\); '
                        r'database %s is unchanged' % (TARGET, TARGET), lines[0]), lines[0]
    assert lines[1] == ("encpipe-restore: hint: is %s in use? close its connections, or use --terminate-connections"
                        % TARGET)
    assert dump(pg, TARGET) == before
    assert leftover_databases(pg) == set()  # the scratch database dropped, no _pre_restore_ copy
    pg.dropdb(TARGET)


def test_terminate_connections_ends_a_session_arriving_during_the_restore(pg, tools, key_file, tmp_path):
    _fresh_target(pg)
    proc, holder = _slow_dump_held_at_swap(pg, tools, key_file, tmp_path, "--terminate-connections", "--drop-old")
    try:
        out, err = proc.communicate(timeout=120)
        assert (proc.returncode, out) == (0, b""), err.decode()
    finally:
        _end(holder)
    assert dump(pg, TARGET) == dump(pg, "edge_source")
    assert leftover_databases(pg) == set()
    pg.dropdb(TARGET)


@pytest.mark.parametrize("extra", [[], ["--no-owner"], ["--schema", "public"]])
def test_a_file_named_after_the_dash_dash_is_refused_it_would_be_restored_unauthenticated(
        pg, tools, key_file, tmp_path, extra):
    db = ensure_small(pg, "edge_source")
    path, _ = backup(pg, tools, str(tmp_path / "b"), db, "--format", "custom", "--key-file", key_file)
    other = "edge_other"
    if other not in databases(pg):
        pg.createdb(other)
        pg.psql("CREATE TABLE planted (v text); INSERT INTO planted VALUES ('not from the backup');", db=other)
    unsealed = tmp_path / "unsealed.dump"
    subprocess.run([pg.bin("pg_dump"), "-Fc", "-f", str(unsealed), other], env=pg.env, check=True)
    before = _fresh_target(pg)
    proc = restore_with(pg, tools, ["--key-file", key_file], path, TARGET, *extra, str(unsealed))
    assert (proc.returncode, proc.stdout) == (64, b""), proc.stderr.decode()
    assert proc.stderr.decode().splitlines() == [
        "encpipe-restore: error: pg_restore argument %s is not an option: the backup is the only input" % unsealed,
        "encpipe-restore: hint: see encpipe-restore --help"]
    assert dump(pg, TARGET) == before
    assert leftover_databases(pg) == set()
    pg.dropdb(TARGET)


def test_options_are_checked_against_the_tool_the_stream_needs_not_only_the_name(pg, tools, key_file, tmp_path):
    """A plain dump in a file named .dump.enc goes to psql: pg_restore's -L (read a list) is
    psql's -L (write a log of the dump's statements); it is refused once the stream shows it."""
    db = ensure_small(pg, "edge_source")
    path = _seal(tmp_path, key_file, dump(pg, db), "misnamed_20250101T000000Z.dump.enc")
    before = _fresh_target(pg)
    log = tmp_path / "list"
    proc = restore_with(pg, tools, ["--no-globals", "--key-file", key_file], path, TARGET, "-L", str(log))
    assert (proc.returncode, proc.stdout) == (64, b""), proc.stderr.decode()
    assert proc.stderr.decode().splitlines() == [
        "encpipe-restore: error: psql option -L (-L, --log-file) is not allowed: it would write the dump's "
        "statements, plaintext, to that file",
        "encpipe-restore: hint: %s holds a plain dump, restored with psql, whatever its name says; "
        "see encpipe-restore --help" % path]
    assert not log.exists()
    assert dump(pg, TARGET) == before
    assert leftover_databases(pg) == set()
    pg.dropdb(TARGET)
