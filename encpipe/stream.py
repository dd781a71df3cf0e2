"""The chunked payload: STREAM over AES-256-GCM, on file-like objects.

Plaintext is cut into chunks of `chunk_size` bytes. Chunk i is sealed under
the nonce `i` (11 bytes, big-endian) || `last` (1 byte, 1 for the final chunk),
and its 16-byte tag follows it. Only the final chunk may be short, and it may
be empty only when it is the only chunk. The reader tells the final chunk by
reading one byte ahead, so a stream is never accepted without its final chunk.

With several threads, each one reads a chunk, seals or opens it (pycryptodome
and `cryptography` 50 or later release the GIL; an older `cryptography` does
not, but reading does) and writes it in turn, so chunks leave in order. The
cipher comes from aead.py. Each thread owns one reused buffer, and a second
where the cipher writes into another (`cryptography` 51 and later): memory does
not grow with the input.

A `ledger` (format v2, see provenance.py) measures every record (ciphertext
|| tag, as stored) in the worker that sealed or opened it, before it is
decrypted, and adds the measures in order; `ledger.holdback` bytes at the end
of the input are not payload but the trailer, given to `ledger.end(trailer)`.
"""

import mmap
import threading
from contextlib import contextmanager

from . import aead, sigthreads
from .errors import InvalidStream, IOFailure
from .format import TAG_LEN
from .stdio import seekable, write_whole

_COUNTER_LEN = 11
_MAX_COUNTER = (1 << (8 * _COUNTER_LEN)) - 1
_LAST, _NOT_LAST = b"\x01", b"\x00"
_HOLE_STRIDE, _HOLE_SAMPLES = 1024, bytes(4)  # see _has_hole


def chunk_nonce(counter, last):
    if counter > _MAX_COUNTER:
        raise InvalidStream("stream too long: the chunk counter would overflow")
    return counter.to_bytes(_COUNTER_LEN, "big") + (_LAST if last else _NOT_LAST)


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


@contextmanager
def _writing():
    """OSError from the output as IOFailure; BrokenPipeError passes through (the CLI
    exits quietly on it)."""
    try:
        yield
    except BrokenPipeError:
        raise
    except OSError as e:
        raise IOFailure(f"cannot write output: {e.strerror or e}") from None


def write_all(dst, view):
    """Write every byte of `view` (stdio.write_whole), a failure IOFailure (74)."""
    with _writing():
        write_whole(dst, view)


def flush(dst):
    with _writing():
        dst.flush()


def blocks(src, buffer):
    """Yield views of `buffer` refilled from `src`: full ones, then the short last one."""
    view = memoryview(buffer)
    while True:
        n = readinto_full(src, view)
        if n:
            yield view[:n]
        if n < len(view):
            return


def copy_stream(src, dst, on_progress=None, buffer_size=1 << 20):
    """Copy the rest of `src` to `dst` (None: just count); returns the byte count."""
    total = 0
    for block in blocks(src, bytearray(buffer_size)):
        if dst is not None:
            write_all(dst, block)
        total += len(block)
        if on_progress:
            on_progress(total)
    return total


def count_remaining(src):
    """Bytes left in `src`, by seeking where possible, else by reading them."""
    if seekable(src):
        here = src.tell()
        end = src.seek(0, 2)
        src.seek(here)
        return end - here
    return copy_stream(src, None)


def zeroed(size):
    """A writable buffer of `size` zero bytes (an anonymous private mapping) whose
    pages cost nothing until first written: bytearray(size) writes every byte of a
    4 MiB chunk buffer, about 2.5 ms, for an input of a few bytes as well."""
    return mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)


class _Chunk:
    """A record's buffer, and a spare of the same size (made when first asked for) for a
    cipher that seals and opens into a second buffer: swap() makes it the record's."""

    __slots__ = ("buf", "_spare", "length", "counter", "last", "measured")

    def __init__(self, size):
        self.buf = memoryview(zeroed(size))
        self._spare = None
        self.length = self.counter = 0
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


