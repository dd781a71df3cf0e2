"""A globals file's role statements carry nothing else.

encpipe-restore runs, of a globals file, only the statements about the roles the
server lacks (pgglobals). It split the file at lines that end in `;` outside
quotes and kept a statement by its first words, so one that began as a missing
role's `ALTER ROLE` (or a `GRANT` to it, or a `SET`) and went on with more SQL
on the same line, or behind a `--` comment holding a quote, ran whole, as the
restoring superuser: a file that holds more than pg_dumpall writes (one given
with --globals FILE, or one anyone with the public key made, restored with
--allow-unauthenticated) altered an existing role. Now such a file is refused
(65) before anything is touched.
"""

import os
import subprocess
import sys

import pytest

from encpipe import pgglobals
from encpipe.pgfetch import globals_name
from test_backup_restore import REPO, backup, encpipe, ensure_small, restore

SMUGGLED = {
    "same line": "ALTER ROLE smug_new SET work_mem TO '1MB'; ALTER ROLE mallory SUPERUSER;\n",
    "behind a comment": "ALTER ROLE smug_new SET work_mem TO '1MB' -- '\n;ALTER ROLE mallory SUPERUSER; -- '\n;\n",
    "grant": "GRANT pg_monitor TO smug_new ;ALTER ROLE mallory SUPERUSER;\n",
    "set": "SET client_encoding = 'UTF8'; ALTER ROLE mallory SUPERUSER;\n",
    "dollar quote": "COMMENT ON ROLE smug_new IS $$x';$$;\nALTER ROLE mallory SUPERUSER; -- ';\n",
}


@pytest.mark.parametrize("smuggled", SMUGGLED.values(), ids=SMUGGLED.keys())
def test_sql_smuggled_into_a_missing_roles_statement_never_runs(pg, tools, key_file, tmp_path, mallory, smuggled):
    source = ensure_small(pg, "mal_source")
    path, _ = backup(pg, tools, str(tmp_path / "b"), source, "--key-file", key_file, "--format", "custom")
    genuine = encpipe(["open", "--key-file", key_file, globals_name(path)], check=True).stdout
    crafted = genuine + ("CREATE ROLE smug_new;\n" + smuggled).encode()
    planted = tmp_path / "crafted.globals.sql.enc"
    planted.write_bytes(encpipe(["seal", "--key-file", key_file], input=crafted, check=True).stdout)
    pg.psql("DROP ROLE IF EXISTS smug_new;")
    roles = pg.psql("SELECT rolname, rolsuper, rolconfig FROM pg_roles ORDER BY 1")
    proc = restore(pg, tools, path, "mal_target", "--key-file", key_file, "--globals", str(planted))
    assert (proc.returncode, proc.stdout) == (65, b""), proc.stderr.decode()
    lines = proc.stderr.decode().splitlines()
    assert len(lines) == 2 and lines[0].startswith(
        f"encpipe-restore: error: the globals file {planted} holds a statement that is not one of pg_dumpall's: "), lines
    assert lines[0].endswith("; nothing was changed"), lines
    assert lines[1] == "encpipe-restore: hint: " + pgglobals.REFUSED_HINT  # --no-globals restores without it
    assert pg.psql("SELECT rolname, rolsuper, rolconfig FROM pg_roles ORDER BY 1") == roles
    assert "mal_target" not in pg.psql("SELECT datname FROM pg_database").split()


AWKWARD_ROLES = r"""
CREATE ROLE "gs it's ""odd""
-- encpipe-database-properties: {}" LOGIN CONNECTION LIMIT 3 VALID UNTIL 'infinity' PASSWORD 'pw; -- ''x''';
CREATE ROLE gs_plain NOLOGIN;
GRANT gs_plain TO "gs it's ""odd""
-- encpipe-database-properties: {}" WITH ADMIN OPTION;
COMMENT ON ROLE gs_plain IS E'back\\slash; ''quote''
-- not a comment; $$ nor this $$';
ALTER ROLE gs_plain SET search_path = "$user", 'a\b', "c;d";
ALTER ROLE gs_plain SET application_name = 'x''; y';
ALTER ROLE gs_plain SET work_mem = '7MB';
"""


