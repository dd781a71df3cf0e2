"""Format v2's trailer: one authenticator per raw-key and passphrase slot, Ed25519
signatures, and a MAC over it (README "Format v2").

Every record (ciphertext || tag, as stored) is measured by the thread that seals
or opens it, then added to a Ledger in order:

    L = SHA-256("encpipe v2 tags" || fixed || tag_0 || ... || tag_n-1 || n u64)
    auth_j = HMAC-SHA256(auth_key_j, "encpipe v2 authenticator" || fixed
                         || GMAC_j(nonce_0, record_0) || ... || GMAC_j(nonce_n-1, record_n-1) || n u64)
    C = SHA-256("encpipe v2 commitment" || fixed || SHA-256(record_0) || ... || n u64)  (signed files only)
    fixed = suite || chunk_log2 || payload_salt || key_commit
    trailer = auth_j* (32 each) || (verify key 32 || signature over C 64)* || HMAC(file key, L || ...) 32

auth_key_j comes from its slot's own secret (the raw key, or the passphrase's
scrypt output), never from the file key, and GMAC_j is keyed by it per file:
holding another slot lets one read a file, not make one that passes. GMAC runs
at the speed of GHASH, so an unsigned file costs little more than v1; only a
signature, which anyone may check, needs the collision-resistant C.
"""

import os
import struct
from collections import namedtuple

from . import aead
from .errors import InvalidStream, IOFailure, NotSigned
from .format import SIGNATURE_LEN, TAG_LEN
from .primitives import hkdf
from .slots import SLOT_RAW_KEY, SLOT_SCRYPT
from .spool import rewind
from .stream import seekable

AUTH_LEN = 32
MAC_LEN = 32
PUBLIC_LEN = 32
ENTRY_LEN = PUBLIC_LEN + SIGNATURE_LEN
AUTHENTICATED_KINDS = (SLOT_RAW_KEY, SLOT_SCRYPT)
TAGS_LABEL = b"encpipe v2 tags"
AUTHENTICATOR_LABEL = b"encpipe v2 authenticator"
COMMITMENT_LABEL = b"encpipe v2 commitment"
SIGNATURE_LABEL = b"encpipe v2 signature"
INFO_KEY_COMMIT = b"encpipe v2 key commitment"
INFO_RECORD_MAC = b"encpipe v2 record mac"
INFO_TRAILER = b"encpipe v2 trailer"
WITNESS_LEN = 16
CHANGED = "the input changed between the two passes"


def authenticated_slots(header):
    """Indexes of the slots that carry an authenticator, in header order."""
    return [i for i, record in enumerate(header.slots) if record.kind in AUTHENTICATED_KINDS]


def trailer_len(header):
    if header.version < 2:
        return 0
    return AUTH_LEN * len(authenticated_slots(header)) + ENTRY_LEN * header.sig_count + MAC_LEN


