"""`cryptography` 51 and later refuse an output over the input, and their update_into
(by pieces, copied back) holds the GIL: 1.4x the CPU of one whole call on one thread,
and a second thread gained nothing. So a chunk of up to 8 MiB is sealed and opened by
one encrypt_into/decrypt_into into a second buffer of the chunk's (its spare), which
then becomes the chunk's buffer; only a larger chunk goes by pieces. These tests run
that way whatever the installed release does."""

import io
import os

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from encpipe import aead, gcmlibs, stream
from encpipe.format import TAG_LEN

MiB = 1 << 20
SIZES = [0, 1, 16, gcmlibs.PIECE + 1, MiB]


@pytest.fixture(params=[aead.CRYPTOGRAPHY, aead.PYCRYPTODOME])
def library(request, monkeypatch):
    monkeypatch.setenv(aead.ENV_CIPHER, request.param)
    assert aead.library() == request.param
    if request.param == aead.CRYPTOGRAPHY:
        monkeypatch.setattr(gcmlibs.Cryptography, "in_place", False)
    return request.param


@pytest.mark.parametrize("size", SIZES)
def test_sealed_into_a_second_buffer_is_gcm_and_leaves_the_first(library, size):
    key, nonce, data = os.urandom(32), os.urandom(12), os.urandom(size)
    buf, out = bytearray(data) + bytearray(TAG_LEN), bytearray(size + TAG_LEN + 3)
    cipher = aead.gcm(key)
    cipher.seal(nonce, memoryview(buf), size, memoryview(out))
    assert bytes(out[: size + TAG_LEN]) == AESGCM(key).encrypt(nonce, data, None)
    assert bytes(buf[:size]) == data
    back = bytearray(size + 5)
    assert cipher.open(nonce, memoryview(out), size + TAG_LEN, memoryview(back)) is True
    assert bytes(back[:size]) == data


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("where", ["body", "tag"])
def test_a_record_that_fails_into_a_second_buffer_is_left_and_nothing_decrypted_stays(library, size, where):
    """OpenSSL decrypts before it checks the tag: the plaintext it wrote is zeroed."""
    key, nonce = os.urandom(32), os.urandom(12)
    sealed = bytearray(AESGCM(key).encrypt(nonce, os.urandom(size), None))
    sealed[(size // 2) if where == "body" and size else -1] ^= 1
    buf, out = bytearray(sealed), bytearray(b"\xaa" * size)
    assert aead.gcm(key).open(nonce, memoryview(buf), len(buf), memoryview(out)) is False
    assert buf == sealed and out == bytes(size)


def test_a_second_buffer_where_the_release_refuses_in_place_up_to_8_mib(monkeypatch):
    monkeypatch.setenv(aead.ENV_CIPHER, aead.CRYPTOGRAPHY)
    aead.library()
    cls = gcmlibs.Cryptography
    monkeypatch.setattr(cls, "in_place", False)
    assert [cls.wants_out(n) for n in (0, MiB, 8 * MiB, 8 * MiB + TAG_LEN, 8 * MiB + TAG_LEN + 1, 16 * MiB)] == [
        True, True, True, True, False, False]
    assert aead.buffers_per_chunk(4 * MiB) == 2 and aead.buffers_per_chunk(16 * MiB) == 1
    monkeypatch.setattr(cls, "in_place", True)
    assert not cls.wants_out(MiB) and aead.buffers_per_chunk(4 * MiB) == 1
    monkeypatch.setenv(aead.ENV_CIPHER, aead.PYCRYPTODOME)
    assert aead.buffers_per_chunk(4 * MiB) == 1


@pytest.mark.parametrize("threads", [1, 2])
def test_chunks_up_to_8_mib_never_go_by_pieces_and_larger_ones_do(monkeypatch, threads):
    """The stream's bytes are the same either way (GCM's), and pieces are used exactly
    for runs of chunks over 8 MiB: for every chunk of such a run, its short last one
    too (into a spare, it would touch up to 8 MiB more memory than the run needs)."""
    monkeypatch.setenv(aead.ENV_CIPHER, aead.CRYPTOGRAPHY)
    aead.library()
    monkeypatch.setattr(gcmlibs.Cryptography, "in_place", False)
    through = gcmlibs.Cryptography._through
    pieces = []

    def counted(self, context, buf, n):
        pieces.append(n)
        return through(self, context, buf, n)

    monkeypatch.setattr(gcmlibs.Cryptography, "_through", counted)
    key, data = os.urandom(32), os.urandom(16 * MiB + 5)  # 5, 3 and 2 chunks
    for chunk, by_pieces in ((4 * MiB, False), (8 * MiB, False), (16 * MiB, True)):
        pieces.clear()
        sealed = io.BytesIO()
        stream.seal_payload(io.BytesIO(data), sealed, key, chunk, threads)
        chunks = -(-len(data) // chunk)
        assert len(pieces) == (chunks if by_pieces else 0)
        expected = b"".join(
            AESGCM(key).encrypt(stream.chunk_nonce(i, start + chunk >= len(data)), data[start: start + chunk], None)
            for i, start in enumerate(range(0, len(data), chunk)))
        assert sealed.getvalue() == expected
        opened = io.BytesIO()
        stream.open_payload(io.BytesIO(expected), opened, key, chunk, threads)
        assert opened.getvalue() == data and len(pieces) == (2 * chunks if by_pieces else 0)
