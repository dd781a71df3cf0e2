"""The key sources a script hands to each encpipe it runs (encpipe-migrate,
encpipe-restore), checked before the first one: a key file that cannot be read
or holds no key is refused at the start, under the script's own option name,
not once per file, nor once a database server was reached.

Keyrings (--key-file, --identity, --recipient-file, --recipient) are read by
`encpipe keyid` in a child, exactly as every later encpipe reads them: the
script itself never holds a key. One on standard input is not read ahead: a
first reader would take its content. A passphrase file is
only opened, not read (any bytes are a passphrase; the encpipe that uses it
reads it): one that does not exist, is a directory, cannot be opened or is a
regular file over the size encpipe reads is refused now. A secret given as
/dev/fd/N, or by the path of a FIFO, a device or a socket, was read at the start
by FdSecrets, and is checked by keyid (given its copy) like any keyring.
Commands (--key-command, --passphrase-command) are not run ahead of time: each
run may prompt, or cost, and every encpipe the script starts runs them again
anyway; only the command that runs them (ENCPIPE) is checked.

What the children take from the environment is checked too (check_environment):
ENCPIPE must name a command that can be run, and ENCPIPE_KEY, when no key option
is given for them (they then read it), is read by `encpipe keyid` as they will
read it.
"""

import os
import stat
import subprocess

from . import childerr, sigthreads
from .argwords import option_words
from .errors import EncpipeError, InputUnavailable, IOFailure, UsageError, ran_out, unreadable
from .pathsearch import which
from .keyargs import FD_PATH, secret_paths
from .childenv import ENV_KEY, KEY_COMMAND_NEEDS, child_env
from .keys import MAX_SECRET_BYTES

KEYIDS_MAX = 1 << 20  # bytes of key ids kept of what `encpipe keyid` prints
KEYRINGS = ("--key-file", "--identity", "--recipient", "--recipient-file")


class ChildRefused(EncpipeError):
    """What an encpipe child refused, with its exit status."""

    def __init__(self, message, exit_code, hint=None):
        super().__init__(message, hint=hint)
        self.exit_code = exit_code


def check(sources, encpipe, spawn, shared=(), started=None):
    """`sources`: (the option as the script takes it, encpipe's name for it, [values]).
    `encpipe`: the command (a list); `spawn(argv, **kwargs)`: runs it with the
    secrets argv names lent (FdSecrets.spawn); `shared`: ["--allow-shared-dir"] when
    the script was given it (keyplace), for keyid too. Raises the error the first
    bad source gives, naming the script's option. Given a list `started`, each keyid
    is only started, and recorded in it in one step (Started): settle() gives their
    verdicts, so that the caller's own steps run meanwhile; a later source's own
    error, found while they run, comes after theirs, as when each was waited for."""
    try:
        for option, theirs, values in sources:
            if not values or theirs not in (*KEYRINGS, "--passphrase-file"):
                continue
            if theirs != "--recipient":
                secret_paths({option: values}, option)  # 64, the value not shown: a secret in a path's place
            if theirs == "--passphrase-file":
                for path in values:
                    _openable(path, option)
                continue
            ahead = values if theirs == "--recipient" else [value for value in values if _read_ahead(value)]
            if ahead and started is None:
                keyid(encpipe, spawn, [*option_words(theirs, ahead), *shared], option)
            elif ahead:
                with sigthreads.held():  # a signal meanwhile: the caller ends those recorded
                    started.append(Started(encpipe, spawn, [*option_words(theirs, ahead), *shared], option))
    except Exception:
        settle(started or [])
        raise


def settle(started):
    """The verdicts of the Started in the list `started`, in their order, each taken
    out of it once given (until then, a caller stopped ends it): the first refusal
    raised (ChildRefused), those after it ended unread; the list left empty."""
    while started:
        try:
            started[0].result()
        except BaseException:
            for rest in started[1:]:
                rest.stop()
            del started[:]
            raise
        del started[0]


def check_environment(encpipe, spawn, env, key_read, wait=True):
    """ENCPIPE (`encpipe`, the command) can be run: else 66 now, once, not once per
    file nor once a server was reached. With `key_read` (no key option given to
    the children: each reads ENCPIPE_KEY), ENCPIPE_KEY is read by `encpipe keyid`
    as they will read it: a malformed one is 64 now, named. ENCPIPE_PASSPHRASE
    needs no check (any bytes are a passphrase). Without `wait`, that keyid is
    only started: the Started (None when there is nothing to read) says its
    verdict when asked (result()), so that the caller's own steps run meanwhile."""
    if which(encpipe[0]) is None:  # missing, a directory, not executable
        raise InputUnavailable(f"cannot run encpipe: {encpipe[0]}")
    if key_read and env.get(ENV_KEY) is not None:  # set but empty: malformed too, as each child says
        started = Started(encpipe, spawn, [], env={**child_env(env), ENV_KEY: env[ENV_KEY]})
        return started.result() if wait else started
    return None


