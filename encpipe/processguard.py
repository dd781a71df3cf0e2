"""How each entry point (cli.run, run_script, set_up) sets the process up before
it reads a key: no core file, numbers of any length, no unraisable MemoryError."""

import sys


def whole_numbers():
    """Numbers of any length convert: Python's 4300-digit limit on int() would turn a
    long number in an option, a variable or /dev/fd/N into a traceback; converted,
    it meets the same range check (64) as any number out of range. Every input that
    reaches int() is bounded (an argument, a variable, a name)."""
    if hasattr(sys, "set_int_max_str_digits"):
        sys.set_int_max_str_digits(0)  # novermin: 3.9.14 and 3.10.7 have it too


def no_unraisable_memory_errors():
    """A MemoryError that Python cannot raise (in its own shutdown, at an address-space
    limit: Python 3.9's threading._shutdown) is not printed as a traceback after the
    run's one line: the run was out of memory, and said so (74) or ended before. Nor
    is Python's `Signal 14 ignored due to race condition`: the SIGALRM of a held
    signal's retry (sigdefer) that came as its handler was put back, the retry
    stopped by a second signal; it was two lines more on standard error, and a
    standard error nobody reads kept the run alive there, the second signal taken.
    Any other such exception is printed as Python prints it."""
    sys.unraisablehook = _unraisable


def _unraisable(unraisable):
    if not isinstance(unraisable.exc_value, MemoryError) and not _retry_race(unraisable.exc_value):
        sys.__unraisablehook__(unraisable)


def _retry_race(error):
    import signal

    return isinstance(error, OSError) and str(error) == f"Signal {int(signal.SIGALRM)} ignored due to race condition"


def no_core_dumps():
    """A process that holds keys and plaintext writes no core file (plaintext never
    goes to disk, nor a key): its core size limit is 0 (children inherit it, and may
    raise it), and it is not dumpable (prctl PR_SET_DUMPABLE, which also covers a
    core_pattern pipe, which ignores the limit; execve resets it in a child). Not
    dumpable, its /proc files are root's: another process of the same user can no
    longer read its memory or trace it."""
    import resource

    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, resource.getrlimit(resource.RLIMIT_CORE)[1]))
    except (OSError, ValueError):
        pass
    try:
        import ctypes  # already imported by pycryptodome's backend

        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE, 0
    except (OSError, AttributeError):  # not Linux
        pass


def ctypes_backend():
    """pycryptodome on its ctypes backend: its cffi one parses C declarations on every
    start (about 25 ms), and is no faster for our large calls; no_file_command() too."""
    sys.modules.setdefault("cffi", None)
    no_file_command()


def no_file_command():
    """pycryptodome's ctypes backend asks platform.architecture() before it loads a
    library, which runs the `file` command PATH finds, with this process's whole
    environment: a child that inherited every key and password variable
    (ENCPIPE_PASSPHRASE, PGPASSWORD, a vault token...), and one more process a start.
    The backend wants the linkage only to tell Windows: from the next import of a
    Crypto module on, platform.architecture() answers from the interpreter, running nothing."""
    if sys.platform != "win32" and _BeforeCrypto not in sys.meta_path:
        sys.meta_path.insert(0, _BeforeCrypto)


class _BeforeCrypto:
    """A finder that finds nothing: on sys.meta_path, it sees each import begin."""

    done = False

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        # a module of the package (its own, `import Crypto`, loads no library: platform, 1.3 ms, is spared
        # where only require_installed() imported it)
        if not cls.done and name.startswith("Crypto."):
            cls.done = True
            import functools
            import platform

            platform.architecture = functools.partial(_architecture, _file_command=platform.architecture)
        return None


def _architecture(executable=sys.executable, bits="", linkage="", *, _file_command=None):
    """The interpreter's own, as pycryptodome asks it; any other question goes to
    Python's (which runs `file`: not encpipe's)."""
    if executable != sys.executable or bits or linkage:
        return _file_command(executable, bits, linkage)
    import struct

    return f"{struct.calcsize('P') * 8}bit", "ELF" if sys.platform.startswith(("linux", "freebsd")) else ""
