"""Where encpipe-restore's sealed files are: FILE and, beside it (a link's: beside
its target), the globals file of its run; from an rclone remote, both are first
fetched (sealed, never plaintext) into private temporary files, since a file is
read more than once."""

import errno
import os
import re
import stat
import subprocess

from . import childerr, pgopts, sigthreads
from .backup.remotes import split_file
from .pgcli import Failure
from .childenv import RCLONE_NEEDS, child_env
from .cli import python_module
from .stdio import open_if_regular

# A database's name, and so a file's, may hold a newline.
_RUN_NAME = re.compile(r"\A(?P<run>.+_[0-9]{8}T[0-9]{6}Z)\.(?:sql|sql\.zst|sql\.gz|dump)\.enc\Z", re.S)


def open_regular(path, what, where, hint=None, follow=True):
    """`path` opened to read (a link followed), never blocking on a FIFO that a writer of
    its directory put there: a regular file's descriptor, which each `encpipe` of the
    restore reads as /dev/fd/N, so that the file read is the one checked, whatever
    the name holds meanwhile. Else 66, naming `what`, and `where` nothing was changed.
    Without `follow`, None when `path` is a symbolic link. O_NOCTTY: a link pointed at a
    terminal never becomes the controlling one of a restore that leads its session."""
    flags = os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = open_if_regular(path, flags)
    except OSError as e:
        if not follow and e.errno == errno.ELOOP:
            return None
        raise Failure("cannot read %s: %s; %s" % (what, e.strerror, where), 66, hint) from None
    if fd is None or not stat.S_ISREG(os.fstat(fd).st_mode):
        if fd is not None:
            os.close(fd)
        raise Failure("cannot read %s: not a regular file; %s" % (what, where), 66, hint)
    os.set_blocking(fd, True)
    return fd


def open_named(path, what, where, local=None):
    """(descriptor, name) of FILE `path`: opened as open_regular does (a remote FILE's
    copy, `local`), and the name its run is found by (run_name, backup_named,
    globals_name), never a copy's. That is `path`, unless `path` is a symbolic link
    (a chain of them, relative, into another directory: a `latest.dump.enc` an
    operator points at the newest run's dump): then it is the name of the file the
    link led to, read back from the descriptor (/proc/self/fd/N), never from a second
    resolution of the link, which a writer of the directory may have repointed
    meanwhile: the dump read, the label it must carry and its run's globals file go
    by the name of one file. A descriptor's own path (/dev/fd/N, /dev/stdin, or a
    link to one) is such a link: the name read back when it is a run's dump's; else
    (another name, a file removed or moved, none), `path`, with no run, as before.
    Without /proc, `path`."""
    if local:
        return open_regular(local, what, where), path
    descriptor = _descriptor(path)
    fd = None if descriptor else open_regular(path, what, where, follow=False)
    if fd is not None:
        return fd, path
    fd = open_regular(path, what, where)
    try:
        name = _name_of(fd)
    except OSError:
        return fd, path
    if descriptor:
        return fd, name if name and run_name(name) else path
    if name is None:
        os.close(fd)
        raise Failure("cannot read %s: the file its link leads to was moved or removed while it was opened; %s"
                      % (what, where), 66)
    return fd, name


def _name_of(fd):
    """The name of the file open at `fd`, read back from /proc/self/fd (OSError without it);
    None when that name is no longer the file's: removed (`NAME (deleted)`) or moved meanwhile."""
    name = os.readlink("/proc/self/fd/%d" % fd)
    try:
        now, info = os.stat(name, follow_symlinks=False), os.fstat(fd)
    except OSError:
        return None
    return name if (now.st_dev, now.st_ino) == (info.st_dev, info.st_ino) else None


def is_link(path):
    """Whether open_named may find FILE's run by another name than `path`: a link's
    target's, or a descriptor's file's (/dev/fd/N...), known once it is open."""
    return os.path.islink(path)


