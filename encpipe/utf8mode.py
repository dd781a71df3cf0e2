"""Names read as UTF-8 whatever the locale: a script's process runs in Python's UTF-8 mode.

A file name, an argument and the environment are bytes; Python reads them in
the locale's charset, unless in UTF-8 mode (which a C or POSIX locale turns on
by itself). Under another charset (ISO-8859-1, say) the tools gave the UTF-8
name `café_...` as "cafÃ©_..." in their JSON and on their lines, and a name whose
bytes are not UTF-8 as text with no `<key>_base64` (README, "Names that are not
UTF-8 in JSON"), and the same database had another metrics label than under
UTF-8. So an entry point calls ensure() first: in a process not in UTF-8 mode
whose file system encoding is not UTF-8 it executes the same command again
with `-X utf8`, and PYTHONUTF8=1 in the environment for the Python processes
it starts. The bytes each name stands for are the same either way.
"""

import codecs
import os
import sys
from contextlib import contextmanager


def ensure():
    """Execute this process's command again in UTF-8 mode when it reads names in
    another charset; else return (at once: no import, no system call)."""
    if sys.flags.utf8_mode or sys.getfilesystemencoding() == "utf-8":
        return
    if os.environ.get("PYTHONUTF8") == "1" or not sys.executable:  # executed so already (an -X utf8=0 of
        return  # its own came after ours), or no interpreter to execute: as it is, never a loop
    os.environ["PYTHONUTF8"] = "1"
    command = list(sys.orig_argv)
    os.execv(sys.executable, [command[0], "-X", "utf8", *command[1:]])


@contextmanager
def terminal_charset(getpass):
    """getpass reading the terminal in its locale's charset: in UTF-8 mode (ensure),
    which the scripts run in whatever the locale, it read UTF-8, and a passphrase
    typed under ISO-8859-1 (`ä` one byte) failed, or was another one than the text
    it had always been (its UTF-8 bytes are what keys are made from)."""
    import io
    import locale

    encoding = locale.getencoding()  # the locale's, whatever the UTF-8 mode
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
