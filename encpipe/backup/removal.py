"""Removing one listed file from a directory another user may write: never a file
renamed over its name in the meantime.

A check of the name (its inode) followed by an unlink by name leaves a gap in
which a writer of the directory can rename another file (the newest backup) over
that name, and the unlink removes that one instead. So the name is first moved
into a directory of this process's own (made for it, mode 0700: no one else can
add, rename or remove anything in it), the file is compared there, and only then
unlinked. A file found there that is not the one listed goes back under its name
(by a hard link, which never replaces what may have been put there since; else
by a rename when the name is still free), or, failing that, stays where it is
and the error says where.

A writer of a directory that is not sticky can rename any directory in it, one of
the caller's too (an archive kept there, `lost+found`): under a hold name, or in
place of the hold directory just made. So the hold directory is used only once it
is seen, through the descriptor every move goes by, to be the caller's, mode 0700
and empty, and it is marked at once (HOLD_MARKER, a file in it no other directory of
the caller's holds); a killed prune's leftovers are put back only from a directory
so marked, holding the marker and at most the one file.
"""

import os
import stat

from .. import safefile

HOLD_PREFIX = ".encpipe-removing."
HOLD_MARKER = ".encpipe-hold"  # made in each hold directory before a file is moved in


def remove_listed(dir_fd, directory, name, identity):
    """Unlink `name` in the directory `dir_fd` only if it is the file (st_dev, st_ino)
    `identity`; OSError when it is not (or cannot be removed), nothing removed."""
    changed = OSError(f"{name} changed while pruning; left in place")
    now = os.lstat(name, dir_fd=dir_fd)
    if not _is(now, identity):
        raise changed
    safefile.hook("removing", directory, name)
    hold = HOLD_PREFIX + os.urandom(8).hex()  # secrets.token_hex(8), without importing random
    os.mkdir(hold, 0o700, dir_fd=dir_fd)
    held, kept, marked = None, False, False
    try:
        held = os.open(hold, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        if not _own(held) or os.listdir(held):
            raise OSError(f"{os.path.join(directory, hold)} was replaced; {name} left in place")
        os.close(os.open(HOLD_MARKER, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                         dir_fd=held))
        marked = True
        os.rename(name, name, src_dir_fd=dir_fd, dst_dir_fd=held)
        moved = os.lstat(name, dir_fd=held)
        if _is(moved, identity):
            os.unlink(name, dir_fd=held)
            return
        kept = not _put_back(held, dir_fd, name)
        if kept:
            raise OSError(f"{name} changed while pruning; the file found under its name is now "
                          f"{os.path.join(directory, hold, name)}")
        raise changed
    finally:
        if held is not None:
            if marked and not kept:
                _unlink_marker(held)
            os.close(held)
        if not kept:
            try:
                os.rmdir(hold, dir_fd=dir_fd)
            except OSError:
                pass


def _own(held):
    """Whether the directory `held` is the caller's, mode 0700 (or less): no one else's to write."""
    mine = os.fstat(held)
    return mine.st_uid == os.geteuid() and not stat.S_IMODE(mine.st_mode) & 0o077


def _unlink_marker(held):
    try:
        os.unlink(HOLD_MARKER, dir_fd=held)
    except FileNotFoundError:  # a hold killed before it was marked
        pass


def _is(info, identity):
    """Whether `info` (an lstat) is the listed file: its (st_dev, st_ino), and never a
    directory, which a freed inode number can be given to (a listed file is a regular
    file or a link; unlinking a directory fails, and it stayed in the hold directory)."""
    return (info.st_dev, info.st_ino) == identity and not stat.S_ISDIR(info.st_mode)


def _put_back(held, dir_fd, name):
    """Give the file moved into `held` its name again, never over another file; whether it was."""
    try:
        os.link(name, name, src_dir_fd=held, dst_dir_fd=dir_fd, follow_symlinks=False)
        os.unlink(name, dir_fd=held)
        return True
    except OSError:  # a directory, a file another user owns (protected_hardlinks), the name taken again
        pass
    try:
        os.lstat(name, dir_fd=dir_fd)
        return False
    except FileNotFoundError:
        pass
    try:
        os.rename(name, name, src_dir_fd=held, dst_dir_fd=dir_fd)
        return True
    except OSError:
        return False


def put_back_held(dir_fd):
    """What a prune killed (SIGKILL) inside remove_listed left: a hold directory of this
    user's (HOLD_PREFIX, mode 0700, HOLD_MARKER in it), the file it moved there in it,
    not yet unlinked, nor compared (it may be a file renamed over the listed one's name);
    a directory so named that holds anything else is not one (left as it is), an empty
    one is removed. Each such file goes
    back under its name (_put_back: never over another file) and the directory is
    removed once empty; the caller (a prune, holding the directory's lock) then decides
    again, as for any file. What stays: `HOLD/NAME` (a file whose name another file has
    taken since), or `HOLD` (a directory that cannot be read or removed)."""
    stayed = []
    for hold in sorted(os.listdir(dir_fd)):
        if not hold.startswith(HOLD_PREFIX):
            continue
        try:
            held = os.open(hold, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        except OSError:  # not a directory, gone, another user's: not this prune's to touch
            continue
        try:
            if not _own(held):
                continue  # another user's, or one another could write
            names = sorted(os.listdir(held))
            if names and (HOLD_MARKER not in names or len(names) > 2):
                continue  # a directory of the caller's renamed to a hold name: not a hold
            left = [name for name in names if name != HOLD_MARKER and not _put_back(held, dir_fd, name)]
            if left:
                stayed.append(f"{hold}/{left[0]}")
            else:
                _unlink_marker(held)
                os.rmdir(hold, dir_fd=dir_fd)
        except OSError:
            stayed.append(hold)
        finally:
            os.close(held)
    return stayed
