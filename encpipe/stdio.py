"""Standard streams that fail: what the command line and --progress do then."""

import errno
import os
import stat
import sys

from .shown import unprintable


def write_quietly(stream, text):
    """Write a message or a progress line to standard error; when that fails (a
    full disk), the message is lost but not the exit status, and nothing tries
    to write it again at exit."""
    try:
        stream.write(text)
        stream.flush()
    except OSError:
        discard(0, stream)


def blocking(fd):
    """Whether descriptor `fd` is open; one in non-blocking mode (O_NONBLOCK, as a
    parent may hand down a pipe or terminal) is made blocking first. Before, its
    reads that found nothing yet were taken for the end of the input, and its
    writes that would have blocked for written: `seal` made a file of what had
    come so far, which authenticates, and exited 0 (tests/test_nonblocking_stdio.py)."""
    try:
        if os.get_blocking(fd):
            return True
    except OSError:
        return False  # closed
    os.set_blocking(fd, True)  # an open descriptor's flags can be set: no failure to fall back from
    return True


def write_whole(out, data):
    """Write all of `data` to `out`: an unbuffered file (standard output under
    PYTHONUNBUFFERED) takes what fits on a disk that fills and says how much; the
    next write then fails (ENOSPC), as a buffered one does itself."""
    view = memoryview(data)
    while view:
        n = out.write(view)
        view = view[len(view) if n is None else n :]


def said(text, kind="error"):
    """What a child encpipe's first `PROG: error: ...` (or `hint`) line of `text`
    (its standard error) says, without the prefix and as its text, not as shown
    (shown.unprintable: the caller shows it again); None if it said none."""
    marker = f": {kind}: "
    return next((unprintable(line.split(marker, 1)[1]) for line in text.splitlines() if marker in line), None)


def discard(status, stream=None):
    """Standard output (or `stream`) failed (its reader went away, or the disk is
    full): point it at /dev/null so that nothing tries to flush it again at exit;
    returns `status`."""
    try:
        fd = (stream or sys.stdout).fileno()
        devnull = os.open(os.devnull, os.O_WRONLY)
        if devnull != fd:
            os.dup2(devnull, fd)
            os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass
    return status


def is_pipe(stream):
    """Whether `stream` is a pipe (a FIFO), as standard input or output often is."""
    try:
        return stat.S_ISFIFO(os.fstat(stream.fileno()).st_mode)
    except (AttributeError, OSError, ValueError):
        return False


def seekable(src):
    """Whether `src` can seek (a file; not a pipe, a terminal or a socket)."""
    try:
        return src.seekable()
    except (AttributeError, ValueError):
        return False


def open_if_regular(path, flags=0, dir_fd=None):
    """`path` opened to read (O_RDONLY | `flags`) only once what it leads to is seen to be a
    regular file (O_PATH first, which opens nothing, then /proc/self/fd/N): a link a writer
    of a directory planted, pointed at a FIFO, would wake its writer, and at a device open
    it (a watchdog armed, a tape rewound). None when it is no regular file; ELOOP, as open()
    says it, for a link with O_NOFOLLOW in `flags`. Without O_PATH or /proc, opened first."""
    if not hasattr(os, "O_PATH") or not os.path.isdir("/proc/self/fd"):
        fd = os.open(path, os.O_RDONLY | flags, dir_fd=dir_fd)
        if stat.S_ISREG(os.fstat(fd).st_mode):
            return fd
        os.close(fd)
        return None
    found = os.open(path, os.O_PATH | os.O_CLOEXEC | flags & os.O_NOFOLLOW, dir_fd=dir_fd)
    try:
        mode = os.fstat(found).st_mode
        if stat.S_ISLNK(mode):
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
        if not stat.S_ISREG(mode):
            return None
        return os.open("/proc/self/fd/%d" % found, os.O_RDONLY | flags & ~os.O_NOFOLLOW)
    finally:
        os.close(found)