class Ledger:
    """L, the authenticators under `keys` (slot authenticator keys, in that order)
    and, when `sign`, C, built record by record: stream.py calls measure(record,
    nonce) in the worker that holds the record (before it is decrypted), add() with
    the result in record order, and end(trailer). With `checks_opener`, keys[0] is
    the key of the slot that opened the file, whose authenticator check() checks."""

    def __init__(self, header, file_key, keys=(), sign=False, checks_opener=False, witnesses=None):
        self.holdback = trailer_len(header)
        self._witnesses = witnesses
        self.trailer = None
        self.checks_opener = checks_opener
        self._count = 0
        import hashlib  # here, as hmac (primitives): OpenSSL's libcrypto, which inspect spares
        import hmac

        key_commit = hkdf(file_key, header.payload_salt, INFO_KEY_COMMIT)
        fixed = struct.pack(">BB32s", header.suite, header.chunk_log2, header.payload_salt) + key_commit
        self._sha256 = hashlib.sha256  # for measure(), in the workers: none of them imports a module
        self._tags = hashlib.sha256(TAGS_LABEL + fixed)
        self._macs = [aead.gmac(hkdf(key, header.payload_salt, INFO_RECORD_MAC)) for key in keys]
        self._auths = [hmac.new(key, AUTHENTICATOR_LABEL + fixed, "sha256") for key in keys]
        self._full = hashlib.sha256(COMMITMENT_LABEL + fixed) if sign else None
        # A record's witness (see Witnesses): the opener's record MAC, else a GMAC under the run's key.
        self._witness_mac = aead.gmac(witnesses.key) if witnesses is not None and not checks_opener else None

    def measure(self, record, nonce):
        """What add() needs of one record; thread-safe, called in parallel."""
        full = self._sha256(record).digest() if self._full is not None else None
        seen = self._witness_mac(nonce, record) if self._witness_mac is not None else None
        return bytes(record[-TAG_LEN:]), [mac(nonce, record) for mac in self._macs], full, seen

    def add(self, measured):
        tag, macs, full, seen = measured
        self._tags.update(tag)
        for auth, mac in zip(self._auths, macs):
            auth.update(mac)
        if full is not None:
            self._full.update(full)
        if self._witnesses is not None:
            self._witnesses.add(seen if seen is not None else macs[0])
        self._count += 1

    def end(self, trailer):
        self.trailer = trailer
        if self._witnesses is not None:
            self._witnesses.end()

    def _final(self, running):
        final = running.copy()
        final.update(self._count.to_bytes(8, "big"))
        return final.digest()

    def tag_commitment(self):
        return self._final(self._tags)

    def commitment(self):
        """C, for signatures (None unless built with `sign`)."""
        return self._final(self._full) if self._full is not None else None

    def authenticators(self):
        return tuple(self._final(auth) for auth in self._auths)

    def new_authenticators(self):
        """The authenticators of the keys after the opener's (rewrap's added slots)."""
        return self.authenticators()[1:] if self.checks_opener else self.authenticators()


def authenticator_keys(recipients, slots):
    """The authenticator keys of the raw-key and passphrase slots among `slots`, each
    from the recipient that made it."""
    return [r.authenticator_key(slot) for r, slot in zip(recipients, slots) if slot.kind in AUTHENTICATED_KINDS]


def opening_ledger(header, file_key, opened, new_keys=(), sign=False, witnesses=None, again=False):
    """A Ledger that checks the authenticator of the slot that opened the file (when
    it has one), computes C when the file is signed or `sign`, and authenticators
    under `new_keys` after it. `opened` is (slot index, decoded slot, identity).
    `witnesses`: a Witnesses that a first pass fills and a second checks, record by
    record. `again`: for that second pass over bytes a first one checked: no C."""
    slot_index, slot, opener = opened
    mine = slot_index in authenticated_slots(header) and hasattr(opener, "authenticator_key")
    keys = ([opener.authenticator_key(slot)] if mine else []) + list(new_keys)
    sign = (sign or header.sig_count > 0) and not again
    return Ledger(header, file_key, keys, sign=sign, checks_opener=mine, witnesses=witnesses)


class Witnesses:
    """What tells a second pass over a file, record by record, that a record is the
    one the first pass checked, before its plaintext leaves: a MAC of each record
    under a key no one else has, the opening slot's record MAC (under a key from
    its own secret) or, when the file was opened by another slot, a GMAC under a
    random key of this run, never written anywhere. A holder of the file key who can
    write the file may change a chunk between the passes and keep its tag, not
    this MAC. The first pass writes one per record to `store` (an unlinked private
    file: 16 bytes a record, so memory stays flat), the second compares."""

    def __init__(self, store):
        import hmac

        self._compare = hmac.compare_digest  # for add(), which may run in a worker: it imports nothing
        self.key = os.urandom(32)
        self._store = store
        self._checking = False

    def add(self, witness):
        if not self._checking:
            self._io(self._store.write, witness)
        elif not self._compare(self._io(self._store.read, WITNESS_LEN), witness):
            raise InvalidStream(f"{CHANGED}: the output stops before the first record that changed")

    def end(self):
        """The first pass has ended: the second compares from the start; or the
        second has ended, and must have met every record."""
        if not self._checking:
            rewind(self._store)
            self._checking = True
        elif self._io(self._store.read, 1):
            raise InvalidStream(f"{CHANGED}: it is shorter now")

    @staticmethod
    def _io(operation, argument):
        try:
            return operation(argument)
        except OSError as e:
            raise IOFailure(f"cannot use a temporary file: {e.strerror or e}") from None


