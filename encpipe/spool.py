"""Spooling a pipe as ciphertext: an unlinked private temporary file that a
reader tees into while it authenticates, then reads back from."""

import os
from contextlib import contextmanager

from .errors import IOFailure


class Tee:
    """A reader that copies what it reads from `src` to `spool`."""

    def __init__(self, src, spool):
        self._src, self._spool = src, spool

    def readinto(self, view):
        n = self._src.readinto(view)
        if n:
            try:
                self._spool.write(view[:n])
            except OSError as e:
                raise IOFailure(f"cannot spool the input to a temporary file: {e.strerror or e}") from None
        return n

    def seekable(self):
        return False


@contextmanager
def private_spool(tmpdir=None):
    """An unlinked temporary file (O_TMPFILE, or unlinked at once: never named), for
    a spooled pipe or the witnesses of a first pass. Its closing raises nothing: what
    it still buffers is bytes of a run that already failed (a full TMPDIR), whose
    error must stay the one reported, not a bare OSError of the flush again."""
    where = tmpdir or _named_tmpdir()
    spool = _unnamed(where or "/tmp")
    if spool is None:  # tempfile says why, or finds another way (a file system without O_TMPFILE)
        import tempfile

        try:  # in the directory named, if any: tempfile would go on to /tmp, where TMPDIR was set not to
            spool = tempfile.TemporaryFile(dir=where)
        except OSError as e:
            raise IOFailure(f"cannot create a temporary file (TMPDIR): {e.strerror or e}") from None
    try:
        yield spool
    finally:
        try:
            spool.close()
        except OSError:
            pass  # the descriptor is closed all the same; the file was never named


_O_TMPFILE = getattr(os, "O_TMPFILE", 0)  # 0: not Linux


def _named_tmpdir():
    """The first of TMPDIR, TEMP and TMP that is set (where tempfile.gettempdir looks
    first), else None."""
    return next((os.environ[n] for n in ("TMPDIR", "TEMP", "TMP") if os.environ.get(n)), None)


def _unnamed(where):
    """What tempfile.TemporaryFile(dir=where) opens first on Linux (O_TMPFILE, with
    its mode), through a link to the directory as well, without importing tempfile
    (shutil, random: about 4 ms of `open FILE`'s start); None when that fails, and
    tempfile tries its way in the same directory (private_spool)."""
    if not _O_TMPFILE:
        return None
    try:
        # tempfile's flags but O_NOFOLLOW: here it would refuse a TMPDIR that is a link to a directory, and
        # tempfile then named the file there before it unlinked it (O_TMPFILE names nothing, wherever it leads)
        fd = os.open(where, os.O_RDWR | os.O_EXCL | os.O_CLOEXEC | _O_TMPFILE, 0o600)
    except OSError:
        return None
    return open(fd, "w+b")


def rewind(spool):
    try:
        spool.flush()
        spool.seek(0)
    except OSError as e:
        raise IOFailure(f"cannot spool the input to a temporary file: {e.strerror or e}") from None
