"""Threads that leave the process's signals to the main thread, and children that
do not inherit that.

The kernel gives a signal sent to the process to any one of its threads that does
not block it. Python runs a handler only in the main thread, between bytecodes: a
SIGTERM taken by another thread leaves the main thread blocked where it is (a read
of a pipe that stays open, such as a stalled pg_dump's) until that call returns by
itself. A thread started by start() (or by a pool within blocked()) blocks SIGINT,
SIGTERM and SIGHUP (a thread takes its creator's signal mask), so the kernel gives
them to the main thread, whose blocking call ends at once (EINTR) and runs the
handler.

A child inherits its creator's mask through exec: one started by such a thread
would block them too, and ignore `kill -TERM` and a systemd stop until SIGKILL.
popen() and run() start a child from any thread with the mask the process began
with: started from a thread other than the main one, the child itself sets it,
between fork and exec. (That thread once unblocked them around the fork instead: a
signal it took in that window ran its handler only at the main thread's next
bytecode, which a main thread blocked reading a stalled pg_dump never reached.)
The child first sets each of them that has a handler back to the default, as exec
would: one sent to the child there (Ctrl-C to the process group, a stop of the
unit) would run the parent's handler in the child, which then failed to start,
or never saw the signal; it now dies of it, as the program it runs would.

Signal handlers that wait for the main thread to leave an import, or a held()
block: sigdefer.py (held is re-exported here for the scripts' children).
"""

import contextlib
import os
import signal
import threading

from . import sigdefer
from .sigdefer import INHERITED

held = sigdefer.held  # a child started and recorded in one step (pgdump, pgstream, pgrestore)
HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGALRM)


@contextlib.contextmanager
def blocked():
    """HANDLED blocked in this thread meanwhile: every thread it starts blocks them."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED)
    try:
        yield
    finally:  # those it blocked only: a retry's SIGALRM unblocked meanwhile stays so (outside_imports)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, set(HANDLED) - old)


def start(thread):
    """thread.start(), the thread blocking HANDLED; returns the thread. A thread that
    dies before it has said it started (a MemoryError in Python's own bootstrap of it,
    under an address-space limit) is RuntimeError("can't start new thread"), as one
    the system would not give: Thread.start() alone waits for it for ever (CPython
    gh-140746; a backup at a memory limit never ended)."""
    died = _said_if_it_dies_unstarted(thread)
    with blocked():
        thread.start()
    if died[0]:
        raise RuntimeError("can't start new thread")
    return thread


def _said_if_it_dies_unstarted(thread):
    """Wraps the thread's bootstrap (where the interpreter has one: CPython 3.11 to 3.13
    name it so) so that a failure before the thread says it started says so itself,
    and wakes start(); `[True]` then. Nothing is allocated on that path but the
    exception's own."""
    died = [False]
    bootstrap, started = getattr(thread, "_bootstrap", None), getattr(thread, "_started", None)
    if bootstrap is None or started is None:
        return died

    def guarded():
        try:
            bootstrap()
        except BaseException:
            if started.is_set():
                raise  # after it started: the thread's own, reported as ever
            died[0] = True
            thread._is_stopped = True  # is_alive() and join() see a thread that ended
            limbo = getattr(threading, "_limbo", {})
            with getattr(threading, "_active_limbo_lock", contextlib.nullcontext()):
                limbo.pop(thread, None)
            started.set()

    thread._bootstrap = guarded
    return died


def popen(*args, **options):
    """subprocess.Popen, the child's mask the one the process began with, and
    `process_group` as Python 3.11's Popen takes it on 3.9 and 3.10 too (compat).
    subprocess is imported by the functions that start a child, not at the top: seal
    and open of a raw key start none (about 2 ms of each start)."""
    import subprocess

    from .compat import in_own_group

    options, group = in_own_group(options)  # process_group (None: none), on a Python before 3.11 too
    main = threading.current_thread() is threading.main_thread()
    if group is not None:
        return subprocess.Popen(*args, preexec_fn=lambda: _own_group(group, main), **options)
    if main:
        return subprocess.Popen(*args, **options)
    return subprocess.Popen(*args, preexec_fn=_initial_mask, **options)


def _own_group(group, main):  # in the child: what Popen(process_group=) does, then the mask if needed
    os.setpgid(0, group)
    if not main:
        _initial_mask()


def _initial_mask():  # in the child, between fork and exec: no lock, no import, no allocation to speak of
    for signum in HANDLED:  # as exec would: a signal sent to the child now is its, not a handler of ours
        if callable(signal.getsignal(signum)):
            signal.signal(signum, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, INHERITED)


class TooLong(Exception):
    """A child wrote more on its standard output than run()'s `limit`."""


def run(*args, input=None, limit=None, err_kept=None, **options):
    """subprocess.run(capture_output=True ...) through popen(): the child killed if this is
    interrupted, even as it starts (held: a signal inside Popen once lost it, and psql ran on).
    With a `limit` (bytes, not text), its output is read up to it, TooLong past it (the child
    killed), and of its standard error only the first `err_kept` bytes are kept."""
    import subprocess

    proc = None
    with contextlib.ExitStack() as closing:  # at the end, its pipes closed and it reaped
        try:
            with held():  # started and in this `try` in one step
                proc = closing.enter_context(popen(*args, stdin=subprocess.PIPE if input is not None else
                                                   options.pop("stdin", None), stdout=subprocess.PIPE,
                                                   stderr=subprocess.PIPE, **options))
            out, err = proc.communicate(input) if limit is None else communicate_bounded(proc, input, limit, err_kept)
        except BaseException:
            if proc is not None:
                proc.kill()
            raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def communicate_bounded(proc, input, limit, err_kept):
    """communicate(input), its output read up to `limit` bytes (TooLong past them), of its
    standard error the first `err_kept` bytes (64 KiB if None) kept and the rest read and dropped. As
    communicate() does, by poll() in this thread, a pipe's bytes as they come: no thread
    (one that could not start failed a run at a memory limit where a query needs none),
    no buffer of `limit` bytes made beforehand (a read of them made one)."""
    import os
    import select
    import selectors

    err_kept = 1 << 16 if err_kept is None else err_kept
    out, err, sent = bytearray(), bytearray(), 0
    data = memoryview(input or b"")
    with selectors.DefaultSelector() as poll:
        if proc.stdin and data:
            poll.register(proc.stdin, selectors.EVENT_WRITE)
        elif proc.stdin:
            proc.stdin.close()
        poll.register(proc.stdout, selectors.EVENT_READ)
        poll.register(proc.stderr, selectors.EVENT_READ)
        while poll.get_map():
            for key, _ in poll.select():
                if key.fileobj is proc.stdin:
                    try:
                        sent += os.write(key.fd, data[sent:sent + select.PIPE_BUF])
                    except BrokenPipeError:  # the child ended without reading it all: its status says why
                        sent = len(data)
                    if sent >= len(data):
                        poll.unregister(key.fileobj)
                        key.fileobj.close()
                    continue
                chunk = os.read(key.fd, 1 << 16)
                if not chunk:
                    poll.unregister(key.fileobj)
                elif key.fileobj is proc.stdout:
                    out += chunk
                    if len(out) > limit:
                        raise TooLong(f"more than {limit} bytes")
                elif len(err) < err_kept:
                    err += chunk[:err_kept - len(err)]
    proc.wait()
    return bytes(out), bytes(err)
