"""Names read as UTF-8 whatever the locale: a script's process runs in Python's UTF-8 mode.

A file name, an argument and the environment are bytes; Python reads them in
the locale's charset, unless in UTF-8 mode (which a C or POSIX locale turns on
by itself). Under another charset (ISO-8859-1, say) the tools gave the UTF-8
name `café_...` as "cafÃ©_..." in their JSON and on their lines, and a name whose
bytes are not UTF-8 as text with no `<key>_base64` (README, "Names that are not
UTF-8 in JSON"), and the same database had another metrics label than under
UTF-8. So an entry point calls ensure() first: in a process not in UTF-8 mode
whose file system encoding is not UTF-8 it executes the same command again
with `-X utf8` (its children get the environment it was given, PYTHONUTF8 as
it was). The bytes each name stands for are the same either way. A SIGINT
held by then (earlysig: every entry point holds it first), or coming, crosses
that exec blocked, and the new process takes it once it holds it in turn.
"""

import codecs
import os
import sys
from contextlib import contextmanager


_AGAIN = "ENCPIPE_UTF8_AGAIN"  # in the command executed again only: ensure() takes it out at once
_BLOCKED = "sigint-blocked"  # after the pid, when SIGINT was blocked for the exec, to be unblocked (earlysig)


def ensure():
    """Execute this process's command again in UTF-8 mode when it reads names in
    another charset; else return (at once: no import, no system call unless marked). Its children
    get the environment it was given: PYTHONUTF8=1 in it, a key command written in
    Python printed a passphrase in UTF-8, not in the locale's charset as it had to
    `encpipe seal`: another one, which opened none of the backups it had sealed."""
    again = os.environ.pop(_AGAIN, None)  # the mark of the command executed again: never a child's
    if again is not None:  # this process's own (its pid, which the exec keeps), not one its caller gave
        pid, _, again = again.partition(" ")
        again = again if pid == str(os.getpid()) else None
    if again == _BLOCKED:  # a SIGINT that came meanwhile pending: noted now, the entry point's hold() done
        from .earlysig import unblock
        unblock()
    if sys.flags.utf8_mode or sys.getfilesystemencoding() == "utf-8" or again is not None or not sys.executable:
        return  # executed again already (an -X utf8=0 of its own came after ours), or no interpreter: never a loop
    try:
        command = _command()
    except ValueError:  # not to be written back in the locale's charset: as it is
        return
    from . import earlysig

    mask, already = earlysig.blocked_for_exec()  # a SIGINT held, or coming, crosses the exec pending
    os.environ[_AGAIN] = f"{os.getpid()} {'held' if already else _BLOCKED}"  # blocked by its caller: left so
    try:
        os.execv(sys.executable, [command[0], b"-X", b"utf8", *command[1:]])
    except (OSError, ValueError):  # an argv[0] that names no interpreter (exec -a), or an interpreter's
        # path not to be written in the locale's charset: as it is, not a traceback
        del os.environ[_AGAIN]
        earlysig.unblocked(mask)


def _command():
    """This process's command as the kernel gave it, bytes: sys.orig_argv is text read
    by the C library's charset tables, which Python's codec for that charset does not
    always write back as the same bytes (under BIG5, A1 FE became A2 41, a name of
    another file, and A1 45 a UnicodeEncodeError); without /proc, sys.orig_argv
    written back (ValueError when it cannot be, or on Python 3.9, which has none)."""
    from .compat import orig_argv

    try:
        with open("/proc/self/cmdline", "rb") as f:
            words = f.read().split(b"\0")[:-1]
    except OSError:
        words = []
    given = orig_argv()  # None before Python 3.10: /proc's words, if any, are all there is
    if given is None and not words:
        raise ValueError("no command line to execute again")
    if given is not None and len(words) != len(given):  # not this process's own (no /proc), or changed
        words = [os.fsencode(word) for word in given]
    return words


@contextmanager
def terminal_charset(getpass):
    """getpass reading the terminal in its locale's charset: in UTF-8 mode (ensure),
    which the scripts run in whatever the locale, it read UTF-8, and a passphrase
    typed under ISO-8859-1 (`ä` one byte) failed, or was another one than the text
    it had always been (its UTF-8 bytes are what keys are made from)."""
    import io

    from .compat import locale_encoding

    encoding = locale_encoding()  # the locale's, whatever the UTF-8 mode
    # ASCII: a C or POSIX locale, which Python reads as UTF-8 by itself (PEP 538, 540)
    if not sys.flags.utf8_mode or codecs.lookup(encoding).name in ("utf-8", "ascii"):
        yield
        return

    class Io:  # getpass's io, whose TextIOWrapper(tty) reads the terminal
        FileIO = io.FileIO

        @staticmethod
        def TextIOWrapper(raw, *args, **kwargs):
            return io.TextIOWrapper(raw, *args, **{"encoding": encoding, **kwargs})

    saved, getpass.io = getpass.io, Io
    try:
        yield
    finally:
        getpass.io = saved
