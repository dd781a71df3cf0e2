"""Acceptance 2 and 3: any change to a sealed stream is exit 65, and no plaintext
from the altered chunk or after it is ever written.

These run on version 1 files, whose reader streams chunk by chunk; a v2 file
read from a file writes nothing at all before its trailer verified
(tests/test_provenance.py)."""

import os
import random

import pytest

from cliutil import assert_one_line_error, key_env, run, seal_v1

CHUNK = 16 * 1024
RECORD = CHUNK + 16
HEADER = 132  # one raw-key slot
DATA = os.urandom(5 * CHUNK + 100)  # six chunks, the last one short


@pytest.fixture(scope="module")
def sealed():
    return seal_v1(DATA)


def open_(data, *args):
    return run(["open", *args], data, key_env())


def chunk_start(i):
    return HEADER + i * RECORD


def flipped(data, offset, mask=0x01):
    out = bytearray(data)
    out[offset] ^= mask
    return bytes(out)


def test_layout_is_as_documented(sealed):
    assert len(sealed) == HEADER + 5 * RECORD + 100 + 16


def test_every_header_byte_flip_is_rejected_before_output(sealed):
    for offset in range(HEADER):
        result = open_(flipped(sealed, offset))
        assert (result.code, result.stdout) == (65, b""), offset
        assert_one_line_error(result.stderr)


@pytest.mark.parametrize("mask", [0x01, 0x80, 0xFF])
def test_header_flips_with_each_mask(sealed, mask):
    for offset in (0, 7, 8, 11, 12, 44, 45, 60, HEADER - 36, HEADER - 1):
        assert open_(flipped(sealed, offset, mask)).code == 65


