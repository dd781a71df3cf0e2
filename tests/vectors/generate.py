#!/usr/bin/env python3
"""Write the encpipe test vectors (format v1, and v2 in v2_*.vec) into this
directory (or the one given).

Each vector is a small text header, a blank line, then the raw file bytes:

    expect: success | header failure | payload failure | no match | not signed
    key: <64 hex digits>          (any number of key:, passphrase:, identity: lines)
    passphrase: <text>
    identity: ENCPIPE-SECRET-KEY-1...
    signer: encpipesign1...       (the file must be signed by one of these)
    plaintext sha256: <hex>       (success only)
    plaintext length: <n>         (success only)
    comment: <free text>

All randomness comes from a DRBG seeded by the vector's name, so running this
again reproduces every byte; tests/test_vectors.py checks that.
"""

import hashlib
import io
import os
import struct
import sys
import zlib
from contextlib import contextmanager
from unittest import mock

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

from Crypto.Cipher import AES  # noqa: E402

import encpipe.envelope  # noqa: E402
import encpipe.primitives  # noqa: E402
from encpipe import provenance  # noqa: E402
import encpipe.slots  # noqa: E402
import encpipe.x25519  # noqa: E402
from encpipe import format as fmt  # noqa: E402
from encpipe.envelope import build_header, read_header, seal  # noqa: E402
from encpipe.primitives import header_mac, payload_key  # noqa: E402
from encpipe.signing import SigningKey, VerifyKey  # noqa: E402
from encpipe.slots import Passphrase, RawKey, ScryptSlot  # noqa: E402
from encpipe.stream import chunk_nonce  # noqa: E402
from encpipe.x25519 import X25519Identity  # noqa: E402

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


def vector(name, expect, comment, keys=(), passphrases=(), identities=(), signers=()):
    def register(make):
        VECTORS[name] = (expect, comment, keys, passphrases, identities, signers, make)
        return make

    return register


RAW = [KEY_1.hex()]


@vector("raw_key_empty", "success", "empty plaintext: one empty final chunk", keys=RAW)
def _():
    return sealed("raw_key_empty", b"", [RawKey(KEY_1)]), b""


@vector("raw_key_one_byte", "success", "a single byte", keys=RAW)
def _():
    data = plaintext("one", 1)
    return sealed("raw_key_one_byte", data, [RawKey(KEY_1)]), data


@vector("raw_key_exact_chunk", "success", "exactly one chunk: the final chunk is full", keys=RAW)
def _():
    data = plaintext("exact", CHUNK)
    return sealed("raw_key_exact_chunk", data, [RawKey(KEY_1)]), data


@vector("raw_key_three_chunks", "success", "two full chunks and a short final one", keys=RAW)
def _():
    data = plaintext("three", 2 * CHUNK + 100)
    return sealed("raw_key_three_chunks", data, [RawKey(KEY_1)]), data


@vector("raw_key_1mib_chunks", "success", "default chunk size 2^20", keys=RAW)
def _():
    data = plaintext("big", 5000)
    return sealed("raw_key_1mib_chunks", data, [RawKey(KEY_1)], chunk_log2=20), data


@vector("passphrase", "success", "scrypt slot, log2(N)=10 r=8 p=1", passphrases=[PASSPHRASE])
def _():
    data = plaintext("pass", 1000)
    return sealed("passphrase", data, [Passphrase(PASSPHRASE, log2_n=10)]), data


@vector("two_slots_second_key", "success", "raw-key slots for two keys; opened by the second", keys=[KEY_2.hex()])
def _():
    data = plaintext("two", CHUNK + 1)
    return sealed("two_slots_second_key", data, [RawKey(KEY_1), RawKey(KEY_2)]), data


@vector("x25519", "success", "X25519 slot", identities=["IDENTITY"])
def _():
    data = plaintext("x", 777)
    return sealed("x25519", data, [X25519Identity(IDENTITY_SECRET).recipient()]), data


def with_unknown_slot(name, data, version):
    """A file whose first slot is of an unknown type (200): readers skip it."""
    base = sealed(name, data, [RawKey(KEY_1)], version=version)
    parsed = read_header(io.BytesIO(base))
    slots = (fmt.SlotRecord(200, b"future slot body"),) + parsed.header.slots
    header = build_header(file_key_of(base, RawKey(KEY_1)), slots, CHUNK_LOG2, parsed.header.payload_salt,
                          version=version)
    return reheader(base, header), data


