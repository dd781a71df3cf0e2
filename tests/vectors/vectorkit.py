"""What the vector modules share: fixed keys, a DRBG that makes every byte
reproducible, sealing under it, header surgery, and the registry that
generate.py writes out (see its docstring for the .vec format)."""

import hashlib
import io
import os
import struct
import zlib
from contextlib import contextmanager
from unittest import mock

from Crypto.Cipher import AES

import encpipe.envelope
import encpipe.primitives
import encpipe.slots
import encpipe.x25519
from encpipe import format as fmt
from encpipe.envelope import build_header, read_header, seal
from encpipe.signing import SigningKey
from encpipe.slots import RawKey
from encpipe.stream import chunk_nonce
from encpipe.x25519 import X25519Identity

HERE = os.path.dirname(os.path.abspath(__file__))

KEY_1 = bytes(range(32))
KEY_2 = bytes(range(32, 64))
PASSPHRASE = "vector passphrase"
CHUNK_LOG2 = 14
CHUNK = 1 << CHUNK_LOG2
IDENTITY_SECRET = hashlib.sha256(b"encpipe test identity").digest()
SIGNER_1 = SigningKey(hashlib.sha256(b"encpipe test signing key 1").digest())
SIGNER_2 = SigningKey(hashlib.sha256(b"encpipe test signing key 2").digest())


class Drbg:
    """SHA-256 in counter mode: deterministic bytes for reproducible vectors."""

    def __init__(self, seed):
        self._seed, self._counter = seed.encode(), 0

    def __call__(self, n):
        out = b""
        while len(out) < n:
            out += hashlib.sha256(self._seed + self._counter.to_bytes(8, "big")).digest()
            self._counter += 1
        return out[:n]


@contextmanager
def deterministic(name):
    drbg = Drbg(name)
    with mock.patch.object(encpipe.envelope, "get_random_bytes", drbg), mock.patch.object(
        encpipe.slots, "get_random_bytes", drbg
    ), mock.patch.object(encpipe.x25519, "get_random_bytes", drbg):
        yield drbg


def plaintext(name, size):
    return Drbg("plaintext " + name)(size)


def sealed(name, data, recipients, chunk_log2=CHUNK_LOG2, version=1, **options):
    with deterministic(name):
        out = io.BytesIO()
        seal(io.BytesIO(data), out, recipients, chunk_log2=chunk_log2, version=version, **options)
        return out.getvalue()


def file_key_of(data, identity):
    return identity.unwrap(read_header(io.BytesIO(data)).slots[0])


def recrc(header_bytes):
    body = header_bytes[:-4]
    return body + struct.pack(">I", zlib.crc32(body))


def reheader(data, header):
    """Replace the header of `data` with `header` (a fmt.Header with a MAC set)."""
    old = read_header(io.BytesIO(data)).size
    return header.encode() + data[old:]


def chunk_records(data, chunk_size=CHUNK):
    old = read_header(io.BytesIO(data)).size
    payload, record = data[old:], chunk_size + 16
    return data[:old], [payload[i : i + record] for i in range(0, len(payload), record)]


def seal_chunk(key, counter, last, body):
    cipher = AES.new(key, AES.MODE_GCM, nonce=chunk_nonce(counter, last))
    return cipher.encrypt(body) + cipher.digest()


VECTORS = {}


def vector(name, expect, comment, keys=(), passphrases=(), identities=(), signers=(), scrypt_budget=None):
    def register(make):
        VECTORS[name] = (expect, comment, keys, passphrases, identities, signers, scrypt_budget, make)
        return make

    return register


RAW = [KEY_1.hex()]


ESCROW = X25519Identity(IDENTITY_SECRET)


def with_unknown_slot(name, data, version):
    """A file whose first slot is of an unknown type (200): readers skip it."""
    base = sealed(name, data, [RawKey(KEY_1)], version=version)
    parsed = read_header(io.BytesIO(base))
    slots = (fmt.SlotRecord(200, b"future slot body"),) + parsed.header.slots
    header = build_header(file_key_of(base, RawKey(KEY_1)), slots, CHUNK_LOG2, parsed.header.payload_salt,
                          version=version)
    return reheader(base, header), data
