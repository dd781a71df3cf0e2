"""Format v1 vectors: sizes and chunking, slot kinds, wrong keys, and every way a
header or a payload is refused."""

import hmac
import io

from vectorkit import (
    CHUNK,
    CHUNK_LOG2,
    IDENTITY_SECRET,
    KEY_1,
    KEY_2,
    PASSPHRASE,
    RAW,
    chunk_records,
    file_key_of,
    plaintext,
    recrc,
    reheader,
    seal_chunk,
    sealed,
    vector,
    with_unknown_slot,
)

from encpipe import format as fmt
from encpipe.envelope import read_header
from encpipe.primitives import header_mac, hkdf, payload_key
from encpipe.slots import Passphrase, RawKey, ScryptSlot
from encpipe.x25519 import X25519Identity


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


def _header_edit(name, offset, value):
    """A v1 file for KEY_1 whose header byte at `offset` is `value`, CRC recomputed."""
    data = sealed(name, b"secret", [RawKey(KEY_1)])
    size = read_header(io.BytesIO(data)).size
    header = bytearray(data[:size])
    header[offset] = value
    return recrc(bytes(header)) + data[size:], None


@vector("chunk_size_too_large", "header failure", "chunk_log2 = 25, CRC recomputed", keys=RAW)
def _():
    return _header_edit("chunk_size_too_large", 11, 25)


@vector("suite_unknown", "header failure", "cipher suite 2, CRC recomputed", keys=RAW)
def _():
    return _header_edit("suite_unknown", 10, 2)


@vector("slot_count_zero", "header failure", "slot_count = 0, CRC recomputed", keys=RAW)
def _():
    return _header_edit("slot_count_zero", 44, 0)


def _with_slots(name, slots_after):
    """A v1 file whose header holds KEY_1's slot, then `slots_after` (records), MAC'd
    under its file key."""
    data = plaintext(name, 100)
    base = sealed(name, data, [RawKey(KEY_1)])
    parsed = read_header(io.BytesIO(base))
    slots = parsed.header.slots + tuple(slots_after)
    header = fmt.Header(CHUNK_LOG2, parsed.header.payload_salt, slots, version=1)
    header = header._replace(mac=header_mac(file_key_of(base, RawKey(KEY_1)), header))
    return reheader(base, header), data


@vector("slot_known_kind_wrong_length", "header failure",
        "KEY_1's slot, then a passphrase slot (kind 2) of 60 bytes, not 59: the file is rejected"
        " when its header is read, before any key is tried, though KEY_1's slot would open it", keys=RAW)
def _():
    return _with_slots("slot_known_kind_wrong_length", [fmt.SlotRecord(2, bytes(60))])[0], None


@vector("unknown_slots_only", "no match", "one slot, of an unknown kind (200): no key is tried on it", keys=RAW)
def _():
    data = sealed("unknown_slots_only", b"secret", [RawKey(KEY_1)])
    parsed = read_header(io.BytesIO(data))
    header = fmt.Header(CHUNK_LOG2, parsed.header.payload_salt, (fmt.SlotRecord(200, b"future slot body"),),
                        version=1)
    header = header._replace(mac=header_mac(file_key_of(data, RawKey(KEY_1)), header))
    return reheader(data, header), None


@vector("scrypt_over_limit_untried", "no match",
        "KEY_1's slot and a passphrase slot with log2(N)=21 (over the limit), opened with KEY_2 and no"
        " passphrase: no key is tried on the passphrase slot, so 77, not 65", keys=[KEY_2.hex()])
def _():
    over = ScryptSlot(bytes(16), 21, 8, 1, bytes(40)).encode()
    return _with_slots("scrypt_over_limit_untried", [over])[0], None


@vector("raw_key_slot_does_not_unwrap", "no match",
        "one raw-key slot with KEY_1's key id whose wrapped key fails AES key wrap's integrity check: skipped,"
        " and nothing else opens: 77, not 65", keys=RAW)
def _():
    data = sealed("raw_key_slot_does_not_unwrap", b"secret", [RawKey(KEY_1)])
    parsed = read_header(io.BytesIO(data))
    broken = parsed.slots[0]._replace(wrapped=bytes(40)).encode()
    header = fmt.Header(CHUNK_LOG2, parsed.header.payload_salt, (broken,), version=1)
    header = header._replace(mac=header_mac(file_key_of(data, RawKey(KEY_1)), header))
    return reheader(data, header), None


def _prefix_edit(name, header_len):
    """A v1 file for KEY_1 whose `header_len` field says `header_len`, CRC left alone:
    the length is checked before the CRC, so it alone refuses the file."""
    data = sealed(name, b"secret", [RawKey(KEY_1)])
    return data[:8] + header_len.to_bytes(2, "big") + data[10:], None


@vector("header_len_too_short", "header failure",
        "header_len = 83, one less than a header with one empty slot: refused before the CRC is read", keys=RAW)
def _():
    return _prefix_edit("header_len_too_short", 83)


@vector("header_len_over_limit", "header failure",
        "header_len = 16385, over the limit of 16384: refused before any more is read", keys=RAW)
def _():
    return _prefix_edit("header_len_over_limit", 16385)


@vector("slot_count_over_limit", "header failure", "slot_count = 65, CRC recomputed", keys=RAW)
def _():
    return _header_edit("slot_count_over_limit", 44, 65)


@vector("slot_runs_past_header", "header failure",
        "KEY_1's slot with body_len 49, not 48: it runs into header_mac; CRC recomputed", keys=RAW)
def _():
    return _header_edit("slot_runs_past_header", 47, 49)


@vector("byte_after_slots", "header failure",
        "one zero byte between the last slot and header_mac, header_len one more, MAC and CRC made under the"
        " file key: no byte is reserved, so the file is refused though its MAC verifies", keys=RAW)
def _():
    data = sealed("byte_after_slots", b"secret", [RawKey(KEY_1)])
    parsed = read_header(io.BytesIO(data))
    body = bytearray(parsed.header.authenticated_bytes() + b"\x00")
    body[8:10] = (len(body) + 36).to_bytes(2, "big")
    mac = hmac.new(hkdf(file_key_of(data, RawKey(KEY_1)), parsed.header.payload_salt, b"encpipe v1 header"),
                   bytes(body), "sha256").digest()
    return recrc(bytes(body) + mac + bytes(4)) + data[parsed.size:], None


@vector("final_record_too_short", "payload failure",
        "a full chunk, then a final record of 15 bytes (less than a tag)", keys=RAW)
def _():
    data = sealed("final_record_too_short", plaintext("short", CHUNK + 50), [RawKey(KEY_1)])
    head, records = chunk_records(data)
    return head + records[0] + records[1][:15], None


@vector("first_unwrapping_slot_decides", "header failure",
        "KEY_1's slot wraps another file key (it unwraps, the header MAC then fails), KEY_2's slot the right"
        " one; opened with KEY_1 and KEY_2: 65, KEY_2's slot is not tried", keys=[KEY_1.hex(), KEY_2.hex()])
def _():
    data = plaintext("decides", 100)
    base = sealed("first_unwrapping_slot_decides", data, [RawKey(KEY_2)])
    parsed = read_header(io.BytesIO(base))
    other_key = bytes(range(64, 96))
    slots = (RawKey(KEY_1).wrap(other_key).encode(),) + parsed.header.slots
    header = fmt.Header(CHUNK_LOG2, parsed.header.payload_salt, slots, version=1)
    header = header._replace(mac=header_mac(file_key_of(base, RawKey(KEY_2)), header))
    return reheader(base, header), None
