"""Writing files into directories that other users may be able to change.

`write_atomically` never writes, truncates, chmods or chowns a file through a
path that another user could have swapped. The directory is opened once; every
later step is relative to that descriptor. The new file is created under a fresh
hidden name with O_CREAT|O_EXCL|O_NOFOLLOW, written, fsync'd, verified, and given
its mode, owner and times through its own descriptor. It is renamed to its final
name only while the hidden name is still the file behind the descriptor (and,
when it replaces a file, while the final name is still that file); the check is
repeated after the rename. A symbolic link or another file put in the way makes
the write fail; it never makes encpipe change a file outside the directory.

`check_directory` is ssh's StrictModes for directories we write in: refuse one
that a user other than the caller (or root) can write, unless it is sticky.
"""

import contextlib
import errno
import fcntl
import os
import stat

from .errors import Changed, InputUnavailable, IOFailure, UnsafeDirectory, unreadable
# never os.path.abspath, which drops `..` with the name before it: another directory where that name
# is a link (`seal -o L/../f` replaced the f beside L)
from .pathwalk import absolute
from .sigdefer import held
from .writers import ALLOW_FLAG, _owners, first_other_writer, other_writer, way_writer  # noqa: F401 (as before)

TEST_HOOK = "ENCPIPE_TEST_HOOK"
ABSENT = object()  # write_atomically's `replaces` for a name that held no file
TEMP_PREFIX = ".encpipe-tmp."
ACCESS_ACL = "system.posix_acl_access"
NO_ACL = b""  # write_atomically's acl for a file that has none: not even one its directory's default ACL gives


def hook(step, *details):
    """For tests only: run $ENCPIPE_TEST_HOOK with `step` and `details` as its
    arguments, so that a test can swap files at exactly this step. It swaps files:
    it gets no secret of our environment (childenv.child_env)."""
    command = os.environ.get(TEST_HOOK)
    if command:
        import subprocess

        from .childenv import child_env

        subprocess.run(["/bin/sh", "-c", command, "hook", step, *map(str, details)], stdin=subprocess.DEVNULL,
                       check=False, env=child_env(os.environ))


# --- who can write a directory ----------------------------------------------


def check_directory(path, allow_shared=False):
    """Raise UnsafeDirectory when a user other than the caller or root can write
    `path` or one of its ancestors (a sticky one excepted), or could point a symbolic
    link on the way to it elsewhere; nothing with `allow_shared`."""
    if allow_shared:
        return
    found = way_writer(path)[1] or first_other_writer(path)
    if found:
        where, writer = found
        raise UnsafeDirectory(
            f"{where} can be written by {writer}; refusing to write in it",
            hint=f"run this as its owner, or make it owned by {_owners()} and not writable by others "
            f"(chmod go-w), or pass {ALLOW_FLAG}",
        )


# --- writing -------------------------------------------------------------------


def same_file(a, b):
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def unchanged(a, b):
    return same_file(a, b) and (a.st_size, a.st_mtime_ns) == (b.st_size, b.st_mtime_ns)


