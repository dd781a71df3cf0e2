"""encpipe-restore refuses a backup whose run's globals file is missing (66), unless told.

Before, when the globals file beside FILE (or beside a remote FILE) was simply
not there and neither --globals FILE nor --no-globals was given, the restore
went on with one warning ("no database properties (no globals file)") and a
new database got default privileges: PUBLIC could connect, the recorded owner
and privileges were dropped, missing roles were not created. A writer of the
backup directory downgraded the restored database's access control by deleting
one file. Now that is one error line (66, as for any input that cannot be
read) and a hint naming both ways on, before any server is reached: nothing is
created, a live database is untouched (in place too: the run's roles were to
come from that file). A backup made with encpipe-backup --no-globals has no
globals file: it is restored with --no-globals. Files not named as a run's
dump (the previous tool's, migrated or not) need none, as before.
"""

import os
import subprocess

import pytest

from test_backup_restore import (RESTORE, backup, dump, ensure_small, leftover_databases, make_legacy_file, restore,
                                 run, script_env)
from test_remote_listing import upload

SOURCE, TARGET, OWNER = "gm_source", "gm_target", "gm_owner"
PROPS_SQL = ("SELECT pg_get_userbyid(datdba), datacl, datconnlimit, shobj_description(oid, 'pg_database') "
             "FROM pg_database WHERE datname = '%s'")
HINT = ("encpipe-restore: hint: a backup made with encpipe-backup --no-globals has none: restore it with --no-globals "
        "(no roles, no recorded database properties); else give the right one with --globals FILE")


def _error(name, db=TARGET):
    return f"encpipe-restore: error: the globals file of FILE's run is missing: {name}; nothing was changed"


def _globals_of(path):
    return path.rsplit(".", 3)[0] + ".globals.sql.enc" if path.endswith(".sql.zst.enc") else \
        path.rsplit(".", 2)[0] + ".globals.sql.enc"


def _state(pg):
    return (pg.psql("SELECT datname FROM pg_database ORDER BY 1"), pg.psql("SELECT rolname FROM pg_roles ORDER BY 1"))


@pytest.fixture(scope="module")
def made(pg, tools, key_file, tmp_path_factory):
    """A custom-format backup (and its globals file) of a database with an owner and privileges of its own."""
    pg.psql(f"DROP ROLE IF EXISTS {OWNER}; CREATE ROLE {OWNER};")
    pg.dropdb(SOURCE)
    pg.psql(f"CREATE DATABASE {SOURCE} OWNER {OWNER}; REVOKE CONNECT ON DATABASE {SOURCE} FROM PUBLIC;")
    pg.psql("CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'one');", db=SOURCE)
    directory = str(tmp_path_factory.mktemp("globals_missing") / "b")
    path, report = backup(pg, tools, directory, SOURCE, "--format", "custom", "--key-file", key_file)
    assert report["globals"] and os.path.exists(_globals_of(path))
    yield path
    for db in (SOURCE, TARGET):
        pg.dropdb(db)
    pg.psql(f"DROP ROLE IF EXISTS {OWNER};")


def _without_globals(made, tmp_path):
    path = str(tmp_path / os.path.basename(made))
    os.link(made, path)
    return path


def test_a_missing_globals_file_refuses_a_restore_into_a_new_database(pg, tools, key_file, made, tmp_path):
    """Before: 0, a warning, and TARGET with default privileges (PUBLIC may connect)."""
    path = _without_globals(made, tmp_path)
    pg.dropdb(TARGET)
    before = _state(pg)
    proc = restore(pg, tools, path, TARGET, "--key-file", key_file)
    assert (proc.returncode, proc.stdout) == (66, b""), proc.stderr.decode()
    assert proc.stderr.decode().splitlines() == [_error(_globals_of(path)), HINT]
    assert _state(pg) == before and leftover_databases(pg) == set()


