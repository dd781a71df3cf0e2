"""Where encpipe-restore's sealed files are: FILE and, beside it, the globals file
of its run; from an rclone remote, both are first fetched (sealed, never
plaintext) into private temporary files, since a file is read more than once."""

import os
import re
import stat
import subprocess
import sys
import tempfile

from . import childerr, sigthreads
from .backup.remotes import split_file
from .pgcli import Failure
from .keys import RCLONE_NEEDS, child_env

# A database's name, and so a file's, may hold a newline.
_RUN_NAME = re.compile(r"\A(?P<run>.+_[0-9]{8}T[0-9]{6}Z)\.(?:sql|sql\.zst|sql\.gz|dump)\.enc\Z", re.S)


def open_regular(path, what, where, hint=None):
    """`path` opened to read (a link followed), never blocking on a FIFO that a writer of
    its directory put there: a regular file's descriptor, which each `encpipe` of the
    restore reads as /dev/fd/N, so that the file read is the one checked, whatever
    the name holds meanwhile. Else 66, naming `what`, and `where` nothing was changed."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise Failure("cannot read %s: %s; %s" % (what, e.strerror, where), 66, hint) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise Failure("cannot read %s: not a regular file; %s" % (what, where), 66, hint)
    os.set_blocking(fd, True)
    return fd


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
            fd, path = tempfile.mkstemp(prefix="encpipe-restore.")
            fetched.append(path)
        # the dump's helper's warnings, if any, pass on (the globals file's, none); its error line (it
        # names itself encpipe-backup), kept (bounded: LINE_MAX bytes), goes in restore's one line
        errs = childerr.ChildStderr(prog="encpipe-backup", pass_on=needed)
        with os.fdopen(fd, "wb") as out:
            proc, _ = childerr.started(subprocess.Popen, [sys.executable, "-m", "encpipe.backup", "fetch", name],
                                       stderr_of=errs, stdout=out, env=child_env(os.environ, needs=RCLONE_NEEDS))
        # a stopped restore (SIGTERM, SIGINT) ends the helper and its rclone at once, as its other children
        status = childerr.exit_status(childerr.waited(proc))  # killed by signal N: 128 + N
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
