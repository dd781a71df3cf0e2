"""Spooling a pipe as ciphertext: an unlinked private temporary file that a
reader tees into while it authenticates, then reads back from."""

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


def private_spool(tmpdir=None):
    """An unlinked temporary file (O_TMPFILE, or unlinked at once: never named), for
    a spooled pipe or the witnesses of a first pass."""
    import tempfile

    try:
        return tempfile.TemporaryFile(dir=tmpdir)
    except OSError as e:
        raise IOFailure(f"cannot create a temporary file (TMPDIR): {e.strerror or e}") from None


def rewind(spool):
    try:
        spool.flush()
        spool.seek(0)
    except OSError as e:
        raise IOFailure(f"cannot spool the input to a temporary file: {e.strerror or e}") from None