def test_a_missing_globals_file_leaves_a_live_database_untouched(pg, tools, key_file, made, tmp_path):
    """In place, the live database's properties are kept either way, but the run's roles were
    to come from its globals file: refused too, before anything is touched. Before: restored."""
    path = _without_globals(made, tmp_path)
    pg.dropdb(TARGET)
    pg.psql(f"CREATE DATABASE {TARGET} CONNECTION LIMIT 4; COMMENT ON DATABASE {TARGET} IS 'live';")
    pg.psql("CREATE TABLE live (v text); INSERT INTO live VALUES ('kept');", db=TARGET)
    contents, props, before = dump(pg, TARGET), pg.psql(PROPS_SQL % TARGET), _state(pg)
    proc = restore(pg, tools, path, TARGET, "--drop-old", "--key-file", key_file)
    assert (proc.returncode, proc.stdout) == (66, b""), proc.stderr.decode()
    assert proc.stderr.decode().splitlines() == [_error(_globals_of(path)), HINT]
    assert (dump(pg, TARGET), pg.psql(PROPS_SQL % TARGET), _state(pg)) == (contents, props, before)
    assert leftover_databases(pg) == set()
    pg.dropdb(TARGET)


def test_a_backup_made_with_no_globals_is_restored_with_no_globals(pg, tools, key_file, tmp_path):
    """Before: restored without --no-globals, with the "no globals file" warning."""
    db = ensure_small(pg, "gm_small")
    path, report = backup(pg, tools, str(tmp_path / "b"), db, "--no-globals", "--key-file", key_file)
    assert report["globals"] is None
    pg.dropdb(TARGET)
    before = _state(pg)
    proc = restore(pg, tools, path, TARGET, "--key-file", key_file)
    assert (proc.returncode, proc.stdout) == (66, b""), proc.stderr.decode()
    assert proc.stderr.decode().splitlines() == [_error(_globals_of(path)), HINT]
    assert _state(pg) == before
    proc = restore(pg, tools, path, TARGET, "--no-globals", "--key-file", key_file)
    assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
    assert dump(pg, TARGET) == dump(pg, db)
    pg.dropdb(TARGET)
    pg.dropdb(db)


def test_a_globals_file_missing_from_the_remote_refuses_the_restore(pg, tools, key_file, s3, made, tmp_path):
    """Before: the absent object was taken for a run without globals, and the restore went on."""
    name = os.path.basename(made)
    upload(s3, tmp_path, "gm", {name: open(made, "rb").read()})
    pg.dropdb(TARGET)
    before = _state(pg)
    remote = f"{s3.location}/gm/{name}"
    proc = run([RESTORE, "--key-file", key_file, remote, TARGET], script_env(pg, tools, **s3.env),
               timeout=120, stdin=subprocess.DEVNULL)
    assert (proc.returncode, proc.stdout) == (66, b""), proc.stderr.decode()
    assert proc.stderr.decode().splitlines() == [_error(_globals_of(remote)), HINT]
    assert _state(pg) == before


def test_a_file_of_the_previous_tool_under_a_runs_name_needs_no_globals_file(pg, tools, tmp_path):
    """encpipe-backup never made such a file, nor its globals file: restored as before, with the warning."""
    key_hex = "ab" * 32
    path = tmp_path / "gm_legacy_20250101T020000Z.sql.enc"
    make_legacy_file(str(path), key_hex, b"CREATE TABLE legacy (v text);\nINSERT INTO legacy VALUES ('old');\n")
    pg.dropdb(TARGET)
    proc = restore(pg, tools, str(path), TARGET, env_extra={"BACKUP_ENCRYPTION_KEY": key_hex})
    assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
    assert proc.stderr.decode().splitlines() == [
        f"encpipe-restore: warning: no database properties (no globals file): {TARGET} will belong to the restoring "
        "role, with default privileges", f"encpipe-restore: restored {path} into new database {TARGET}"]
    assert pg.psql("SELECT v FROM legacy", db=TARGET) == "old\n"
    pg.dropdb(TARGET)