def test_pg_dumpalls_own_statements_for_awkward_roles_pass(pg, tmp_path):
    """What refuses smuggled SQL takes every statement pg_dumpall writes: names and comments
    with quotes, newlines, `;`, `--` and `$$`, E'' strings, lists of settings."""
    try:
        pg.psql(AWKWARD_ROLES)
        text = subprocess.run([pg.bin("pg_dumpall"), "--globals-only"], env=pg.env, capture_output=True,
                              check=True).stdout.decode()
    finally:
        pg.psql('DROP ROLE IF EXISTS gs_plain; DROP ROLE IF EXISTS "gs it\'s ""odd""\n-- encpipe-database-properties: {}";')
    statements, props = pgglobals.statements(text)
    assert props is None
    pgglobals.refuse_unplain(statements, "g")  # raises Failure for any it would refuse
    keep, created, _ = pgglobals.plan(statements, set())
    assert {"gs_plain", "gs it's \"odd\"\n-- encpipe-database-properties: {}"} <= set(created)
    assert [s for s in keep if s.startswith("COMMENT ON ROLE gs_plain IS E'back\\\\slash; ''quote''")]
    assert len([s for s in keep if s.startswith("ALTER ROLE gs_plain SET ")]) == 3


def test_an_older_runs_globals_file_under_this_runs_name_is_refused(pg, tools, key_file, tmp_path, mallory):
    """Before: nothing tied a globals file to its run. A role dropped since an older backup
    (mallory's, a superuser whose password she knows) came back when a writer of the
    directory put that older run's globals file under the newest run's name (it
    authenticates: same key, same maker, same database): a restore on a server without
    her role created it, superuser, with her password. Now each globals file records its
    run, and one found beside FILE must be FILE's run's: else 65, nothing touched."""
    source = ensure_small(pg, "mal_source")
    directory = str(tmp_path / "b")
    pg.psql("CREATE ROLE gs_gone SUPERUSER LOGIN PASSWORD 'known to mallory';")
    try:
        old, _ = backup(pg, tools, directory, source, "--key-file", key_file, "--format", "custom")
    finally:
        pg.psql("DROP ROLE gs_gone;")
    new, _ = backup(pg, tools, directory, source, "--key-file", key_file, "--format", "custom")
    os.rename(globals_name(old), globals_name(new))
    try:
        proc = restore(pg, tools, new, "mal_target", "--key-file", key_file)
        created = pg.psql("SELECT count(*) FROM pg_roles WHERE rolname = 'gs_gone'").strip()
    finally:
        pg.psql("DROP ROLE IF EXISTS gs_gone;")
    assert (proc.returncode, proc.stdout) == (65, b""), proc.stderr.decode()
    assert proc.stderr.decode().splitlines() == [
        f"encpipe-restore: error: the globals file {globals_name(new)} was made by run "
        f"{os.path.basename(old)[:-len('.dump.enc')]}, not by FILE's ({os.path.basename(new)[:-len('.dump.enc')]}); "
        "nothing was changed",
        "encpipe-restore: hint: an older globals file put under this run's name? give the right one with --globals "
        "FILE, or restore without it with --no-globals (no roles, no recorded database properties)"]
    assert created == "0"
    assert "mal_target" not in pg.psql("SELECT datname FROM pg_database").split()


def test_a_globals_file_beside_file_that_holds_no_properties_is_warned_about(pg, tools, key_file, tmp_path, mallory):
    """One with no properties line (not encpipe-backup's: a hand-made one, or one of a
    version before the line) names no run either: the restore goes on, as without a
    globals file, and says nothing ties it to FILE's run."""
    source = ensure_small(pg, "mal_source")
    path, _ = backup(pg, tools, str(tmp_path / "b"), source, "--key-file", key_file, "--format", "custom")
    bare = b"--\n-- PostgreSQL database cluster dump\n--\n\nSET standard_conforming_strings = on;\n"
    with open(globals_name(path), "wb") as f:
        f.write(encpipe(["seal", "--key-file", key_file], input=bare, check=True).stdout)
    proc = restore(pg, tools, path, "mal_target", "--key-file", key_file)
    assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
    assert proc.stderr.decode().splitlines()[0] == (
        f"encpipe-restore: warning: the globals file {globals_name(path)} names no backup run (an older "
        "encpipe-backup made it): nothing ties it to FILE's")


