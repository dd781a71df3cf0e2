"""Format v2 vectors: the trailer (authenticators, signatures, forgeries by the
holder of another slot) and which slot opens (README "Edge rules")."""

import io

from vectorkit import (
    CHUNK,
    ESCROW,
    KEY_1,
    KEY_2,
    PASSPHRASE,
    RAW,
    SIGNER_1,
    SIGNER_2,
    plaintext,
    recrc,
    sealed,
    vector,
    with_unknown_slot,
)

import encpipe.envelope
import encpipe.primitives
import encpipe.slots
from encpipe import provenance
from encpipe.envelope import read_header
from encpipe.primitives import payload_key
from encpipe.signing import VerifyKey
from encpipe.slots import Passphrase, RawKey

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
    `signatures`: (VerifyKey, signature) entries in place of the old ones, or a function
    of the new payload's commitment C that returns them."""
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
    elif callable(signatures):
        signatures = signatures(ledger.commitment())
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


@vector("v2_forged_opened_by_both", "payload failure",
        "the forgery above opened with the raw key and the escrow identity: the raw key's slot opens first, its"
        " authenticator fails, and no other slot is tried", keys=RAW, identities=IDENT)
def _():
    data = v2("v2_forged_by_escrow", plaintext("f", CHUNK + 9), [RawKey(KEY_1), ESCROW.recipient()])
    return forged(data, ESCROW, b"\\! id\n"), None


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


@vector("v2_header_only_no_key", "no match",
        "v2: a header alone, shorter than its trailer, opened with KEY_2, which no slot is for: the length is"
        " checked as the payload is read, once a key opened the header, so 77 (with KEY_1, 65)",
        keys=[KEY_2.hex()])
def _():
    return parts(v2("v2_header_only_no_key", b"secret", [RawKey(KEY_1)]))[0], None


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


@vector("v2_raw_key_slot_twice", "success",
        "v2: KEY_1 given twice to seal: two slots alike byte for byte, both counted in A (two authenticators);"
        " no slot is refused for repeating another, and the first opens", keys=RAW)
def _():
    data = plaintext("twice", 300)
    return v2("v2_raw_key_slot_twice", data, [RawKey(KEY_1), RawKey(KEY_1)]), data


@vector("v2_header_len_too_short", "header failure",
        "v2: header_len = 84, enough for v1 and one byte short of a v2 header with one empty slot", keys=RAW)
def _():
    data = v2("v2_header_len_too_short", b"secret", [RawKey(KEY_1)])
    return data[:8] + (84).to_bytes(2, "big") + data[10:], None


@vector("version_3", "header failure", "unsupported format version 3", keys=RAW)
def _():
    data = v2("version_3", b"secret", [RawKey(KEY_1)])
    return data[:7] + b"\x03" + data[8:], None
