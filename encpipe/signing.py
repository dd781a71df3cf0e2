"""Ed25519 signing keys (RFC 8032): who made a file.

Text forms (encpipe/textform.py: checksummed base32, no padding):
    verify key   "encpipesign1" + base32(public || check), lower case
    signing key  "ENCPIPE-SIGNING-KEY-1" + base32(seed || check), upper case
with labels distinct from the x25519 ones, so that neither is taken for the
other. A key id is HKDF(public, "", "encpipe v2 ed25519 key id", 8).

A verify key that proves nothing is refused (README "Edge rules"): under a point
of small order, R = the neutral element and S = 0 satisfy RFC 8032's check for
every message; and an encoding with y >= p, which some libraries take, is a
second spelling of a point.

The arithmetic comes from the library the cipher comes from (aead.py), as for
X25519: OpenSSL through `cryptography`, else pycryptodome (whose elliptic-curve
modules cost a process about 5 MiB and a start-up its C declarations' parse).
Both make the same keys and signatures (RFC 8032's are deterministic). They
check differently: README's rule is the cofactored check, pycryptodome's;
OpenSSL's is the cofactorless one, which refuses some signatures the cofactored
one takes (R or A with a part of small order) and takes none it refuses, once
the encodings are checked here first (points as RFC 8032 decodes them, S < l).
So a signature OpenSSL takes is good, and one it refuses is asked of
pycryptodome: an honest signer's never is.
"""

import hmac
from os import urandom as get_random_bytes  # what Crypto.Random.get_random_bytes is, without importing Crypto

from . import aead
from .errors import UsageError
from .format import SIGNATURE_LEN
from .primitives import hkdf
from .textform import KEY_LEN, SIGNING_PREFIX, decode, encode, lines, words

