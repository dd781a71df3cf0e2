"""encpipe-check's -t, --timeout: a run that has not ended by then says so and
stops every process it started (README, "Monitoring").

A thread waits for the time given. When it expires first, it kills every child
of the process with what each started (proctree.kill_tree: an rclone that never
answers, the shell of a key command and what it runs), which ends whatever the
main thread waits for, and sends the main thread SIGNAL, whose handler raises
TimedOut there (outside imports and held() blocks, as every raising handler of
encpipe's: sigdefer): the run unwinds as an interrupted one does (a listing
stops its threads and their rclone processes), then the main thread kills what
is left and prints the timeout's line instead of its report (meanwhile the thread
kills every SWEEP seconds what the run still starts). A main thread that
cannot take the signal (blocked in the kernel, as on a hung NFS mount, or the
signal blocked by the caller) has GRACE seconds; then the thread prints that
line itself, kills every child again and ends the process (os._exit).

A timeout is CRITICAL, not UNKNOWN: the plugin guidelines keep UNKNOWN for bad
arguments and failures inside the plugin, a timeout of what it checks being a
failure outside it (monitoring-plugins' own plugins and Nagios' service check
timeout say CRITICAL too); and a location that cannot be read in time is, for
a check of backups' freshness, as critical as one that cannot be read at all."""

import os
import signal
import threading

from .. import sigthreads
from ..proctree import children, kill_tree
from ..shown import plugin_line
from ..sigdefer import held, outside_imports

SIGNAL = signal.SIGUSR1
GRACE = 5  # seconds the main thread has to end the run once told to
SWEEP = 0.1  # seconds between two sweeps of the children meanwhile
CRITICAL = 2
PR_SET_CHILD_SUBREAPER = 36


class TimedOut(BaseException):
    """The timeout expired: raised in the main thread by SIGNAL's handler. Not an
    Exception: nothing that handles a failure (a file that fails to verify) takes it."""


class Deadline:
    """`seconds` for one run (run()); `doing` says what it is doing, for the line."""

    def __init__(self, seconds):
        self.seconds, self.doing = seconds, "starting"
        self.lock, self.done = threading.Lock(), threading.Event()
        self.sweeping = threading.Lock()  # one sweep of the children at a time: see _sweep
        self.expired = self.claimed = False
        self.stopped = None  # what it was doing when the time expired

    def line(self):
        return plugin_line(f"CRITICAL: timed out after {self.seconds:g} s {self.stopped}")

    def run(self, action):
        """action()'s result (status, rows), or when the time expired first, however
        action ended, (CRITICAL, the timeout's line); its exceptions but TimedOut raised."""
        main = threading.current_thread() is threading.main_thread()
        if main:  # left set: a signal that comes late does nothing
            signal.signal(SIGNAL, outside_imports(self._raise))
        result = failure = None
        try:
            try:  # claimed however it ends (a SIGTERM's Terminated too): the thread then does nothing
                sigthreads.start(threading.Thread(target=self._watch, args=(threading.get_ident() if main else None,),
                                                  name="deadline", daemon=True))
                result = action()
            except Exception as e:
                failure = e
            finally:
                with held():  # SIGNAL's handler, deferred, then finds the run claimed
                    expired = self._claim()
        except TimedOut:  # raised before the claim: it never raises again
            with held():
                expired = self._claim()
        if expired:
            with self.sweeping:  # after the thread's sweep, if one is under way
                stop_children()
            return CRITICAL, [(f"CRITICAL: timed out after {self.seconds:g} s {self.stopped}", None)]
        if failure is not None:
            raise failure
        return result

    def _raise(self, signum, frame):
        if not self.claimed:
            raise TimedOut

    def _claim(self):
        """The main thread's result is the run's: whether the time had expired."""
        with self.lock:
            self.claimed = True
        self.done.set()
        return self.expired

    def _watch(self, main):
        if self.done.wait(self.seconds):
            return
        with self.lock:
            if self.claimed:
                return
            self.expired, self.stopped = True, self.doing
        adopt_orphans()
        if not self._sweep():
            return
        if main is not None and not self.done.is_set():
            signal.pthread_kill(main, SIGNAL)
        for _ in range(round(GRACE / SWEEP)):  # what the run starts while it unwinds (a listing's threads) too
            if self.done.wait(SWEEP) or not self._sweep():
                return
        with self.lock:  # the main thread did not answer: this thread ends the run
            if self.claimed:
                return
            self.claimed = True
        try:
            os.write(1, (self.line() + "\n").encode("utf-8"))
        except OSError:
            pass
        self.sweeping.acquire()  # held to the end: the main thread never stops a child the exit leaves stopped
        stop_children()
        os._exit(CRITICAL)

    def _sweep(self):
        """stop_children, unless the main thread claimed the run (False): it then sweeps
        itself, after this one. A daemon thread, this one is gone when the process exits:
        the main thread returning while it is between a child's stop and its kill (proctree)
        would leave that child stopped for ever."""
        with self.sweeping:
            if self.done.is_set():
                return False
            stop_children()
            return True


def adopt_orphans():
    """From now on, a process whose parent among this one's descendants ends (a
    background child of rclone's shell, killed by a listing that stops) becomes a
    child of this process (Linux's PR_SET_CHILD_SUBREAPER), not init's: so that
    stop_children() finds it. Only once the time expired: else a process an
    earlier key command left to run (gpg-agent) would be this one's too."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux, no prctl: the children only
        pass


def stop_children():
    """Kill every child of this process, each with what it started: each only while it
    is still this process's child (the main thread may reap one meanwhile, its pid then
    free for another's process)."""
    me = os.getpid()
    for child in children():
        kill_tree(child, me)
