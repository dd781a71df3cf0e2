"""encpipe-restore --no-globals neither reads nor needs the globals file of FILE's run.

Before, --no-globals only kept the roles of that file from being created: the
file beside FILE was still opened, authenticated and checked, and a new
database got its owner, privileges, encoding and locale, connection limit,
settings and comment from it. So a globals file that a writer of the backup
directory damaged, replaced by another run's, forged (unsigned, where a signer
is required) or made a FIFO stopped the restore the operator had asked to make
without it (65, 67, 66), and one of a remote FILE was still fetched. Now
--no-globals never opens (nor fetches) it: no role is created, a new database
belongs to the restoring role (the connecting user, or --role ROLE) with
default privileges and template0's encoding and locale, and one warning line
says which recorded properties were not applied; restored in place, the
database keeps the live one's properties, as always. Real scripts, a real cluster.
"""

import json
import os
import re
import shutil
import subprocess

import pytest

from test_backup_restore import (BACKUP, RESTORE, backup, dump, encpipe, ensure_small, leftover_databases, restore, run,
                                 script_env)
from test_remote_listing import upload, wrapper

SOURCE, TARGET, OWNER = "ng_source", "ng_target", "ng_owner"
PROPS_SQL = ("SELECT pg_get_userbyid(datdba), datacl, datconnlimit, shobj_description(oid, 'pg_database'), "
             "(SELECT count(*) FROM pg_db_role_setting s WHERE s.setdatabase = d.oid) "
             "FROM pg_database d WHERE datname = '%s'")


def _warning(db, role):
    return (f"encpipe-restore: warning: --no-globals: the database properties a globals file records are not "
            f"applied (owner, privileges, encoding and locale, connection limit, settings, comment): {db} will "
            f"belong to {role}, with default privileges and template0's encoding and locale")


def _globals_of(path):
    return re.sub(r"\.(sql\.zst|dump)\.enc$", ".globals.sql.enc", path)


@pytest.fixture(scope="module")
def made(pg, tools, key_file, tmp_path_factory):
    """(directory, an older run's dump, the newest run's dump, the signing key's verify key file), all signed."""
    base = tmp_path_factory.mktemp("no_globals")
    sign_key, signers = str(base / "s.sign"), base / "signers"
    signers.write_text(encpipe(["keygen", "--sign", "-o", sign_key], check=True).stdout.decode())
    pg.psql(f"DROP ROLE IF EXISTS {OWNER}; CREATE ROLE {OWNER};")
    pg.dropdb(SOURCE)
    pg.psql(f"CREATE DATABASE {SOURCE} OWNER {OWNER} CONNECTION LIMIT 9; REVOKE CONNECT ON DATABASE {SOURCE} FROM "
            f"PUBLIC; COMMENT ON DATABASE {SOURCE} IS 'recorded'; ALTER DATABASE {SOURCE} SET work_mem = '7MB';")
    pg.psql("CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'row ' || g "
            "FROM generate_series(1, 20) AS g;", db=SOURCE)
    directory = str(base / "b")
    options = ("--format", "custom", "--key-file", key_file, "--sign-key", sign_key)
    older, _ = backup(pg, tools, directory, SOURCE, *options)
    newest, _ = backup(pg, tools, directory, SOURCE, *options)
    yield directory, older, newest, str(signers)
    for db in (SOURCE, TARGET):
        pg.dropdb(db)
    pg.psql(f"DROP ROLE {OWNER};")