@vector("unknown_slot_skipped", "success", "an unknown slot type (200) before a raw-key slot is skipped", keys=RAW)
def _():
    return with_unknown_slot("unknown_slot_skipped", plaintext("unknown", 300), version=1)


@vector("wrong_key", "no match", "sealed for KEY_1, opened with KEY_2", keys=[KEY_2.hex()])
def _():
    return sealed("wrong_key", b"secret", [RawKey(KEY_1)]), None


@vector("wrong_passphrase", "no match", "sealed with another passphrase", passphrases=["not it"])
def _():
    return sealed("wrong_passphrase", b"secret", [Passphrase(PASSPHRASE, log2_n=10)]), None


@vector("bad_magic", "header failure", "magic changed", keys=RAW)
def _():
    data = sealed("bad_magic", b"secret", [RawKey(KEY_1)])
    return b"ENCPIPF" + data[7:], None


@vector("version_2", "header failure", "a v1 file with its version byte set to 2: the v2 layout does not fit", keys=RAW)
def _():
    data = sealed("version_2", b"secret", [RawKey(KEY_1)])
    return data[:7] + b"\x02" + data[8:], None


@vector("header_crc_mismatch", "header failure", "one salt bit flipped, CRC left alone", keys=RAW)
def _():
    data = bytearray(sealed("header_crc_mismatch", b"secret", [RawKey(KEY_1)]))
    data[20] ^= 1
    return bytes(data), None


@vector("header_mac_mismatch", "header failure", "salt bit flipped and CRC recomputed: the MAC catches it", keys=RAW)
def _():
    data = sealed("header_mac_mismatch", b"secret", [RawKey(KEY_1)])
    size = read_header(io.BytesIO(data)).size
    header = bytearray(data[:size])
    header[20] ^= 1
    return recrc(bytes(header)) + data[size:], None


@vector("chunk_size_too_small", "header failure", "chunk_log2 = 13, CRC recomputed", keys=RAW)
def _():
    data = sealed("chunk_size_too_small", b"secret", [RawKey(KEY_1)])
    size = read_header(io.BytesIO(data)).size
    header = bytearray(data[:size])
    header[11] = 13
    return recrc(bytes(header)) + data[size:], None


@vector("scrypt_over_limit", "header failure", "passphrase slot with log2(N)=21, above the ceiling", passphrases=[PASSPHRASE])
def _():
    data = plaintext("limit", 10)
    base = sealed("scrypt_over_limit", data, [Passphrase(PASSPHRASE, log2_n=10)])
    slot = read_header(io.BytesIO(base)).slots[0]
    crafted = ScryptSlot(slot.salt, 21, slot.r, slot.p, slot.wrapped)
    header = fmt.Header(CHUNK_LOG2, read_header(io.BytesIO(base)).header.payload_salt, (crafted.encode(),), version=1)
    file_key = Passphrase(PASSPHRASE, log2_n=10).unwrap(slot)
    header = header._replace(mac=header_mac(file_key, header))
    return reheader(base, header), None


@vector("truncated_at_chunk_boundary", "payload failure", "the final chunk is missing", keys=RAW)
def _():
    data = sealed("truncated_at_chunk_boundary", plaintext("t", 2 * CHUNK + 5), [RawKey(KEY_1)])
    head, records = chunk_records(data)
    return head + b"".join(records[:2]), None


@vector("truncated_mid_chunk", "payload failure", "cut inside the final chunk", keys=RAW)
def _():
    data = sealed("truncated_mid_chunk", plaintext("m", CHUNK + 50), [RawKey(KEY_1)])
    return data[:-10], None


@vector("header_only", "payload failure", "a valid header and no payload", keys=RAW)
def _():
    data = sealed("header_only", b"x", [RawKey(KEY_1)])
    return data[: read_header(io.BytesIO(data)).size], None


@vector("trailing_byte", "payload failure", "one byte after the final chunk", keys=RAW)
def _():
    return sealed("trailing_byte", plaintext("tb", 100), [RawKey(KEY_1)]) + b"\x00", None


