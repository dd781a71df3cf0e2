"""encpipe-restore end to end at its edges: options passed through after `--`,
a DBNAME in use, a swap that fails.

- An allowed psql option reaches psql (`-v NAME=VALUE` is seen by the dump's
  SQL); an allowed pg_restore option reaches pg_restore (`-t TABLE`).
- A refused option (`-L FILE`: psql would log the dump's statements, plaintext,
  to FILE; `-v ON_ERROR_STOP=0`) is exit 64 with nothing on stdout, no file
  written, the database untouched.
"""

import pytest

from test_backup_restore import (
    backup,
    databases,
    dump,
    encpipe,
    ensure_small,
    key_file,  # noqa: F401 (fixture)
    leftover_databases,
    restore,
    tools,  # noqa: F401 (fixture)
)
from test_disaster_recovery import restore_with

TARGET = "edge_target"


def _seal(tmp_path, key, plaintext, name):
    path = tmp_path / name
    encpipe(["seal", "--key-file", key, "-o", str(path)], input=plaintext, check=True)
    return str(path)


def _fresh_target(pg):
    pg.dropdb(TARGET)
    pg.createdb(TARGET)
    pg.psql("CREATE TABLE precious (x text); INSERT INTO precious VALUES ('keep me');", db=TARGET)
    return dump(pg, TARGET)


def test_an_allowed_psql_option_reaches_psql(pg, tools, key_file, tmp_path):
    sql = b"CREATE TABLE tagged AS SELECT :'tag'::text AS v;\n"
    path = _seal(tmp_path, key_file, sql, "tagged.sql.enc")
    _fresh_target(pg)
    proc = restore_with(pg, tools, ["--drop-old", "--key-file", key_file], path, TARGET, "-v", "tag=from the option")
    assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
    assert pg.psql("SELECT v FROM tagged", db=TARGET).strip() == "from the option"
    # Without the option the variable is not set: psql reports a syntax error, nothing is swapped in.
    before = dump(pg, TARGET)
    proc = restore(pg, tools, path, TARGET, "--drop-old", "--key-file", key_file)
    assert (proc.returncode, proc.stdout) == (1, b""), proc.stderr.decode()
    assert dump(pg, TARGET) == before
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
    (["-e", "-L{log}"], b"-L, --log-file"),
    (["-v", "ON_ERROR_STOP=0"], b"-v ON_ERROR_STOP"),
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
