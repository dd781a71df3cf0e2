"""Public-key slots: X25519 key agreement with an ephemeral key per file.

Text forms (checksummed, so a mistyped key is caught):
    public key  "encpipe1" + base32(public || check), lower case, no padding
    identity    "ENCPIPE-SECRET-KEY-1" + base32(secret || check), upper case
where check = SHA-256(label || key)[:4].

The curve arithmetic comes from the library the cipher comes from (aead.py):
OpenSSL through `cryptography` when that is the cipher, else pycryptodome. It
is looked up without importing the cipher, so `keyid` and `pubkey` stay light;
an unusable `cryptography` falls back to pycryptodome. Both clamp the secret
(RFC 7748) and refuse a peer key of small order, whose shared secret would be
all zeros; tests/test_x25519_libraries.py checks that they agree.
"""

import hmac
from collections import namedtuple
from os import urandom as get_random_bytes  # what Crypto.Random.get_random_bytes is, without importing Crypto

from . import aead
from .errors import InvalidStream, UsageError
from .format import SlotRecord
from .primitives import hkdf
from .textform import IDENTITY_PREFIX, KEY_LEN, decode as _decode, encode as _encode, lines
from .slots import KEY_ID_LEN, SLOT_X25519, WRAPPED_LEN, _split, unwrap_file_key, wrap_file_key

PUBLIC_PREFIX = "encpipe1"
SECRET_PREFIX = IDENTITY_PREFIX + "1"
_PUBLIC_LABEL = b"encpipe v1 x25519 public key"
_SECRET_LABEL = b"encpipe v1 x25519 secret key"
INFO_KEY_ID = b"encpipe v1 x25519 key id"
INFO_WRAP = b"encpipe v1 x25519 wrap"


def public_key_id(public):
    return hkdf(public, b"", INFO_KEY_ID, KEY_ID_LEN)


class X25519Slot(namedtuple("X25519Slot", "key_id ephemeral wrapped")):
    __slots__ = ()

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


class _Pycryptodome:
    @staticmethod
    def public(secret):
        from Crypto.Protocol.DH import import_x25519_private_key

        return import_x25519_private_key(secret).public_key().export_key(format="raw")

    @staticmethod
    def agree(secret, public):
        """The shared secret; ValueError when `public` has small order."""
        from Crypto.Protocol.DH import import_x25519_private_key, import_x25519_public_key, key_agreement

        peer = import_x25519_public_key(public)  # refuses points of small order
        return key_agreement(static_priv=import_x25519_private_key(secret), eph_pub=peer, kdf=lambda s: s)


class _Cryptography:
    def __init__(self):
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

        self._private, self._public = X25519PrivateKey.from_private_bytes, X25519PublicKey.from_public_bytes

    def public(self, secret):
        return self._private(secret).public_key().public_bytes_raw()

    def agree(self, secret, public):
        """The shared secret; ValueError when `public` has small order (OpenSSL's
        result is then all zeros, which `cryptography` refuses)."""
        return self._private(secret).exchange(self._public(public))


_libraries = {}


def _library(name=None):
    """X25519 from the named library (default: the cipher's), made once."""
    return aead.made_once(_libraries, {aead.CRYPTOGRAPHY: _Cryptography, aead.PYCRYPTODOME: _Pycryptodome}, name)


_P = 2**255 - 19
_PROBE = bytes(range(1, KEY_LEN + 1))  # any secret: a small-order peer gives zeros with every one


def check_public(public):
    """ValueError unless `public` is a usable X25519 public key (32 bytes, not of small order)."""
    _library().agree(_PROBE, public)


def _agree(secret, public):
    return _library().agree(secret, public)


class X25519Recipient:
    cost = 0

    def __init__(self, public):
        try:
            check_public(public)
        except ValueError:
            raise UsageError("not a valid X25519 public key") from None
        if int.from_bytes(public, "little") >= _P:  # bit 255 set, or u >= p: no identity's key has that key id
            raise UsageError("not a valid X25519 public key: not in canonical form (u >= 2^255 - 19)")
        self.public = bytes(public)
        self.key_id = public_key_id(self.public)

    def __str__(self):
        return _encode(PUBLIC_PREFIX, _PUBLIC_LABEL, self.public, upper=False)

    def wrap(self, file_key):
        ephemeral = get_random_bytes(KEY_LEN)
        ephemeral_public = _library().public(ephemeral)
        shared = _agree(ephemeral, self.public)
        kek = _kek(shared, ephemeral_public, self.public)
        return X25519Slot(self.key_id, ephemeral_public, wrap_file_key(kek, file_key))


class X25519Identity:
    cost = 2  # after raw keys and passphrases: they also prove who made a v2 file

    def __init__(self, secret):
        self._secret = bytes(secret)
        self._public = _library().public(self._secret)
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
            shared = _agree(self._secret, slot.ephemeral)
        except ValueError:
            raise InvalidStream("x25519 slot holds an invalid ephemeral key") from None
        return unwrap_file_key(_kek(shared, slot.ephemeral, self._public), slot.wrapped)


def parse_recipient(text, source):
    return X25519Recipient(_decode(text, PUBLIC_PREFIX, _PUBLIC_LABEL, "public key", source))


def parse_identity(text, source):
    return X25519Identity(_decode(text, SECRET_PREFIX, _SECRET_LABEL, "identity", source))


def read_recipient_file(text, source):
    """Public keys, one per line; blank lines and # comments ignored."""
    keys = [parse_recipient(line, f"{source}, line {number}") for number, line in lines(text)]
    if not keys:
        raise UsageError(f"{source}: no public key found")
    return keys
