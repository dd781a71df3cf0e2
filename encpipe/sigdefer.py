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

A commit (a file renamed into place, a backup removed, a database swapped in) and
the word of it (a report line, the exit status) are one step too: Commit holds
the signals from the commit to the end of its block (the report), hold_for_good
from the commit to the process's exit, whose status then stands (settle). Those
two hold one signal only: a second one, the first still waiting (a report that
its reader does not take waits for ever), runs at once, as it would have before
the commit; inside held() it still waits for the block's end.

Apart from the scripts' children (sigthreads), encpipe itself needs this from its
first line (cli.catch_signal): this module loads nothing but signal, sys and threading.
"""

import contextlib
import signal
import sys
import threading

RETRY = 0.01
# Those the process began with blocked (its caller's choice): a child keeps them blocked.
INHERITED = signal.pthread_sigmask(signal.SIG_BLOCK, ())
_held = 0  # how deep the main thread is in held()
_soft = 0  # how deep in Commit holds and hold_for_good: a second signal is not held there
_came = 0  # signals that came (not their retries) and have not run yet
_for_good = False  # held until the process exits (hold_for_good)
_waiting = None  # the retry of a signal held by held(): run as the block ends, not up to RETRY later
_armed = None  # the retry whose timer runs: drained() runs it at once


def outside_imports(handler):
    """handler(signum, frame), run only when the main thread is inside no import
    and no held() block; until then the signal waits, and then goes to the
    handler set for it by that time (maybe another one, or none: it then acts as
    the disposition it finds, default or ignored)."""
    def run_outside(signum, frame, retry=False):
        global _waiting, _came, _armed
        _came += not retry  # a handler may run inside another: a flag of the retry's would miscount
        if not _held and not _importing(frame) and (not _soft or _came > 1):  # a second one: not held
            _came = 0
            if _waiting is not None:  # the retry of the first, stopped: this one runs instead
                _waiting.stop()
            return handler(signum, frame)

        def stop():
            global _waiting, _armed
            if _waiting is again:
                _waiting = None
            if _armed is again:
                _armed = None
            signal.setitimer(signal.ITIMER_REAL, 0)  # another's SIGALRM came first: none of ours later
            signal.signal(signal.SIGALRM, previous)
            if signal.SIGALRM in INHERITED:  # blocked again, as the process began
                signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})

        def again(_, later):
            stop()
            current = signal.getsignal(signum)
            if getattr(current, "outside_imports", False):
                current(signum, later, retry=True)
            elif callable(current):
                current(signum, later)
            else:
                signal.raise_signal(signum)

        again.stop = stop
        previous = signal.signal(signal.SIGALRM, again)
        if _held or _soft:  # before the timer: a second signal from here on stops it (above)
            _waiting = again
        _armed = again
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGALRM})  # a caller's block would lose it
        signal.setitimer(signal.ITIMER_REAL, RETRY)

    run_outside.outside_imports = True
    return run_outside


def held():
    """In the main thread, a raising handler waits until this block is left: what
    it does (a child started and recorded, a file created and its removal on failure
    armed) is never cut in two. A signal that came meanwhile is handled as the
    block ends (it raises there), not a moment later, somewhere further on (inside
    the next held block, which it then waited for). Elsewhere, nothing."""
    return _holding(once=False)


def held_once():
    """held(), but for one signal: a second one runs at once, outside held() blocks
    (a line said whole before a signal that waited, yet never a run kept alive by
    a write stuck on a reader that does not read)."""
    return _holding(once=True)


@contextlib.contextmanager
def _holding(once):
    """One level of held() (_held) or of a one-signal hold (_soft) in the main thread;
    the signal that waited for it runs as it ends (held(): as the last held() ends)."""
    global _held, _soft
    main = threading.current_thread() is threading.main_thread()
    if once:
        _soft += main
    else:
        _held += main
    try:
        yield
    finally:
        if once:
            _soft -= main
        else:
            _held -= main
        if main and not _held and not (once and _soft) and _waiting is not None:
            _waiting(signal.SIGALRM, sys._getframe())


def hold_for_good():
    """From here until the process exits a raising handler waits, and the status the
    run returns stands (cli.run and run_script settle() it): what the signal would
    stop is done (`seal -o`'s file renamed into place, backups removed, a database
    swapped in), and what is left is to say so. One signal: a second one, the first
    still waiting, ends the run at once. In the main thread; elsewhere, nothing."""
    global _soft, _for_good
    if threading.current_thread() is threading.main_thread() and not _for_good:
        _for_good = True
        _soft += 1


def committed():
    """Whether hold_for_good() was called: the run's change is made, its status stands."""
    return _for_good


def drained(status):
    """`status`, once a signal that waited for an import (its retry's timer still to
    run) has gone to its handler: now, in the caller, which catches what it raises
    (cli.run and run_script, as main returns). At the exit, the handlers gone, the
    timer's SIGALRM ended the process: neither the signal's death nor the status."""
    if _armed is not None:
        _armed(signal.SIGALRM, sys._getframe())  # held (hold_for_good): waits again, and settle() drops it
    return status


def settle():
    """At the exit, after hold_for_good(): the signals it held are dropped, and so
    is any that comes until the process has ended (SIGINT, SIGTERM and SIGHUP
    ignored, the retry's timer stopped). Else nothing."""
    global _soft, _for_good
    if _for_good:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        signal.setitimer(signal.ITIMER_REAL, 0)
        _for_good = False
        _soft -= 1


class Commit:
    """`with Commit() as commit:` a step that makes a change (given commit.hold, to call
    as it makes it), then the report of it: a raising handler waits from hold() to the
    end of the block, so that a change made is never left unreported (encpipe-rotate's
    line for a file renamed); one signal: a second one ends the wait (a line that its
    reader does not take). Before hold(), nothing is held."""

    def __init__(self):
        self._stack, self.holding = contextlib.ExitStack(), False

    def __enter__(self):
        return self

    def hold(self):
        if not self.holding:
            self._stack.enter_context(held_once())
            self.holding = True

    def __exit__(self, *exc):
        return self._stack.__exit__(*exc)


def _importing(frame):
    while frame is not None:
        name = frame.f_code.co_filename
        if name.startswith("<frozen importlib") or name.endswith(("_bootstrap.py", "_bootstrap_external.py")):
            return True
        frame = frame.f_back
    return False
