"""Signal handlers that raise, run only where raising is safe.

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

Apart from the scripts' children (sigthreads), encpipe itself needs this from its
first line (cli.catch_signal): this module loads nothing but signal and threading.
"""

import contextlib
import signal
import threading

RETRY = 0.01
# Those the process began with blocked (its caller's choice): a child keeps them blocked.
INHERITED = signal.pthread_sigmask(signal.SIG_BLOCK, ())
_held = 0  # how deep the main thread is in held()


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