class Trailer(namedtuple("Trailer", "authenticators signatures")):
    __slots__ = ()
    # signatures: (VerifyKey, signature bytes)

    @classmethod
    def parse(cls, raw, header):
        count = len(authenticated_slots(header))
        auths = tuple(raw[i * AUTH_LEN : (i + 1) * AUTH_LEN] for i in range(count))
        pos, entries = count * AUTH_LEN, []
        if header.sig_count:
            from .signing import VerifyKey  # here: an unsigned file's seal, open and inspect do without it
        for _ in range(header.sig_count):
            entries.append((VerifyKey(raw[pos : pos + PUBLIC_LEN]), raw[pos + PUBLIC_LEN : pos + ENTRY_LEN]))
            pos += ENTRY_LEN
        return cls(auths, tuple(entries))

    def body(self):
        return b"".join(self.authenticators) + b"".join(k.public + s for k, s in self.signatures)

    def encode(self, file_key, header, tag_commitment):
        return self.body() + trailer_mac(file_key, header, tag_commitment, self.body())


def trailer_mac(file_key, header, tag_commitment, body):
    import hmac

    key = hkdf(file_key, header.payload_salt, INFO_TRAILER)
    return hmac.digest(key, tag_commitment + body, "sha256")


def sign(signing_keys, commitment):
    return tuple((k.verify_key, k.sign(SIGNATURE_LABEL + commitment)) for k in signing_keys)


class Provenance(namedtuple("Provenance", "sender_authenticated authenticated_by signed_by trusted_signer",
                            defaults=(None, (), None))):
    """What a verified file says about who made it."""

    __slots__ = ()
    # authenticated_by: "raw-key ID" or "passphrase", from the slot that opened it
    # signed_by: key ids (hex) of every valid signature
    # trusted_signer: the --signer key id that signed it

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
    (slot index, decoded slot, identity) that gave the file key; `ledger` is from
    opening_ledger."""
    import hmac

    slot_index, _, opener = opened
    raw = ledger.trailer
    expected = trailer_mac(file_key, header, ledger.tag_commitment(), raw[:-MAC_LEN])
    if not hmac.compare_digest(expected, raw[-MAC_LEN:]):
        raise InvalidStream("trailer authentication failed: the file is truncated, corrupt or was tampered with")
    trailer = Trailer.parse(raw, header)
    authenticated_by = None
    if ledger.checks_opener:
        position = authenticated_slots(header).index(slot_index)
        if not hmac.compare_digest(ledger.authenticators()[0], trailer.authenticators[position]):
            raise InvalidStream(
                f"slot authenticator failed: this file was not made by a holder of the {opener.label} that opened it",
                hint="someone who holds another slot's key (an escrow identity, a passphrase) may have forged it",
            )
        authenticated_by = opener.label
    signed_by, commitment = [], ledger.commitment()
    for verify_key, signature in trailer.signatures:
        if not verify_key.verify(SIGNATURE_LABEL + commitment, signature):
            why = verify_key.refusal()
            raise InvalidStream(f"signature by {verify_key.key_id.hex()} does not verify: "
                                + (f"its verify key is {why}: the file is forged" if why else "the file was tampered with"))
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


# --- a trailer read without a key (inspect, listings) -------------------------


def read_to_trailer(src, sealed):
    """(bytes left in `src`, its trailer: the last trailer_len of them), reading to the
    end (by seeking, when `src` can)."""
    size = sealed.trailer_len
    if seekable(src):
        here = src.tell()
        end = src.seek(0, 2)
        src.seek(max(here, end - size))
        tail = src.read(size)
        src.seek(here)
        return end - here, tail
    total, tail = 0, b""
    while True:
        block = src.read(1 << 20)
        if not block:
            return total, tail
        total += len(block)
        tail = (tail + block)[-size:] if size else b""


def trailer_signers(sealed, tail):
    """The key ids of the signatures in a v2 trailer, unverified (no key needed)."""
    if len(tail) < sealed.trailer_len:
        return []
    return [key.key_id.hex() for key, _ in Trailer.parse(tail, sealed.header).signatures]
