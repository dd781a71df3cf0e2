"""Ed25519 signing keys (RFC 8032, pycryptodome): who made a file.

Text forms (encpipe/textform.py: checksummed base32, no padding):
    verify key   "encpipesign1" + base32(public || check), lower case
    signing key  "ENCPIPE-SIGNING-KEY-1" + base32(seed || check), upper case
with labels distinct from the x25519 ones, so that neither is taken for the
other. A key id is HKDF(public, "", "encpipe v2 ed25519 key id", 8).

A verify key that proves nothing is refused (README "Edge rules"): under a point
of small order, R = the neutral element and S = 0 satisfy RFC 8032's check for
every message; and an encoding with y >= p, which some libraries take, is a
second spelling of a point.
"""

import hmac

from .errors import UsageError
from .primitives import hkdf
from .textform import KEY_LEN, SIGNING_PREFIX, decode, encode, lines, words

SECRET_PREFIX = SIGNING_PREFIX + "1"
PUBLIC_PREFIX = "encpipesign1"
_PUBLIC_LABEL = b"encpipe v2 ed25519 public key"
_SECRET_LABEL = b"encpipe v2 ed25519 secret key"
INFO_KEY_ID = b"encpipe v2 ed25519 key id"
KEY_ID_LEN = 8
SIGNATURE_LEN = 64
P = 2**255 - 19
_Y_ORDER_8 = int.from_bytes(bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"), "little")
# The y of the eight points of small order: order 1 (y = 1), 2 (y = -1), 4 (y = 0), 8 (the last two).
SMALL_ORDER_Y = frozenset({0, 1, P - 1, _Y_ORDER_8, P - _Y_ORDER_8})


def _eddsa():
    from Crypto.Signature import eddsa  # only files that are signed or checked pay for it

    return eddsa


def _y(encoded):
    """The y of a point's 32 bytes (bit 255 is the sign of x)."""
    return int.from_bytes(encoded, "little") & ((1 << 255) - 1)


def refusal(public):
    """Why the 32 bytes `public` are refused as a verify key, or None when they are not."""
    y = _y(public)
    if y >= P:
        return "not in canonical form (y >= 2^255 - 19)"
    if y in SMALL_ORDER_Y:
        return "of small order: a signature by it would verify for any file"
    try:
        _eddsa().import_public_key(public)
    except ValueError:
        return "not a point of edwards25519"
    return None


def _x_zero_signed(encoded):
    """Whether a point's 32 bytes give x = 0 (y = 1 or y = p - 1) with the sign bit set,
    which RFC 8032 (5.1.3, step 4) does not decode: a second spelling of R. pycryptodome
    4 refuses such an R itself; 3.23, which setup.cfg admits, took it (vector
    v2_signature_r_sign_bit_set opened)."""
    return len(encoded) == KEY_LEN and encoded[-1] >> 7 == 1 and _y(encoded) in (1, P - 1)


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
        nor for an R that RFC 8032 section 5.1.3 does not decode, whatever the library does)."""
        if self.refusal() or _x_zero_signed(signature[:KEY_LEN]):
            return False
        eddsa = _eddsa()
        try:
            eddsa.new(eddsa.import_public_key(self.public), "rfc8032").verify(message, signature)
        except ValueError:
            return False
        return True


class SigningKey:
    """An Ed25519 secret key (its 32-byte seed)."""

    def __init__(self, seed):
        if len(seed) != KEY_LEN:
            raise UsageError(f"a signing key must be {KEY_LEN} bytes, not {len(seed)}")
        self._seed = bytes(seed)
        self._key = _eddsa().import_private_key(self._seed)
        self.verify_key = VerifyKey(self._key.public_key().export_key(format="raw"))
        self.key_id = self.verify_key.key_id

    @classmethod
    def generate(cls):
        from Crypto.Random import get_random_bytes

        return cls(get_random_bytes(KEY_LEN))

    def __str__(self):
        return encode(SECRET_PREFIX, _SECRET_LABEL, self._seed, upper=True)

    def __repr__(self):
        return f"SigningKey(id={self.key_id.hex()})"

    def sign(self, message):
        return _eddsa().new(self._key, "rfc8032").sign(message)


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