SECRET_PREFIX = SIGNING_PREFIX + "1"
PUBLIC_PREFIX = "encpipesign1"
_PUBLIC_LABEL = b"encpipe v2 ed25519 public key"
_SECRET_LABEL = b"encpipe v2 ed25519 secret key"
INFO_KEY_ID = b"encpipe v2 ed25519 key id"
KEY_ID_LEN = 8
P = 2**255 - 19
_Y_ORDER_8 = int.from_bytes(bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"), "little")
# The y of the eight points of small order: order 1 (y = 1), 2 (y = -1), 4 (y = 0), 8 (the last two).
SMALL_ORDER_Y = frozenset({0, 1, P - 1, _Y_ORDER_8, P - _Y_ORDER_8})
D = -121665 * pow(121666, P - 2, P) % P  # edwards25519: -x^2 + y^2 = 1 + d x^2 y^2
L = 2**252 + 27742317777372353535851937790883648493  # the order of the base point


def _y(encoded):
    """The y of a point's 32 bytes (bit 255 is the sign of x)."""
    return int.from_bytes(encoded, "little") & ((1 << 255) - 1)


def decodes(encoded):
    """Whether 32 bytes are a point as RFC 8032 (section 5.1.3) decodes one: y < p,
    some x with x^2 = (y^2 - 1) / (d y^2 + 1), and not x = 0 with the sign bit set."""
    y = _y(encoded)
    if len(encoded) != KEY_LEN or y >= P:
        return False
    x2 = (y * y - 1) * pow(D * y * y + 1, P - 2, P) % P  # d y^2 + 1 is never 0: d is not a square
    if x2 == 0:
        return encoded[-1] >> 7 == 0
    return pow(x2, (P - 1) // 2, P) == 1  # Euler's criterion: x2 is a square


class _Pycryptodome:
    def __init__(self):
        from Crypto.Signature import eddsa

        self._eddsa = eddsa

    def public(self, seed):
        return self._eddsa.import_private_key(seed).public_key().export_key(format="raw")

    def sign(self, seed, message):
        return self._eddsa.new(self._eddsa.import_private_key(seed), "rfc8032").sign(message)

    def verify(self, public, message, signature):
        """The cofactored check (pycryptodome 3.23 and 4.5 alike)."""
        try:
            self._eddsa.new(self._eddsa.import_public_key(public), "rfc8032").verify(message, signature)
        except ValueError:
            return False
        return True


class _Cryptography:
    def __init__(self):
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

        self._private, self._public = Ed25519PrivateKey.from_private_bytes, Ed25519PublicKey.from_public_bytes
        self._invalid = InvalidSignature

    def public(self, seed):
        return self._private(seed).public_key().public_bytes_raw()

    def sign(self, seed, message):
        return self._private(seed).sign(message)

    def verify(self, public, message, signature):
        """OpenSSL's cofactorless check; what it refuses, the cofactored one decides."""
        try:
            self._public(public).verify(signature, message)
        except self._invalid:
            return _library(aead.PYCRYPTODOME).verify(public, message, signature)
        return True


_libraries = {}


def _library(name=None):
    """Ed25519 from the named library (default: the cipher's), made once."""
    return aead.made_once(_libraries, {aead.CRYPTOGRAPHY: _Cryptography, aead.PYCRYPTODOME: _Pycryptodome}, name)


def refusal(public):
    """Why the 32 bytes `public` are refused as a verify key, or None when they are not."""
    y = _y(public)
    if y >= P:
        return "not in canonical form (y >= 2^255 - 19)"
    if y in SMALL_ORDER_Y:
        return "of small order: a signature by it would verify for any file"
    if not decodes(public):
        return "not a point of edwards25519"
    return None


class VerifyKey:
    """An Ed25519 public key: checks signatures."""

    def __init__(self, public):
        self.public = bytes(public)
        self.key_id = hkdf(self.public, b"", INFO_KEY_ID, KEY_ID_LEN)

    def __str__(self):
        return encode(PUBLIC_PREFIX, _PUBLIC_LABEL, self.public, upper=False)

    def __eq__(self, other):
        return isinstance(other, VerifyKey) and hmac.compare_digest(self.public, other.public)

    def __hash__(self):
        return hash(self.public)

    def refusal(self):
        return refusal(self.public)

    def verify(self, message, signature):
        """True when `signature` is this key's signature of `message` (never for a key refused,
        an R that RFC 8032 section 5.1.3 does not decode, nor S >= l, whatever the library
        does: pycryptodome 3.23, which setup.cfg admits, took R spelt with x = 0 and the
        sign bit set, vector v2_signature_r_sign_bit_set)."""
        if len(signature) != SIGNATURE_LEN or self.refusal() or not decodes(signature[:KEY_LEN]):
            return False
        if int.from_bytes(signature[KEY_LEN:], "little") >= L:
            return False
        return _library().verify(self.public, message, signature)


class SigningKey:
    """An Ed25519 secret key (its 32-byte seed)."""

    def __init__(self, seed):
        if len(seed) != KEY_LEN:
            raise UsageError(f"a signing key must be {KEY_LEN} bytes, not {len(seed)}")
        self._seed = bytes(seed)
        self.verify_key = VerifyKey(_library().public(self._seed))
        self.key_id = self.verify_key.key_id

    @classmethod
    def generate(cls):
        return cls(get_random_bytes(KEY_LEN))

    def __str__(self):
        return encode(SECRET_PREFIX, _SECRET_LABEL, self._seed, upper=True)

    def __repr__(self):
        return f"SigningKey(id={self.key_id.hex()})"

    def sign(self, message):
        return _library().sign(self._seed, message)


def parse_signing_key(text, source):
    return SigningKey(decode(text, SECRET_PREFIX, _SECRET_LABEL, "signing key", source))


def parse_verify_key(text, source):
    key = VerifyKey(decode(text, PUBLIC_PREFIX, _PUBLIC_LABEL, "verify key", source))
    why = key.refusal()
    if why:
        raise UsageError(f"{source}: refused verify key {key.key_id.hex()}: {why}")
    return key


def new_key_file(path):
    """(verify key text, key file text) for a new signing key; it goes to a file only."""
    if not path:
        raise UsageError("keygen --sign needs -o FILE for the signing key")
    key = SigningKey.generate()
    return str(key.verify_key), f"# verify key: {key.verify_key}\n{key}\n"


def parse_verify_keys(text, source, numbered=True):
    """Verify keys, whitespace-separated or one per line; # starts a comment line. A
    bad one is named by its line when `numbered` (a file's, not a variable's)."""
    return [parse_verify_key(word, f"{source}, line {number}" if numbered else source)
            for number, line in lines(text) for word in words(line)]
