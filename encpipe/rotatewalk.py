"""encpipe-rotate's walk of DIR and its report: which file under DIR a Rotation
rotates (Rotation.file), which it leaves alone (hidden names, symbolic links, what
is not a regular file: "ignored"), and the temporary files of an interrupted run,
removed (those of the same user only); one JSON line per file on standard output
(report)."""

import json
import os
import re
import stat

from . import dirlock
from .cli import write_line
from .dirwalk import tree
from .inplace import not_a_leftover
from .rotatechild import Failure
from .shown import json_value
from .sigdefer import held

TEMP_PREFIX = ".encpipe-rotate."
TEMP_SUFFIX = ".tmp"
_STALE_TEMP = re.compile(r"^\.encpipe-rotate\..+\.tmp$")


def report(path, status, **fields):
    write_line(json.dumps(json_value({"file": path, "status": status, **fields})))


def remove_stale(fd, path, rotation, dry_run=False):
    """Remove a temporary file of an interrupted run from the directory listed (`fd`), a
    regular file of the caller's only (`dry_run`: say so); a failure is that file's error."""
    name = os.path.basename(path)
    with held():  # removed and reported in one step
        try:
            why = not_a_leftover(os.lstat(name, dir_fd=fd), "rotate")  # not a regular file, or another user's
            if why:
                return report(path, "ignored", reason=f"named like a temporary file, but {why}")
            if not dirlock.left_behind(fd, name):  # a rotate of a directory under DIR, which holds its own lock
                return report(path, "ignored", reason="named like a temporary file, but another run is writing it")
            if not dry_run:
                os.unlink(name, dir_fd=fd)
        except FileNotFoundError:  # gone meanwhile: nothing left to remove
            pass
        except OSError as e:
            return rotation.fail(path, "remove", Failure(f"cannot remove it: {e.strerror or e}", 74))
        report(path, "stale" if dry_run else "removed", reason="temporary file of an interrupted run")


def walk(top, top_fd, rotation, dry_run):
    """Every file under `top` (open as `top_fd`) in a stable order, hidden names and symbolic links excepted."""
    for directory, fd, unlisted, subdirs, names in tree(top, top_fd):
        if isinstance(unlisted, OSError):  # its files, if any, are not rotated: not a run that did all
            rotation.fail(directory, "list", Failure(f"cannot list it: {unlisted.strerror or unlisted}", 66))
            continue
        if subdirs is None:
            report(directory, "ignored", reason="not a directory under DIR any more")
            continue
        left = {name: _left_alone(name, fd) for name in subdirs}
        subdirs[:] = sorted(name for name in subdirs if not left[name])
        for name in sorted(names):
            path = os.path.join(directory, name)
            if _STALE_TEMP.match(name):
                remove_stale(fd, path, rotation, dry_run)
            elif name.startswith("."):
                report(path, "ignored", reason="hidden file")
            elif not is_regular(name, fd):
                report(path, "ignored", reason="not a regular file")
            else:  # in the directory listed: never through a link put in its place since
                rotation.file(path, fd)
        for name in sorted(name for name, why in left.items() if why):
            report(os.path.join(directory, name), "ignored", reason=left[name])


def _left_alone(name, dir_fd):
    """Why the walk leaves subdirectory `name` (a hidden one, a link to a directory: never
    followed); None for one it walks."""
    if name.startswith("."):
        return "hidden directory"
    try:
        return "symbolic link to a directory" if stat.S_ISLNK(os.lstat(name, dir_fd=dir_fd).st_mode) else None
    except OSError:  # gone: the walk passes it over
        return None


def is_regular(name, dir_fd):
    """Whether `name` is a regular file, or one that cannot be looked at (its directory
    listed, not searchable): Rotation.file opens that (never through a link, nor a FIFO)
    and says why it cannot, an error, not a file "ignored" that may be a backup."""
    try:
        return stat.S_ISREG(os.lstat(name, dir_fd=dir_fd).st_mode)
    except FileNotFoundError:  # gone meanwhile
        return False
    except OSError:
        return True