def open_directory(path, allow_shared=False):
    """A descriptor of directory `path`, after check_directory."""
    check_directory(path, allow_shared)
    try:
        return os.open(os.path.realpath(path), os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        raise IOFailure(f"cannot open directory {path}: {e.strerror or e}") from None


def open_source(path, dir_fd=None, shown=None):
    """`path` opened for reading, never through a symbolic link, with its fstat; with
    `dir_fd`, the file of that name in the directory open as `dir_fd`. `shown`: how
    a message names it (default `path`)."""
    try:
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
        fd = os.open(path, flags) if dir_fd is None else os.open(os.path.basename(path), flags, dir_fd=dir_fd)
        info = os.fstat(fd)
    except OSError as e:
        raise unreadable(f"cannot open {shown or path}: {e.strerror or e}", e) from None
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise InputUnavailable(f"{path} is not a regular file")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb"), info


def write_output(path, write, *, allow_shared=False, committed=None):
    """`seal -o`: write_atomically, except that a device or a FIFO is written
    into (it cannot be replaced, and writing it changes no file) and that a
    symbolic link is refused (renaming over it would hide where it points)."""
    directory, name = os.path.split(absolute(path))
    if not name or name in (".", ".."):  # `out/`, `out/.`: a directory's name, as the shell's `>` says
        raise IOFailure(f"cannot create {path}: Is a directory")
    if os.path.isdir(directory):
        check_directory(directory, allow_shared)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        info = None
    except OSError as e:
        raise IOFailure(f"cannot examine {path}: {e.strerror or e}") from None
    if info is not None and stat.S_ISLNK(info.st_mode):
        raise IOFailure(f"{path} is a symbolic link; refusing to write through it",
                        hint="give the path of the file itself")
    if info is not None and stat.S_ISDIR(info.st_mode):
        raise IOFailure(f"cannot create {path}: Is a directory")
    if info is None or stat.S_ISREG(info.st_mode):  # renamed only while the name holds what it held (or nothing)
        return write_atomically(path, write, allow_shared=allow_shared, committed=committed,
                                replaces=ABSENT if info is None else info)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        raise IOFailure(f"cannot open {path}: {e.strerror or e}") from None
    with os.fdopen(fd, "wb", buffering=0) as out:
        return write(out)


def write_atomically(path, write, *, mode=0o600, allow_shared=False, verify=None, owner=None, times_ns=None,
                     replaces=None, before_rename=None, prefix=TEMP_PREFIX, suffix="", dir_fd=None, committed=None,
                     acl=None):
    """Create `path` (or replace it) with what `write(file)` writes; returns what write returned.

    `verify(fd)` may check the written file through its descriptor; `owner` (uid,
    gid), `acl` (an access ACL's xattr, access_acl; NO_ACL: none, not even the
    directory's default) and `times_ns` (atime, mtime) are set through it, the
    owner first; `replaces`, the stat of
    the file the caller read (ABSENT: none was there), makes the rename happen only
    while `path` is still that file (still none); `dir_fd`, the directory the caller listed (and checked), open, makes
    it all happen in that very directory, whatever its name leads to by now;
    `before_rename(dir_fd)` runs just before the last checks, given the directory's
    descriptor. On any failure the hidden file is removed and `path` is as it was.
    Signals are held (sigdefer) from the hidden file's creation until it is in the
    `try` that removes it, and from `before_rename` until the rename is done, then
    `committed()` runs (sigdefer.hold_for_good, a Commit's hold: held on until the
    caller has said so): a signal never leaves the file or its report half done."""
    directory, name = os.path.split(absolute(path))
    if not name or name in (".", ".."):
        raise IOFailure(f"cannot create {path}: Is a directory")
    if dir_fd is None and not os.path.isdir(directory):
        raise IOFailure(f"cannot create {path}: No such file or directory")
    dir_fd = open_directory(directory or "/", allow_shared) if dir_fd is None else _checked(dir_fd, directory,
                                                                                             allow_shared)
    try:
        steps = (write, verify, before_rename, committed)
        return _write_in(dir_fd, directory, name, steps, (mode, acl), owner, times_ns, replaces, prefix + "%s" + suffix)
    finally:
        os.close(dir_fd)


def check_open_directory(dir_fd, directory, allow_shared):
    """check_directory of `directory` and of the directory open as `dir_fd` (what
    write_atomically checks before it writes in a directory a caller opened)."""
    check_directory(directory, allow_shared)
    writer = not allow_shared and other_writer(os.fstat(dir_fd), where=dir_fd)
    if writer:
        raise UnsafeDirectory(f"{directory} can be written by {writer}; refusing to write in it")


def _checked(dir_fd, directory, allow_shared):
    """A copy of `dir_fd` after check_open_directory."""
    check_open_directory(dir_fd, directory, allow_shared)
    return os.dup(dir_fd)


def _write_in(dir_fd, directory, name, steps, access, owner, times_ns, replaces, pattern):
    """`access`: (mode, access ACL or None)."""
    write, verify, before_rename, committed = steps
    temp = pattern % os.urandom(8).hex()  # secrets.token_hex(8), without importing random
    done, fd = False, None
    with contextlib.ExitStack() as holding:
        try:
            with held():  # created and in this `try` in one step: a signal never leaves it behind
                fd = _io(os.open, temp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                         dir_fd=dir_fd, what=f"cannot create a temporary file in {directory}")
                _in_use(fd)
            hook("created", directory, temp, name)
            with os.fdopen(fd, "w+b", buffering=0, closefd=False) as out:
                result = write(out)
            _io(os.fsync, fd, what=f"cannot write {name}")
            hook("written", directory, temp, name)
            if verify is not None:
                verify(fd)
            hook("verified", directory, temp, name)
            made = os.fstat(fd)  # 0600 still: its owner and group first, then what they and others may do
            if owner is not None and owner != (made.st_uid, made.st_gid):  # not kept: not renamed over the file
                _io(os.fchown, fd, *owner, what=f"cannot give {name} its owner and group")
            if access[1] == NO_ACL:  # not one a default ACL of the directory gave it: its mode says it all
                _io(_remove_access_acl, fd, what=f"cannot remove the access ACL of {name}")
            _io(os.fchmod, fd, access[0], what=f"cannot set the mode of {name}")
            if access[1]:  # its group bits the ACL's mask, as the original's
                _io(os.setxattr, fd, ACCESS_ACL, access[1], what=f"cannot set the access ACL of {name}")
            if times_ns is not None:
                _io(os.utime, fd, ns=times_ns, what=f"cannot set the times of {name}")
            holding.enter_context(held())  # to the rename, and on to its report: see `committed`
            if before_rename is not None:
                before_rename(dir_fd)
            hook("renaming", directory, temp, name)
            mine = os.fstat(fd)
            _expect(dir_fd, temp, mine, f"{os.path.join(directory, temp)} was replaced while it was written")
            if replaces is ABSENT:
                _expect_absent(dir_fd, name, f"{os.path.join(directory, name)} appeared while it was being "
                               "written; left alone")
            elif replaces is not None:
                _expect(dir_fd, name, replaces, f"{os.path.join(directory, name)} changed while it was being "
                        "rewritten; left alone", compare=unchanged)
            _io(os.rename, temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, what=f"cannot rename to {name}")
            done = True
            if committed is not None:
                committed()
            holding.close()
            hook("renamed", directory, temp, name)
            _expect(dir_fd, name, mine, f"{os.path.join(directory, name)} was replaced just after it was written")
            try:
                os.fsync(dir_fd)
            except OSError:
                pass  # some file systems refuse; the rename itself has happened
            return result
        except BaseException:
            if not done and fd is not None:
                _remove_if(dir_fd, temp, fd)
            raise
        finally:
            if fd is not None:
                os.close(fd)


def _in_use(fd):
    """Hold a lock (flock) on the hidden file open as `fd` while it is written: it says it is
    in use. `seal -o` and `rewrap --in-place` take no lock of the directory, and their hidden
    files are named as encpipe-backup's (TEMP_PREFIX), which removes a killed run's as it
    starts (dirlock.left_behind): one still held is not. Where flock is refused, none."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        pass


def _remove_access_acl(fd):
    try:
        os.removexattr(fd, ACCESS_ACL)
    except OSError as e:
        if e.errno not in (errno.ENODATA, errno.ENOTSUP):
            raise


def access_acl(fd):
    """The access ACL of the file open as `fd` (its xattr's bytes), or None when it has none."""
    try:
        return os.getxattr(fd, ACCESS_ACL)
    except OSError as e:
        if e.errno in (errno.ENODATA, errno.ENOTSUP):
            return None
        raise


def _io(function, *args, what, **kwargs):
    try:
        return function(*args, **kwargs)
    except OSError as e:
        raise IOFailure(f"{what}: {e.strerror or e}") from None


def _expect(dir_fd, name, wanted, message, compare=same_file):
    try:
        found = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        raise Changed(message) from None
    if not compare(found, wanted):
        raise Changed(message)


def _expect_absent(dir_fd, name, message):
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    raise Changed(message)


def _remove_if(dir_fd, name, fd):
    """Remove `name` if it is still the file behind `fd` (and leave anything else)."""
    try:
        if same_file(os.stat(name, dir_fd=dir_fd, follow_symlinks=False), os.fstat(fd)):
            os.unlink(name, dir_fd=dir_fd)
    except OSError:
        pass


def fsync_directory(directory, dir_fd=None):
    """Make a rename or removal in `directory` (relative to `dir_fd`, when given)
    durable; best effort (some file systems refuse), since the change itself has
    already happened."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
