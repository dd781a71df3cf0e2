"""A thread that dies before it has said it started is a thread not given.

Python's Thread.start() waits, with no time limit, for the new thread to say it
has started; a thread whose own start-up fails (a MemoryError in Python's bootstrap
of it, under an address-space limit, before it says so) never does, and the run
that started it waited for ever (CPython gh-140746): seen once, encpipe-backup at a
55 MiB limit (tests/test_exhaustion.py) never ended. sigthreads.start now raises
RuntimeError("can't start new thread") for it, which every caller already takes for
a thread the system would not give: 74, `out of system resources`, one line."""

import threading

from encpipe import sigthreads
from encpipe.errors import ran_out


def _dying(where):
    thread = threading.Thread(target=lambda: None, daemon=True)

    def dies():
        raise MemoryError

    setattr(thread, where, dies)
    return thread


def _started_by_another(thread):
    """sigthreads.start(thread) in a thread of its own: what it returned or raised, or
    nothing when it was still waiting after 20 s."""
    outcome = []

    def starter():
        try:
            outcome.append(sigthreads.start(thread))
        except RuntimeError as e:
            outcome.append(e)

    waiting = threading.Thread(target=starter, daemon=True)
    waiting.start()
    waiting.join(20)
    return outcome


def test_a_thread_that_dies_before_it_has_started_is_a_thread_not_given(capfd):
    thread = _dying("_bootstrap_inner")
    (raised,) = _started_by_another(thread)
    assert isinstance(raised, RuntimeError) and ran_out(raised) == "out of system resources: cannot start a thread"
    assert not thread.is_alive()
    thread.join(5)  # returns: a thread that ended
    assert thread not in threading.enumerate()
    assert capfd.readouterr() == ("", "")  # not Python's "Exception ignored in thread started by"


def test_a_thread_that_fails_in_its_work_has_started():
    """A failure in run() is the thread's own, after it started: start() returns it."""
    thread = _dying("run")
    thread._invoke_excepthook = lambda thread: None  # the failure is not this test's to print
    assert _started_by_another(thread) == [thread]
    thread.join(20)
    assert not thread.is_alive()


def test_a_thread_runs_its_work():
    seen = []
    thread = threading.Thread(target=lambda: seen.append(threading.current_thread().name), name="w", daemon=True)
    assert sigthreads.start(thread) is thread
    thread.join(20)
    assert seen == ["w"]
