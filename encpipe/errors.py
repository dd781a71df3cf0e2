"""One exception hierarchy; each class maps to one documented exit code.

The exit codes follow BSD sysexits.h, so shell scripts can tell a damaged file
(65) from a missing key (78) or a full disk (74).
"""

import errno

# What the system ran out of, not a bug of encpipe's nor a file it cannot open or run:
# descriptors (EMFILE, ENFILE), processes or memory for a child (EAGAIN, ENOMEM).
SCARCE = frozenset({errno.EMFILE, errno.ENFILE, errno.EAGAIN, errno.ENOMEM})


class EncpipeError(Exception):
    """Base class. `exit_code` is what the CLI exits with; `hint` is optional advice."""

    exit_code = 70

    def __init__(self, message, hint=None):
        super().__init__(message)
        self.hint = hint


class UsageError(EncpipeError):
    """The command line, or a key or passphrase given on it, is malformed."""

    exit_code = 64


class SigningKeyGiven(UsageError):
    """A signing key was given where an encryption key belongs; the hint depends on the command."""


class InvalidStream(EncpipeError):
    """The input is not a valid encpipe stream: corrupt, tampered, truncated, too large."""

    exit_code = 65


class NotSigned(EncpipeError):
    """Signers were required (--signer, ENCPIPE_SIGNER) and none of them signed the file."""

    exit_code = 67


class MakerNotAuthenticated(NotSigned):
    """open --refuse-unauthenticated: anyone with a public key (an x25519-only file,
    no trusted signer), or any slot holder (a v1 file), could have made the file."""


class InputUnavailable(EncpipeError):
    """An input or key file cannot be opened or read."""

    exit_code = 66


class UnsafeDirectory(EncpipeError):
    """A directory to write in can be changed by another user (see safefile.py)."""

    exit_code = 73


class Changed(EncpipeError):
    """A file being replaced, or the one replacing it, was changed by someone else
    meanwhile; nothing was replaced (or the swap is reported). Try again."""

    exit_code = 75


class MissingDependency(EncpipeError):
    """A Python package encpipe needs (pycryptodome, docopt-ng) cannot be imported."""

    exit_code = 69


class IOFailure(EncpipeError):
    """Reading the data or writing the output failed (disk full, read-only target, I/O error)."""

    exit_code = 74


class NoMatchingKey(EncpipeError):
    """None of the supplied keys, passphrases or identities opens this file."""

    exit_code = 77


class NoKeyConfigured(EncpipeError):
    """No key source was given at all."""

    exit_code = 78


def bug_line(e):
    """The one line of a bug (an exception no code expected) in place of its traceback:
    its kind and where it was raised, never its words, which may hold what the code
    was handling (a passphrase, a key)."""
    tb = e.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = f" at {tb.tb_frame.f_code.co_filename.rpartition('/')[2]}:{tb.tb_lineno}" if tb is not None else ""
    return f"internal error: {type(e).__name__}{where} (a bug of encpipe's: please report it with the command that met it)"


# dlopen's words (compared in lower case) when memory runs out (ENOMEM under a memory limit):
# a segment, a TLS block, the object's descriptor or its zero-filled pages that cannot be had
_UNMAPPED = ("failed to map segment from shared object", "cannot allocate memory", "cannot map zero-fill pages",
             "cannot create shared object descriptor")
_NOT_MEMORY = ("Operation not permitted", "Permission denied")  # a noexec mount, a security module
# CPython's words for a lock it could not allocate (_thread's, _io's buffers', bz2's and lzma's):
# "can't allocate lock", "can't allocate read lock", "could not allocate lock"...
_LOCK_NOT_MADE = ("can't allocate ", "cannot allocate ", "could not allocate ", "unable to allocate ")


def ran_out(e):
    """The one line for `e` when it is a resource the system ran out of (memory,
    descriptors, processes, a thread), else None."""
    if isinstance(e, MemoryError):
        return "out of memory"
    if isinstance(e, OSError) and e.errno in SCARCE:
        return f"out of system resources: {e.strerror}"
    if isinstance(e, RuntimeError) and str(e) == "can't start new thread":
        return "out of system resources: cannot start a thread"
    if isinstance(e, RuntimeError) and _lock_not_made(str(e)):  # _thread's, as an import makes its
        return "out of memory"  # lock; _io's, as a file read (open_code: an import's) makes its buffer's
    if isinstance(e, ImportError) and any(w in str(e).lower() for w in _UNMAPPED) and not str(e).endswith(_NOT_MEMORY):
        return "out of memory"  # a library that cannot be loaded for want of memory
    if isinstance(e, (SystemError, RuntimeError)) and (e.__cause__ or e.__context__):  # the interpreter's, or
        return ran_out(e.__cause__ or e.__context__)  # an extension's (cryptography's Rust), from a MemoryError
    return None


def _lock_not_made(words):
    words = words.lower()
    return words.startswith(_LOCK_NOT_MADE) and words.endswith(" lock") and len(words.split()) <= 5


def reason(e):
    """What failed, in words: an OSError's strerror (no errno, no file name: the
    message names the file its own way), else the exception as it reads."""
    return getattr(e, "strerror", None) or str(e)


def unreadable(message, e):
    """The error for a file or descriptor that could not be read because of OSError `e`:
    InputUnavailable (66), or IOFailure (74) when what failed is a resource the system
    ran out of (descriptors, memory), which is not the file's doing. EAGAIN here is a
    descriptor that would block (BlockingIOError), not a fork refused: 66, as before."""
    scarce = ran_out(e) and not isinstance(e, BlockingIOError)
    return (IOFailure if scarce else InputUnavailable)(message)


def unexpected(e):
    """(one line, exit status) for an exception no code expected: a resource that ran
    out is 74 with its cause (ran_out), anything else a bug (bug_line, 70)."""
    words = ran_out(e)
    if words:
        return words, IOFailure.exit_code
    return bug_line(e), EncpipeError.exit_code
