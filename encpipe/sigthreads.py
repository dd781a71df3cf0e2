"""Threads that leave the process's signals to the main thread.

The kernel gives a signal sent to the process to any one of its threads that does
not block it. Python runs a handler only in the main thread, between bytecodes: a
SIGTERM taken by another thread leaves the main thread blocked where it is (a read
of a pipe that stays open, such as a stalled pg_dump's) until that call returns by
itself. A thread started by start() blocks SIGINT, SIGTERM and SIGHUP (a thread
takes its creator's signal mask), so the kernel gives them to the main thread,
whose blocking call ends at once (EINTR) and runs the handler. A child such a
thread starts inherits the mask through exec: start() is for threads that start
no child, or whose children the main thread kills when it stops (encpipe-backup's
globals: pg_dumpall, psql).
"""

import signal

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def start(thread):
    """thread.start(), the thread blocking HANDLED; returns the thread."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED)
    try:
        thread.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
    return thread
