"""Format v2 vectors: which slot opens (README "Edge rules"), low-order and
non-canonical points, signatures' edge rules and costly slots."""

import functools
import hashlib
import io

from vectorkit import (
    CHUNK_LOG2,
    ESCROW,
    KEY_1,
    KEY_2,
    PASSPHRASE,
    RAW,
    SIGNER_1,
    deterministic,
    plaintext,
    reheader,
    vector,
)

import encpipe.envelope
import encpipe.primitives
import encpipe.slots
from encpipe import provenance
from encpipe.envelope import build_header, read_header
from encpipe.signing import VerifyKey
from encpipe.slots import Passphrase, RawKey

from vectors_v2 import IDENT, forged, parts, v2


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
    return dear_slot_wraps_another_key("v2_passphrase_cheapest_slot_first", plaintext("cheap", 500), PASSPHRASE)


def dear_slot_wraps_another_key(name, data, cheap_passphrase):
    """A slot of PASSPHRASE (log2(N)=11) wrapping another file key, then one of
    `cheap_passphrase` (log2(N)=10) wrapping this one's."""
    dear, cheap = Passphrase(PASSPHRASE, log2_n=11), Passphrase(cheap_passphrase, log2_n=10)

    def change(slots):
        kek = encpipe.slots.scrypt_kek(PASSPHRASE.encode(), slots[0].salt, 11, 8, 1)
        return [wrapping_another_key(slots[0], kek), slots[1]]

    return reslotted(name, data, [dear, cheap], cheap, change), data


SECOND_PASSPHRASE = "vector passphrase, the second"


@vector("v2_passphrases_by_slot_cost", "success",
        "v2: PASSPHRASE's slot (first, log2(N)=11) wraps another file key, SECOND_PASSPHRASE's (log2(N)=10)"
        " this one; given in that order: slot cost comes before the passphrases' order, so both are tried on"
        " the cheaper slot first and the second opens (one passphrase after another would refuse it, 65)",
        passphrases=[PASSPHRASE, SECOND_PASSPHRASE])
def _():
    return dear_slot_wraps_another_key("v2_passphrases_by_slot_cost", plaintext("costs", 300), SECOND_PASSPHRASE)


@vector("v2_passphrases_in_turn_on_slots_of_one_cost", "success",
        "v2: two slots of one cost (log2(N)=10): SECOND_PASSPHRASE's (first) wraps another file key, PASSPHRASE's"
        " (second) this one; given PASSPHRASE, SECOND_PASSPHRASE: the first passphrase is tried on both slots"
        " before the second on any, so PASSPHRASE opens its slot (slot by slot, SECOND_PASSPHRASE would unwrap"
        " the first slot's other key: 65)", passphrases=[PASSPHRASE, SECOND_PASSPHRASE])
def _():
    data = plaintext("in turn", 300)
    second, first = Passphrase(SECOND_PASSPHRASE, log2_n=10), Passphrase(PASSPHRASE, log2_n=10)

    def change(slots):
        kek = encpipe.slots.scrypt_kek(SECOND_PASSPHRASE.encode(), slots[0].salt, 10, 8, 1)
        return [wrapping_another_key(slots[0], kek), slots[1]]

    return reslotted("v2_passphrases_in_turn_on_slots_of_one_cost", data, [second, first], first, change), data


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


@vector("v2_passphrase_scrypt_budget_exact", "success",
        "v2: the file above with a scrypt budget of 2^22: the two attempts' sum is the budget itself, and an"
        " attempt is made when the sum with it is at or below the budget, so the second slot opens",
        passphrases=[PASSPHRASE], scrypt_budget=1 << 22)
def _():
    return _two_costly_slots("v2_passphrase_scrypt_budget")


@vector("v2_passphrase_slot_over_limit_not_charged", "success",
        "v2: two slots of one passphrase, the second of work 2^21 (log2(N)=14, r=8, p=16), the first the same"
        " but log2(N)=9 (under the floor, work 2^16: the cheaper, so taken first); a scrypt budget of 2^21: the"
        " first is skipped, neither run nor charged, and the second's attempt fits the budget (charged, the"
        " skipped slot would leave no room for it: 65)", passphrases=[PASSPHRASE], scrypt_budget=1 << 21)
def _():
    data = plaintext("not charged", 300)
    pw = Passphrase(PASSPHRASE, log2_n=14, r=8, p=16)
    return reslotted("v2_passphrase_slot_over_limit_not_charged", data, [pw, pw], pw,
                     lambda slots: [slots[0]._replace(log2_n=9), slots[1]]), data


@vector("v2_passphrase_scrypt_budget_spent", "header failure",
        "v2: the file above with a scrypt budget of 2^21: the first attempt spends it, the second is not"
        " made, and no identity opens the file: 65", passphrases=[PASSPHRASE], scrypt_budget=1 << 21)
def _():
    return _two_costly_slots("v2_passphrase_scrypt_budget")[0], None
