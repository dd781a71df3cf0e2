"""Format v2 vectors: the trailer (authenticators, signatures, forgeries by the
holder of another slot) and which slot opens (README "Edge rules")."""

import functools
import hashlib
import io

from vectorkit import (
    CHUNK,
    CHUNK_LOG2,
    ESCROW,
    KEY_1,
    KEY_2,
    PASSPHRASE,
    RAW,
    SIGNER_1,
    SIGNER_2,
    deterministic,
    plaintext,
    recrc,
    reheader,
    sealed,
    vector,
    with_unknown_slot,
)

import encpipe.envelope
import encpipe.primitives
import encpipe.slots
from encpipe import provenance
from encpipe.envelope import build_header, read_header
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


@vector("v2_signed_twice_by_one_key", "success",
        "v2: two signatures by signer 1 (the same verify key twice): each is checked, neither refused",
        keys=RAW, signers=[SIGNER_1])
def _():
    data = plaintext("twice", 300)
    return v2("v2_signed_twice_by_one_key", data, [RawKey(KEY_1)], signing_keys=[SIGNER_1, SIGNER_1]), data


L_ORDER = 2**252 + 27742317777372353535851937790883648493  # the order of edwards25519's base point


@vector("v2_signature_s_not_reduced", "payload failure",
        "v2: x25519 only; signer 1's signature with l added to S (S >= l): refused, as RFC 8032 says,"
        " though S mod l would verify", identities=IDENT)
def _():
    data = plaintext("s plus l", 400)
    base = v2("v2_signature_s_not_reduced", data, [ESCROW.recipient()], signing_keys=[SIGNER_1])
    key, signature = provenance.Trailer.parse(parts(base)[2], read_header(io.BytesIO(base)).header).signatures[0]
    s = int.from_bytes(signature[32:], "little") + L_ORDER
    return forged(base, ESCROW, data, signatures=[(key, signature[:32] + s.to_bytes(32, "little"))]), None


def _mixed_order_signer():
    """Signer 1's verify key A plus the point of order 2 (0, -1): (-x, -y), not of small
    order, so accepted; and a signing function for it: with the challenge k odd, the
    cofactored check [8][S]B = [8]R + [8][k]A' passes and the cofactorless one fails."""
    from Crypto.PublicKey import ECC

    p = 2**255 - 19
    h = hashlib.sha512(hashlib.sha256(b"encpipe test signing key 1").digest()).digest()
    a = (int.from_bytes(h[:32], "little") & ((1 << 254) - 8)) | (1 << 254)
    base = ECC._curves["ed25519"].G

    def encode(x, y):
        return (y | (x & 1) << 255).to_bytes(32, "little")

    x, y = (base * a).xy
    mixed = encode(p - int(x), p - int(y))

    def sign(message):
        for counter in range(256):
            r = int.from_bytes(hashlib.sha512(h[32:] + message + bytes([counter])).digest(), "little") % L_ORDER
            big_r = encode(*(int(c) for c in (base * r).xy))
            k = int.from_bytes(hashlib.sha512(big_r + mixed + message).digest(), "little") % L_ORDER
            if k % 2:
                return big_r + ((r + k * a) % L_ORDER).to_bytes(32, "little")
        raise AssertionError("no odd challenge")

    return VerifyKey(mixed), sign


class _Signer:
    def __init__(self, verify_key):
        self.verify_key = verify_key


MIXED_KEY, MIXED_SIGN = _mixed_order_signer()


@vector("v2_signed_by_mixed_order_key", "success",
        "v2: x25519 only, signed by A' = signer 1's key plus the point of order 2 (a key of mixed order, not"
        " refused), with an odd challenge k: RFC 8032's cofactored check [8][S]B = [8]R + [8][k]A' passes,"
        " the cofactorless [S]B = R + [k]A' would not; A' required as the signer", identities=IDENT,
        signers=[_Signer(MIXED_KEY)])
def _():
    data = plaintext("mixed order", 500)
    base = v2("v2_signed_by_mixed_order_key", data, [ESCROW.recipient()], signing_keys=[SIGNER_1])
    sign = lambda commitment: [(MIXED_KEY, MIXED_SIGN(provenance.SIGNATURE_LABEL + commitment))]  # noqa: E731
    return forged(base, ESCROW, data, signatures=sign), data


