"""Ending a child with every process it started (a key command's shell and what it
runs, an encpipe and its key command): each stopped first, then killed; and ending
the children of a group (a pipeline's, a store's rclone) that still run."""

import errno
import os
import signal


def kill_tree(pid, parent=None):
    """SIGKILL `pid` and its descendants; each is stopped first, so that it can
    neither start new children nor report the deaths of the old ones. Once stopped,
    it is killed whatever happens meanwhile (a signal's exception, a file of /proc
    that cannot be read for want of memory): never left stopped for ever, deaf to
    every signal but SIGKILL and SIGCONT. With `parent`, only while `pid` is a child
    of `parent`: a pid listed as one's child may have been reaped meanwhile and
    taken by another's process, which is left alone."""
    with _Process(pid) as proc:
        _kill_tree(proc, parent)


def _kill_tree(proc, parent=None):
    if parent is not None and _parent_of(proc.pid) != parent:
        return
    if not proc.signal(signal.SIGSTOP):
        return
    try:
        for child in children(proc.pid):
            kill_tree(child, proc.pid)
    finally:
        proc.signal(signal.SIGKILL)


class _Process:
    """A process by a pidfd (Linux 5.3, Python 3.9), so that every signal goes to the
    process it was opened for, never to another that took its pid since; where there
    is none, by its pid."""

    def __init__(self, pid):
        self.pid, self._fd, self._gone = pid, None, False
        try:
            self._fd = os.pidfd_open(pid)
        except AttributeError:  # no pidfd here: by its pid
            pass
        except OSError as e:  # gone: nothing to signal (its pid may be another's by now)
            self._gone = e.errno == errno.ESRCH

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._fd is not None:
            os.close(self._fd)

    def signal(self, signum):
        """Send `signum`; False when the process is gone."""
        if self._gone:
            return False
        try:
            if self._fd is None:
                os.kill(self.pid, signum)
            else:
                signal.pidfd_send_signal(self._fd, signum)
            return True
        except OSError:
            return False


def _parent_of(pid):
    """The parent pid of `pid` (from /proc/PID/stat: the field after its name, which
    may hold spaces and parentheses), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rpartition(b")")[2].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def children(pid="self"):
    """The pids of `pid`'s children (this process's by default), as each of its threads'
    /proc list gives them; a list that cannot be read names none."""
    found = []
    for task in _listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found += map(int, f.read().split())
        except OSError:
            pass
    return found


def kill_holders(fd):
    """kill_tree each other process that holds the pipe `fd` is an end of: one a child
    started and left running when it exited (no longer its descendant: kill_tree of the
    child misses it) keeps that pipe open, and would run on. Each is taken (_Process)
    before its descriptors are read, so the one found holding the pipe is the one killed."""
    end = f"pipe:[{os.fstat(fd).st_ino}]"
    for pid in filter(str.isdigit, _listdir("/proc")):
        if int(pid) == os.getpid():
            continue
        with _Process(int(pid)) as proc:
            if _holds(pid, end):
                _kill_tree(proc)


def _holds(pid, end):
    for held in _listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{held}") == end:
                return True
        except OSError:
            pass
    return False


def kill_running(procs):
    """SIGKILL each of `procs` (Popen) that has not ended yet; its owner reaps it."""
    for proc in procs:
        if proc.poll() is None:
            proc.kill()


def _listdir(path):
    try:
        return os.listdir(path)
    except OSError:
        return []
