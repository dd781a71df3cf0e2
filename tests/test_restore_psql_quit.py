"""A plain dump whose `\\q` ends psql (status 0) before it has read the rest fails the
restore, the live database left as it was. psql runs a dump's meta-commands only
without `\\restrict` (an older psql, --allow-unrestricted-psql: here a stand-in
that says it is 15.13); a restricted psql refuses `\\q` as every other one (3).

Before, the restore counted it as good: psql had exited 0, and `encpipe open`,
killed by SIGPIPE once psql's pipe was closed, was taken for a reader gone as
pg_restore may go (-t: the rest of the archive not needed). The rest of the
dump is past the pipes' buffers (`encpipe open` dies of SIGPIPE), or left unread
in psql's pipe (it exits 0 as well).
"""

import pytest

from test_backup_restore import RESTORE, dump, encpipe, leftover_databases, run, script_env

PAD = b"".join(b"-- line %07d of the dump that goes on past the quit command, to fill pipes\n" % n
               for n in range(80_000))
TARGET = "quit_target"


@pytest.fixture
def old_psql(pg, tmp_path):
    """A directory holding `psql`: pg's, that says it is 15.13 (no `\\restrict`)."""
    where = tmp_path / "old"
    where.mkdir()
    (where / "psql").write_text('#!/bin/sh\n[ "$1" = --version ] && { echo "psql (PostgreSQL) 15.13"; exit 0; }\n'
                                f'exec {pg.bin("psql")} "$@"\n')
    (where / "psql").chmod(0o755)
    return str(where)


@pytest.mark.parametrize("rest", [len(PAD), 16 << 10], ids=["past the pipes", "in psql's pipe"])
def test_a_dump_that_quits_psql_half_way_restores_nothing(pg, tools, key_file, tmp_path, old_psql, rest):
    sql = b"CREATE TABLE t (x int);\nINSERT INTO t VALUES (1);\n\\q\n" + PAD[:rest] + b"INSERT INTO t VALUES (2);\n"
    path = tmp_path / "quits.sql.enc"
    encpipe(["seal", "--key-file", key_file, "-o", path], input=sql, check=True)
    pg.psql(f"DROP DATABASE IF EXISTS {TARGET}; CREATE DATABASE {TARGET};")
    pg.psql("CREATE TABLE kept (x int); INSERT INTO kept VALUES (7);", db=TARGET)
    before = dump(pg, TARGET)
    env = script_env(pg, tools)
    env["PATH"] = f"{old_psql}:{env['PATH']}"
    done = run([RESTORE, "--allow-unrestricted-psql", "--no-globals", "--key-file", key_file, path, TARGET], env,
               timeout=60)
    assert (done.returncode, done.stdout) == (1, b""), done.stderr
    errors = [line for line in done.stderr.decode().splitlines() if ": error: " in line]
    assert errors == [f"encpipe-restore: error: restoring {path} failed: psql ended (status 0) before it had read "
                      f"all of the dump; database {TARGET} is unchanged"]
    assert dump(pg, TARGET) == before and leftover_databases(pg) == set()
