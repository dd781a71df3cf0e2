"""How the threaded stream ends when something fails part-way.

Whatever the thread count, a failure at chunk k leaves exactly chunks 0..k-1
written, nothing after them, and the failure raised; and a bad chunk ends
`open` at once even while another thread is still waiting on the input.
"""

import errno
import io
import os
import subprocess
import sys
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from encpipe import stream
from encpipe.errors import IOFailure
from encpipe.format import TAG_LEN

KEY = bytes(range(32))
CHUNK = 16 * 1024
RECORD = CHUNK + TAG_LEN
THREADS = (1, 2, 3, 8)
PLAINTEXT = bytes(i % 251 for i in range(12 * CHUNK + 77))


def _sealed(data=PLAINTEXT):
    out = io.BytesIO()
    stream.seal_payload(io.BytesIO(data), out, KEY, CHUNK, threads=1)
    return out.getvalue()


SEALED = _sealed()


class _FailingReader(io.RawIOBase):
    """Gives `data` up to `fail_at`, then fails the way a broken disk would."""

    def __init__(self, data, fail_at):
        self._data, self._pos, self._fail_at = data, 0, fail_at

    def readable(self):
        return True

    def readinto(self, buffer):
        if self._pos >= self._fail_at:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        n = min(len(buffer), self._fail_at - self._pos)
        buffer[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        return n


class _FillingDisk(io.RawIOBase):
    """Accepts `room` writes, then reports a full disk; remembers every call."""

    def __init__(self, room):
        self.written, self.calls, self._room = bytearray(), 0, room

    def writable(self):
        return True

    def write(self, data):
        self.calls += 1
        if self.calls > self._room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.written += data
        return len(data)


@settings(max_examples=60, deadline=None)
@given(fail_at=st.integers(0, len(PLAINTEXT) - 1), threads=st.sampled_from(THREADS))
def test_any_read_failure_leaves_exactly_the_chunks_read_before_it(fail_at, threads):
    # Chunk i is complete once its bytes and the first byte after them (the
    # look-ahead that tells it is not the last) were read.
    complete = max(0, (fail_at - 1) // CHUNK)
    out = io.BytesIO()
    with pytest.raises(IOFailure):
        stream.seal_payload(_FailingReader(PLAINTEXT, fail_at), out, KEY, CHUNK, threads=threads)
    assert out.getvalue() == SEALED[: complete * RECORD]


@settings(max_examples=30, deadline=None)
@given(room=st.integers(0, 12), threads=st.sampled_from(THREADS))
def test_any_write_failure_is_the_last_write(room, threads):
    disk = _FillingDisk(room)
    with pytest.raises(IOFailure):
        stream.seal_payload(io.BytesIO(PLAINTEXT), disk, KEY, CHUNK, threads=threads)
    assert (disk.calls, bytes(disk.written)) == (room + 1, SEALED[: room * RECORD])


@pytest.mark.parametrize("threads", THREADS)
def test_open_of_a_bad_chunk_raises_after_the_good_ones(threads):
    sealed = bytearray(SEALED)
    sealed[4 * RECORD + 9] ^= 0x40
    out = io.BytesIO()
    with pytest.raises(Exception, match="chunk 4 failed authentication"):
        stream.open_payload(io.BytesIO(bytes(sealed)), out, KEY, CHUNK, threads=threads)
    assert out.getvalue() == PLAINTEXT[: 4 * CHUNK]


@pytest.mark.parametrize("threads", ["1", "2", "8"])
@pytest.mark.parametrize("bad_chunk", [0, 3])
def test_a_bad_chunk_ends_open_while_the_input_is_still_open(threads, bad_chunk):
    """The producer keeps the pipe open and sends nothing more: the thread
    waiting on it must not keep encpipe from exiting 65."""
    key_hex = "11" * 32
    env = dict(os.environ, ENCPIPE_KEY=key_hex)
    seal = [sys.executable, "-m", "encpipe", "seal", "--chunk-size", "16K"]
    sealed = bytearray(subprocess.run(seal, input=PLAINTEXT, env=env, capture_output=True, check=True).stdout)
    header_len = len(sealed) - (len(PLAINTEXT) + 13 * TAG_LEN)
    sealed[header_len + bad_chunk * RECORD + 9] ^= 0x01
    sent = header_len + (bad_chunk + 1) * RECORD + RECORD // 2

    child = subprocess.Popen(
        [sys.executable, "-m", "encpipe", "open", "--threads", threads],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )
    child.stdin.write(bytes(sealed[:sent]))
    child.stdin.flush()
    started = time.monotonic()
    try:
        code = child.wait(timeout=20)
    finally:
        child.kill()
        child.stdin.close()
    stdout, stderr = child.stdout.read(), child.stderr.read()
    child.stdout.close(), child.stderr.close()
    assert code == 65, stderr
    assert time.monotonic() - started < 20
    assert stdout == PLAINTEXT[: bad_chunk * CHUNK]
    assert b"failed authentication" in stderr and b"Traceback" not in stderr