@vector("chunks_swapped", "payload failure", "chunks 0 and 1 swapped", keys=RAW)
def _():
    data = sealed("chunks_swapped", plaintext("s", 2 * CHUNK + 5), [RawKey(KEY_1)])
    head, r = chunk_records(data)
    return head + r[1] + r[0] + r[2], None


@vector("payload_bit_flip", "payload failure", "one bit flipped in chunk 1", keys=RAW)
def _():
    data = bytearray(sealed("payload_bit_flip", plaintext("f", 2 * CHUNK + 5), [RawKey(KEY_1)]))
    data[-100] ^= 0x10
    return bytes(data), None


@vector("final_flag_missing", "payload failure", "the last chunk sealed with last = 0", keys=RAW)
def _():
    data = sealed("final_flag_missing", b"", [RawKey(KEY_1)])
    head, _ = chunk_records(data)
    key = payload_key(file_key_of(data, RawKey(KEY_1)), read_header(io.BytesIO(data)).header)
    return head + seal_chunk(key, 0, False, b"abc"), None


@vector("empty_final_chunk_after_full", "payload failure", "a full chunk then an empty final chunk", keys=RAW)
def _():
    data = sealed("empty_final_chunk_after_full", b"", [RawKey(KEY_1)])
    head, _ = chunk_records(data)
    key = payload_key(file_key_of(data, RawKey(KEY_1)), read_header(io.BytesIO(data)).header)
    return head + seal_chunk(key, 0, False, plaintext("e", CHUNK)) + seal_chunk(key, 1, True, b""), None


# --- format v2 ---------------------------------------------------------------------------

ESCROW = X25519Identity(IDENTITY_SECRET)
IDENT = ["IDENTITY"]


def v2(name, data, recipients, **options):
    return sealed(name, data, recipients, version=2, **options)


def parts(data):
    """(header bytes, payload bytes, trailer bytes) of a v2 file."""
    parsed = read_header(io.BytesIO(data))
    end = len(data) - parsed.trailer_len
    return data[: parsed.size], data[parsed.size : end], data[end:]


def forged(data, opener, payload, keep_signatures=False, signatures=None):
    """A holder of one slot keeps the header, writes a new payload and a trailer with a
    valid MAC; the other slots' authenticators are copied (it cannot make them).
    `signatures`: (VerifyKey, signature) entries in place of the old ones."""
    parsed = read_header(io.BytesIO(data))
    file_key = encpipe.envelope.unlock(parsed, [opener])[0]
    header, head, _, tail = parsed.header, *parts(data)
    out = io.BytesIO()
    ledger = provenance.Ledger(header, file_key, sign=header.sig_count > 0)
    encpipe.envelope.seal_payload(io.BytesIO(payload), out, payload_key(file_key, header), header.chunk_size,
                                  ledger=ledger)
    old = provenance.Trailer.parse(tail, header)
    if signatures is None:
        signatures = old.signatures if keep_signatures else ()
    trailer = provenance.Trailer(old.authenticators, tuple(signatures))
    return head + out.getvalue() + trailer.encode(file_key, header, ledger.tag_commitment())


def flip(data, offset):
    out = bytearray(data)
    out[offset] ^= 0x01
    return bytes(out)


@vector("v2_raw_key_three_chunks", "success", "v2: two full chunks, a short one, the raw key's authenticator", keys=RAW)
def _():
    data = plaintext("v2 three", 2 * CHUNK + 100)
    return v2("v2_raw_key_three_chunks", data, [RawKey(KEY_1)]), data


@vector("v2_raw_key_empty", "success", "v2: empty plaintext", keys=RAW)
def _():
    return v2("v2_raw_key_empty", b"", [RawKey(KEY_1)]), b""


@vector("v2_passphrase", "success", "v2: a passphrase slot and its authenticator", passphrases=[PASSPHRASE])
def _():
    data = plaintext("v2 pass", 1000)
    return v2("v2_passphrase", data, [Passphrase(PASSPHRASE, log2_n=10)]), data


@vector("v2_x25519_unsigned", "success", "v2: x25519 only; opens, not sender-authenticated", identities=IDENT)
def _():
    data = plaintext("v2 x", 777)
    return v2("v2_x25519_unsigned", data, [ESCROW.recipient()]), data


@vector("v2_signed", "success", "v2: raw key and x25519, signed by signer 1 and 2; signer 2 required",
        keys=RAW, signers=[SIGNER_2])
