"""rclone's processes as streams: `rclone cat` as a reader, `rclone rcat` as a
writer (for storage.Rclone). A failure of rclone is an error, never a short file."""

from ..errors import IOFailure


class Download:
    """rclone cat's output; a failure of rclone is an error, not a short file."""

    def __init__(self, proc, where):
        self.proc, self.where = proc, where

    def read(self, size=-1):
        block = self.proc.stdout.read(size)
        if not block and (size is None or size != 0) and self.proc.wait() != 0:
            raise OSError(f"rclone cannot read {self.where}")
        return block

    def readinto(self, buffer):
        block = self.read(len(buffer))
        buffer[: len(block)] = block
        return len(block)

    def seekable(self):
        return False

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.stdout.close()
        self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Upload:
    def __init__(self, proc, where):
        self.proc, self.where = proc, where

    def write(self, block):
        try:
            self.proc.stdin.write(block)
        except BrokenPipeError:
            self.close()

    def close(self):
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        err = self.proc.stderr.read()
        if self.proc.wait() != 0:
            detail = (err.decode(errors="replace").strip().splitlines() or ["failed"])[-1]
            raise IOFailure(f"cannot upload {self.where}: {detail}")