class _RecordReader:
    """Reads records of `size` bytes; the one followed by EOF (or, with `holdback`,
    by only the last `holdback` bytes of the input, kept as `trailer`) is the last.
    Chunk buffers need room for `size + holdback + 1` bytes: it reads that far ahead."""

    def __init__(self, src, size, holdback=0):
        self._src, self._size, self._holdback = src, size, holdback
        self._lookahead = b""
        self._counter = 0
        self.trailer = None

    def fill(self, chunk):
        chunk.counter, chunk.length, chunk.last = self._counter, 0, False
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


def _run(reader, buffer_size, transform, consume, threads, cipher=None):
    """Read, transform and consume every record, in order, until the last one; `cipher`
    imports here what its records need (two workers' imports under memory exhaustion hung)."""
    chunk = reader.fill(_Chunk(buffer_size))
    if threads <= 1 or chunk.last:
        while True:
            consume(transform(chunk))
            if chunk.last:
                return
            chunk = reader.fill(chunk)
    if cipher is not None:
        cipher.prepare(chunk.length)  # a full one: the longest
    _Relay(reader, transform, consume).run(chunk, threads, buffer_size)


class _Relay:
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
        chunks = [first] + [_Chunk(buffer_size) for _ in range(threads - 1)]
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


class _Progress:
    """Adds up plaintext bytes and chunks, and reports to an optional callback."""

    def __init__(self, on_progress):
        self.plaintext_bytes = self.chunks = 0
        self._on_progress = on_progress

    def add(self, nbytes):
        self.plaintext_bytes += nbytes
        self.chunks += 1
        if self._on_progress:
            self._on_progress(self.plaintext_bytes)


def _measure(ledger, chunk, length):
    chunk.measured = ledger.measure(chunk.buf[:length], chunk_nonce(chunk.counter, chunk.last))


def seal_payload(src, dst, key, chunk_size, threads=1, on_progress=None, ledger=None):
    """Encrypt all of `src` into `dst`; returns (plaintext bytes, chunks)."""
    progress = _Progress(on_progress)
    cipher = aead.gcm(key)

    def seal_chunk(chunk):
        _seal(cipher, chunk)
        if ledger is not None:
            _measure(ledger, chunk, chunk.length + TAG_LEN)
        return chunk

    def write_chunk(chunk):
        write_all(dst, chunk.buf[: chunk.length + TAG_LEN])
        if ledger is not None:
            ledger.add(chunk.measured)
        progress.add(chunk.length)

    _run(_RecordReader(src, chunk_size), chunk_size + TAG_LEN, seal_chunk, write_chunk, threads, cipher)
    return progress.plaintext_bytes, progress.chunks


def _seal(cipher, chunk):
    """Encrypt `chunk`'s plaintext, in place or into its spare, which becomes its buffer."""
    nonce = chunk_nonce(chunk.counter, chunk.last)
    if cipher.wants_out(chunk.length):
        cipher.seal(nonce, chunk.buf, chunk.length, chunk.spare)
        chunk.swap()
    else:
        cipher.seal(nonce, chunk.buf, chunk.length)


def _try_open(cipher, chunk, last):
    """Decrypt `chunk` (in place or into its spare, which becomes its buffer); True when
    its tag verified under the `last` flag (else the chunk is left as it was, so the
    other flag can be tried)."""
    nonce = chunk_nonce(chunk.counter, last)
    if not cipher.wants_out(chunk.length):
        return cipher.open(nonce, chunk.buf, chunk.length)
    if not cipher.open(nonce, chunk.buf, chunk.length, chunk.spare):
        return False
    chunk.swap()
    return True


