"""Secret files given as /dev/fd/N to a script that runs encpipe more than once
(encpipe-restore, encpipe-rotate, encpipe-migrate).

A child does not inherit N (subprocess closes every descriptor not passed), and
a pipe (`--key-file /dev/fd/3 3< <(vault read ...)`) can be read only once. So
the script reads each such secret once, at its start, and keeps N occupied by
/dev/null for its whole life: nothing it opens later (FILE, DIR, a lock, a
temporary file) can take that number. For each encpipe it runs, `lend(argv)`
puts a fresh copy of the secret on N, for the children whose argv names it
only: the child sees exactly the argument the user gave, and names it in its
messages. Any other child (psql, pg_restore, rclone, zstd) never gets N.

The copy is an in-memory file (memfd: no file system, sealed; its owner's, with
the group and other bits of the file the secret came from, so that encpipe
warns of one others can read), which each open of /dev/fd/N reads from its start: one child may
read it twice (rotate's `rewrap` names the new key file to --key-file and
--add-key-file). Without memfd (not Linux), a pipe: read once per child.

Named FIFOs (mkfifo paths) are not handled: they are passed on as any path.
Standard input, output and error (N < 3) are left as they are.
"""

import contextlib
import fcntl
import os
import stat
import subprocess

from .errors import InputUnavailable, UsageError
from .keyargs import FD_PATH

# A secret handed on to encpipe is written whole before encpipe reads it: on a
# pipe (a --passphrase-fd of encpipe-restore), it must fit the pipe's buffer.
# No key or passphrase is this long.
MAX_SECRET = 65536


class FdSecrets:
    def __init__(self, given, options, taken=()):
        """The /dev/fd/N values of `options` in `given` ({option: [value...]}: a
        docopt-style dictionary, or vars() of an argparse namespace, whose keys
        have no dashes), each descriptor read once. Over MAX_SECRET bytes is
        UsageError (64), unreadable InputUnavailable (66); neither shows the secret.
        `taken`: descriptors the script reads and closes itself (--passphrase-fd):
        one given as a secret file too is UsageError, as N would not stay reserved."""
        self.secrets, self.paths = {}, {}
        for option in options:
            name = option if option.startswith("-") else "--" + option.replace("_", "-")
            for path in given.get(option) or []:
                match = FD_PATH.fullmatch(path)
                if not match or int(match.group(1)) < 3:
                    continue
                fd = int(match.group(1))
                if fd in taken:
                    raise UsageError(f"file descriptor {fd} is given to --passphrase-fd and to {name}: "
                                     "give each secret its own")
                self.paths.setdefault(fd, set()).add(path)
                if fd not in self.secrets:
                    self.secrets[fd] = _read(fd, name, path)
        self.null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)  # now: a closed N was refused (66)
        for fd in self.secrets:
            os.dup2(self.null, fd, inheritable=False)  # reserved: never another file's number

    @contextlib.contextmanager
    def lend(self, argv):
        """The descriptors `argv` names, each a fresh copy of its secret while
        the block runs (spawn the child in it, with pass_fds=the list it yields);
        /dev/null again afterwards."""
        fds = [fd for fd, paths in self.paths.items() if paths & set(argv)]
        try:
            for fd in fds:
                copy = _holding(self.secrets[fd], f"file descriptor {fd}")
                os.dup2(copy, fd, inheritable=False)  # pass_fds makes it inheritable in the child only
                os.close(copy)
            yield fds
        finally:
            for fd in fds:
                os.dup2(self.null, fd, inheritable=False)

    def spawn(self, argv, start=subprocess.run, pass_fds=(), **kwargs):
        """`start(argv, ...)` (subprocess.run or Popen) with the secrets `argv` names
        lent, beside `pass_fds`."""
        with self.lend(argv) as lent:
            return start(argv, pass_fds=[*pass_fds, *lent], **kwargs)


class Secret(bytes):
    """A secret's bytes, and the group and other permission bits of the regular file
    it was read from (0 for a pipe): its copy gets them too, so that encpipe warns
    of a key file others can read through /dev/fd/N as through its path."""

    others = 0


def _read(fd, option, path):
    try:
        with open(path, "rb") as f:  # as encpipe reads it: a file given as 3<FILE from its start
            mode = os.fstat(f.fileno()).st_mode
            data = Secret(f.read(MAX_SECRET + 1))
    except OSError as e:
        raise InputUnavailable(f"{option}: cannot read file descriptor {fd}: {e.strerror or e}") from None
    if len(data) > MAX_SECRET:
        raise UsageError(f"{option}: file descriptor {fd} holds more than {MAX_SECRET} bytes; "
                         "not a key or passphrase")
    data.others = stat.S_IMODE(mode) & 0o077 if stat.S_ISREG(mode) else 0
    return data


def _holding(data, source):
    """A new descriptor holding `data`, the secret of `source`: a sealed memfd
    at offset 0, else (no memfd) a pipe."""
    if not hasattr(os, "memfd_create"):
        return pipe_holding(data, source)
    fd = os.memfd_create("encpipe-secret", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        os.fchmod(fd, 0o400 | getattr(data, "others", 0))  # encpipe warns of group or other bits, as of the file's
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW |
                    fcntl.F_SEAL_WRITE)
        os.lseek(fd, 0, os.SEEK_SET)
    except OSError as e:
        os.close(fd)
        raise InputUnavailable(f"cannot hand the secret of {source} on to encpipe: {e.strerror or e}") from None
    return fd


def pipe_holding(data, source):
    """The read end of a new pipe that holds all of `data` (the secret of `source`),
    its write end closed."""
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    try:
        if len(data) > 4096:  # a pipe of a user over pipe-user-pages-soft starts at one page
            with contextlib.suppress(OSError):
                fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, MAX_SECRET)
        os.set_blocking(write_end, False)
        view = memoryview(data)
        while view:
            view = view[os.write(write_end, view):]
    except OSError as e:  # BlockingIOError: the pipe is smaller than the secret
        os.close(read_end)
        raise InputUnavailable(f"cannot hand the secret of {source} on to encpipe: "
                               f"{e.strerror or e}") from None
    finally:
        os.close(write_end)
    return read_end
