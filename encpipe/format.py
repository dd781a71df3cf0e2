"""The header: bytes in, `Header` out, and back. No cryptography here.

Layout (all integers big-endian; README "File format" is the normative text):

    magic "ENCPIPE" | version u8 | header_len u16 | suite u8 | chunk_log2 u8
    | payload_salt 32 | slot_count u8 | [sig_count u8, v2 only] | slot* | mac 32 | crc32 u32

    slot = kind u8 | body_len u16 | body

`mac` is an HMAC keyed from the file key (see primitives.py); `crc32` covers
every byte before it, so accidental corruption anywhere in the header is
reported as such before any key is tried.
"""

import struct
from binascii import crc32  # zlib's CRC-32, from a module built into the interpreter
from collections import namedtuple

from .errors import InvalidStream, IOFailure

MAGIC = b"ENCPIPE"
VERSION_1 = 1
VERSION = 2  # what seal writes; README "Format v2"
VERSIONS = (VERSION_1, VERSION)
SUITE_AES256GCM_HKDF_SHA256 = 1
SUITE_NAMES = {SUITE_AES256GCM_HKDF_SHA256: "AES-256-GCM, HKDF-SHA256, HMAC-SHA256"}

SALT_LEN = 32
MAC_LEN = 32
TAG_LEN = 16
SIGNATURE_LEN = 64  # Ed25519's (signing.py), in a v2 trailer's entries
MIN_CHUNK_LOG2 = 14  # 16 KiB
MAX_CHUNK_LOG2 = 24  # 16 MiB
# Default chunk sizes, chosen with scripts/bench (README "Performance"). From a
# file, per-chunk set-up is the cost, so chunks are big. From a pipe, 1 MiB and
# larger chunks slowed `pg_dump | encpipe seal` by about 20 %, 512 KiB did not.
FILE_CHUNK_LOG2 = 22  # 4 MiB
PIPE_CHUNK_LOG2 = 19  # 512 KiB
MAX_HEADER_LEN = 16384
MAX_SLOTS = 64
MAX_SIGNATURES = 16

_PREFIX = struct.Struct(">7sBH")  # magic, version, header_len
_FIXED = struct.Struct(">BB32sB")  # suite, chunk_log2, payload_salt, slot_count
SALT_AT = _PREFIX.size + 2  # payload_salt, after suite and chunk_log2 (README "Layout": offset 12)
_SIG_COUNT = struct.Struct(">B")  # v2: signatures in the trailer
_SLOT_HEAD = struct.Struct(">BH")  # kind, body_len
_CRC = struct.Struct(">I")
_TRAILER_LEN = MAC_LEN + _CRC.size
MIN_HEADER_LEN = _PREFIX.size + _FIXED.size + _SLOT_HEAD.size + _TRAILER_LEN


def _fixed_len(version):
    return _FIXED.size + (_SIG_COUNT.size if version >= 2 else 0)


class SlotRecord(namedtuple("SlotRecord", "kind body")):
    """One key slot as stored: a type byte and an opaque body."""

    __slots__ = ()


class Header(namedtuple("Header", "chunk_log2 payload_salt slots mac suite version sig_count",
                        defaults=(b"", SUITE_AES256GCM_HKDF_SHA256, VERSION, 0))):
    __slots__ = ()

    @property
    def chunk_size(self):
        return 1 << self.chunk_log2

    def authenticated_bytes(self):
        """Every header byte the MAC covers: all of it up to the MAC itself."""
        fixed = _FIXED.pack(self.suite, self.chunk_log2, self.payload_salt, len(self.slots))
        if self.version >= 2:
            fixed += _SIG_COUNT.pack(self.sig_count)
        slots = b"".join(_SLOT_HEAD.pack(s.kind, len(s.body)) + s.body for s in self.slots)
        length = _PREFIX.size + len(fixed) + len(slots) + _TRAILER_LEN
        return _PREFIX.pack(MAGIC, self.version, length) + fixed + slots

    def encode(self):
        """The complete header; `mac` must already be set."""
        if len(self.mac) != MAC_LEN:
            raise ValueError("header MAC not set")
        if not 1 <= len(self.slots) <= MAX_SLOTS:
            raise ValueError(f"a file needs 1 to {MAX_SLOTS} key slots")
        if not 0 <= self.sig_count <= (MAX_SIGNATURES if self.version >= 2 else 0):
            raise ValueError(f"a file holds at most {MAX_SIGNATURES} signatures")
        body = self.authenticated_bytes() + self.mac
        encoded = body + _CRC.pack(crc32(body))
        if len(encoded) > MAX_HEADER_LEN:
            raise ValueError(f"header would exceed {MAX_HEADER_LEN} bytes")
        return encoded

    @property
    def size(self):
        """The encoded header's length in bytes."""
        return len(self.authenticated_bytes()) + _TRAILER_LEN


