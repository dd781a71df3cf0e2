"""The restore's client side (pgclient, pgleftovers, pgrestorechild) and encpipe-migrate:
the PGOPTIONS forms that choose the restore's role, a role the login role sets for every
database, psql's -X, quoting (a NUL byte, a LIKE prefix), the first psql of each major
that restricts, the scratch name form, the next free pre-restore name, what a step's
outcome ends and when it has none, the status of a copy not dropped, the end of the
globals file's early open, and migrate's boundary of a legacy file's header. Each case
is one pure call, a stand-in, one run of a psql against the session's cluster, or one
dry run of migrate. A hand-made mutant of each decision here passed every earlier test
(a mutation review)."""

import subprocess
import time
from datetime import datetime, timezone

import pytest

from encpipe import pgclient, pgleftovers
from test_migrate import migrate


@pytest.mark.parametrize("options, chosen", [
    ("-c role=alice", True), ("-crole=alice", True), ("-c  role=alice", True), ("--role=alice", True),
    ("-c work_mem=1MB --role=alice", True), ("-c myrole=alice", False), ("--myrole=alice", False), ("", False),
])
def test_a_role_pgoptions_chooses_in_any_of_its_forms_keeps_the_restore_acting_as_it(monkeypatch, options, chosen):
    """PGOPTIONS' `-c role=R`, `-crole=R` and `--role=R` are the operator's choice: the
    restore's sessions then never turn a role off (DATABASE_ROLE left out); any other
    setting leaves it in, so that the maintenance database's role is turned off."""
    monkeypatch.setattr(pgclient, "_more_setup", pgclient._more_setup)
    monkeypatch.setenv("PGOPTIONS", options)
    pgclient.restoring()
    assert (pgclient.DATABASE_ROLE not in pgclient._more_setup) == chosen


def test_a_role_the_login_role_sets_for_every_database_is_kept_over_the_maintenance_databases(pg, monkeypatch):
    """`ALTER ROLE login SET role = R`, for every database (as for the maintenance one:
    tests/test_restore_swap_role.py), is the operator's: the server keeps it over the
    database's `role`, and so do the restore's sessions (only a role the maintenance
    database alone sets is turned off)."""
    for name, value in pg.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("PGOPTIONS", raising=False)
    monkeypatch.setattr(pgclient, "_more_setup", pgclient._more_setup)
    pg.dropdb("mutc_maint")
    pg.psql("DROP ROLE IF EXISTS mutc_login; DROP ROLE IF EXISTS mutc_chosen; DROP ROLE IF EXISTS mutc_db; "
            "CREATE ROLE mutc_login LOGIN SUPERUSER; CREATE ROLE mutc_chosen SUPERUSER; CREATE ROLE mutc_db; "
            "CREATE DATABASE mutc_maint; ALTER DATABASE mutc_maint SET role = 'mutc_db';")
    try:
        pg.psql("ALTER ROLE mutc_login SET role = 'mutc_chosen';")
        pgclient.restoring()
        assert pgclient.run_sql("mutc_maint", "SELECT current_user;", user="mutc_login") == [["mutc_chosen"]]
    finally:
        pg.dropdb("mutc_maint")
        pg.psql("DROP ROLE mutc_login; DROP ROLE mutc_chosen; DROP ROLE mutc_db;")


@pytest.mark.parametrize("text", ["a\0b", "\0", "x'\0; DROP DATABASE shop; --"])
def test_a_value_holding_a_nul_byte_is_never_quoted(text):
    """psql reads its input a line at a time as C strings: the rest of a line after a NUL
    byte is lost, and with it the quote that closes the literal (the statements after it
    would be read inside a string, or a string's end as SQL)."""
    with pytest.raises(pgclient.PgError, match="NUL byte"):
        pgclient.literal(text)
    with pytest.raises(pgclient.PgError, match="NUL byte"):
        pgclient.starts_with(text)


def test_a_like_pattern_of_a_prefix_takes_its_wildcards_as_themselves():
    """starts_with: `_`, `%` and `\\` of the prefix stand for themselves (a scratch database's
    name holds `_`: its undo ends the session running `CREATE DATABASE "<that name>" ...`
    only, and the clean-up lists names that start `encpipe_restore_` only)."""
    assert pgclient.starts_with("a_b%c\\d'") == "'a\\_b\\%c\\\\d''%'"


