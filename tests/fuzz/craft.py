"""Hand-made hostile inputs: raw v1 headers with any field value and a correct CRC.

The CRC-32 at the end of the header is checked before anything else in the
header body, so an edit that does not recompute it only ever reaches the
checksum test. Everything here recomputes it, so a crafted field reaches the
check that is meant to catch it.
"""

import io
import os
import struct
import sys
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
if ROOT not in sys.path:
    sys.path.append(ROOT)  # an installed (or PYTHONPATH) encpipe comes first

MAGIC = b"ENCPIPE"
PREFIX_LEN = 10  # magic, version, header_len
FIXED_LEN = 35  # suite, chunk_log2, payload_salt, slot_count
TRAILER_LEN = 36  # mac, crc32
OFF_VERSION, OFF_HEADER_LEN, OFF_SUITE, OFF_CHUNK_LOG2, OFF_SALT, OFF_SLOT_COUNT = 7, 8, 10, 11, 12, 44
OFF_SLOTS = 45
SLOT_RAW, SLOT_SCRYPT, SLOT_X25519 = 1, 2, 3
UNKNOWN_KIND = 200


def header_len(data):
    return struct.unpack_from(">H", data, OFF_HEADER_LEN)[0]


def fix_crc(data, length=None):
    """`data` with the CRC of its first `length` bytes (default: header_len) recomputed."""
    length = header_len(data) if length is None else length
    if length < 4 or length > len(data):
        return bytes(data)
    body = bytes(data[: length - 4])
    return body + struct.pack(">I", zlib.crc32(body)) + bytes(data[length:])


def raw_header(
    slots,
    *,
    chunk_log2=14,
    version=1,
    suite=1,
    slot_count=None,
    length=None,
    salt=b"\x5a" * 32,
    mac=b"\x00" * 32,
):
    """A header from raw parts. slots: [(kind, body)]; slot_count/length default to the truth."""
    slot_bytes = b"".join(struct.pack(">BH", kind, len(body)) + body for kind, body in slots)
    true_length = PREFIX_LEN + FIXED_LEN + len(slot_bytes) + TRAILER_LEN
    count = len(slots) if slot_count is None else slot_count
    length = true_length if length is None else length
    body = (
        MAGIC
        + struct.pack(">BH", version, length)
        + struct.pack(">BB32sB", suite, chunk_log2, salt, count)
        + slot_bytes
        + mac
    )
    return body + struct.pack(">I", zlib.crc32(body))


def scrypt_body(log2_n, r, p, salt=b"\x11" * 16, wrapped=b"\x22" * 40):
    return salt + bytes([log2_n, r, p]) + wrapped


def seal_with(plaintext, recipients, *, extra=(), chunk_log2=14):
    """A genuine sealed file: a slot per recipient (encpipe objects) plus raw `extra` records."""
    from encpipe import envelope
    from encpipe.format import SlotRecord
    from encpipe.primitives import payload_key
    from encpipe.stream import seal_payload

    file_key = os.urandom(32)
    records = [r.wrap(file_key) for r in recipients] + [SlotRecord(k, b) for k, b in extra]
    header = envelope.build_header(file_key, records, chunk_log2, version=1)
    out = io.BytesIO()
    out.write(header.encode())
    seal_payload(io.BytesIO(plaintext), out, payload_key(file_key, header), header.chunk_size)
    return out.getvalue()


# --- running encpipe -----------------------------------------------------------------


def clean_env(extra=None):
    """This process's environment without ENCPIPE_* settings but ENCPIPE_CIPHER (the
    library the format tests run under: test_aead sets it), plus `extra`."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ENCPIPE_", "BACKUP_ENCRYPTION_KEY")) or k == "ENCPIPE_CIPHER"}
    env.update(extra or {})
    return env


def command(*args):
    """argv of encpipe as a real process (python -m: no launcher shim in the way)."""
    return [sys.executable, "-m", "encpipe", *args]


def run_in_process(argv, data=b"", env=None):
    """cli.main on in-memory streams: (status, stdout bytes, stderr text)."""
    from encpipe.cli import main

    out, err = io.BytesIO(), io.StringIO()
    status = main(list(argv), stdin=io.BytesIO(data), stdout=out, stderr=err, env=dict(env or {}))
    return status, out.getvalue(), err.getvalue()


def assert_error_lines(stderr, *words):
    """One `encpipe: error:` line, an optional hint line, no traceback; `words` in the error."""
    lines = stderr.splitlines()
    assert "Traceback" not in stderr, stderr
    assert 1 <= len(lines) <= 2 and lines[0].startswith("encpipe: error: "), stderr
    assert all(line.startswith("encpipe: hint: ") for line in lines[1:]), stderr
    for word in words:
        assert word in lines[0], (word, stderr)
