"""The chunked payload: STREAM over AES-256-GCM, on file-like objects.

Plaintext is cut into chunks of `chunk_size` bytes. Chunk i is sealed under
the nonce `i` (11 bytes, big-endian) || `last` (1 byte, 1 for the final chunk),
and its 16-byte tag follows it. Only the final chunk may be short, and it may
be empty only when it is the only chunk. The reader tells the final chunk by
reading one byte ahead, so a stream is never accepted without its final chunk.

With several threads (relay.py), each one reads a chunk, seals or opens it
(pycryptodome and `cryptography` 50 or later release the GIL; an older
`cryptography` does not, but reading does) and writes it in turn, so chunks
leave in order. The cipher comes from aead.py. Each thread owns one reused
buffer, and a second where the cipher writes into another (`cryptography` 51
and later): memory does not grow with the input.

A `ledger` (format v2, see provenance.py) measures every record (ciphertext
|| tag, as stored) in the worker that sealed or opened it, before it is
decrypted, and adds the measures in order; `ledger.holdback` bytes at the end
of the input are not payload but the trailer, given to `ledger.end(trailer)`.
"""

from contextlib import contextmanager

from . import aead
from .errors import InvalidStream, IOFailure
from .format import TAG_LEN
from .relay import RecordReader, readinto_full, run_records
from .stdio import seekable, write_whole

_COUNTER_LEN = 11
_MAX_COUNTER = (1 << (8 * _COUNTER_LEN)) - 1
_LAST, _NOT_LAST = b"\x01", b"\x00"
_HOLE_STRIDE, _HOLE_SAMPLES = 1024, bytes(4)  # see _has_hole


def chunk_nonce(counter, last):
    if counter > _MAX_COUNTER:
        raise InvalidStream("stream too long: the chunk counter would overflow")
    return counter.to_bytes(_COUNTER_LEN, "big") + (_LAST if last else _NOT_LAST)


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

    run_records(RecordReader(src, chunk_size), chunk_size + TAG_LEN, seal_chunk, write_chunk, threads, cipher)
    return progress.plaintext_bytes, progress.chunks


def _seal(cipher, chunk):
    """Encrypt `chunk`'s plaintext, in place or into its spare, which becomes its buffer."""
    nonce = chunk_nonce(chunk.counter, chunk.last)
    if cipher.wants_out(chunk.record):
        cipher.seal(nonce, chunk.buf, chunk.length, chunk.spare)
        chunk.swap()
    else:
        cipher.seal(nonce, chunk.buf, chunk.length)


def _try_open(cipher, chunk, last):
    """Decrypt `chunk` (in place or into its spare, which becomes its buffer); True when
    its tag verified under the `last` flag (else the chunk is left as it was, so the
    other flag can be tried)."""
    nonce = chunk_nonce(chunk.counter, last)
    if not cipher.wants_out(chunk.record):
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
    reader = RecordReader(src, record, holdback)
    run_records(reader, record + holdback + 1, open_chunk, write_chunk, threads, cipher)
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
    reader = RecordReader(src, record, ledger.holdback)
    run_records(reader, record + ledger.holdback + 1, hash_chunk, copy_chunk, threads, cipher)
    ledger.end(reader.trailer)
    return progress.plaintext_bytes
