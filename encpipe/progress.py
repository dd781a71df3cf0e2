"""--progress: bytes done, rate and elapsed time on standard error.

On a terminal the line is redrawn in place; otherwise one plain line is
written every few seconds, as log files and `pv -n` users expect.
"""

import time

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


class ProgressReporter:
    """Called with the running byte count after each chunk; cheap between reports."""

    def __init__(self, stream, label, clock=time.monotonic):
        self._stream, self._label, self._clock = stream, label, clock
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
        line = (
            f"encpipe: {self._label}: {human_bytes(self._done)} in {elapsed:.1f} s"
            f" ({human_bytes(self._done / elapsed)}/s)"
        )
        if self._tty:
            self._stream.write("\r\033[K" + line + ("\n" if final else ""))
        else:
            self._stream.write(line + "\n")
        self._stream.flush()