@pytest.mark.parametrize("chunk", [0, 2, 5])
@pytest.mark.parametrize("where", ["first", "middle", "tag"])
def test_payload_byte_flip_stops_before_that_chunk(sealed, chunk, where):
    length = RECORD if chunk < 5 else 116
    offset = chunk_start(chunk) + {"first": 0, "middle": length // 2, "tag": length - 1}[where]
    result = open_(flipped(sealed, offset))
    assert result.code == 65
    assert result.stdout == DATA[: chunk * CHUNK]
    assert "failed authentication" in result.stderr


@pytest.mark.parametrize("threads", ["1", "2", "4"])
def test_output_before_a_bad_chunk_is_exactly_the_good_chunks(sealed, threads):
    result = open_(flipped(sealed, chunk_start(3) + 5), "--threads", threads)
    assert (result.code, result.stdout) == (65, DATA[: 3 * CHUNK])


def test_truncation_at_every_chunk_boundary(sealed):
    for i in range(6):
        result = open_(sealed[: chunk_start(i)])
        assert result.code == 65, i
        assert result.stdout == DATA[: max(0, i - 1) * CHUNK]
        assert "truncated" in result.stderr


def test_truncation_at_random_offsets(sealed):
    rng = random.Random(1)
    for cut in sorted(rng.sample(range(len(sealed)), 60)) + [len(sealed) - 1, 1, 7, 8, 9, 10]:
        result = open_(sealed[:cut])
        assert result.code == 65, cut
        assert len(result.stdout) < len(DATA)
        assert_one_line_error(result.stderr)


@pytest.mark.parametrize("extra", [b"\x00", b"x" * 16, os.urandom(RECORD)])
def test_appended_bytes(sealed, extra):
    result = open_(sealed + extra)
    assert result.code == 65
    assert "trailing data" in result.stderr or "failed authentication" in result.stderr


def test_appending_a_copy_of_the_last_chunk(sealed):
    result = open_(sealed + sealed[chunk_start(5) :])
    assert result.code == 65


def records(sealed):
    return [sealed[chunk_start(i) : chunk_start(i + 1)] for i in range(6)]


def test_swapped_chunks(sealed):
    r = records(sealed)
    r[1], r[2] = r[2], r[1]
    result = open_(sealed[:HEADER] + b"".join(r))
    assert (result.code, result.stdout) == (65, DATA[:CHUNK])


def test_duplicated_chunk(sealed):
    r = records(sealed)
    result = open_(sealed[:HEADER] + b"".join(r[:3] + r[2:]))
    assert (result.code, result.stdout) == (65, DATA[: 3 * CHUNK])


def test_dropped_chunk(sealed):
    r = records(sealed)
    result = open_(sealed[:HEADER] + b"".join(r[:2] + r[3:]))
    assert (result.code, result.stdout) == (65, DATA[: 2 * CHUNK])


def test_final_chunk_moved_earlier(sealed):
    r = records(sealed)
    result = open_(sealed[:HEADER] + r[0] + r[5])
    assert result.code == 65


def test_chunk_spliced_from_another_file_with_the_same_key(sealed):
    other = seal_v1(os.urandom(len(DATA)))
    spliced = sealed[: chunk_start(2)] + other[chunk_start(2) : chunk_start(3)] + sealed[chunk_start(3) :]
    result = open_(spliced)
    assert (result.code, result.stdout) == (65, DATA[: 2 * CHUNK])


def test_header_from_another_file_with_the_same_key(sealed):
    other = seal_v1(os.urandom(len(DATA)))
    result = open_(other[:HEADER] + sealed[HEADER:])
    assert (result.code, result.stdout) == (65, b"")


def test_empty_payload_after_a_valid_header(sealed):
    result = open_(sealed[:HEADER])
    assert (result.code, result.stdout) == (65, b"")


def test_lone_empty_final_chunk_after_others_is_rejected():
    # Craft a stream whose last chunk is an authentic empty final chunk after a full one:
    # only the seal of an empty input may end with an empty chunk.
    from Crypto.Cipher import AES

    from encpipe.envelope import read_header
    from encpipe.keys import parse_hex_key
    from encpipe.primitives import payload_key
    from encpipe.stream import chunk_nonce
    import io

    data = os.urandom(CHUNK)
    sealed = seal_v1(data)
    header = read_header(io.BytesIO(sealed))
    key = payload_key(parse_hex_key(key_env()["ENCPIPE_KEY"], "k").unwrap(header.slots[0]), header.header)
    first = AES.new(key, AES.MODE_GCM, nonce=chunk_nonce(0, False))
    body = first.encrypt(data) + first.digest()
    empty = AES.new(key, AES.MODE_GCM, nonce=chunk_nonce(1, True))
    crafted = sealed[:HEADER] + body + empty.encrypt(b"") + empty.digest()
    result = open_(crafted)
    assert result.code == 65
    assert "empty final chunk" in result.stderr


def test_each_damage_is_named_exactly(sealed):
    """Pins _open_chunk's diagnosis: a stream cut at a chunk boundary ends before its
    final chunk; bytes after a full final chunk are trailing data; a cut inside a
    chunk leaves it incomplete; a bad tag is corruption, or truncation too when it
    is the input's last record. Exit 65, the good chunks before it, one line."""
    whole = seal_v1(DATA[: 4 * CHUNK])  # its final chunk is full, so a byte after it is read as more
    cases = [
        (sealed[: chunk_start(3)], 2, "truncated stream: it ends before its final chunk"),
        (whole + b"x", 3, "trailing data after the end of the stream"),
        (sealed[: chunk_start(5) + 3], 5, "truncated stream: chunk 5 is incomplete"),
        (flipped(sealed, chunk_start(3) + 5), 3, "chunk 3 failed authentication: the file is corrupt or was tampered with"),
        (flipped(sealed, len(sealed) - 1), 5,
         "chunk 5 failed authentication: the file is truncated, corrupt or was tampered with"),
    ]
    for data, good, message in cases:
        result = open_(data)
        assert (result.code, result.stdout, result.stderr) == (65, DATA[: good * CHUNK], f"encpipe: error: {message}\n")
