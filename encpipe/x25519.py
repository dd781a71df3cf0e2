"""Public-key slots: X25519 key agreement with an ephemeral key per file.

Text forms (checksummed, so a mistyped key is caught):
    public key  "encpipe1" + base32(public || check), lower case, no padding
    identity    "ENCPIPE-SECRET-KEY-1" + base32(secret || check), upper case
where check = SHA-256(label || key)[:4].
"""

import hmac
from typing import NamedTuple

from Crypto.Protocol.DH import import_x25519_private_key, import_x25519_public_key, key_agreement
from Crypto.Random import get_random_bytes

from .errors import InvalidStream, UsageError
from .format import SlotRecord
from .primitives import hkdf
from .textform import IDENTITY_PREFIX, KEY_LEN, decode as _decode, encode as _encode
from .slots import KEY_ID_LEN, SLOT_X25519, WRAPPED_LEN, _split, unwrap_file_key, wrap_file_key

PUBLIC_PREFIX = "encpipe1"
SECRET_PREFIX = IDENTITY_PREFIX + "1"
_PUBLIC_LABEL = b"encpipe v1 x25519 public key"
_SECRET_LABEL = b"encpipe v1 x25519 secret key"
INFO_KEY_ID = b"encpipe v1 x25519 key id"
INFO_WRAP = b"encpipe v1 x25519 wrap"


def public_key_id(public):
    return hkdf(public, b"", INFO_KEY_ID, KEY_ID_LEN)


class X25519Slot(NamedTuple):
    key_id: bytes
    ephemeral: bytes
    wrapped: bytes
    kind = SLOT_X25519

    @classmethod
    def decode(cls, body):
        return cls(*_split(body, KEY_ID_LEN, KEY_LEN, WRAPPED_LEN, kind_name="x25519"))

    def encode(self):
        return SlotRecord(self.kind, self.key_id + self.ephemeral + self.wrapped)

    def describe(self):
        return {"type": "x25519", "key_id": self.key_id.hex()}


def _kek(shared, ephemeral, public):
    return hkdf(shared, ephemeral + public, INFO_WRAP)


def _agree(private, public_bytes):
    public = import_x25519_public_key(public_bytes)  # rejects low-order points
    return key_agreement(static_priv=private, eph_pub=public, kdf=lambda secret: secret)


class X25519Recipient:
    cost = 0

    def __init__(self, public):
        try:
            import_x25519_public_key(public)
        except ValueError:
            raise UsageError("not a valid X25519 public key") from None
        self.public = bytes(public)
        self.key_id = public_key_id(self.public)

    def __str__(self):
        return _encode(PUBLIC_PREFIX, _PUBLIC_LABEL, self.public, upper=False)

    def wrap(self, file_key):
        ephemeral = import_x25519_private_key(get_random_bytes(KEY_LEN))
        ephemeral_public = ephemeral.public_key().export_key(format="raw")
        shared = _agree(ephemeral, self.public)
        kek = _kek(shared, ephemeral_public, self.public)
        return X25519Slot(self.key_id, ephemeral_public, wrap_file_key(kek, file_key))


class X25519Identity:
    cost = 0.5  # after raw keys: a raw key also proves who made a v2 file

    def __init__(self, secret):
        self._private = import_x25519_private_key(secret)
        self._secret = bytes(secret)
        self._public = self._private.public_key().export_key(format="raw")
        self.key_id = public_key_id(self._public)

    @classmethod
    def generate(cls):
        return cls(get_random_bytes(KEY_LEN))

    def __str__(self):
        return _encode(SECRET_PREFIX, _SECRET_LABEL, self._secret, upper=True)

    def __repr__(self):
        return f"X25519Identity(id={self.key_id.hex()})"

    def recipient(self):
        return X25519Recipient(self._public)

    def can_try(self, slot):
        return isinstance(slot, X25519Slot) and hmac.compare_digest(slot.key_id, self.key_id)

    def unwrap(self, slot):
        try:
            shared = _agree(self._private, slot.ephemeral)
        except ValueError:
            raise InvalidStream("x25519 slot holds an invalid ephemeral key") from None
        return unwrap_file_key(_kek(shared, slot.ephemeral, self._public), slot.wrapped)


def parse_recipient(text, source):
    return X25519Recipient(_decode(text, PUBLIC_PREFIX, _PUBLIC_LABEL, "public key", source))


def parse_identity(text, source):
    return X25519Identity(_decode(text, SECRET_PREFIX, _SECRET_LABEL, "identity", source))


def read_recipient_file(text, source):
    """Public keys, one per line; blank lines and # comments ignored."""
    lines = [line.strip() for line in text.splitlines()]
    keys = [parse_recipient(line, source) for line in lines if line and not line.startswith("#")]
    if not keys:
        raise UsageError(f"{source}: no public key found")
    return keys
