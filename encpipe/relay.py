"""Records read, transformed and consumed in order, by one thread or by several
(stream.py's payloads: a record is a chunk and its tag, as stored).

A `Chunk` is a reused buffer, and a spare of the same size for a cipher that
writes into a second buffer; a `RecordReader` fills it, telling the last record
by reading ahead; `run_records` reads, transforms and consumes every record, with
`threads` workers taking turns (Relay), so that memory does not grow with the
input and records leave in order.
"""

import mmap
import threading

from . import sigthreads
from .errors import InvalidStream, IOFailure


def readinto_full(src, view):
    """Fill `view` from `src`; fewer bytes only at end of input."""
    filled = 0
    try:
        while filled < len(view):
            n = src.readinto(view[filled:])
            if not n:
                break
            filled += n
    except OSError as e:
        raise IOFailure(f"cannot read input: {e.strerror or e}") from None
    return filled


def zeroed(size):
    """A writable buffer of `size` zero bytes (an anonymous private mapping) whose
    pages cost nothing until first written: bytearray(size) writes every byte of a
    4 MiB chunk buffer, about 2.5 ms, for an input of a few bytes as well."""
    return mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)


class Chunk:
    """A record's buffer, and a spare of the same size (made when first asked for) for a
    cipher that seals and opens into a second buffer: swap() makes it the record's.
    `record` is the length of a full record of its run (the reader's `size`): whether
    the spare is used is decided by it, once for the run, so that a short last record
    of a run whose full ones go without it does not touch a spare (of up to the
    largest spare, SPARE_MAX: peak memory above the run's)."""

    __slots__ = ("buf", "_spare", "length", "counter", "last", "measured", "record")

    def __init__(self, size):
        self.buf = memoryview(zeroed(size))
        self._spare = None
        self.length = self.counter = self.record = 0
        self.last = False
        self.measured = None

    @property
    def data(self):
        return self.buf[: self.length]

    @property
    def spare(self):
        if self._spare is None:
            self._spare = memoryview(zeroed(len(self.buf)))
        return self._spare

    def swap(self):
        self.buf, self._spare = self.spare, self.buf


class RecordReader:
    """Reads records of `size` bytes; the one followed by EOF (or, with `holdback`,
    by only the last `holdback` bytes of the input, kept as `trailer`) is the last.
    Chunk buffers need room for `size + holdback + 1` bytes: it reads that far ahead."""

    def __init__(self, src, size, holdback=0):
        self._src, self._size, self._holdback = src, size, holdback
        self._lookahead = b""
        self._counter = 0
        self.trailer = None

    def fill(self, chunk):
        chunk.counter, chunk.length, chunk.last, chunk.record = self._counter, 0, False, self._size
        self._counter += 1
        head, want = len(self._lookahead), self._size + self._holdback + 1
        chunk.buf[:head] = self._lookahead
        n = head + readinto_full(self._src, chunk.buf[head:want])
        if n == want:
            self._lookahead = bytes(chunk.buf[self._size : n])
            chunk.length = self._size
            return chunk
        if n < self._holdback:
            raise InvalidStream("truncated stream: it ends before its trailer")
        self._lookahead = b""
        self.trailer = bytes(chunk.buf[n - self._holdback : n])
        chunk.length, chunk.last = n - self._holdback, True
        return chunk


def run_records(reader, buffer_size, transform, consume, threads, cipher=None):
    """Read, transform and consume every record, in order, until the last one; `cipher`
    imports here what its records need (two workers' imports under memory exhaustion hung)."""
    chunk = reader.fill(Chunk(buffer_size))
    if threads <= 1 or chunk.last:
        while True:
            consume(transform(chunk))
            if chunk.last:
                return
            chunk = reader.fill(chunk)
    if cipher is not None:
        cipher.prepare(chunk.length)  # a full one: the longest
    Relay(reader, transform, consume).run(chunk, threads, buffer_size)


class Relay:
    """Worker threads, each with its own buffer, take turns: read the next record
    (one reader at a time), transform it (in parallel; the crypto releases the GIL),
    then wait until every earlier record was consumed and consume it. One thread per
    core, each doing all three steps, switches less than a reader feeding a pool.

    A failure belongs to its record: records before it are still consumed, none after
    it is, and it is raised once its turn comes. The calling thread only waits, so it
    can raise at once even while a worker is blocked reading a stalled pipe.
    """

    def __init__(self, reader, transform, consume):
        self._reader, self._transform, self._consume = reader, transform, consume
        self._read_lock = threading.Lock()
        self._turn = threading.Condition()
        self._finished = threading.Event()
        self._next_to_consume = 0
        self._reading_done = False
        self._error = None

    def run(self, first, threads, buffer_size):
        chunks = [first] + [Chunk(buffer_size) for _ in range(threads - 1)]
        workers = [
            threading.Thread(target=self._work, args=(chunk, chunk is first), name="encpipe", daemon=True)
            for chunk in chunks
        ]
        for worker in workers:
            sigthreads.start(worker)
        try:
            self._finished.wait()
        except BaseException as e:  # KeyboardInterrupt: the workers stop at their next step
            self._finish(e)
            raise
        if self._error is not None:
            # Not joined: one may be blocked reading a pipe that will never deliver.
            # They are daemons, and consume nothing more.
            raise self._error
        for worker in workers:
            worker.join()

    def _work(self, chunk, filled):
        try:
            while self._step(chunk, filled) and not chunk.last:
                filled = False
        except BaseException as e:
            self._finish(e)

    def _step(self, chunk, filled):
        """Read, transform and consume one record; False when there is nothing more to do."""
        failure = None
        if not filled:
            with self._read_lock:
                if self._reading_done:
                    return False
                try:
                    self._reader.fill(chunk)
                except Exception as e:
                    failure = e
                if failure is not None or chunk.last:
                    self._reading_done = True
        if failure is None:
            try:
                self._transform(chunk)
            except Exception as e:
                failure = e
        return self._take_turn(chunk, failure)

    def _take_turn(self, chunk, failure):
        """Consume `chunk` once every earlier record was; False when the run has failed."""
        with self._turn:
            while self._next_to_consume != chunk.counter and self._error is None:
                self._turn.wait()
            if self._error is not None:
                return False
            if failure is None:
                try:
                    self._consume(chunk)
                except Exception as e:
                    failure = e
            if failure is not None:
                self._finish(failure)
                return False
            self._next_to_consume += 1
            self._turn.notify_all()
            if chunk.last:
                self._finished.set()
            return True

    def _finish(self, error):
        with self._turn:
            if self._error is None:
                self._error = error
            self._reading_done = True
            self._turn.notify_all()
            self._finished.set()