def _signed_with_r(rs):
    """Signer 1's signature with R stored as `rs`, a point of small order, and
    S = k * a: [8][S]B = [8]R + [8][k]A holds whatever R of small order is (only the
    holder of a can make S), so RFC 8032's cofactored check passes."""
    h = hashlib.sha512(hashlib.sha256(b"encpipe test signing key 1").digest()).digest()
    a = (int.from_bytes(h[:32], "little") & ((1 << 254) - 8)) | (1 << 254)
    public = SIGNER_1.verify_key.public

    def sign(commitment):
        message = provenance.SIGNATURE_LABEL + commitment
        k = int.from_bytes(hashlib.sha512(rs + public + message).digest(), "little") % L_ORDER
        return [(SIGNER_1.verify_key, rs + (k * a % L_ORDER).to_bytes(32, "little"))]

    return sign


@vector("v2_signature_r_small_order", "success",
        "v2: x25519 only; signer 1's signature with R = 01 00..00 (the neutral element, of small order) and"
        " S = k * a: the cofactored check passes and R is not refused for its order (libsodium's check"
        " would refuse it); signer 1 required", identities=IDENT, signers=[SIGNER_1])
def _():
    data = plaintext("small r", 300)
    base = v2("v2_signature_r_small_order", data, [ESCROW.recipient()], signing_keys=[SIGNER_1])
    return forged(base, ESCROW, data, signatures=_signed_with_r((1).to_bytes(32, "little"))), data


@vector("v2_signature_r_not_canonical", "payload failure",
        "v2: the vector above with R spelt y = p + 1 (the neutral element again, not canonical: y >= p):"
        " RFC 8032 refuses to decode it, so the signature does not verify", identities=IDENT, signers=[SIGNER_1])
def _():
    data = plaintext("small r", 300)
    base = v2("v2_signature_r_small_order", data, [ESCROW.recipient()], signing_keys=[SIGNER_1])
    rs = (2**255 - 19 + 1).to_bytes(32, "little")
    return forged(base, ESCROW, data, signatures=_signed_with_r(rs)), None


@vector("v2_signature_r_sign_bit_set", "payload failure",
        "v2: the vector v2_signature_r_small_order with R spelt 01 00..80 (y = 1, the neutral element, with the"
        " sign bit set though x = 0): RFC 8032 refuses to decode it (a decoder that ignores the sign of x = 0"
        " takes it, and the cofactored check then passes), so the signature does not verify",
        identities=IDENT, signers=[SIGNER_1])
def _():
    data = plaintext("small r", 300)
    base = v2("v2_signature_r_small_order", data, [ESCROW.recipient()], signing_keys=[SIGNER_1])
    rs = (1 | 1 << 255).to_bytes(32, "little")
    return forged(base, ESCROW, data, signatures=_signed_with_r(rs)), None


@functools.cache  # the same bytes for both vectors below: their scrypt runs (seconds) made once
def _two_costly_slots(name):
    """Two slots of one passphrase, each of scrypt work N * r * p = 2^21 (log2(N)=14,
    r=8, p=16); the first's wrapped key does not unwrap (AES key wrap integrity)."""
    data = plaintext("budget", 300)
    pw = Passphrase(PASSPHRASE, log2_n=14, r=8, p=16)
    return reslotted(name, data, [pw, pw], pw, lambda slots: [slots[0]._replace(wrapped=bytes(40)), slots[1]]), data


@vector("v2_passphrase_scrypt_budget_default", "success",
        "v2: two passphrase slots of work 2^21, the first does not unwrap: two attempts, 2^22, within the"
        " default scrypt budget of 2^24", passphrases=[PASSPHRASE])
def _():
    return _two_costly_slots("v2_passphrase_scrypt_budget")


@vector("v2_passphrase_scrypt_budget_spent", "header failure",
        "v2: the file above with a scrypt budget of 2^21: the first attempt spends it, the second is not"
        " made, and no identity opens the file: 65", passphrases=[PASSPHRASE], scrypt_budget=1 << 21)
def _():
    return _two_costly_slots("v2_passphrase_scrypt_budget")[0], None