def _():
    data = plaintext("v2 signed", CHUNK + 5)
    return v2("v2_signed", data, [RawKey(KEY_1), ESCROW.recipient()], signing_keys=[SIGNER_1, SIGNER_2]), data


@vector("v2_signed_x25519", "success", "v2: x25519 only, signed; the signer authenticates it",
        identities=IDENT, signers=[SIGNER_1])
def _():
    data = plaintext("v2 signed x", 3000)
    return v2("v2_signed_x25519", data, [ESCROW.recipient()], signing_keys=[SIGNER_1]), data


@vector("v2_unknown_slot_skipped", "success", "v2: an unknown slot (200) has no authenticator", keys=RAW)
def _():
    return with_unknown_slot("v2_unknown_slot_skipped", plaintext("v2 unknown", 300), version=2)


@vector("v2_wrong_signer", "not signed", "v2: signed by signer 1, signer 2 required", keys=RAW, signers=[SIGNER_2])
def _():
    return v2("v2_wrong_signer", b"secret", [RawKey(KEY_1)], signing_keys=[SIGNER_1]), None


@vector("v2_unsigned_signer_required", "not signed", "v2: unsigned, a signer required", keys=RAW, signers=[SIGNER_1])
def _():
    return v2("v2_unsigned_signer_required", b"secret", [RawKey(KEY_1)]), None


@vector("v1_signer_required", "not signed", "a v1 file carries no signature", keys=RAW, signers=[SIGNER_1])
def _():
    return sealed("v1_signer_required", b"secret", [RawKey(KEY_1)]), None


@vector("v1_signer_required_no_key", "not signed",
        "a v1 file with a signer required is refused from its header, before any key is tried: 67, not 77",
        keys=[KEY_2.hex()], signers=[SIGNER_1])
def _():
    return sealed("v1_signer_required_no_key", b"secret", [RawKey(KEY_1)]), None


@vector("v2_forged_by_escrow", "payload failure", "the x25519 holder rewrote the payload of a raw key + escrow file",
        keys=RAW)
def _():
    data = v2("v2_forged_by_escrow", plaintext("f", CHUNK + 9), [RawKey(KEY_1), ESCROW.recipient()])
    return forged(data, ESCROW, b"\\! id\n"), None


@vector("v2_forged_by_passphrase", "payload failure", "the passphrase holder rewrote the payload of a raw key + passphrase file",
        keys=RAW)
def _():
    pw = Passphrase(PASSPHRASE, log2_n=10)
    data = v2("v2_forged_by_passphrase", plaintext("fp", 900), [RawKey(KEY_1), pw])
    return forged(data, pw, b"DROP TABLE important;\n"), None


@vector("v2_forged_opens_for_its_forger", "success", "the forgery above opens for the escrow holder: it made it",
        identities=IDENT)
def _():
    data = v2("v2_forged_by_escrow", plaintext("f", CHUNK + 9), [RawKey(KEY_1), ESCROW.recipient()])
    return forged(data, ESCROW, b"\\! id\n"), b"\\! id\n"


@vector("v2_forged_signatures_kept", "payload failure", "the escrow holder rewrote a signed file, keeping its signatures",
        identities=IDENT)
def _():
    data = v2("v2_forged_signatures_kept", plaintext("fs", 500), [ESCROW.recipient()], signing_keys=[SIGNER_1])
    return forged(data, ESCROW, b"other", keep_signatures=True), None


NEUTRAL = (1).to_bytes(32, "little")  # the neutral element of edwards25519: a point of small order


@vector("v2_signed_by_small_order_key", "payload failure",
        "v2: x25519 only; the trailer's one signature is R = the neutral element, S = 0, beside the verify key"
        " 01 00..00 (the neutral element): RFC 8032's check passes for any message, and a key of small order is"
        " refused, so the file is rejected like one whose signature does not verify", identities=IDENT)
def _():
    data = plaintext("small order", 400)
    base = v2("v2_signed_by_small_order_key", data, [ESCROW.recipient()], signing_keys=[SIGNER_1])
    return forged(base, ESCROW, data, signatures=[(VerifyKey(NEUTRAL), NEUTRAL + bytes(32))]), None


