"""The processes a test starts, and those they start: whether one still runs, its
status as a shell shows it, and every one ended when the test is done."""

import contextlib
import os
import signal


def alive(pid):
    """Whether `pid` still runs: a zombie (ended, not yet reaped) does not."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def members(field, value):
    """The live processes (pids) whose /proc/PID/stat `field` is `value`: "pgrp" (a process
    group's) or "session" (a session's); a zombie is not one."""
    index = {"pgrp": 2, "session": 3}[field]
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[index]) == value and fields[0] != "Z":
            found.append(int(pid))
    return found


def shell_status(returncode):
    """A Popen returncode as a shell shows it: 128 + N for a process killed by signal N."""
    return returncode if returncode >= 0 else 128 - returncode


@contextlib.contextmanager
def ended_afterwards(proc):
    """Yields a list for the pids of `proc`'s children the test finds: when the block
    ends, however, `proc` is killed and reaped and each of those pids killed."""
    children = []
    try:
        yield children
    finally:
        proc.kill()
        proc.wait()
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