@pytest.mark.parametrize("filler", [" " * 5000, "1.1." * 3000, "'a'" + "''" * 3000, "E'\\\\'" * 2000, "a " * 5000],
                         ids=["spaces", "numbers", "quotes", "E strings", "words"])
def test_a_statement_that_is_not_plain_is_refused_at_once(filler):
    """Each text splits into the tokens of a plain statement one way only: a long one
    that does not match is refused in linear time (a pattern that could split a run
    of spaces many ways took minutes over 30 of them)."""
    code = ("import sys\nfrom encpipe import pgglobals\nfrom encpipe.pgcli import Failure\ntry:\n"
            "    pgglobals.refuse_unplain([sys.argv[1]], 'g')\nexcept Failure:\n    sys.exit(65)\n")
    statement = "ALTER ROLE smug_new SET work_mem TO " + filler + "$;"
    done = subprocess.run([sys.executable, "-c", code, statement], capture_output=True, timeout=20,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert (done.returncode, done.stdout, done.stderr) == (65, b"", b"")


@pytest.mark.parametrize("space", ["\u00a0", "\u0085", "\u2028", "\u3000", "\x1c", "\v"],
                         ids=["no-break space", "NEL", "line separator", "ideographic space", "FS", "VT"])
def test_a_space_psql_reads_as_part_of_a_name_is_not_plain(space):
    """Python's \\s is any Unicode space; PostgreSQL's lexer (psql's too) takes only
    space, tab, newline, CR and form feed as space, and a byte from 0x80 up as part
    of a name. So `X<NBSP>E'\\'` read here as a name, a space and an E'' string
    that ran on past `;`, where psql reads the name `X<NBSP>E`, the string '\\' and
    a `;` that ends the statement: a second statement behind it, unseen here."""
    statement = "ALTER ROLE smug_new X%sE'\\'; ALTER ROLE mallory SUPERUSER; SELECT ';" % space
    with pytest.raises(pgglobals.Failure) as caught:
        pgglobals.refuse_unplain([statement], "g")
    assert caught.value.status == 65
    assert str(caught.value) == ("the globals file g holds a statement that is not one of pg_dumpall's: ALTER ROLE "
                                 "smug_new ... (more SQL behind it, a comment or a quoting pg_dumpall never writes); "
                                 "nothing was changed")


def test_a_globals_file_beside_file_whose_label_names_another_run_is_refused(pg, tools, key_file, tmp_path, mallory):
    """Its label, first, names its run: an older run's globals file under the newest
    run's name is refused (65) by it alone (here with no properties line, which
    before left it taken, with a warning only)."""
    source = ensure_small(pg, "mal_source")
    directory = str(tmp_path / "b")
    old, _ = backup(pg, tools, directory, source, "--key-file", key_file, "--format", "custom")
    new, _ = backup(pg, tools, directory, source, "--key-file", key_file, "--format", "custom")
    text = encpipe(["open", "--key-file", key_file, globals_name(old)], check=True).stdout
    bare = text.rstrip(b"\n").rpartition(b"\n")[0] + b"\n"  # its properties line left out
    assert b"encpipe-database-properties" not in bare and bare.startswith(b"-- encpipe-backup v1 db=")
    with open(globals_name(new), "wb") as f:
        f.write(encpipe(["seal", "--key-file", key_file], input=bare, check=True).stdout)
    proc = restore(pg, tools, new, "mal_target", "--key-file", key_file)
    assert (proc.returncode, proc.stdout) == (65, b""), proc.stderr.decode()
    assert proc.stderr.decode().splitlines()[0] == (
        f"encpipe-restore: error: the globals file {globals_name(new)} was made by run "
        f"{os.path.basename(old)[:-len('.dump.enc')]}, not by FILE's ({os.path.basename(new)[:-len('.dump.enc')]}); "
        "nothing was changed")
    assert "mal_target" not in pg.psql("SELECT datname FROM pg_database").split()
