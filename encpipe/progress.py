"""--progress: bytes done, rate and elapsed time on standard error, and with a
known total (a regular file, or seal --size N), the percentage and the ETA.

On a terminal the line is redrawn in place; otherwise one plain line is
written every few seconds, as log files and `pv -n` users expect. A command
that may read its input twice (open, rewrap) reports its first pass, which
checks and writes nothing, as "verifying", then the pass that writes.
"""

import time

from .stdio import write_quietly

LOG_INTERVAL = 5.0
TTY_INTERVAL = 0.25
_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def human_bytes(n):
    value = float(n)
    for unit in _UNITS:
        if value < 1024 or unit == _UNITS[-1]:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def clock_time(seconds):
    """1:05 or 2:03:04."""
    minutes, secs = divmod(int(seconds + 0.5), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def input_size(stream):
    """The bytes left in `stream` when it is a regular file, else None."""
    import os
    import stat

    try:
        fd = stream.fileno()
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None
        return max(0, info.st_size - stream.tell())
    except (AttributeError, OSError, ValueError):
        return None


class ProgressReporter:
    """Called with the running byte count after each chunk; cheap between reports."""

    def __init__(self, stream, label, clock=None, total=None):
        self._stream, self._label, self.total = stream, label, total
        self._clock = clock = clock or time.monotonic
        self._tty = stream.isatty()
        self._interval = TTY_INTERVAL if self._tty else LOG_INTERVAL
        self._start = clock()
        self._next = self._start + self._interval
        self._done = 0

    def __call__(self, done):
        self._done = done
        now = self._clock()
        if now >= self._next:
            self._next = now + self._interval
            self._emit(now, final=False)

    def finish(self):
        self._emit(self._clock(), final=True)

    def _emit(self, now, final):
        elapsed = max(now - self._start, 1e-9)
        rate = self._done / elapsed
        done = human_bytes(self._done)
        if self.total:
            percent = min(100, self._done * 100 // self.total)
            done = f"{percent}% {done} of {human_bytes(self.total)}"
        line = f"encpipe: {self._label}: {done} in {elapsed:.1f} s ({human_bytes(rate)}/s)"
        if self.total and not final and rate > 0 and self._done < self.total:
            line += f", ETA {clock_time((self.total - self._done) / rate)}"
        write_quietly(self._stream, "\r\033[K" + line + ("\n" if final else "") if self._tty else line + "\n")


class TwoPassReporter:
    """Progress of a run that may read its input twice: `check` is called during a
    first pass (its lines say "verifying"), the reporter itself during the pass
    that writes (its lines, the command's label). The pass that writes is reported
    0 as it begins after a first pass: the first pass's final line is written then,
    and the second pass's clock starts. With one pass, a ProgressReporter's lines."""

    FIRST = "verifying"

    def __init__(self, stream, label, clock=None, total=None):
        self._new = lambda name: ProgressReporter(stream, name, clock, total)
        self._label, self._checking = label, False
        self._first, self._output = self._new(self.FIRST), self._new(label)

    def check(self, done):
        self._checking = True
        self._first(done)

    def __call__(self, done):
        if self._checking:
            self._checking = False
            self._first.finish()
            self._output = self._new(self._label)
        self._output(done)

    def finish(self):
        self._output.finish()
