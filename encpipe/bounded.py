"""Reading a file as it was found: its size when reading began, not more bytes a
writer adds meanwhile (a file that grows cannot make a read endless)."""

import io
import os
import stat

from .errors import InvalidStream


class AsListed(io.RawIOBase):
    """A regular file opened unbuffered (`raw`) read as it was listed: its first
    `size` bytes, then an error, not more bytes, if it has grown since (a writer
    cannot make a read endless)."""

    def __init__(self, raw, name, size):
        self.raw, self.name, self.size = raw, name, size

    def readable(self):
        return True

    def seekable(self):
        return True

    def fileno(self):
        return self.raw.fileno()

    def tell(self):
        return self.raw.tell()

    def seek(self, offset, whence=os.SEEK_SET):
        if whence == os.SEEK_END:
            offset, whence = self.size + offset, os.SEEK_SET
        return self.raw.seek(offset, whence)

    def readinto(self, buffer):
        left = self.size - self.raw.tell()
        if left > 0:
            return self.raw.readinto(memoryview(buffer)[:left])
        if os.fstat(self.raw.fileno()).st_size > self.size:
            self.grown()
        return 0

    def grown(self):
        raise OSError(f"{self.name} changed while it was read")

    def close(self):
        self.raw.close()
        super().close()


class AsFound(AsListed):
    """A file given to read (a FILE argument, standard input) read as it was when
    reading started: its size then, and InvalidStream (65) if it has grown by the
    end (a writer that extends it faster than it is read cannot make it endless)."""

    owner = None  # the reader whose descriptor `raw` reads, closed with this one

    def grown(self):
        raise InvalidStream(f"{self.name} grew while it was read")

    def close(self):
        super().close()
        if self.owner is not None:
            self.owner.close()


def as_found(src, name):
    """`src` (a binary reader) bounded as AsFound from where it stands when it is a
    regular file; else `src` itself (a pipe ends when its writer does)."""
    try:
        fd = src.fileno()
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return src
        here, size = src.tell(), os.fstat(fd).st_size
    except (AttributeError, OSError, ValueError):
        return src
    raw = src if isinstance(src, io.RawIOBase) else getattr(src, "raw", None)
    if raw is None or raw.tell() != here:  # bytes already in src's buffer: read from `here` on
        raw = io.FileIO(fd, "rb", closefd=False)
        raw.seek(here)
    bounded = AsFound(raw, name, size)
    bounded.owner = src
    return io.BufferedReader(bounded, 1 << 20)
