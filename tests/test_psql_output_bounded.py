"""psql's output to a query of the scripts' (pgclient.run_sql: the catalog's
databases, roles and properties) is read up to PSQL_OUTPUT_MAX bytes, never
whole; of its standard error only the first PSQL_ERR_KEPT bytes are kept, the
rest read and dropped. Before, both were read whole (communicate()): a server
(or a psql) that answered without end grew the run's memory without bound.
More output fails the query (PgError: its one line, the run's status as for
any failed query), psql killed; a standard error that does not end is no
failure of itself. README, "Restoring"."""

import sys

import pytest

from encpipe.pgclient import PSQL_ERR_KEPT, PSQL_OUTPUT_MAX, PgError, run_sql
from spies import python_head

FLOOD = 128 << 20  # bytes a stand-in writes at most, far past each bound


def stand_in(tmp_path, monkeypatch, body):
    """A psql on PATH that reads its standard input, then runs `body` (Python)."""
    psql = tmp_path / "bin" / "psql"
    psql.parent.mkdir()
    psql.write_text(f"{python_head()}\nimport sys\nsys.stdin.buffer.read()\nblock = b'x' * 65536\n{body}\n"
                    f"open({str(tmp_path / 'finished')!r}, 'w').close()\n")
    psql.chmod(0o755)
    monkeypatch.setenv("PATH", f"{psql.parent}:{tmp_path / 'none'}")


def test_an_output_past_the_bound_fails_the_query_and_is_read_no_further(tmp_path, monkeypatch):
    stand_in(tmp_path, monkeypatch, f"for _ in range({FLOOD >> 16}):\n    sys.stdout.buffer.write(block)")
    with pytest.raises(PgError) as e:
        run_sql("shop", "SELECT 1;")
    assert str(e.value) == f"psql wrote more than {PSQL_OUTPUT_MAX} bytes, more than any answer of the catalog"
    assert not (tmp_path / "finished").exists()


def test_an_output_within_the_bound_is_read_whole(tmp_path, monkeypatch):
    rows = PSQL_OUTPUT_MAX // 1024  # each row 1 KiB: 1023 bytes and the record separator, NUL
    stand_in(tmp_path, monkeypatch, f"sys.stdout.buffer.write((b'1' * 1023 + b'\\0') * {rows})")
    found = run_sql("shop", "SELECT 1;")
    assert len(found) == rows and found[0] == found[-1] == ["1" * 1023]


def test_an_endless_standard_error_keeps_its_start_and_ends(tmp_path, monkeypatch):
    """The error line is psql's first ERROR line, within the start kept."""
    stand_in(tmp_path, monkeypatch, "sys.stderr.buffer.write(b'psql:<stdin>:3: ERROR:  boom\\n')\n"
                                    f"for _ in range({FLOOD >> 16}):\n    sys.stderr.buffer.write(block)\n"
                                    "sys.stderr.flush()\nopen(sys.argv[0] + '.done', 'w').close()\nsys.exit(3)")
    with pytest.raises(PgError) as e:
        run_sql("shop", "SELECT 1;")
    assert str(e.value) == "ERROR:  boom"
    assert (tmp_path / "bin" / "psql.done").exists()  # read to its end, not kept
    assert PSQL_ERR_KEPT < FLOOD


def test_an_answer_and_a_chatty_standard_error_both_come_through(tmp_path, monkeypatch):
    stand_in(tmp_path, monkeypatch, f"for _ in range({(8 << 20) >> 16}):\n    sys.stderr.buffer.write(block)\n"
                                    "sys.stdout.buffer.write(b'a\\x1fb\\0c\\x1fd\\0')")
    assert run_sql("shop", "SELECT 1;") == [["a", "b"], ["c", "d"]]
    assert run_sql("shop", "SELECT 1;", fields=2) == [["a", "b"], ["c", "d"]]


def test_a_bounded_run_without_a_bound_for_standard_error_keeps_64_kib_of_it():
    """sigthreads.run with a `limit` and no `err_kept` (run's default, None) failed on its
    first line of standard error (a TypeError); it keeps the first 64 KiB."""
    from encpipe import sigthreads

    done = sigthreads.run([sys.executable, "-c", "import sys; sys.stdout.write('ok'); "
                           "sys.stderr.write('e' * 100000)"], input=b"", limit=10)
    assert (done.returncode, done.stdout, done.stderr) == (0, b"ok", b"e" * 65536)


def test_an_answer_of_the_lock_s_session_past_the_bound_fails_and_is_read_no_further(tmp_path, monkeypatch):
    """The restore's lock session (pgclient.Session, held open: RunLock) read psql's answer
    with readline(), unbounded: one line without end grew the run's memory without bound.
    Now it is read up to PSQL_OUTPUT_MAX bytes too: past them, the same error (1), psql killed."""
    from encpipe.pgleftovers import RunLock

    psql = tmp_path / "bin" / "psql"
    psql.parent.mkdir()
    psql.write_text(f"{python_head()}\nimport sys\nsys.stdin.buffer.readline()\nblock = b'x' * 65536\n"
                    f"for _ in range({FLOOD >> 16}):\n    sys.stdout.buffer.write(block)\n"
                    f"open({str(tmp_path / 'finished')!r}, 'w').close()\n")
    psql.chmod(0o755)
    monkeypatch.setenv("PATH", f"{psql.parent}:{tmp_path / 'none'}")
    with pytest.raises(PgError) as e:
        with RunLock("shop", "encpipe_restore_20250101T020000Z_1") as lock:
            lock.take()
    assert (str(e.value), e.value.status) == (
        f"psql wrote more than {PSQL_OUTPUT_MAX} bytes, more than any answer of the catalog", 1)
    assert lock.session.proc.returncode == -9 and not (tmp_path / "finished").exists()
    assert lock.session.ask("SELECT 1;") is None  # a session that ended
