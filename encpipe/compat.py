"""What Python 3.9 and 3.10, the oldest that setup.cfg admits, lack of what encpipe uses.

Each function is the standard library's where the interpreter has it, the same
thing done by hand where it has not. Without them encpipe-backup and
encpipe-restore failed every run on 3.9 and 3.10 (`Popen(process_group=)`,
`locale.getencoding`: an internal error, 70), and pipes kept 64 KiB there
(`fcntl.F_SETPIPE_SZ`). tests/test_compat.py takes each fallback on any
interpreter; tests/test_python_versions.py checks that nothing else newer than
3.9 is used. Nothing here is imported at start-up that a command does not need.
"""

import sys

F_SETPIPE_SZ = 1031  # Linux's (F_LINUX_SPECIFIC_BASE + 7, <linux/fcntl.h>): Python's fcntl names it from 3.10
POPEN_PROCESS_GROUP = sys.version_info >= (3, 11)  # Popen(process_group=...)


def set_pipe_size(fd, size):
    """fcntl(fd, F_SETPIPE_SZ, size): OSError as fcntl's."""
    import fcntl

    fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", F_SETPIPE_SZ), size)


def locale_encoding():
    """locale.getencoding() (3.11): the charset of the locale (LC_CTYPE), whatever the
    UTF-8 mode; before 3.11, as CPython computes it: nl_langinfo(CODESET), or UTF-8
    when that names none."""
    import locale

    getencoding = getattr(locale, "getencoding", None)
    if getencoding is not None:
        return getencoding()
    return locale.nl_langinfo(locale.CODESET) or "utf-8"


def orig_argv():
    """sys.orig_argv (3.10): the interpreter's own command line, or None before 3.10."""
    return getattr(sys, "orig_argv", None)


def in_own_group(options):
    """Popen's options with `process_group` (3.11; None: not asked) taken out when this
    Python's Popen lacks it: returns (options, pgid or None), the pgid for the child
    to set itself (os.setpgid(0, pgid) between fork and exec, as Popen does)."""
    if "process_group" not in options or (POPEN_PROCESS_GROUP and options["process_group"] is not None):
        return options, None
    options = dict(options)
    return options, options.pop("process_group")
