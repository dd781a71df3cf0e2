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

A handler that raises (KeyboardInterrupt, Terminated, encpipe-backup's Interrupted)
raises at whatever bytecode the main thread has reached. Inside importlib that can
leave the import lock or a module's lock held for good, and the next import by any
other thread then waits forever (encpipe-backup interrupted while loading a module:
its globals thread never ended). outside_imports() runs such a handler only once
the main thread is out of every import, running it again RETRY seconds later
(SIGALRM, unblocked meanwhile in the main thread: a process started with it
blocked never took it, and lost the signal) for as long as the main thread is
still inside one. The signal then goes to the handler set for it by that time,
not to the one of its arrival
(encpipe-backup signalled while still loading its modules ran run_script's
handler, set before its own, in the middle of its dump: its temporary files
stayed). Nor does it run inside held(): Popen raising after the fork loses the
child, which then outlives the process.
"""

import contextlib
import signal
import subprocess
import threading

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGALRM)
RETRY = 0.01
# Those the process began with blocked (its caller's choice): a child keeps them blocked.
INHERITED = signal.pthread_sigmask(signal.SIG_BLOCK, ())
_held = 0  # how deep the main thread is in held()


@contextlib.contextmanager
def blocked():
    """HANDLED blocked in this thread meanwhile: every thread it starts blocks them."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED)
    try:
        yield
    finally:  # those it blocked only: a retry's SIGALRM unblocked meanwhile stays so (outside_imports)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, set(HANDLED) - old)


def start(thread):
    """thread.start(), the thread blocking HANDLED; returns the thread."""
    with blocked():
        thread.start()
    return thread


def popen(*args, **options):
    """subprocess.Popen, the child's mask the one the process began with."""
    if threading.current_thread() is threading.main_thread():
        return subprocess.Popen(*args, **options)
    return subprocess.Popen(*args, preexec_fn=_initial_mask, **options)


def _initial_mask():  # in the child, between fork and exec: no lock, no import, no allocation to speak of
    for signum in HANDLED:  # as exec would: a signal sent to the child now is its, not a handler of ours
        if callable(signal.getsignal(signum)):
            signal.signal(signum, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, INHERITED)


def run(*args, input=None, **options):
    """subprocess.run(capture_output=True ...) through popen(): the child killed if this is interrupted."""
    with popen(*args, stdin=subprocess.PIPE if input is not None else options.pop("stdin", None),
               stdout=subprocess.PIPE, stderr=subprocess.PIPE, **options) as proc:
        try:
            out, err = proc.communicate(input)
        except BaseException:
            proc.kill()
            raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def outside_imports(handler):
    """handler(signum, frame), run only when the main thread is inside no import
    and no held() block; until then the signal waits, and then goes to the
    handler set for it by that time (maybe another one, or none: it then acts as
    the disposition it finds, default or ignored)."""
    def run_outside(signum, frame):
        if not _held and not _importing(frame):
            return handler(signum, frame)

        def again(_, later):
            signal.setitimer(signal.ITIMER_REAL, 0)  # another's SIGALRM came first: none of ours later
            signal.signal(signal.SIGALRM, previous)
            if signal.SIGALRM in INHERITED:  # blocked again, as the process began
                signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
            current = signal.getsignal(signum)
            if callable(current):
                current(signum, later)
            else:
                signal.raise_signal(signum)

        previous = signal.signal(signal.SIGALRM, again)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGALRM})  # a caller's block would lose it
        signal.setitimer(signal.ITIMER_REAL, RETRY)

    return run_outside


@contextlib.contextmanager
def held():
    """In the main thread, a raising handler waits until this block is left: what
    it does (a child started and recorded) is never cut in two. Elsewhere, nothing."""
    global _held
    main = threading.current_thread() is threading.main_thread()
    _held += main
    try:
        yield
    finally:
        _held -= main


def _importing(frame):
    while frame is not None:
        name = frame.f_code.co_filename
        if name.startswith("<frozen importlib") or name.endswith(("_bootstrap.py", "_bootstrap_external.py")):
            return True
        frame = frame.f_back
    return False