def _open_chunk(cipher, chunk):
    if chunk.length < TAG_LEN:
        raise InvalidStream(f"truncated stream: chunk {chunk.counter} is incomplete")
    if _try_open(cipher, chunk, chunk.last):
        if chunk.last and chunk.counter > 0 and chunk.length == TAG_LEN:
            raise InvalidStream("empty final chunk after other chunks")
        chunk.length -= TAG_LEN
        return chunk
    if _try_open(cipher, chunk, not chunk.last):
        if chunk.last:
            raise InvalidStream("truncated stream: it ends before its final chunk")
        raise InvalidStream("trailing data after the end of the stream")
    damage = "truncated, corrupt" if chunk.last else "corrupt"
    raise InvalidStream(f"chunk {chunk.counter} failed authentication: the file is {damage} or was tampered with")


def open_payload(src, dst, key, chunk_size, threads=1, on_progress=None, ledger=None, peek=None):
    """Authenticate and decrypt `src`; write each chunk to `dst` (or nowhere, when
    `dst` is None) only after its tag verified; `peek(counter, data)`, if given, sees
    each one's plaintext then, in order (a view valid during the call only: memory,
    never a file). Returns (plaintext bytes, chunks)."""
    progress = _Progress(on_progress)
    cipher = aead.gcm(key)

    def open_chunk(chunk):
        if ledger is not None:
            _measure(ledger, chunk, chunk.length)
        return _open_chunk(cipher, chunk)

    def write_chunk(chunk):
        if ledger is not None:  # first: a second pass's ledger may refuse the record
            ledger.add(chunk.measured)
        if dst is not None:
            write_all(dst, chunk.data)
        if peek is not None:
            peek(chunk.counter, chunk.data)
        progress.add(chunk.length)

    record, holdback = chunk_size + TAG_LEN, ledger.holdback if ledger is not None else 0
    reader = _RecordReader(src, record, holdback)
    _run(reader, record + holdback + 1, open_chunk, write_chunk, threads, cipher)
    if ledger is not None:
        ledger.end(reader.trailer)
    return progress.plaintext_bytes, progress.chunks


def _has_hole(chunk):
    """Whether the record may hold a hole of a sparse file, which is at least a block (4 KiB)
    of zero bytes: four of its bytes 1 KiB apart are zero. Genuine ciphertext has such
    zeros by a chance of 2^-32 at each place, and they cost it a check of its tag only;
    the look reads 4 KiB of a 4 MiB record."""
    return _HOLE_SAMPLES in chunk.buf.obj[: chunk.length : _HOLE_STRIDE]


def hash_records(src, dst, chunk_size, ledger, threads=1, on_progress=None, key=None, holes=False):
    """Measure every record of a payload into `ledger` (v1: a ledger with no
    trailer), copying it unchanged to `dst` (None: nowhere). With `key`, every
    chunk's tag is checked too (decrypted in its buffer and sealed again, which
    gives back the same bytes); with `holes` as well, only the tag of a record
    that may hold a hole (_has_hole): a genuine header copied onto a terabyte of
    holes (no disk) fails at its first hole, not once all of it was read. Returns
    the payload's byte count."""
    progress = _Progress(on_progress)
    cipher = aead.gcm(key) if key is not None else None

    def hash_chunk(chunk):
        _measure(ledger, chunk, chunk.length)
        if cipher is not None and (not holes or _has_hole(chunk)):
            record = chunk.buf
            _open_chunk(cipher, chunk)
            if chunk.buf is record:  # decrypted in place: sealed again, the same bytes
                _seal(cipher, chunk)
            else:  # into the spare: the record is as it was, in the other buffer
                chunk.swap()
            chunk.length += TAG_LEN
        return chunk

    def copy_chunk(chunk):
        ledger.add(chunk.measured)  # first: a second pass's ledger may refuse the record
        if dst is not None:
            write_all(dst, chunk.data)
        progress.add(chunk.length)

    record = chunk_size + TAG_LEN
    reader = _RecordReader(src, record, ledger.holdback)
    _run(reader, record + ledger.holdback + 1, hash_chunk, copy_chunk, threads, cipher)
    ledger.end(reader.trailer)
    return progress.plaintext_bytes