def refuse_tool_options(name, args):
    """Failure (64) when the restore's pass-through options `args` hold one that the
    client a backup named `name` needs (pgopts.restore_tool) may not get; the stream,
    not the name, says at last which one restores it (pgrestore.create)."""
    try:
        pgopts.check(pgopts.restore_tool(name), args)
    except pgopts.RefusedOption as e:
        raise Failure(str(e), 64) from None


def _descriptor(path):
    """Whether `path` is a descriptor's own link in /proc (/dev/fd/N, /proc/self/fd/N), or
    leads to one through links (/dev/stdin); False when there is no /proc."""
    try:
        proc = os.stat("/proc/self").st_dev
        for _ in range(40):  # the kernel's limit on links followed
            if os.stat(os.path.dirname(path) or ".").st_dev == proc:
                return True
            path = os.path.join(os.path.dirname(path), os.readlink(path))
    except OSError:  # not a link: its end; or no /proc
        pass
    return False


def run_name(path):
    """The run (<db>_<stamp>) that made backup `path`, from its name, or None; `path`
    may be REMOTE:NAME, whose name is not all after the last `/`."""
    match = _RUN_NAME.match(split_file(path)[1])
    return match and match["run"]


def backup_named(path):
    """(path, database, time) that backup `path`'s name says, the time as in the
    name; None when it is not named as a dump of encpipe-backup's."""
    match = _RUN_NAME.match(split_file(path)[1])
    if not match:
        return None
    db, stamp = match["run"].rsplit("_", 1)
    return path, db, stamp


def globals_name(path):
    """The globals file of the run that made backup `path`, or None."""
    match = _RUN_NAME.match(os.path.basename(path))
    return match and path[: len(path) - len(os.path.basename(path))] + match["run"] + ".globals.sql.enc"


def fetch_remote(remote, with_globals, fetched):
    """(local copy of REMOTE:PATH/NAME, local copy of its run's globals file or None when
    the remote holds none); each temporary path goes into `fetched` as soon as it exists (the caller removes
    them at exit). The fetch helper runs rclone: it gets none of encpipe's secrets, nor PGPASSWORD;
    it is killed with its rclone when the wait for it is stopped."""
    found = {}
    for name, needed in ((remote, True), (globals_name(remote) if with_globals else None, False)):
        if not name:
            continue
        with sigthreads.held():  # made and recorded for removal in one step: a signal never leaves it
            try:
                import tempfile  # here: a local FILE needs no temporary file

                fd, path = tempfile.mkstemp(prefix="encpipe-restore.")
            except OSError as e:  # TMPDIR full (no inode left), read-only, none usable
                raise Failure(f"cannot fetch {name}: cannot create a temporary file (TMPDIR): {e.strerror or e}; "
                              "nothing was changed", 74) from None
            fetched.append(path)
        # the dump's helper's warnings, if any, pass on (the globals file's, none); its error line (it
        # names itself encpipe-backup), kept (bounded: LINE_MAX bytes), goes in restore's one line
        errs = childerr.ChildStderr(prog="encpipe-backup", pass_on=needed)
        with os.fdopen(fd, "wb") as out:
            # a stopped restore (SIGTERM, SIGINT) ends the helper and its rclone at once, as its other children,
            # even just as it started (childerr.used)
            status, _ = childerr.used(subprocess.Popen, [*python_module("encpipe.backup"), "fetch", name],
                                      stderr_of=errs, stdout=out, env=child_env(os.environ, needs=RCLONE_NEEDS))
        status = childerr.exit_status(status)  # killed by signal N: 128 + N
        error = errs.wait()[0]
        # the globals file absent is told apart (pgglobals.beside refuses it, as a local one missing); any
        # other failure is one, as for a local globals file that exists but cannot be read
        from .backup.rclonestore import NO_SUCH_OBJECT  # here: a local FILE needs none of the remote's modules

        if status and (needed or not (status == 66 and (error or "").endswith(": " + NO_SUCH_OBJECT))):
            raise Failure("cannot fetch %s: %s; nothing was changed" % (name, error or "status %d" % status),
                          status)
        if not status:
            found[needed] = path
    return found[True], found.get(False)