def keyid(encpipe, spawn, args, option=None, env=None):
    """The key ids `encpipe keyid ARGS` prints; its error, when it fails, as
    ChildRefused (encpipe's option renamed to `option`, the one the user gave).
    `env`: the child's environment, else this one's without secret variables."""
    return Started(encpipe, spawn, args, option, env).result()


class Started:
    """`encpipe keyid ARGS` started (as keyid() runs it); result() waits for it and
    gives what keyid() gives, or raises what keyid() raises; stop() ends it unread
    (its caller failed first, or was stopped)."""

    def __init__(self, encpipe, spawn, args, option=None, env=None):
        self.encpipe, self.args, self.option = encpipe, args, option
        self.errs = childerr.ChildStderr(pass_on=False)  # its warnings: every later encpipe gives them
        self.proc = None
        try:
            with sigthreads.held():  # started and recorded in one step: a signal meanwhile stops it (below)
                # the key options name every key it reads (no secret variable); it runs the key commands
                self.proc, _ = childerr.started(spawn, [*encpipe, "keyid", *args], stderr_of=self.errs,
                                                start=subprocess.Popen, stdin=subprocess.DEVNULL,
                                                stdout=subprocess.PIPE,
                                                env=env or child_env(os.environ, needs=KEY_COMMAND_NEEDS))
        except OSError as e:  # ENCPIPE missing, a directory, not executable; or out of descriptors (74)
            if ran_out(e):
                raise IOFailure(f"cannot run encpipe: {ran_out(e)}") from None
            raise InputUnavailable(f"cannot run encpipe: {e.filename or encpipe[0]}") from None
        except BaseException:
            if self.proc is not None:
                self.stop()
            raise

    def stop(self):
        childerr.stop(self.proc)
        self.proc.stdout.close()
        self.errs.wait()

    def result(self):
        try:
            with self.proc.stdout:
                out = childerr.read_bounded(self.proc.stdout, KEYIDS_MAX)
        except BaseException:
            childerr.stop(self.proc)
            raise
        returncode, (message, hint) = childerr.waited(self.proc), self.errs.wait()
        if returncode == 0:
            return out.decode("ascii", "replace").split()
        status, args, option = childerr.exit_status(returncode), self.args, self.option
        message = message or f"encpipe keyid failed with status {status}"
        if option:  # encpipe's name for the option (the first word of ARGS, before its =VALUE) is the script's
            theirs = args[0].partition("=")[0]
            message, hint = (option + text[len(theirs):] if text and text.startswith(theirs) else text
                             for text in (message, hint))
            if not message.startswith(option):
                message = f"{option}: {message}"
        raise ChildRefused(message, status, hint)


def _read_ahead(path):
    """Whether a keyring may be read now and again later: not standard input (nor a
    descriptor 0 to 2, which FdSecrets leaves as they are). A /dev/fd/N above 2, or a
    path that names a FIFO, a device or a socket, was read once by FdSecrets, whose
    spawn lends keyid its copy, as every later encpipe."""
    match = FD_PATH.fullmatch(path)
    return not (path in ("-", "/dev/stdin") or (match and int(match.group(1)) <= 2))


def _openable(path, option):
    if path in ("-", "/dev/stdin") or FD_PATH.fullmatch(path):  # standard input; a descriptor (FdSecrets's)
        return
    short = b"-"  # what a short regular file holds, read once it is opened (else not empty)
    try:
        info = os.stat(path)
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(21, os.strerror(21))
        if stat.S_ISREG(info.st_mode):  # not a FIFO or device: opening one may take or block what it holds
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY)
            try:
                short = os.read(fd, 65) if info.st_size <= 64 else short
            finally:
                os.close(fd)
    except OSError as e:
        raise unreadable(f"{option}: cannot read {path}: {e.strerror or e}", e) from None
    if stat.S_ISREG(info.st_mode) and info.st_size > MAX_SECRET_BYTES:
        raise UsageError(f"{option}: {path}: more than {MAX_SECRET_BYTES} bytes; not a key or passphrase source")
    if not short.rstrip(b"\r\n"):  # as encpipe reads it, trailing CR and LF dropped: every encpipe it runs
        raise UsageError(f"{option}: {path}: the passphrase is empty")  # would refuse it, file after file (64)
