"""The directory a run works in: the lock runs take turns by (flock on the
directory), and the directories a run made, removed when it fails.

flock needs no more than read access, so any user who can open the directory can
hold it. A run therefore waits for it a bounded time only (ENCPIPE_LOCK_WAIT
seconds, default 5 h: under the unit's TimeoutStartSec=6h, said before systemd
kills the run), then fails with 75, naming the lock.
"""

import fcntl
import os
import stat
import time

from .errors import Changed, UsageError
from .pathwalk import absolute
from .safefile import fsync_directory, same_file
from .textform import shown_value
from .workers import decimal_number

ENV_LOCK_WAIT, LOCK_WAIT, MAX_WAIT = "ENCPIPE_LOCK_WAIT", 5 * 3600, 1000000


def lock_wait(env):
    """ENCPIPE_LOCK_WAIT in seconds, else the default; 64 when malformed."""
    text = env.get(ENV_LOCK_WAIT, str(LOCK_WAIT))
    seconds = decimal_number(text)
    if seconds is None or seconds > MAX_WAIT:
        raise UsageError(f"{ENV_LOCK_WAIT} must be a number of seconds from 0 to {MAX_WAIT}, not {shown_value(text)}")
    return seconds


def take(fd, directory, seconds, on_wait):
    """Hold the exclusive flock on `fd`, the directory `directory` open to read (the one a
    run opened once: never its path again, which a writer of a directory above may have
    pointed elsewhere meanwhile): at once, or after `on_wait()` within `seconds` (else
    Changed, 75); whether it is still there: False when it was removed while this waited
    (by a failed run that had made it), which leaves it no link."""
    turn(fd, directory, seconds, on_wait)
    try:
        return os.fstat(fd).st_nlink > 0
    except OSError:
        return False


def turn(fd, directory, seconds, on_wait):
    """Hold the exclusive flock on `fd` (the directory `directory`, open to read):
    at once, or after `on_wait()` within `seconds`, else Changed (75)."""
    if not locked_now(fd):
        on_wait()
        wait_for_lock(fd, directory, seconds)


def wait_for_lock(fd, directory, seconds):
    """An exclusive flock on `fd` (the directory `directory`) within `seconds`, else Changed (75)."""
    deadline = time.monotonic() + seconds
    while not locked_now(fd):
        left = deadline - time.monotonic()
        if left <= 0:
            raise Changed(f"{directory}: its lock (flock on the directory) is still held after {seconds:g} s;"
                          " not waiting longer", hint="a backup, a prune, a rotation or a migration in it, or any"
                          f" user who can open it, holds it; {ENV_LOCK_WAIT} sets the wait in seconds")
        time.sleep(min(0.5, left))


def locked_now(fd):
    """Whether the exclusive flock on `fd` was taken, without waiting (False: another holds it)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def hold(fd, directory, check, fail, started):
    """Lock `directory` (open as `fd`) for a run that waits for no other, then check it:
    its exclusive flock at once, else `fail(<directory>: its lock is held..., 75)` is
    raised (whoever holds it: a backup, a prune, a rotation, a migration, any user who can
    open the directory); then `check()`, and `directory` must still name `fd`, else
    `fail("<directory> was replaced while <started> started", 66)`. `fail` is the
    caller's failure class (message, status)."""
    if not locked_now(fd):
        raise fail(f"{directory}: its lock (flock on the directory) is held: a backup, a prune, a rotation or a"
                   " migration works in it, or a user who can open it holds the lock; nothing was changed", 75)
    check()  # after the lock: the directory worked in is the one locked and checked
    if not still_at(fd, directory):
        raise fail(f"{directory} was replaced while {started} started", 66)


def left_behind(dir_fd, name):
    """Whether hidden file `name` in the directory open as `dir_fd` is a killed run's, to be
    removed: not a regular file that a writer holds locked (safefile._in_use: a `seal -o` or
    `rewrap --in-place` writing it, which holds no lock of the directory). A regular file is
    opened without following a link, without blocking, to try its lock; one that cannot be
    opened is a killed run's, as before."""
    try:
        if not stat.S_ISREG(os.lstat(name, dir_fd=dir_fd).st_mode):
            return True
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:
        pass
    finally:
        os.close(fd)
    return True


# --- directories made by a run ------------------------------------------------


def make_directories(path):
    """os.makedirs(path, exist_ok=True); the (path, stat) of each directory this
    call made, outermost first, for remove_made. Each is made durable in its parent
    (fsync of the parent): DIR's own fsync, after a backup's rename, is not enough for
    a DIR that a crash could lose."""
    missing, current = [], absolute(path).rstrip("/") or "/"  # `..` as the kernel reads it
    # none above a `..` or `.` is known to be made here: none of those is recorded (nor removed)
    while not os.path.lexists(current) and os.path.basename(current) not in (".", ".."):
        missing.append(current)
        current = os.path.dirname(current)
    os.makedirs(path, exist_ok=True)
    made = []
    for directory in reversed(missing):
        try:
            made.append((directory, os.lstat(directory)))
        except OSError:
            break
        fsync_directory(os.path.dirname(directory))  # its name in its parent durable, as a backup's rename in it
    return made


def still_at(fd, path):
    """Whether `path` still names the directory (or file) open as `fd`."""
    try:
        return same_file(os.fstat(fd), os.stat(path))
    except OSError:
        return False


def remove_made(made):
    """Remove the directories make_directories made, innermost first, each only
    while it is still that very directory and empty (rmdir removes no other);
    stop at the first that stays."""
    for directory, info in reversed(made):
        try:
            if not same_file(os.lstat(directory), info):
                return
            os.rmdir(directory)
        except OSError:
            return
