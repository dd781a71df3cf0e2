"""Ending a child with every process it started (a key command's shell and what it
runs, an encpipe and its key command): each stopped first, then killed; and ending
the children of a group (a pipeline's, a store's rclone) that still run."""

import os
import signal


def kill_tree(pid):
    """SIGKILL `pid` and its descendants; each is stopped first, so that it can
    neither start new children nor report the deaths of the old ones. Once stopped,
    it is killed whatever happens meanwhile (a signal's exception, a file of /proc
    that cannot be read for want of memory): never left stopped for ever, deaf to
    every signal but SIGKILL and SIGCONT."""
    try:
        os.kill(pid, signal.SIGSTOP)
    except OSError:
        return
    try:
        for child in children(pid):
            kill_tree(child)
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


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
    child misses it) keeps that pipe open, and would run on."""
    end = f"pipe:[{os.fstat(fd).st_ino}]"
    for pid in filter(str.isdigit, _listdir("/proc")):
        if int(pid) == os.getpid():
            continue
        for held in _listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{held}") == end:
                    kill_tree(int(pid))
                    break
            except OSError:
                pass


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
