"""encpipe-restore with hostile names: a DBNAME made of quotes, a backslash, a
newline and a semicolon; a scratch database name taken before the restore by
another role. The restore either works on exactly the named database or fails
leaving every database as it was; nothing lands in a database someone else made.
"""

import base64
import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

from test_backup_restore import (
    REPO,
    RESTORE,
    backup,
    databases,
    dump,
    ensure_small,
    restore,
    run,
    script_env,
)

AWKWARD = "q\"u'o\\te\nnl; --x"
FIXED_PID = 424242


def _precious(pg, name):
    pg.dropdb(name)
    pg.createdb(name)
    pg.psql("CREATE TABLE precious (x text); INSERT INTO precious VALUES ('keep me');", db=name)
    return dump(pg, name)


def test_a_database_name_with_quotes_a_backslash_and_a_newline(pg, tools, key_file, tmp_path):
    source = ensure_small(pg, "names_source")
    path, _ = backup(pg, tools, str(tmp_path / "b"), source, "--no-globals", "--key-file", key_file)
    wanted = dump(pg, source)
    pg.dropdb(AWKWARD)
    proc = restore(pg, tools, path, AWKWARD, "--no-globals", "--key-file", key_file)  # a new database
    assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
    assert dump(pg, AWKWARD) == wanted
    before = _precious(pg, AWKWARD)
    proc = restore(pg, tools, path, AWKWARD, "--no-globals", "--key-file", key_file)  # in place: the old one kept
    assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
    assert dump(pg, AWKWARD) == wanted
    kept = [c for c in databases_named(pg) if c.startswith(AWKWARD + "_pre_restore_")]
    assert len(kept) == 1, kept
    assert dump(pg, kept[0]) == before
    # the copy is found by name, newline and all: dropped on request (it was not, before)
    proc = restore(pg, tools, path, AWKWARD, "--no-globals", "--key-file", key_file, "--drop-old",
                   "--drop-pre-restore-older-than", "0")
    assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
    assert not [c for c in databases_named(pg) if "_pre_restore_" in c]
    pg.dropdb(AWKWARD)


def databases_named(pg):
    """Every database name, newlines included (psql's own output would split them)."""
    out = pg.psql("SELECT string_agg(encode(convert_to(datname, 'UTF8'), 'hex'), ',') FROM pg_database").strip()
    return [bytes.fromhex(h).decode() for h in out.split(",")]


def test_a_scratch_name_taken_beforehand_makes_the_restore_fail_and_captures_nothing(pg, tools, key_file,
                                                                                      tmp_path):
    """Another role (CREATEDB) guesses the scratch name `encpipe_restore_<time>_<pid>`
    and creates it first: the restore must not restore into it nor swap it in."""
    source = ensure_small(pg, "names_source")
    path, _ = backup(pg, tools, str(tmp_path / "b"), source, "--no-globals", "--key-file", key_file)
    before = _precious(pg, "names_target")
    pg.psql("DROP ROLE IF EXISTS squatter; CREATE ROLE squatter LOGIN CREATEDB")
    now = datetime.now(timezone.utc)
    traps = ["encpipe_restore_%s_%d" % ((now + timedelta(seconds=s)).strftime("%Y%m%dT%H%M%SZ"), FIXED_PID)
             for s in range(0, 20)]
    # one psql for all of them (each statement of a script is its own transaction)
    pg.psql("".join('DROP DATABASE IF EXISTS "%s" WITH (FORCE);\nCREATE DATABASE "%s" OWNER squatter;\n'
                    % (trap, trap) for trap in traps))
    try:
        driver = ("import os, sys; os.getpid = lambda: %d; from encpipe.pgrestore import main; "
                  "sys.exit(main(sys.argv[1:]))" % FIXED_PID)
        env = script_env(pg, tools, PYTHONPATH=str(REPO))
        proc = subprocess.run([sys.executable, "-c", driver, "--no-globals", "--key-file", key_file, path,
                               "names_target"],
                              env=env, capture_output=True, timeout=300)
        assert (proc.returncode, proc.stdout) == (1, b""), proc.stderr.decode()
        assert b"Traceback" not in proc.stderr
        assert dump(pg, "names_target") == before
        present = databases(pg)
        left = [trap for trap in traps if trap in present]  # any left is as the squatter made it: empty
        tables = pg.psql("".join('\\connect "%s"\nSELECT count(*) FROM pg_catalog.pg_class WHERE relnamespace = '
                                 "'public'::regnamespace;\n" % trap for trap in left)).split()
        assert dict(zip(left, tables)) == dict.fromkeys(left, "0") and len(tables) == len(left)
        assert not [d for d in present if d.startswith("names_target_pre_restore_")]
    finally:
        pg.psql("".join('DROP DATABASE IF EXISTS "%s" WITH (FORCE);\n' % trap for trap in traps))
        pg.dropdb("names_target")


