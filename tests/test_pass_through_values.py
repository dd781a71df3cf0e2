"""Options after `--` read as the PostgreSQL tools read them (getopt_long).

Before, an argument was taken for a value when the one before it was an option that
takes one, even when that one was itself a value: `-T -T -f FILE` (exclude table
"-T", then -f FILE to pg_dump) hid the -f, and pg_dump wrote the whole dump, in
plaintext, to FILE, while encpipe-backup sealed an empty one and said it succeeded;
`-T -T -L FILE` made the restore's psql log the dump's statements, its rows with them,
to FILE. And psql took any option or variable but a few refused: `-v SINGLESTEP=on`
(-s spelled otherwise) made it read its confirmations from the dump. Now every
argument is read as getopt_long reads it, an option none of the tools has is
refused, and a plain dump's psql takes only what it needs (pgopts).
"""

import subprocess

import pytest

from pgcluster import MARKERS
from test_backup_restore import BACKUP, RESTORE, databases, ensure_small, run, script_env

SOURCE = "opts_src"


@pytest.fixture(scope="module")
def plain(pg, tools, key_file, tmp_path_factory):
    """A plain backup made with --inserts: the dump's statements hold its rows."""
    ensure_small(pg, SOURCE)
    d = tmp_path_factory.mktemp("backups")
    done = run([BACKUP, "--dir", d, "--format", "plain", "--key-file", key_file, SOURCE, "--", "--inserts"],
               script_env(pg, tools))
    assert done.returncode == 0, done.stderr
    return next(str(p) for p in d.iterdir() if p.name.startswith(SOURCE + "_") and "globals" not in p.name)


def test_a_value_like_an_option_hides_no_file_from_pg_dump(pg, tools, key_file, tmp_path):
    ensure_small(pg, SOURCE)
    leak, d = tmp_path / "plain.sql", tmp_path / "b"
    done = run([BACKUP, "--dir", d, "--key-file", key_file, SOURCE, "--", "-T", "-T", "-f", leak],
               script_env(pg, tools))
    assert (done.returncode, done.stdout) == (64, b""), done.stderr
    assert done.stderr.decode().splitlines() == [
        "encpipe-backup: error: pg_dump option -f (-f, --file) is not allowed: the dump goes to encpipe seal"]
    assert not leak.exists() and not d.exists()


def test_a_value_like_an_option_hides_no_log_file_from_psql(pg, tools, key_file, plain, tmp_path):
    log, before = tmp_path / "statements.log", databases(pg)
    done = run([RESTORE, "--no-globals", "--key-file", key_file, plain, "opts_dst", "--", "-T", "-T", "-L", log],
               script_env(pg, tools), stdin=subprocess.DEVNULL)
    assert (done.returncode, done.stdout) == (64, b""), done.stderr
    assert done.stderr.decode().startswith("encpipe-restore: error: psql option -T (-T, --table-attr) is not allowed: "
                                           "a plain dump's psql takes only -v (--set, --variable) VERBOSITY=... or "
                                           "SHOW_CONTEXT=..., and -q, -1, -X, -w\n"), done.stderr
    assert not log.exists() and databases(pg) == before


@pytest.mark.parametrize("options, named", [
    (["-v", "SINGLESTEP=on"], "-v"), (["--set=SINGLELINE=on"], "--set=SINGLELINE=on"), (["-S"], "-S"),
    (["-T"], "-T"),  # its value would be the restore's own -f
])
def test_psql_takes_only_what_a_plain_dump_needs(pg, tools, key_file, plain, options, named):
    before = databases(pg)
    done = run([RESTORE, "--no-globals", "--key-file", key_file, plain, "opts_dst", "--", *options],
               script_env(pg, tools), stdin=subprocess.DEVNULL)
    assert (done.returncode, done.stdout) == (64, b""), done.stderr
    assert done.stderr.decode().startswith(f"encpipe-restore: error: psql option {named} "), done.stderr
    assert databases(pg) == before


def test_what_a_plain_dump_needs_psql_takes(pg, tools, key_file, plain):
    done = run([RESTORE, "--no-globals", "--key-file", key_file, plain, "opts_ok", "--", "-q", "--set",
                "VERBOSITY=default", "-vSHOW_CONTEXT=errors"], script_env(pg, tools), stdin=subprocess.DEVNULL)
    assert (done.returncode, done.stdout) == (0, b""), done.stderr
    assert pg.psql("SELECT count(*), min(v) FROM t;", db="opts_ok").strip() == f"50|{MARKERS[0]} 1"


def test_the_end_of_psqls_options_is_refused(pg, tools, key_file, plain):
    """`--` made the restore's own `-f -` after it no options: psql took -f for the user
    name (and would have read the dump outside one transaction, as with no -f)."""
    before = databases(pg)
    done = run([RESTORE, "--no-globals", "--key-file", key_file, plain, "opts_dst", "--", "-q", "--"],
               script_env(pg, tools), stdin=subprocess.DEVNULL)
    assert (done.returncode, done.stdout) == (64, b""), done.stderr
    assert done.stderr.decode().startswith("encpipe-restore: error: psql argument -- is not allowed: "), done.stderr
    assert databases(pg) == before