def read_exactly(src, n):
    """Read n bytes, fewer only at end of input."""
    parts, remaining = [], n
    while remaining:
        try:
            part = src.read(remaining)
        except OSError as e:  # not "cannot write output", as report_errors would take it
            raise IOFailure(f"cannot read input: {e.strerror or e}") from None
        if not part:
            break
        parts.append(part)
        remaining -= len(part)
    return b"".join(parts)


def read_header(src):
    """Read and check one header from `src`; returns a `Header`.

    Raises InvalidStream for anything that is not a well-formed v1 or v2 header;
    the MAC is not checked here (that needs the file key).
    """
    prefix = read_exactly(src, _PREFIX.size)
    if not prefix:
        raise InvalidStream("not an encpipe file (empty input)")
    if prefix[: len(MAGIC)] != MAGIC:
        if MAGIC.startswith(prefix):
            raise InvalidStream("truncated header")
        raise InvalidStream("not an encpipe file")
    if len(prefix) == len(MAGIC):
        raise InvalidStream("truncated header")
    version = prefix[len(MAGIC)]
    if version not in VERSIONS:
        raise InvalidStream(f"unsupported format version {version}")
    if len(prefix) < _PREFIX.size:
        raise InvalidStream("truncated header")
    _, _, length = _PREFIX.unpack(prefix)
    if length > MAX_HEADER_LEN:
        raise InvalidStream(f"header length {length} exceeds the limit of {MAX_HEADER_LEN} bytes")
    if length < MIN_HEADER_LEN + _fixed_len(version) - _FIXED.size:
        raise InvalidStream(f"header length {length} is too short")
    rest = read_exactly(src, length - _PREFIX.size)
    if len(rest) < length - _PREFIX.size:
        raise InvalidStream("truncated header")
    return parse_header(prefix + rest)


def not_a_header(src):
    """Why `src`, read from its start, holds no well-formed header (read_header's
    words), else None: a file that only starts with MAGIC (encpipe-migrate: the
    previous tool's, its unauthenticated salt so) is not one to take for encpipe's."""
    src.seek(0)
    try:
        read_header(src)
    except InvalidStream as e:
        return str(e)
    return None

def parse_header(raw):
    """Parse a complete header whose prefix has been checked by read_header."""
    (crc,) = _CRC.unpack_from(raw, len(raw) - _CRC.size)
    if crc32(raw[: -_CRC.size]) != crc:
        raise InvalidStream("header checksum mismatch: the file is corrupt")
    version = raw[len(MAGIC)]
    suite, chunk_log2, salt, count = _FIXED.unpack_from(raw, _PREFIX.size)
    sig_count = raw[_PREFIX.size + _FIXED.size] if version >= 2 else 0
    if suite not in SUITE_NAMES:
        raise InvalidStream(f"unsupported cipher suite {suite}")
    if not MIN_CHUNK_LOG2 <= chunk_log2 <= MAX_CHUNK_LOG2:
        raise InvalidStream(
            f"chunk size 2^{chunk_log2} is outside the allowed 2^{MIN_CHUNK_LOG2}..2^{MAX_CHUNK_LOG2}"
        )
    if not 1 <= count <= MAX_SLOTS:
        raise InvalidStream(f"slot count {count} is outside the allowed 1..{MAX_SLOTS}")
    if sig_count > MAX_SIGNATURES:
        raise InvalidStream(f"signature count {sig_count} is outside the allowed 0..{MAX_SIGNATURES}")
    slots, pos, end = [], _PREFIX.size + _fixed_len(version), len(raw) - _TRAILER_LEN
    for _ in range(count):
        if pos + _SLOT_HEAD.size > end:
            raise InvalidStream("malformed header: slot runs past the header")
        kind, body_len = _SLOT_HEAD.unpack_from(raw, pos)
        pos += _SLOT_HEAD.size
        if pos + body_len > end:
            raise InvalidStream("malformed header: slot runs past the header")
        slots.append(SlotRecord(kind, bytes(raw[pos : pos + body_len])))
        pos += body_len
    if pos != end:
        raise InvalidStream("malformed header: unexpected bytes after the slots")
    mac = bytes(raw[end : end + MAC_LEN])
    return Header(chunk_log2, salt, tuple(slots), mac=mac, suite=suite, version=version, sig_count=sig_count)


def payload_shape(payload_bytes, chunk_size):
    """(plaintext bytes, chunks) implied by a payload size, or None if no valid stream has it."""
    record = chunk_size + TAG_LEN
    chunks = max(1, -(-payload_bytes // record))
    plaintext = payload_bytes - chunks * TAG_LEN
    if plaintext < 0 or (chunks > 1 and plaintext <= (chunks - 1) * chunk_size):
        return None
    return plaintext, chunks
