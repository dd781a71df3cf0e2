"""How many worker threads, and what --chunk-size means: the measured defaults
(README "Performance")."""

import os
import time

from .errors import UsageError
from .lazyre import Pattern
from .textform import hidden_value, shown_value

MAX_THREADS = 64
AUTO_THREADS_MAX = 4
AUTO_MIN_CHUNK = 1 << 20
AUTO_BUFFERS = 16 << 20  # keeps peak RSS within 48 MiB at every chunk size
_SIZE = Pattern(r"([0-9]+)([KkMm]?)(i?[Bb])?")  # ASCII digits, whole: no space, newline or sign
_WHOLE = Pattern(r"-?[0-9]+")
_DECIMAL = Pattern(r"[0-9]+(\.[0-9]+)?")  # not int()'s other digits ('١٢'), spaces, '_' or '+'


def decimal_number(text):
    """`text`, ASCII digits with an optional fraction, as a float; else None (not
    float()'s nan, inf, exponents, signs, spaces, '_' or other scripts' digits)."""
    return float(text) if isinstance(text, str) and _DECIMAL.fullmatch(text) else None


def int_option(text, name, low, high, shown=True):
    """`text` (ASCII digits) as a whole number from `low` to `high`; a message shows it
    only when `shown` (not a --passphrase-fd value: it may be a passphrase typed in its
    place), and then as shown_value does (a key or what may be a passphrase: not shown)."""
    value_text = f", not {shown_value(text)}" if shown else " (the value, not shown, may be a passphrase)"
    if not isinstance(text, str) or not _WHOLE.fullmatch(text):
        raise UsageError(f"{name} must be a whole number{value_text}")
    value = int(text)
    if not low <= value <= high:
        raise UsageError(f"{name} must be from {low} to {high}" +
                         (f", not {hidden_value(text) or value}" if shown else value_text))
    return value


def thread_option(args):
    """--threads as a number, or None for auto."""
    text = args.get("--threads")
    return None if text in (None, "auto") else int_option(text, "--threads", 1, MAX_THREADS)


def threads(args, chunk_size=None, pipe_end=False):
    """--threads N, or for auto one thread wherever a second does not pay (measured
    in README "Performance"): a second thread runs only where the cipher library
    releases the GIL for chunks of this size (aead.parallel: pycryptodome;
    `cryptography` 50 or later, but not 51's update_into by pieces for chunks over
    8 MiB; with an older `cryptography` threads only contend), for chunks of 1 MiB
    or more (`chunk_size`, default the file default), when neither end of the
    stream is a pipe whose other program needs the cores (`pipe_end`), on cores
    that no other process keeps busy (busy_cores), and with at most 16 MiB of chunk
    buffers in all (two a thread where the cipher writes into a second)."""
    from . import aead  # here: a script that takes a number (--passphrase-fd N) loads no cipher
    from . import format as fmt

    explicit = thread_option(args)
    if explicit:
        return explicit
    chunk_size = chunk_size or 1 << fmt.FILE_CHUNK_LOG2
    if pipe_end or chunk_size < AUTO_MIN_CHUNK or not aead.parallel(chunk_size):
        return 1
    free = len(os.sched_getaffinity(0)) - busy_cores()
    return max(1, min(AUTO_THREADS_MAX, free, AUTO_BUFFERS // (chunk_size * aead.buffers_per_chunk(chunk_size))))


BUSY_SAMPLES = 3
BUSY_SAMPLE_GAP = 0.001  # seconds


def busy_cores():
    """Other processes that stay runnable: the fewest seen in up to BUSY_SAMPLES
    looks at the runnable count, 1 ms apart, stopping at the first that sees none.
    One look alone catches a momentary process (a kernel thread, the last moments
    of a script's previous command) in one run of twelve here with no other work
    running, and would cost that run its second thread; a process that keeps a core
    busy is runnable in every look. The load average lags by a minute, and would
    count the previous command of a script."""
    fewest = None
    for sample in range(BUSY_SAMPLES):
        if sample:
            time.sleep(BUSY_SAMPLE_GAP)
        now = runnable_others()
        fewest = now if fewest is None else min(fewest, now)
        if fewest == 0:
            break
    return fewest


def runnable_others():
    """Processes runnable right now besides this one (the 4th field of /proc/loadavg
    counts this one too)."""
    try:
        with open("/proc/loadavg") as f:
            return max(0, int(f.read().split()[3].split("/")[0]) - 1)
    except (OSError, ValueError, IndexError):
        return int(os.getloadavg()[0])


def chunk_log2(text):
    """log2 of a --chunk-size, or None for the default (auto, or not given)."""
    if text is None or text == "auto":
        return None
    from . import format as fmt

    match = _SIZE.fullmatch(text)
    if not match:
        raise UsageError(f"--chunk-size: cannot read {shown_value(text)}; use e.g. 64K or 1M")
    size = int(match.group(1)) << {"": 0, "k": 10, "m": 20}[match.group(2).lower()]
    log2 = size.bit_length() - 1
    if not fmt.MIN_CHUNK_LOG2 <= log2 <= fmt.MAX_CHUNK_LOG2 or size != 1 << log2:  # 0: log2 -1, never shifted
        raise UsageError("--chunk-size must be a power of two from 16K to 16M")
    return log2
