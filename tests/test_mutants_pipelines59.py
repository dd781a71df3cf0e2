"""encpipe-backup's child-process pipelines (pgdump.py: Said, Children, last_failure,
Globals), each decision broken by hand once (mutation review 59: a check dropped, an
order reversed, a status dropped) with no test failing: the tests that now see each.
All are pure calls on the classes as pgbackup.py uses them; the children are `true`,
`false` and `sh`, the stores none (storage.write_new over no store still calls the seal).

- a pipeline stopped (an interrupted run, from another thread) starts no child after,
  and counts as killed (137): Children.stop's `stopped`, _start's check and its status;
- the globals thread stopped before it ran starts no pg_dumpall and ends 137;
- the child named in the run's line is the one that failed last (pipefail's), not
  the first; the run's status is the last failure's (last_failure's order);
- encpipe's own first error outranks a child's, and a second error does not replace it
  (Said.error, Said.because);
- the globals thread's status is its seal's failure when pg_dumpall succeeded, and an
  unexpected exception's (70) (Globals.run: the seal's status folded in);
- relay.py: a threaded run whose record failed consumes no record after it (Relay._take_turn's
  check of the run's error after its wait), and leaves no worker waiting for a turn that
  never comes (the wait ends on the run's error): a library caller's process kept one
  blocked thread and its chunk buffers per failed run.
"""

import io
import os
import signal
import threading
import time

import pytest

from encpipe import pgdump, relay
from encpipe.errors import IOFailure

KILLED = 128 + signal.SIGKILL
GNAME = "shop_20260101T000000Z" + pgdump.GLOBALS_SUFFIX


def test_a_stopped_pipeline_starts_no_child_and_counts_as_killed():
    """Mutants: stop() not setting `stopped`, _start's check dropped (the child runs after
    the run was stopped), or its status 0 (the stopped pipeline's run taken for good)."""
    children = pgdump.Children(pgdump.Said())
    children.stop()
    assert children.start(["true"], dict(os.environ)) is None
    assert children.procs == []
    assert pgdump.last_failure(children.wait()) == KILLED


def test_globals_stopped_before_its_thread_ran_start_no_pg_dumpall():
    """An interrupt that comes before the globals thread started pg_dumpall (pgbackup
    stops it, then joins it): nothing started, nothing sealed, 137."""
    def seal(src, out):
        raise AssertionError("sealed after the stop")

    globals_ = pgdump.Globals("shop", seal, [], "t", GNAME)
    globals_.stop()
    globals_.run()
    assert (globals_.status, globals_.children.procs) == (KILLED, [])


def test_the_child_named_is_the_one_that_failed_last():
    """README: `pg_dump exited with status 1` (`zstd`...): as pipefail, the last child that
    failed. Mutant: the first one kept (`false exited with status 1`)."""
    said = pgdump.Said()
    children = pgdump.Children(said)
    assert children.start(["false"], dict(os.environ))
    assert children.start(["sh", "-c", "cat >/dev/null; exit 2"], dict(os.environ))
    statuses = children.wait()
    assert (statuses, said.because()) == ([1, 1, 0], "sh exited with status 2")


@pytest.mark.parametrize("statuses, status", [([1, KILLED, 0], KILLED), ([KILLED, 74], 74), ([0, 0], 0)])
def test_the_runs_status_is_the_last_failure(statuses, status):
    """Mutant: the first failure (pg_dump's SIGPIPE before the seal's 74)."""
    assert pgdump.last_failure(statuses) == status


def test_encpipes_first_error_outranks_the_childs_and_a_later_one():
    """Mutants: because() preferring the child's line; error() keeping the last error."""
    said = pgdump.Said()
    said.error("cannot store DIR/x: No space left on device", hint="first")
    said.error("cannot upload r:x: gone", hint="second")
    said.child = "pg_dump killed by signal 13"
    assert (said.because(), said.hint) == ("cannot store DIR/x: No space left on device", "first")


@pytest.mark.parametrize("error, status, line", [
    (IOFailure("cannot store DIR/x: No space left on device"), 74, "cannot store DIR/x: No space left on device"),
    (RuntimeError("oops"), 70, "cannot seal the globals: "),
])
def test_the_globals_seal_failure_is_the_globals_status(tmp_path, monkeypatch, error, status, line):
    """pg_dumpall (a stand-in on PATH) succeeds, the seal fails (74; 70 for an exception no
    code expected): the thread's status is that. Mutants: only the children's statuses
    counted, or the unexpected exception's status dropped (0, a run stored without its
    globals)."""
    (tmp_path / "pg_dumpall").write_text("#!/bin/sh\necho 'SET client_encoding = '\"'UTF8'\";\"\n")
    (tmp_path / "pg_dumpall").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")

    def seal(src, out):
        raise error

    globals_ = pgdump.Globals("shop", seal, [], "t", GNAME)
    globals_.run()
    assert globals_.status == status
    assert globals_.said.because().startswith(line)


def test_a_failed_threaded_run_leaves_no_worker_waiting_for_its_turn():
    """Record 0 fails while the other workers wait for their turns: none is consumed, and
    each worker ends. Mutants: the run's error not checked after the wait (records 1.. written
    after the failed one), the turn's wait not ended by it (the workers wait for ever)."""
    def transform(chunk):
        if chunk.counter == 0:
            time.sleep(0.05)  # the other workers reach their turn's wait first
            raise ValueError("bad record")

    reader, consumed = relay.RecordReader(io.BytesIO(bytes(16 * 64)), 16), []
    with pytest.raises(ValueError, match="bad record"):
        relay.run_records(reader, 4096, transform, lambda chunk: consumed.append(chunk.counter), threads=4)
    deadline = time.monotonic() + 5
    while any(t.name == "encpipe" for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not [t for t in threading.enumerate() if t.name == "encpipe"]
    assert consumed == []
