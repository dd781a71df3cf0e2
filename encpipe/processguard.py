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
    run's one line: the run was out of memory, and said so (74) or ended before; any
    other such exception is printed as Python prints it."""
    sys.unraisablehook = _unraisable


def _unraisable(unraisable):
    if not isinstance(unraisable.exc_value, MemoryError):
        sys.__unraisablehook__(unraisable)


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
