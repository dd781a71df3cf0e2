"""Spooling a pipe as ciphertext: an unlinked private temporary file that a
reader tees into while it authenticates, then reads back from."""

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
    import tempfile

    try:
        spool = tempfile.TemporaryFile(dir=tmpdir)
    except OSError as e:
        raise IOFailure(f"cannot create a temporary file (TMPDIR): {e.strerror or e}") from None
    try:
        yield spool
    finally:
        try:
            spool.close()
        except OSError:
            pass  # the descriptor is closed all the same; the file was never named


def rewind(spool):
    try:
        spool.flush()
        spool.seek(0)
    except OSError as e:
        raise IOFailure(f"cannot spool the input to a temporary file: {e.strerror or e}") from None