# A later restore drops `encpipe_restore_<time>_<pid>` databases whose run is gone, and
# --drop-pre-restore-older-than drops `NAME_pre_restore_<time>` ones: restoring into such a
# name would hand the restored database to that clean-up.
@pytest.mark.parametrize("name, why", [
    ("encpipe_restore_20200101T000000Z_1", "a scratch database of a restore"),
    ("encpipe_restore_20261203T010203Z_424242", "a scratch database of a restore"),
    ("shop_pre_restore_20200101T000000Z", "a copy a restore keeps of the database it replaced"),
    ("a b_pre_restore_20261203T010203Z", "a copy a restore keeps of the database it replaced"),
])
def test_a_dbname_of_a_form_restores_drop_is_refused(tools, key_file, tmp_path, name, why):
    path = tmp_path / "f.sql.enc"
    path.write_bytes(b"ENCPIPE")
    proc = subprocess.run([str(REPO / "scripts" / "encpipe-restore"), "--key-file", key_file, str(path), name],
                          env=script_env_without_cluster(tools), capture_output=True, timeout=60)
    assert (proc.returncode, proc.stdout) == (64, b""), proc.stderr.decode()
    assert proc.stderr.decode() == (f"encpipe-restore: error: {name} is named like {why}; choose another name\n"
                                    "encpipe-restore: hint: see encpipe-restore --help\n")


def script_env_without_cluster(tools):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENCPIPE", "PG"))}
    env.update(PYTHONPATH=str(REPO), PATH="%s:%s" % (tools, env["PATH"]), PGHOST="/nonexistent")
    return env


def test_names_with_an_equals_sign_or_a_leading_dash_back_up_and_restore_with_their_globals(pg, tools, key_file,
                                                                                           tmp_path):
    """psql -d takes a name with `=` for a connection string, and a name starting with `-`
    reached the commit step (and encpipe open) as an option: both failed after the dump."""
    from test_backup_restore import BACKUP, RESTORE, run

    for name in ("a=b c", "-leading dash"):
        pg.dropdb(name)
        pg.createdb(name)
        conninfo = "dbname='%s'" % name  # as the test's own psql and pg_dump must name it
        pg.psql("CREATE TABLE t (x text); INSERT INTO t VALUES ('%s');" % name, db=conninfo)
        pg.psql('COMMENT ON DATABASE "%s" IS \'of %s\'' % (name, name))
        wanted = dump(pg, conninfo)
        directory = tmp_path / name
        proc = run([BACKUP, "--dir", directory, "--key-file", key_file, "--", name], script_env(pg, tools))
        assert proc.returncode == 0, proc.stderr.decode()
        assert proc.stderr == b""
        stamp = json.loads(proc.stdout)["filename"][len(name) + 1:].split(".")[0]
        assert sorted(os.listdir(directory)) == sorted([".encpipe-cluster", "%s_%s.globals.sql.enc" % (name, stamp),
                                                        "%s_%s.sql.zst.enc" % (name, stamp)])
        pg.dropdb(name)
        # FILE relative to the working directory, as the operator types it beside the backups
        proc = run([RESTORE, "--key-file", key_file, "--", "%s_%s.sql.zst.enc" % (name, stamp), name],
                   script_env(pg, tools), cwd=directory)
        assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
        assert dump(pg, conninfo) == wanted
        assert pg.psql("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = '%s'"
                       % name) == "of %s\n" % name
        pg.dropdb(name)


def test_a_long_name_restores_where_it_does_not_exist_and_in_place_is_refused(pg, tools, key_file, tmp_path):
    """`<name>_pre_restore_<time>` must fit PostgreSQL's 63 bytes only when there is a
    database to keep: onto a server without it (disaster recovery) any name restores."""
    name = "a_database_name_of_sixty_three_bytes_" + "x" * 26
    assert len(name) == 63
    pg.dropdb(name)
    source = ensure_small(pg, "names_source")
    path, _ = backup(pg, tools, str(tmp_path / "b"), source, "--key-file", key_file)
    proc = restore(pg, tools, path, name, "--key-file", key_file)
    assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
    assert dump(pg, name) == dump(pg, source)
    before = _precious(pg, name)
    proc = restore(pg, tools, path, name, "--key-file", key_file)
    assert (proc.returncode, proc.stdout) == (64, b"")
    assert proc.stderr.decode().startswith("encpipe-restore: error: database name %s is too long to keep the old "
                                           "one as %s_pre_restore_" % (name, name))
    assert dump(pg, name) == before
    assert not [d for d in databases(pg) if d.startswith(("encpipe_restore_", name[:20] + "_pre"))]
    pg.dropdb(name)


