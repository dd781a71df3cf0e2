"""A path walked name by name as the kernel resolves it, for the judges of who
could replace what it leads to (keyplace: a key file; backup.metrics: the
metrics file's directory). Each symbolic link is followed (an absolute target
starts again at /; past MAX_LINKS, the kernel's ELOOP), and a `..` leaves the
directory reached so far, where a link led included (so never normpath:
`link/..` is not `.`). The walk yields each step and lets its caller judge it;
a caller that stops iterating stops the walk there.
"""

import os
import stat

from .errors import IOFailure

MAX_LINKS = 40  # as the kernel's ELOOP

UP, LINK, MISSING, REACHED = "..", "link", "missing", "reached"


def absolute(path):
    """`path` from the root (a relative one below the working directory), never
    normalised."""
    return path if path.startswith("/") else os.path.join(os.getcwd(), path)


def steps(path, directory_only=False):
    """The steps (kind, directory, name, info) of the walk of `path` (with
    `directory_only`, of its directory: all but its last name), in order:
    (UP, directory, None, None) before a `..` leaves `directory` for its parent;
    (LINK, directory, the link's path, its lstat) for a symbolic link met in
    `directory`, followed once the caller asks for the next step; last, either
    (MISSING, directory, the path not there, None) when a name in `directory`
    cannot be examined (lstat: not there, or not a directory on the way), or
    (REACHED, the path the last name led to, None, None). IOFailure (74) when
    a link is one more than MAX_LINKS, or cannot be read."""
    names = absolute(path)
    pending = [part for part in (os.path.dirname(names) if directory_only else names).split("/") if part]
    current, links = "/", 0
    while pending:
        part = pending.pop(0)
        if part == ".":
            continue
        if part == "..":
            yield UP, current, None, None
            current = os.path.dirname(current)
            continue
        candidate = os.path.join(current, part)
        try:
            info = os.lstat(candidate)
        except OSError:
            yield MISSING, current, os.path.join(candidate, *pending), None
            return
        if not stat.S_ISLNK(info.st_mode):
            current = candidate
            continue
        yield LINK, current, candidate, info
        links += 1
        if links > MAX_LINKS:
            raise IOFailure(f"cannot examine {path}: Too many levels of symbolic links")
        try:
            target = os.readlink(candidate)
        except OSError as e:
            raise IOFailure(f"cannot examine {candidate}: {e.strerror or e}") from None
        current = "/" if target.startswith("/") else current
        pending = [p for p in target.split("/") if p] + pending
    yield REACHED, current, None, None
