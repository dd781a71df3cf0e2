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