def test_a_name_with_a_newline_and_quotes_restores_with_its_globals_file_in_one_line_messages(pg, tools, key_file,
                                                                                              tmp_path):
    """The globals file beside a backup of such a database was not found (a regular
    expression without re.S), so it restored without owner, ACL or comment; and the
    restore's messages printed the newline as is, making two lines of one."""
    pg.dropdb(AWKWARD)
    pg.createdb(AWKWARD)
    pg.psql("CREATE ROLE names_owner; ALTER DATABASE %s OWNER TO names_owner; COMMENT ON DATABASE %s IS 'kept';"
            % ((ident(AWKWARD),) * 2))
    path, report = backup(pg, tools, str(tmp_path / "b"), AWKWARD, "--key-file", key_file)
    assert report["globals"] and os.path.exists(os.path.join(tmp_path, "b", report["globals"]))
    pg.dropdb(AWKWARD)
    proc = restore(pg, tools, path, AWKWARD, "--key-file", key_file)
    assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
    lines = proc.stderr.decode().splitlines()
    assert lines == ["encpipe-restore: restored %s into new database %s"
                     % tuple(n.replace("\\", "\\\\").replace("\n", "\\n") for n in (path, AWKWARD))], lines
    assert pg.psql("SELECT pg_get_userbyid(datdba), shobj_description(oid, 'pg_database') FROM pg_database "
                   "WHERE datname = %s" % literal(AWKWARD)) == "names_owner|kept\n"
    pg.dropdb(AWKWARD)
    pg.psql("DROP ROLE names_owner")


def ident(name):
    return '"%s"' % name.replace('"', '""')


def literal(text):
    return "'%s'" % text.replace("'", "''")


@pytest.fixture(scope="module")
def ascii_pg():
    """A SQL_ASCII cluster: a database name there may hold any byte but NUL."""
    from pgcluster import PgCluster
    with PgCluster(encoding="SQL_ASCII") as cluster:
        yield cluster


def _create_raw(pg, name):
    """CREATE DATABASE named by the bytes `name`, as psql reads them from a file."""
    env = dict(pg.env, PGCLIENTENCODING="SQL_ASCII")
    subprocess.run([pg.bin("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", "-"],
                   input=b'CREATE DATABASE "' + name + b'";\n', env=env, check=True)


def _raw_names(pg):
    out = pg.psql("SELECT string_agg(encode(datname::bytea, 'hex'), ',') FROM pg_database").strip()
    return {bytes.fromhex(h) for h in out.split(",")}


def test_names_that_are_not_utf8_on_a_sql_ascii_cluster(ascii_pg, tools, key_file, tmp_path):
    copy, scratch = b"\xff_pre_restore_20240101T000000Z", b"encpipe_restore_\xfe"
    _create_raw(ascii_pg, copy)
    _create_raw(ascii_pg, scratch)
    env = script_env(ascii_pg, tools)
    # listed: each name as \xNN, its exact bytes beside it
    proc = run([RESTORE, "--list-pre-restore"], env)
    assert (proc.returncode, proc.stderr) == (0, b""), proc.stderr.decode()
    listing = json.loads(proc.stdout)
    assert [(c["name"], c["name_base64"], c["database"], c["database_base64"]) for c in listing] == [
        ("\\xff_pre_restore_20240101T000000Z", base64.b64encode(copy).decode(), "\\xff", "/w==")]
    # a restore drops the leftovers it owns, and passes by a name that is none of them
    path, _ = backup(ascii_pg, tools, str(tmp_path / "b"), "postgres", "--no-globals", "--key-file", key_file)
    proc = restore(ascii_pg, tools, path, "target", "--no-globals", "--key-file", key_file)
    assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
    assert {copy, scratch} <= _raw_names(ascii_pg)
    # dropped by its bytes, and named as \xff
    proc = run([RESTORE, "--drop-pre-restore-older-than", "0"], env)
    assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
    assert proc.stderr == b"encpipe-restore: dropped previous copies: \\xff_pre_restore_20240101T000000Z\n"
    assert copy not in _raw_names(ascii_pg)


def test_a_database_owned_by_a_role_whose_name_is_not_utf8_backs_up_and_restores(ascii_pg, tools, key_file,
                                                                                  tmp_path):
    """Its properties (the owner's name) are read back as bytes: the backup failed (70, the
    globals not sealed) when psql's output was not UTF-8."""
    owner = b"own\xfer"
    env = dict(ascii_pg.env, PGCLIENTENCODING="SQL_ASCII")
    subprocess.run([ascii_pg.bin("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", "-"], env=env, check=True,
                   input=b'CREATE ROLE "' + owner + b'";\nCREATE DATABASE owned OWNER "' + owner + b'";\n')
    ascii_pg.psql("CREATE TABLE t (x text); INSERT INTO t VALUES ('kept');", db="owned")
    wanted = dump(ascii_pg, "owned")
    path, _ = backup(ascii_pg, tools, str(tmp_path / "b"), "owned", "--key-file", key_file)
    ascii_pg.dropdb("owned")
    proc = restore(ascii_pg, tools, path, "owned", "--key-file", key_file)
    assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
    assert dump(ascii_pg, "owned") == wanted
    assert ascii_pg.psql("SELECT encode(pg_get_userbyid(datdba)::bytea, 'hex') FROM pg_database "
                         "WHERE datname = 'owned'").strip() == owner.hex()