@vector("v2_trailer_removed", "payload failure", "v2: the trailer cut off", keys=RAW)
def _():
    head, payload, _ = parts(v2("v2_trailer_removed", plaintext("tr", 2 * CHUNK + 1), [RawKey(KEY_1)]))
    return head + payload, None


@vector("v2_trailer_truncated", "payload failure", "v2: the last trailer byte cut off", keys=RAW)
def _():
    return v2("v2_trailer_truncated", plaintext("tt", 100), [RawKey(KEY_1)])[:-1], None


@vector("v2_trailer_mac_flipped", "payload failure", "v2: one bit of trailer_mac flipped", keys=RAW)
def _():
    return flip(v2("v2_trailer_mac_flipped", plaintext("tm", 100), [RawKey(KEY_1)]), -1), None


@vector("v2_authenticator_flipped", "payload failure", "v2: one bit of the raw key's authenticator flipped", keys=RAW)
def _():
    data = v2("v2_authenticator_flipped", plaintext("ta", 100), [RawKey(KEY_1)])
    return flip(data, len(data) - 64), None


@vector("v2_signature_flipped", "payload failure", "v2: one bit of a signature flipped", keys=RAW)
def _():
    data = v2("v2_signature_flipped", plaintext("ts", 100), [RawKey(KEY_1)], signing_keys=[SIGNER_1])
    return flip(data, len(data) - 40), None


@vector("v2_cut_at_chunk_boundary", "payload failure", "v2: the final chunk removed, the trailer kept", keys=RAW)
def _():
    head, payload, tail = parts(v2("v2_cut_at_chunk_boundary", plaintext("cb", 2 * CHUNK + 7), [RawKey(KEY_1)]))
    return head + payload[: 2 * (CHUNK + 16)] + tail, None


@vector("v2_trailing_byte", "payload failure", "v2: one byte after the trailer", keys=RAW)
def _():
    return v2("v2_trailing_byte", plaintext("tb2", 100), [RawKey(KEY_1)]) + b"\x00", None


@vector("v2_sig_count_over_limit", "header failure", "v2: sig_count = 17, CRC recomputed", keys=RAW)
def _():
    data = v2("v2_sig_count_over_limit", b"secret", [RawKey(KEY_1)])
    size = read_header(io.BytesIO(data)).size
    header = bytearray(data[:size])
    header[45] = 17
    return recrc(bytes(header)) + data[size:], None


@vector("version_3", "header failure", "unsupported format version 3", keys=RAW)
def _():
    data = v2("version_3", b"secret", [RawKey(KEY_1)])
    return data[:7] + b"\x03" + data[8:], None


# --- which slot opens (README "Edge rules"): the key order, not the slot order, decides ----------

OTHER_FILE_KEY = hashlib.sha256(b"encpipe test: a file key of another file").digest()


def reslotted(name, data, recipients, opener, change):
    """A v2 file for `recipients` whose slots `change` rewrites (a list of decoded slots
    in, one out), its header MAC'd again under the file key `opener` unwraps."""
    base = v2(name, data, recipients)
    parsed = read_header(io.BytesIO(base))
    file_key = encpipe.envelope.unlock(parsed, [opener])[0]
    header = build_header(file_key, change(list(parsed.slots)), CHUNK_LOG2, parsed.header.payload_salt, version=2)
    return reheader(base, header)


def wrapping_another_key(slot, kek):
    return slot._replace(wrapped=encpipe.slots.wrap_file_key(kek, OTHER_FILE_KEY))


def raw_key_order(name):
    """KEY_2's slot first, wrapping another file key; KEY_1's slot, wrapping this one's, second."""
    data = plaintext("order", 600)
    kek_2 = encpipe.primitives.hkdf(KEY_2, b"", encpipe.slots.INFO_RAW_WRAP)
    return reslotted(name, data, [RawKey(KEY_2), RawKey(KEY_1)], RawKey(KEY_1),
                     lambda slots: [wrapping_another_key(slots[0], kek_2), slots[1]]), data


@vector("v2_key_order_first_key_decides", "success",
        "v2: KEY_2's slot (first) wraps another file key, KEY_1's (second) this one; keys given KEY_1, KEY_2:"
        " KEY_1 is tried first, on its own slot", keys=[KEY_1.hex(), KEY_2.hex()])
