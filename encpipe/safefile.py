"""Atomic file writes: a file is either as it was or completely replaced."""

import os
import secrets


def write_atomically(path, write, *, mode=0o600):
    """Call write(binary file) on a hidden temp beside `path`, fsync it, rename it
    over `path` and fsync the directory; on any failure `path` is as it was."""
    directory = os.path.dirname(path) or "."
    temp = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(fd, "wb") as dst:
            write(dst)
            dst.flush()
            os.fsync(dst.fileno())
            now, there = os.fstat(dst.fileno()), os.lstat(temp)
            if (now.st_dev, now.st_ino) != (there.st_dev, there.st_ino):
                raise OSError(f"{temp} was replaced while being written")
        os.rename(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise
    dfd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)