@pytest.mark.parametrize("name, scratch", [
    ("encpipe_restore_20200101T000000Z_21", True),
    ("encpipe_restore_20200101T000000Z_21\n", False),  # a name may end in a newline: another's database
    ("encpipe_restore_20200101T000000Z_", False), ("encpipe_restore_20200101T000000_21", False),
    ("xencpipe_restore_20200101T000000Z_21", False),
])
def test_only_a_scratch_name_of_a_run_is_taken_for_one(name, scratch):
    """A database named like a restore's scratch database, and only one, may be dropped by a
    later restore's clean-up (and is refused as a DBNAME): `$` would take a name ending in a
    newline, which any role that may create a database can give one of its own."""
    assert pgleftovers.is_scratch_name(name) is scratch


def test_the_runs_psql_reads_no_psqlrc(pg, monkeypatch, tmp_path):
    """psql -X: a psqlrc (~/.psqlrc, or PSQLRC's) runs before the run's statements in every
    session otherwise, its own SQL and settings with the restoring role's rights, and its
    output in the answers the run parses (as a first row here)."""
    for name, value in pg.env.items():
        monkeypatch.setenv(name, value)
    rc = tmp_path / "psqlrc"
    rc.write_text("SELECT 'planted';\n")
    monkeypatch.setenv("PSQLRC", str(rc))
    assert pgclient.run_sql("postgres", "SELECT 1;") == [["1"]]


def _as_the_suite(pg, monkeypatch):
    for name, value in pg.env.items():
        monkeypatch.setenv(name, value)


def test_a_pre_restore_name_taken_in_this_second_moves_to_the_next_free_second(pg, monkeypatch):
    """Two restores of one database within a second: the second's copy of the database it
    replaces takes the next free second's name (the first's name taken, its swap's RENAME
    failed, after the whole load)."""
    _as_the_suite(pg, monkeypatch)
    taken = ["mutc_db_pre_restore_20200101T000000Z"]
    for name in taken:
        pg.dropdb(name)
        pg.createdb(name)
    try:
        now = datetime(2020, 1, 1, tzinfo=timezone.utc)
        assert pgleftovers.pre_restore_name("postgres", "mutc_db", now) == "mutc_db_pre_restore_20200101T000001Z"
    finally:
        for name in taken:
            pg.dropdb(name)


def test_a_session_of_another_role_named_as_a_step_is_neither_ended_nor_waited_for(pg, monkeypatch):
    """Step.outcome ends the sessions of its step that the server still runs: those of its
    login role named by its application_name. Any role may name its session so (the name
    shows in pg_stat_activity): such a one is not the step's, is left running, and the
    outcome is asked (before, a role the restoring one may not end made every outcome
    `did not end`)."""
    _as_the_suite(pg, monkeypatch)
    step = pgclient.Step("postgres")
    pg.psql("DROP ROLE IF EXISTS mutc_namer; CREATE ROLE mutc_namer LOGIN;")
    other = subprocess.Popen([pg.bin("psql"), "-X", "-q", "-d", "postgres"], stdin=subprocess.PIPE,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env={**pg.env, "PGUSER": "mutc_namer", "PGAPPNAME": step.name})
    try:
        deadline = time.monotonic() + 30
        while pg.psql("SELECT count(*) FROM pg_stat_activity WHERE application_name = '%s'" % step.name) != "1\n":
            assert time.monotonic() < deadline and other.poll() is None
            time.sleep(0.02)
        assert step.outcome("SELECT 'asked';") == [["asked"]]
        assert pg.psql("SELECT count(*) FROM pg_stat_activity WHERE application_name = '%s'" % step.name) == "1\n"
    finally:
        other.kill()
        other.wait()
        pg.psql("DROP ROLE mutc_namer;")


def test_a_legacy_file_shorter_than_its_header_is_failed_even_in_a_dry_run(tmp_path, keys):
    """A legacy file holds a 64-byte header (salt and IV) before its plaintext: a shorter one
    is damaged (65) before any child reads it; one of exactly 64 bytes holds an empty
    plaintext. Before, a dry run said a 63-byte file would migrate, of -1 bytes."""
    directory = tmp_path / "backups"
    directory.mkdir(mode=0o700)
    (directory / "empty.sql.enc").write_bytes(b"\x01" * 64)
    (directory / "short.sql.enc").write_bytes(b"\x01" * 63)
    status, found, err = migrate(directory, "--dry-run", keys=keys)
    assert status == 65, err
    assert found == [{"file": "empty.sql.enc", "status": "would-migrate", "plaintext_bytes": 0},
                     {"file": "short.sql.enc", "status": "failed", "reason": "too short for a legacy file",
                      "exit_code": 65}]