def _():
    return raw_key_order("v2_key_order_first_key_decides")


@vector("v2_key_order_second_key_listed_first", "header failure",
        "v2: the file above, keys given KEY_2, KEY_1: KEY_2's slot unwraps first, the header MAC fails,"
        " no other slot is tried", keys=[KEY_2.hex(), KEY_1.hex()])
def _():
    return raw_key_order("v2_key_order_first_key_decides")[0], None


@vector("v2_passphrase_cheapest_slot_first", "success",
        "v2: two slots of one passphrase; the first (log2(N)=11) wraps another file key, the second"
        " (log2(N)=10) this one: the cheaper slot is tried first", passphrases=[PASSPHRASE])
def _():
    data = plaintext("cheap", 500)
    dear, cheap = Passphrase(PASSPHRASE, log2_n=11), Passphrase(PASSPHRASE, log2_n=10)

    def change(slots):
        kek = encpipe.slots.scrypt_kek(PASSPHRASE.encode(), slots[0].salt, 11, 8, 1)
        return [wrapping_another_key(slots[0], kek), slots[1]]

    return reslotted("v2_passphrase_cheapest_slot_first", data, [dear, cheap], cheap, change), data


@vector("v2_passphrase_slot_over_limit_skipped", "success",
        "v2: two slots of one passphrase; the first has log2(N)=9, under the floor: it is skipped"
        " without running scrypt and the second opens", passphrases=[PASSPHRASE])
def _():
    data = plaintext("floor", 400)
    pw = Passphrase(PASSPHRASE, log2_n=10)
    return reslotted("v2_passphrase_slot_over_limit_skipped", data, [pw, pw], pw,
                     lambda slots: [slots[0]._replace(log2_n=9), slots[1]]), data


@vector("v2_passphrase_before_identity", "success",
        "v2: an x25519 slot (first) wrapping another file key, a passphrase slot this one's; opened with both:"
        " the passphrase is tried before the identity", passphrases=[PASSPHRASE], identities=IDENT)
def _():
    data = plaintext("before", 200)
    pw = Passphrase(PASSPHRASE, log2_n=10)

    def change(slots):
        with deterministic("v2_passphrase_before_identity: another file"):
            return [ESCROW.recipient().wrap(OTHER_FILE_KEY), slots[1]]

    return reslotted("v2_passphrase_before_identity", data, [ESCROW.recipient(), pw], pw, change), data


LOW_ORDER = bytes(32)  # u = 0: a point of small order (RFC 7748, section 7)


@vector("v2_x25519_low_order_slot_skipped", "success",
        "v2: two x25519 slots for the identity; the first's ephemeral key is 0 (small order): it is"
        " skipped and the second opens", identities=IDENT)
def _():
    data = plaintext("low", 300)
    return reslotted("v2_x25519_low_order_slot_skipped", data, [ESCROW.recipient(), ESCROW.recipient()], ESCROW,
                     lambda slots: [slots[0]._replace(ephemeral=LOW_ORDER), slots[1]]), data


@vector("v2_x25519_low_order_only", "header failure",
        "v2: the identity's only slot has an ephemeral key of small order: 65, not 77", identities=IDENT)
def _():
    return reslotted("v2_x25519_low_order_only", b"secret", [ESCROW.recipient()], ESCROW,
                     lambda slots: [slots[0]._replace(ephemeral=LOW_ORDER)]), None


def render(name):
    expect, comment, keys, passphrases, identities, signers, make = VECTORS[name]
    data, clear = make()
    lines = [f"expect: {expect}"]
    lines += [f"key: {k}" for k in keys]
    lines += [f"passphrase: {p}" for p in passphrases]
    lines += [f"identity: {X25519Identity(IDENTITY_SECRET)}" for _ in identities]
    lines += [f"signer: {s.verify_key}" for s in signers]
    if clear is not None:
        lines += [f"plaintext sha256: {hashlib.sha256(clear).hexdigest()}", f"plaintext length: {len(clear)}"]
    lines.append(f"comment: {comment}")
    return ("\n".join(lines) + "\n\n").encode() + data


def main(directory=HERE):
    for name in VECTORS:
        with open(os.path.join(directory, name + ".vec"), "wb") as out:
            out.write(render(name))


if __name__ == "__main__":
    main(*sys.argv[1:])
