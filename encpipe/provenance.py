"""Format v2's trailer: a commitment to the whole ciphertext, one authenticator
per raw-key and passphrase slot, and Ed25519 signatures (README "Format v2").

    C = SHA-256("encpipe v2 commitment" || suite || chunk_log2 || payload_salt
                || key_commit || SHA-256(record_0) || ... || SHA-256(record_n-1) || n u64)
    trailer = authenticator* (32 each) || (verify key 32 || signature 64)* || trailer_mac 32

An authenticator is HMAC-SHA256 over C under a key derived from its slot's own
secret (the raw key, or the passphrase's scrypt output), never from the file
key: holding another slot lets one read a file, not make one that passes.
"""

import hashlib
import hmac
import struct
from typing import NamedTuple

from .errors import InvalidStream, NotSigned
from .primitives import hkdf
from .signing import SIGNATURE_LEN, VerifyKey
from .slots import SLOT_RAW_KEY, SLOT_SCRYPT

AUTH_LEN = 32
MAC_LEN = 32
PUBLIC_LEN = 32
ENTRY_LEN = PUBLIC_LEN + SIGNATURE_LEN
AUTHENTICATED_KINDS = (SLOT_RAW_KEY, SLOT_SCRYPT)
COMMITMENT_LABEL = b"encpipe v2 commitment"
SIGNATURE_LABEL = b"encpipe v2 signature"
INFO_KEY_COMMIT = b"encpipe v2 key commitment"
INFO_TRAILER = b"encpipe v2 trailer"


def authenticated_slots(header):
    """Indexes of the slots that carry an authenticator, in header order."""
    return [i for i, record in enumerate(header.slots) if record.kind in AUTHENTICATED_KINDS]


def trailer_len(header):
    if header.version < 2:
        return 0
    return AUTH_LEN * len(authenticated_slots(header)) + ENTRY_LEN * header.sig_count + MAC_LEN


class Ledger:
    """Builds C from the record hashes, in order (stream.py calls add and end)."""

    def __init__(self, header, file_key):
        self.holdback = trailer_len(header)
        self.trailer = None
        self._count = 0
        key_commit = hkdf(file_key, header.payload_salt, INFO_KEY_COMMIT)
        fixed = struct.pack(">BB32s", header.suite, header.chunk_log2, header.payload_salt)
        self._hash = hashlib.sha256(COMMITMENT_LABEL + fixed + key_commit)

    def add(self, digest):
        self._hash.update(digest)
        self._count += 1

    def end(self, trailer):
        self.trailer = trailer

    def commitment(self):
        final = self._hash.copy()
        final.update(self._count.to_bytes(8, "big"))
        return final.digest()


def authenticator(key, commitment):
    return hmac.digest(key, commitment, "sha256")


class Trailer(NamedTuple):
    authenticators: tuple
    signatures: tuple  # (VerifyKey, signature bytes)

    @classmethod
    def parse(cls, raw, header):
        count = len(authenticated_slots(header))
        auths = tuple(raw[i * AUTH_LEN : (i + 1) * AUTH_LEN] for i in range(count))
        pos, entries = count * AUTH_LEN, []
        for _ in range(header.sig_count):
            entries.append((VerifyKey(raw[pos : pos + PUBLIC_LEN]), raw[pos + PUBLIC_LEN : pos + ENTRY_LEN]))
            pos += ENTRY_LEN
        return cls(auths, tuple(entries))

    def body(self):
        return b"".join(self.authenticators) + b"".join(k.public + s for k, s in self.signatures)

    def encode(self, file_key, header, commitment):
        return self.body() + trailer_mac(file_key, header, commitment, self.body())


def trailer_mac(file_key, header, commitment, body):
    key = hkdf(file_key, header.payload_salt, INFO_TRAILER)
    return hmac.digest(key, commitment + body, "sha256")


def sign(signing_keys, commitment):
    return tuple((k.verify_key, k.sign(SIGNATURE_LABEL + commitment)) for k in signing_keys)


class Provenance(NamedTuple):
    """What a verified file says about who made it."""

    sender_authenticated: bool
    authenticated_by: str = None  # "raw-key ID" or "passphrase", from the slot that opened it
    signed_by: tuple = ()  # key ids (hex) of every valid signature
    trusted_signer: str = None  # the --signer key id that signed it

    def report(self):
        return {
            "sender_authenticated": self.sender_authenticated,
            "authenticated_by": self.authenticated_by,
            "signed_by": list(self.signed_by),
            "trusted_signer": self.trusted_signer,
        }


def check(file_key, header, ledger, opened, signers):
    """Check the trailer in `ledger` against C; a Provenance, or InvalidStream (65)
    for a bad trailer or authenticator, NotSigned (67) when `signers` (a set of
    VerifyKey; empty: no requirement) has no valid signature on it. `opened` is the
    (slot index, decoded slot, identity) that gave the file key."""
    slot_index, slot, opener = opened
    commitment = ledger.commitment()
    raw = ledger.trailer
    expected = trailer_mac(file_key, header, commitment, raw[:-MAC_LEN])
    if not hmac.compare_digest(expected, raw[-MAC_LEN:]):
        raise InvalidStream("trailer authentication failed: the file is truncated, corrupt or was tampered with")
    trailer = Trailer.parse(raw, header)
    authenticated_by = None
    if slot_index in authenticated_slots(header) and hasattr(opener, "authenticator_key"):
        position = authenticated_slots(header).index(slot_index)
        key = opener.authenticator_key(slot)
        if not hmac.compare_digest(authenticator(key, commitment), trailer.authenticators[position]):
            raise InvalidStream(
                f"slot authenticator failed: this file was not made by a holder of the {opener.label} that opened it",
                hint="someone who holds another slot's key (an escrow identity, a passphrase) may have forged it",
            )
        authenticated_by = opener.label
    signed_by = []
    for verify_key, signature in trailer.signatures:
        if not verify_key.verify(SIGNATURE_LABEL + commitment, signature):
            raise InvalidStream(f"signature by {verify_key.key_id.hex()} does not verify: the file was tampered with")
        signed_by.append(verify_key)
    trusted = next((k for k in signed_by if k in signers), None)
    if signers and trusted is None:
        raise NotSigned(
            "not signed by a trusted signer" + (f" (signed by {_ids(signed_by)})" if signed_by else " (unsigned)"),
            hint=f"trusted: {_ids(signers)}",
        )
    return Provenance(
        sender_authenticated=bool(authenticated_by or trusted),
        authenticated_by=authenticated_by,
        signed_by=tuple(k.key_id.hex() for k in signed_by),
        trusted_signer=trusted.key_id.hex() if trusted else None,
    )


def _ids(keys):
    return ", ".join(k.key_id.hex() for k in keys)
