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
with: a thread other than the main one unblocks them just while it forks. A
signal that arrives in that window may be taken by that thread (its handler still
runs, in the main thread, at its next bytecode); the kernel gives a signal to the
main thread first whenever that thread does not block it, so this needs a signal
in a window of a fork's length that the main thread could not take.
"""

import contextlib
import signal
import subprocess
import threading

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# Those the process began with blocked (its caller's choice): a child keeps them blocked.
INHERITED = signal.pthread_sigmask(signal.SIG_BLOCK, ())


@contextlib.contextmanager
def blocked():
    """HANDLED blocked in this thread meanwhile: every thread it starts blocks them."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def start(thread):
    """thread.start(), the thread blocking HANDLED; returns the thread."""
    with blocked():
        thread.start()
    return thread


def popen(*args, **options):
    """subprocess.Popen, the child's mask the one the process began with."""
    if threading.current_thread() is threading.main_thread():
        return subprocess.Popen(*args, **options)
    old = signal.pthread_sigmask(signal.SIG_UNBLOCK, set(HANDLED) - INHERITED)
    try:
        return subprocess.Popen(*args, **options)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


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
