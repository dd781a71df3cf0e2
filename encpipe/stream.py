"""The chunked payload: STREAM over AES-256-GCM, on file-like objects.

Plaintext is cut into chunks of `chunk_size` bytes. Chunk i is sealed under
the nonce `i` (11 bytes, big-endian) || `last` (1 byte, 1 for the final chunk),
and its 16-byte tag follows it. Only the final chunk may be short, and it may
be empty only when it is the only chunk. The reader tells the final chunk by
reading one byte ahead, so a stream is never accepted without its final chunk.

Crypto runs on worker threads (pycryptodome releases the GIL); reading and
writing stay on the calling thread, in order. At most `2 * threads` chunks are
in flight, each in a buffer that is reused, so memory does not grow with input.
"""

from collections import deque
from contextlib import contextmanager

from Crypto.Cipher import AES

from .errors import InvalidStream, IOFailure
from .format import TAG_LEN

_COUNTER_LEN = 11
_MAX_COUNTER = (1 << (8 * _COUNTER_LEN)) - 1
_LAST, _NOT_LAST = b"\x01", b"\x00"


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
    """Write every byte of `view`."""
    with _writing():
        while view:
            n = dst.write(view)
            view = view[n if n is not None else len(view) :]


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


def seekable(src):
    try:
        return src.seekable()
    except (AttributeError, ValueError):
        return False


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


class _Chunk:
    __slots__ = ("buf", "length", "counter", "last")

    def __init__(self, size):
        self.buf = memoryview(bytearray(size))
        self.length = self.counter = 0
        self.last = False

    @property
    def data(self):
        return self.buf[: self.length]


class _RecordReader:
    """Reads records of `size` bytes; the one followed by EOF is the last."""

    def __init__(self, src, size):
        self._src, self._size = src, size
        self._lookahead = b""
        self._counter = 0

    def fill(self, chunk):
        head = len(self._lookahead)
        chunk.buf[:head] = self._lookahead
        n = head + readinto_full(self._src, chunk.buf[head : self._size])
        self._lookahead = b""
        if n == self._size:
            probe = bytearray(1)
            if readinto_full(self._src, memoryview(probe)):
                self._lookahead = bytes(probe)
        chunk.length, chunk.counter, chunk.last = n, self._counter, not self._lookahead
        self._counter += 1
        return chunk


def _run(reader, buffer_size, transform, consume, threads):
    """Read, transform on workers, consume in order, until the last record."""
    chunk = reader.fill(_Chunk(buffer_size))
    if threads <= 1 or chunk.last:
        while True:
            consume(transform(chunk))
            if chunk.last:
                return
            chunk = reader.fill(chunk)
    from concurrent.futures import ThreadPoolExecutor  # only streams of several chunks pay for threads

    window = 2 * threads
    free = [_Chunk(buffer_size) for _ in range(window - 1)]
    with ThreadPoolExecutor(threads, thread_name_prefix="encpipe") as pool:
        pending = deque([pool.submit(transform, chunk)])
        try:
            last = False
            while not last or pending:
                if not last and len(pending) < window:
                    chunk = reader.fill(free.pop())
                    last = chunk.last
                    pending.append(pool.submit(transform, chunk))
                    continue
                done = pending.popleft().result()
                consume(done)
                free.append(done)
        finally:
            for future in pending:
                future.cancel()


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


def seal_payload(src, dst, key, chunk_size, threads=1, on_progress=None):
    """Encrypt all of `src` into `dst`; returns (plaintext bytes, chunks)."""
    progress = _Progress(on_progress)

    def seal_chunk(chunk):
        n = chunk.length
        cipher = AES.new(key, AES.MODE_GCM, nonce=chunk_nonce(chunk.counter, chunk.last))
        cipher.encrypt(chunk.buf[:n], output=chunk.buf[:n])
        chunk.buf[n : n + TAG_LEN] = cipher.digest()
        return chunk

    def write_chunk(chunk):
        write_all(dst, chunk.buf[: chunk.length + TAG_LEN])
        progress.add(chunk.length)

    _run(_RecordReader(src, chunk_size), chunk_size + TAG_LEN, seal_chunk, write_chunk, threads)
    return progress.plaintext_bytes, progress.chunks


def _try_open(key, chunk, last):
    """Decrypt `chunk` in place; True when its tag verified under the `last` flag."""
    body = chunk.buf[: chunk.length - TAG_LEN]
    cipher = AES.new(key, AES.MODE_GCM, nonce=chunk_nonce(chunk.counter, last))
    cipher.decrypt(body, output=body)
    try:
        cipher.verify(chunk.buf[chunk.length - TAG_LEN : chunk.length])
        return True
    except ValueError:
        # GCM's keystream is its own inverse: restore the ciphertext so the
        # caller can try the other flag to name the failure precisely.
        AES.new(key, AES.MODE_GCM, nonce=chunk_nonce(chunk.counter, last)).encrypt(body, output=body)
        return False


def _open_chunk(key, chunk):
    if chunk.length < TAG_LEN:
        raise InvalidStream(f"truncated stream: chunk {chunk.counter} is incomplete")
    if _try_open(key, chunk, chunk.last):
        if chunk.last and chunk.counter > 0 and chunk.length == TAG_LEN:
            raise InvalidStream("empty final chunk after other chunks")
        chunk.length -= TAG_LEN
        return chunk
    if _try_open(key, chunk, not chunk.last):
        if chunk.last:
            raise InvalidStream("truncated stream: it ends before its final chunk")
        raise InvalidStream("trailing data after the end of the stream")
    raise InvalidStream(f"chunk {chunk.counter} failed authentication: the file is corrupt or was tampered with")


def open_payload(src, dst, key, chunk_size, threads=1, on_progress=None):
    """Authenticate and decrypt `src`; write each chunk to `dst` (or nowhere, when
    `dst` is None) only after its tag verified. Returns (plaintext bytes, chunks)."""
    progress = _Progress(on_progress)

    def open_chunk(chunk):
        return _open_chunk(key, chunk)

    def write_chunk(chunk):
        if dst is not None:
            write_all(dst, chunk.data)
        progress.add(chunk.length)

    record = chunk_size + TAG_LEN
    _run(_RecordReader(src, record), record, open_chunk, write_chunk, threads)
    return progress.plaintext_bytes, progress.chunks