def test_a_steps_session_left_on_the_server_is_ended_by_a_login_role_acting_as_another(pg, monkeypatch):
    """A login role that acts as another from its sessions' start (PGOPTIONS -c role=R, or
    ALTER ROLE ... SET role) may end its own sessions only as itself: Step.outcome ends
    those of its step as the login role (SET ROLE NONE). Acting as R, which may not signal
    the login role's sessions, every outcome of a step whose psql was lost was `did not end`."""
    _as_the_suite(pg, monkeypatch)
    pg.psql("DROP ROLE IF EXISTS mutc_logs_in; DROP ROLE IF EXISTS mutc_acted; CREATE ROLE mutc_logs_in LOGIN; "
            "CREATE ROLE mutc_acted; GRANT mutc_acted TO mutc_logs_in;")
    step = pgclient.Step("postgres")
    left = subprocess.Popen([pg.bin("psql"), "-X", "-q", "-d", "postgres"], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**pg.env, "PGUSER": "mutc_logs_in", "PGAPPNAME": step.name})
    named = "SELECT count(*) FROM pg_stat_activity WHERE application_name = '%s'" % step.name
    try:
        deadline = time.monotonic() + 30
        while pg.psql(named) != "1\n":
            assert time.monotonic() < deadline and left.poll() is None
            time.sleep(0.02)
        monkeypatch.setenv("PGUSER", "mutc_logs_in")
        monkeypatch.setenv("PGOPTIONS", "-c role=mutc_acted")
        assert step.outcome("SELECT 'asked';") == [["asked"]]
        assert pg.psql(named) == "0\n"  # its session ended
    finally:
        left.kill()
        left.wait()
        pg.psql("DROP ROLE mutc_logs_in; DROP ROLE mutc_acted;")


def test_a_step_whose_session_is_still_there_after_it_was_ended_has_no_outcome(tmp_path, monkeypatch):
    """A session of the step that the server still runs once it was ended and waited for
    may yet commit: its outcome is unknown (PgError), not the rows asked meanwhile. A psql
    on PATH (/bin/sh) stands for the server: one session ended, one still there."""
    psql = tmp_path / "psql"
    psql.write_text("#!/bin/sh\ncat > /dev/null\nprintf '1\\000'; printf '1\\000'; printf 'asked\\000'\n")
    psql.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    with pytest.raises(pgclient.PgError, match="its session on the server did not end"):
        pgclient.Step("postgres").outcome("SELECT 'asked';")
    psql.write_text("#!/bin/sh\ncat > /dev/null\nprintf '1\\000'; printf '0\\000'; printf 'asked\\000'\n")
    assert pgclient.Step("postgres").outcome("SELECT 'asked';") == [["asked"]]


def test_a_run_that_ends_ends_the_open_of_its_globals_file_started_early():
    """The globals file's `open --verify-first` starts with the run's first checks, and a run
    that fails or is stopped before reading it ends it (stop_children), with what it
    started: else it ran on past the restore, reading the file with the key lent to it.
    A `sleep` stands for it."""
    from encpipe.pgrestorechild import Children

    children = Children()
    children.keyids, children.stream = [], None
    child = subprocess.Popen(["sleep", "60"])
    children.globals_open = (child, None)
    try:
        children.stop_children()
        assert child.poll() is not None
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


@pytest.mark.parametrize("dropped, failed, status", [
    (["a_pre_restore_20200101T000000Z"], [], 0),
    (["a_pre_restore_20200101T000000Z"], [("a_pre_restore_20200102T000000Z", "ERROR:  in use")], 1),
])
def test_a_pre_restore_copy_that_could_not_be_dropped_is_an_error_and_status_1(monkeypatch, dropped, failed, status):
    """--drop-pre-restore-older-than: each copy that could not be dropped (in use, another's)
    is said as an error, and the run's status is 1 (README, "Exit status";
    the ones dropped are said too)."""
    monkeypatch.setattr(pgleftovers, "drop_pre_restore", lambda *_: (dropped, failed))
    said = []
    assert pgleftovers.drop_said("postgres", 30, "a", lambda text, kind=None: said.append((kind, text))) == status
    assert said[0] == (None, "dropped previous copies: a_pre_restore_20200101T000000Z")
    assert said[1:] == [("error", "could not drop %s: %s" % f) for f in failed]


@pytest.mark.parametrize("version, can", [
    ((15, 13), False), ((15, 14), True), ((16, 9), False), ((16, 10), True), ((17, 5), False), ((17, 6), True),
    ((18, 0), True), ((19, 0), True), ((14, 99), False),
])
def test_psql_restricts_from_the_first_release_of_each_major_that_has_it(version, can):
    """\\restrict came with psql 15.14, 16.10, 17.6 and 18.0 (CVE-2025-8714): each of those
    releases is one that restricts a dump's SQL, not only the next one."""
    assert pgclient.psql_can_restrict(version) is can
