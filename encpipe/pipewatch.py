"""Whether a child took all of its standard input (a pipe of ours) before it ended:
rclone's upload (backup.rclonepipe) and psql's restore (pgstream). A child that stops
reading while it still holds the pipe gives the writer no broken pipe, and once it has
ended what it left unread is gone with the pipe; so the pipe's read end is opened again
(through /proc) while it runs, and counted once it has ended."""

import contextlib
import fcntl
import os
import struct
import termios

_ENDED = contextlib.nullcontext()  # input_of: the process ended before its input did


def input_of(proc):
    """The read end of `proc`'s standard input, opened again (through /proc) while
    `proc` runs, so that once it has ended what it left unread is still there to
    count: a pipe that `proc` stops reading while it still holds it gives the
    writer no broken pipe, and once it ends what it had not read is gone. _ENDED
    when `proc` has ended already, or is ending, or closed it (before the input
    ended: it took less than all of it); None when it cannot be told (no /proc,
    fd 0 another file)."""
    try:
        src = open(f"/proc/{proc.pid}/fd/0", "rb", buffering=0)
    except FileNotFoundError:
        return _ENDED if proc.poll() is not None or os.path.isdir(f"/proc/{proc.pid}/fd") else None
    except OSError:
        return _ENDED if proc.poll() is not None else None
    mine, theirs = os.fstat(proc.stdin.fileno()), os.fstat(src.fileno())
    if (mine.st_dev, mine.st_ino) != (theirs.st_dev, theirs.st_ino):
        src.close()
        return None
    return src


def took_all(watch):
    """Once input_of's process has ended: False when it took less than all of its input
    (it ended before its input did, or left bytes in the pipe), else True. `watch` is closed."""
    with watch:
        return watch is not _ENDED and _unread(watch.fileno()) == 0


def _unread(fd):
    """How many bytes the pipe open as `fd` holds."""
    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]