def _spoil(state, globals_path, older, key_file):
    if state == "missing":
        os.unlink(globals_path)
    elif state == "damaged":
        sealed = bytearray(open(globals_path, "rb").read())
        sealed[len(sealed) // 2] ^= 1
        open(globals_path, "wb").write(bytes(sealed))
    elif state == "another run's":
        os.replace(_globals_of(older), globals_path)
    elif state == "unsigned":  # the genuine SQL, sealed by a holder of the key without the signing key
        plain = encpipe(["open", "--key-file", key_file, globals_path], check=True).stdout
        encpipe(["seal", "--key-file", key_file, "-o", globals_path + ".new"], input=plain, check=True)
        os.replace(globals_path + ".new", globals_path)
    elif state == "fifo":
        os.unlink(globals_path)
        os.mkfifo(globals_path)


STATES = ["missing", "damaged", "another run's", "unsigned", "fifo"]


@pytest.mark.parametrize("state", STATES)
def test_no_globals_restores_into_a_new_database_whatever_the_globals_file_is(pg, tools, key_file, made, tmp_path,
                                                                               state):
    """Before: missing, it restored (saying "no globals file"); damaged 65, another run's 65,
    unsigned 67, a FIFO 66, nothing restored. Now each restores, with one warning."""
    directory = str(tmp_path / "b")
    shutil.copytree(made[0], directory)
    path = os.path.join(directory, os.path.basename(made[2]))
    _spoil(state, _globals_of(path), os.path.join(directory, os.path.basename(made[1])), key_file)
    pg.dropdb(TARGET)
    proc = run([RESTORE, "--no-globals", "--key-file", key_file, "--signer-file", made[3], path, TARGET],
               script_env(pg, tools), timeout=120)
    assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
    assert proc.stderr.decode().splitlines() == [_warning(TARGET, pg.user),
                                                 f"encpipe-restore: restored {path} into new database {TARGET}"]
    assert dump(pg, TARGET) == dump(pg, SOURCE)
    assert pg.psql(PROPS_SQL % TARGET) == f"{pg.user}||-1||0\n"  # none of the recorded ones
    assert pg.psql(PROPS_SQL % SOURCE) != pg.psql(PROPS_SQL % TARGET)
    assert leftover_databases(pg) == set()
    pg.dropdb(TARGET)


def test_no_globals_in_place_keeps_the_live_properties_and_says_nothing_of_them(pg, tools, key_file, made, tmp_path):
    """Before: 65 for the damaged globals file, though an in-place restore takes nothing from it."""
    directory = str(tmp_path / "b")
    shutil.copytree(made[0], directory)
    path = os.path.join(directory, os.path.basename(made[2]))
    _spoil("damaged", _globals_of(path), None, key_file)
    pg.dropdb(TARGET)
    pg.psql(f"CREATE DATABASE {TARGET} OWNER {OWNER} CONNECTION LIMIT 3; COMMENT ON DATABASE {TARGET} IS 'live';")
    before = pg.psql(PROPS_SQL % TARGET)
    proc = restore(pg, tools, path, TARGET, "--no-globals", "--drop-old", "--key-file", key_file,
                   "--signer-file", made[3])
    assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
    assert proc.stderr.decode().splitlines() == [
        f"encpipe-restore: restored {path} into {TARGET}; previous database dropped"]
    assert before == pg.psql(PROPS_SQL % TARGET) == f"{OWNER}||3|live|0\n"
    assert dump(pg, TARGET) == dump(pg, SOURCE)
    pg.dropdb(TARGET)


def test_no_globals_with_role_gives_the_new_database_to_that_role(pg, tools, key_file, tmp_path):
    db = ensure_small(pg, "ng_role_source")
    directory = str(tmp_path / "b")
    made = run([BACKUP, "--dir", directory, "--key-file", key_file, db, "--", "--no-owner", "--no-acl"],
               script_env(pg, tools))
    assert made.returncode == 0, made.stderr.decode()
    path = os.path.join(directory, json.loads(made.stdout)["filename"])
    os.unlink(_globals_of(path))
    pg.psql("DROP ROLE IF EXISTS ng_restorer; CREATE ROLE ng_restorer LOGIN;")
    pg.dropdb(TARGET)
    try:
        proc = restore(pg, tools, path, TARGET, "--no-globals", "--role", "ng_restorer", "--key-file", key_file)
        assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
        assert proc.stderr.decode().splitlines() == [_warning(TARGET, "ng_restorer"),
                                                     f"encpipe-restore: restored {path} into new database {TARGET}"]
        assert pg.psql(PROPS_SQL % TARGET) == "ng_restorer||-1||0\n"
    finally:
        pg.dropdb(TARGET)
        pg.psql("DROP ROLE ng_restorer;")
        pg.dropdb(db)


def test_globals_and_no_globals_together_are_refused(pg, tools, key_file, made):
    """Before: --globals FILE was read and its properties applied, only its roles not created."""
    pg.dropdb(TARGET)
    proc = restore(pg, tools, made[2], TARGET, "--no-globals", "--globals", _globals_of(made[2]),
                   "--key-file", key_file)
    assert (proc.returncode, proc.stdout) == (64, b""), proc.stderr.decode()
    assert proc.stderr.decode().splitlines() == [
        "encpipe-restore: error: --no-globals reads no globals file: give --globals FILE or --no-globals, not both",
        "encpipe-restore: hint: see encpipe-restore --help"]
    assert TARGET not in pg.psql("SELECT datname FROM pg_database").split()


def test_no_globals_fetches_no_globals_file_of_a_remote_file(pg, tools, key_file, s3, made, tmp_path):
    """Before: the remote globals file was fetched still, and one that could not be was the restore's failure."""
    names = [os.path.basename(made[2]), os.path.basename(_globals_of(made[2]))]
    upload(s3, tmp_path, "ng", {name: open(os.path.join(made[0], name), "rb").read() for name in names})
    log = tmp_path / "cats"
    rclone = wrapper(tmp_path / "rclone", f'echo "$2" >> {log}; case "$2" in *.globals.sql.enc) exit 9;; esac')
    pg.dropdb(TARGET)
    proc = run([RESTORE, "--no-globals", "--key-file", key_file, f"{s3.location}/ng/{names[0]}", TARGET],
               script_env(pg, tools, **s3.env, RCLONE=rclone), timeout=120, stdin=subprocess.DEVNULL)
    assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
    assert proc.stderr.decode().splitlines()[0] == _warning(TARGET, pg.user)
    assert log.read_text().splitlines() == [f"{s3.location}/ng/{names[0]}"]
    pg.dropdb(TARGET)


ELSE = ("give the right one with --globals FILE, or restore without it with --no-globals (no roles, no recorded "
        "database properties)")


@pytest.mark.parametrize("state, hint", [("damaged", ELSE),
                                         ("another run's", "an older globals file put under this run's name? " + ELSE),
                                         ("fifo", ELSE)])
def test_a_refused_globals_file_says_how_to_restore_without_it(pg, tools, key_file, made, tmp_path, state, hint):
    """Without --no-globals such a file still stops the restore (its roles and properties were
    asked for); the hint names --no-globals. Before, a damaged one had no hint, the others
    named only --globals FILE; a FIFO's began "remove it", which no longer lets a restore go
    on (a globals file of FILE's run that is missing is refused, 66)."""
    directory = str(tmp_path / "b")
    shutil.copytree(made[0], directory)
    path = os.path.join(directory, os.path.basename(made[2]))
    _spoil(state, _globals_of(path), os.path.join(directory, os.path.basename(made[1])), key_file)
    pg.dropdb(TARGET)
    proc = restore(pg, tools, path, TARGET, "--key-file", key_file, "--signer-file", made[3])
    assert (proc.returncode, proc.stdout) == ({"fifo": 66}.get(state, 65), b""), proc.stderr.decode()
    lines = proc.stderr.decode().splitlines()
    assert len(lines) == 2 and lines[0].startswith("encpipe-restore: error: ") and lines[0].endswith(
        "; nothing was changed"), lines
    assert lines[1] == "encpipe-restore: hint: " + hint
    assert TARGET not in pg.psql("SELECT datname FROM pg_database").split()
