"""A second decoder for the v1 and v2 formats, written from README's "File format"
section alone and sharing no code with the encpipe package: the vectors must open
the same way in both, which keeps the specification honest. The curve arithmetic
(X25519, Ed25519's check) is done here from the README's rules and the RFCs it
cites, not taken from a library: what the README says of points and signatures is
what is tested."""

import functools
import hashlib
import hmac
import struct
import zlib

from Crypto.Cipher import AES
from Crypto.Hash import SHA256
from Crypto.Protocol.KDF import HKDF, scrypt


class Rejected(Exception):
    pass


class NoMatch(Rejected):
    pass


class NotSigned(Exception):
    """Signers were required and none of them signed (exit 67 in encpipe)."""


def hkdf(ikm, salt, info, length=32):
    return HKDF(ikm, length, salt, SHA256, context=info)


def unwrap(kek, wrapped):
    try:
        return AES.new(kek, AES.MODE_KW).unseal(wrapped)
    except ValueError:
        return None


ASCII_SPACE = " \t\r\n\v\f"
BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def _text_key(text, prefix, label):
    """README "Edge rules", text forms: the 32-byte key, or ValueError. Exact prefix;
    then 58 characters of RFC 4648's alphabet (ASCII, either case), no padding,
    the last character's two unused bits zero; surrounding ASCII white space ignored."""
    text = text.strip(ASCII_SPACE)
    body = text[len(prefix) :]
    if not text.startswith(prefix) or len(body) != 58 or any(c not in BASE32 + BASE32.lower() for c in body):
        raise ValueError("not a text form")
    bits = "".join(format(BASE32.index(c), "05b") for c in body.upper())
    if bits[288:] != "00":
        raise ValueError("not canonical")
    raw = int(bits[:288], 2).to_bytes(36, "big")
    key, check = raw[:32], raw[32:]
    if hashlib.sha256(label + key).digest()[:4] != check:
        raise ValueError("checksum")
    return key


def identity_secret(text):
    return _text_key(text, "ENCPIPE-SECRET-KEY-1", b"encpipe v1 x25519 secret key")


def keyring(text):
    """README "Key files" and "Raw keys": (raw keys, identity secrets) of a key file's
    text (already UTF-8), or ValueError. Lines end at LF, CR LF or CR; a line blank
    (ASCII white space) or whose first non-blank character is # is ignored; any other
    is one identity or one raw key, exactly 64 ASCII hex digits, surrounded by
    ASCII white space at most; a file with no item is refused."""
    keys, identities = [], []
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        line = line.strip(ASCII_SPACE)
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("ENCPIPE-SECRET-KEY-"):
            identities.append(identity_secret(line))
        elif len(line) == 64 and all(c in "0123456789abcdefABCDEF" for c in line):
            keys.append(bytes.fromhex(line))
        else:
            raise ValueError("a malformed line")
    if not keys and not identities:
        raise ValueError("no key")
    return keys, identities


def file_passphrase(data):
    """README "Passphrases": from a file, a descriptor or a command, the bytes less
    every trailing CR and LF, nothing else; empty is refused."""
    while data[-1:] in (b"\r", b"\n") and data:
        data = data[:-1]
    if not data:
        raise ValueError("empty passphrase")
    return data


def recipient_public(text):
    """A public key to seal to: refused of small order (the shared secret would be 32
    zero bytes) or not canonical (as a little-endian number, >= p)."""
    key = _text_key(text, "encpipe1", b"encpipe v1 x25519 public key")
    if x25519(bytes(range(1, 33)), key) == bytes(32):  # of small order: zeros whatever the secret
        raise ValueError("of small order")
    if int.from_bytes(key, "little") >= P:
        raise ValueError("not canonical")
    return key


def signing_seed(text):
    return _text_key(text, "ENCPIPE-SIGNING-KEY-1", b"encpipe v2 ed25519 secret key")


def verify_key(text):
    key = _text_key(text, "encpipesign1", b"encpipe v2 ed25519 public key")
    if refused_verify_key(key):
        raise ValueError("a refused verify key (exit 64 in encpipe)")
    return key


P = 2**255 - 19
D = -121665 * pow(121666, P - 2, P) % P
L = 2**252 + 27742317777372353535851937790883648493  # the order of the base point B
NEUTRAL = (0, 1, 1, 0)


@functools.lru_cache(maxsize=256)
def x25519(scalar, u):
    """RFC 7748's X25519: the scalar clamped, bit 255 of u ignored, u taken modulo p."""
    k = int.from_bytes(scalar, "little") & ~7 & ((1 << 254) - 1) | 1 << 254
    x1 = int.from_bytes(u, "little") & ((1 << 255) - 1)
    x2, z2, x3, z3 = 1, 0, x1, 1
    for t in reversed(range(255)):
        if (k >> t) & 1 != (k >> (t + 1)) & 1:  # a swap when the bit changes
            x2, x3, z2, z3 = x3, x2, z3, z2
        a, b, c, d = x2 + z2, x2 - z2, x3 + z3, x3 - z3
        aa, bb, da, cb = a * a % P, b * b % P, d * a % P, c * b % P
        x3, z3 = (da + cb) ** 2 % P, x1 * (da - cb) ** 2 % P
        x2, z2 = aa * bb % P, (aa - bb) * (aa + 121665 * (aa - bb)) % P
    if k & 1:
        x2, z2 = x3, z3
    return (x2 * pow(z2, P - 2, P) % P).to_bytes(32, "little")


def x25519_public(secret):
    return x25519(secret, (9).to_bytes(32, "little"))


def _add(a, b):
    """Addition on edwards25519 (-x^2 + y^2 = 1 + d x^2 y^2) in extended coordinates (RFC 8032, 6)."""
    e1, f1 = (a[1] - a[0]) * (b[1] - b[0]) % P, (a[1] + a[0]) * (b[1] + b[0]) % P
    c, d = 2 * a[3] * b[3] * D % P, 2 * a[2] * b[2] % P
    e, f, g, h = f1 - e1, d - c, d + c, f1 + e1
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _mul(scalar, point):
    out = NEUTRAL
    while scalar:
        if scalar & 1:
            out = _add(out, point)
        point, scalar = _add(point, point), scalar >> 1
    return out


@functools.lru_cache(maxsize=64)
def _doublings(point):
    """point, [2]point, [4]point, ... [2^255]point, for a point met again and again
    (B, a signer's key): a multiple is then only the additions its scalar's bits pick."""
    table = [point]
    for _ in range(255):
        table.append(_add(table[-1], table[-1]))
    return tuple(table)


def _mul_fixed(scalar, point):
    assert 0 <= scalar < 1 << 256
    out = NEUTRAL
    for bit, multiple in enumerate(_doublings(point)):
        if scalar >> bit & 1:
            out = _add(out, multiple)
    return out


def _same(a, b):
    return (a[0] * b[2] - b[0] * a[2]) % P == 0 and (a[1] * b[2] - b[1] * a[2]) % P == 0


def decode_point(encoded):
    """RFC 8032, 5.1.3: y is the little-endian number with bit 255 cleared, bit 255
    the sign of x; None when y >= p, no x fits y, or x = 0 with the sign bit set."""
    y, sign = int.from_bytes(encoded, "little") & ((1 << 255) - 1), encoded[31] >> 7
    if y >= P:
        return None
    u, v = (y * y - 1) % P, (D * y * y + 1) % P
    x = u * pow(v, 3, P) * pow(u * pow(v, 7, P), (P - 5) // 8, P) % P
    if v * x * x % P == -u % P:
        x = x * pow(2, (P - 1) // 4, P) % P
    if v * x * x % P != u or (x == 0 and sign):
        return None
    if x & 1 != sign:
        x = P - x
    return (x, y, 1, x * y % P)


B = decode_point((4 * pow(5, P - 2, P) % P).to_bytes(32, "little"))


def refused_verify_key(public):
    """README "Edge rules": not a point by RFC 8032's decoding, or [8]A the neutral element."""
    point = decode_point(public)
    return point is None or _same(_mul(8, point), NEUTRAL)


def signature_verifies(public, message, signature):
    """README "Format v2": S (little-endian, as RFC 8032 reads it) < l, Rs decoded by
    RFC 8032 (5.1.3), A not refused, and the cofactored [8][S]B = [8]Rs + [8][k]A
    with k = SHA-512(Rs || A || M) as a little-endian number, modulo l."""
    rs, s = signature[:32], int.from_bytes(signature[32:], "little")
    r, a = decode_point(rs), decode_point(public)
    if s >= L or r is None or refused_verify_key(public):
        return False
    k = int.from_bytes(hashlib.sha512(rs + public + message).digest(), "little") % L
    return _same(_mul_fixed(8 * s, B), _add(_mul(8, r), _mul_fixed(8 * k, a)))


def scrypt_within_limits(log2_n, r, p):
    n = 1 << log2_n
    return 10 <= log2_n <= 20 and 1 <= r <= 32 and 1 <= p <= 16 and 128 * n * r <= 1 << 30 and n * r * p <= 1 << 24


class SkippedSlot(Exception):
    """A slot over a resource limit, or with an x25519 point of small order."""


def raw_key_attempt(key, body):
    if hkdf(key, b"", b"encpipe v1 key id", 8) != body[:8]:
        return None
    found = unwrap(hkdf(key, b"", b"encpipe v1 raw-key wrap"), body[8:])
    return found and (found, hkdf(key, b"", b"encpipe v2 raw-key authenticator"))


def identity_attempt(secret, body):
    public = x25519_public(secret)
    if hkdf(public, b"", b"encpipe v1 x25519 key id", 8) != body[:8]:
        return None
    ephemeral = body[8:40]
    shared = x25519(secret, ephemeral)
    if shared == bytes(32):
        raise SkippedSlot("x25519 point of small order")
    found = unwrap(hkdf(shared, ephemeral + public, b"encpipe v1 x25519 wrap"), body[40:])
    return found and (found, None)


def passphrase_attempt(passphrase, body):
    salt, (log2_n, r, p), wrapped = body[:16], body[16:19], body[19:]
    if not scrypt_within_limits(log2_n, r, p):
        raise SkippedSlot("scrypt parameters over the limit")
    kek = scrypt(passphrase, b"encpipe v1 scrypt" + salt, 32, N=1 << log2_n, r=r, p=p)
    found = unwrap(kek, wrapped)
    return found and (found, hkdf(kek, b"", b"encpipe v2 passphrase authenticator"))


DEFAULT_SCRYPT_BUDGET = 1 << 24


def open_slot(slots, keys, passphrases, identities, scrypt_budget=DEFAULT_SCRYPT_BUDGET):
    """(slot index, file key, authenticator key or None), by README "Edge rules": each
    raw key in the order given on the slots of its kind in header order; then the
    passphrases on the passphrase slots, the cheapest (N * r * p) first, each
    passphrase in the order given on the slots of one cost in header order; then each
    identity as each raw key. A slot that does not unwrap is skipped; the first that
    does decides. README "Resource limits": the passphrase attempts share one scrypt
    budget (N * r * p summed); one that would pass it is not made, nor any after it.
    A slot over a limit is skipped before it is charged."""
    def kind(wanted, length):
        return [(i, body) for i, (k, body) in enumerate(slots) if k == wanted and len(body) == length]

    attempts = [(raw_key_attempt, key, i, body) for key in keys for i, body in kind(1, 48)]
    scrypt_slots = kind(2, 59)
    costs = sorted({(1 << body[16]) * body[17] * body[18] for _, body in scrypt_slots})
    attempts += [(passphrase_attempt, phrase, i, body) for cost in costs for phrase in passphrases
                 for i, body in scrypt_slots if (1 << body[16]) * body[17] * body[18] == cost]
    attempts += [(identity_attempt, secret, i, body) for secret in identities for i, body in kind(3, 80)]
    skipped, spent = None, 0
    for attempt, secret, index, body in attempts:
        if attempt is passphrase_attempt and scrypt_within_limits(*body[16:19]):
            work = (1 << body[16]) * body[17] * body[18]
            if spent is None or spent + work > scrypt_budget:
                skipped, spent = skipped or SkippedSlot("over the scrypt budget"), None
                continue
            spent += work
        try:
            found = attempt(secret, body)
        except SkippedSlot as e:
            skipped = skipped or e
            continue
        if found:
            return index, found
    if skipped:
        raise Rejected(str(skipped))
    raise NoMatch("no slot opens")


def decode(data, keys=(), passphrases=(), identities=(), signers=(), scrypt_budget=DEFAULT_SCRYPT_BUDGET,
           require_maker=False):
    """The plaintext of `data`; raises Rejected, NoMatch or NotSigned otherwise.
    `require_maker` (open --refuse-unauthenticated): NotSigned for a v1 file, as
    signers do, and for a v2 file an x25519 slot opened, no signers given."""
    if data[:7] != b"ENCPIPE":
        raise Rejected("magic")
    if len(data) < 10 or data[7] not in (1, 2):
        raise Rejected("version")
    version = data[7]
    (header_len,) = struct.unpack(">H", data[8:10])
    if not 84 + (version - 1) <= header_len <= 16384 or len(data) < header_len:
        raise Rejected("header length")
    header = data[:header_len]
    if zlib.crc32(header[:-4]) != struct.unpack(">I", header[-4:])[0]:
        raise Rejected("crc")
    suite, chunk_log2, salt, count = header[10], header[11], header[12:44], header[44]
    sig_count = header[45] if version == 2 else 0
    if suite != 1 or not 14 <= chunk_log2 <= 24 or not 1 <= count <= 64 or sig_count > 16:
        raise Rejected("fixed fields")
    slots, pos = [], 45 + (version - 1)
    for _ in range(count):
        kind, body_len = struct.unpack(">BH", header[pos : pos + 3])
        slots.append((kind, header[pos + 3 : pos + 3 + body_len]))
        pos += 3 + body_len
        if pos > header_len - 36:
            raise Rejected("slot framing")
    if pos != header_len - 36:
        raise Rejected("slot framing")
    if any(len(body) != {1: 48, 2: 59, 3: 80}.get(kind, len(body)) for kind, body in slots):
        raise Rejected("a known slot kind with the wrong body_len")
    if (signers or require_maker) and version == 1:
        raise NotSigned("v1")
    index, (file_key, auth_key) = open_slot(slots, keys, passphrases, identities, scrypt_budget)
    if not hmac.compare_digest(header_mac(file_key, salt, header[:-36]), header[-36:-4]):
        raise Rejected("header mac")
    if require_maker and not signers and slots[index][0] == 3:
        raise NotSigned("opened by an x25519 identity: its maker is not authenticated")
    authenticated = [i for i, (kind, _) in enumerate(slots) if kind in (1, 2)]
    trailer_len = 32 * len(authenticated) + 96 * sig_count + 32 if version == 2 else 0
    if len(data) < header_len + trailer_len:
        raise Rejected("too short for the trailer")
    payload, trailer = data[header_len : len(data) - trailer_len], data[len(data) - trailer_len :]
    key = hkdf(file_key, salt, b"encpipe v1 payload")
    records = cut_records(payload, chunk_log2)
    out = []
    for i, chunk in enumerate(records):
        last = i == len(records) - 1
        if len(chunk) < 16 or (last and i > 0 and len(chunk) == 16):
            raise Rejected("chunk length")
        cipher = AES.new(key, AES.MODE_GCM, nonce=i.to_bytes(11, "big") + bytes([last]))
        try:
            out.append(cipher.decrypt_and_verify(chunk[:-16], chunk[-16:]))
        except ValueError:
            raise Rejected(f"chunk {i}") from None
    if version == 2:
        check_trailer(file_key, suite, chunk_log2, salt, records, trailer, authenticated, index, auth_key,
                      sig_count, signers)
    return b"".join(out)


def header_mac(file_key, salt, header_before_mac):
    return hmac.new(hkdf(file_key, salt, b"encpipe v1 header"), header_before_mac, hashlib.sha256).digest()


def cut_records(payload, chunk_log2):
    """The payload's records (the last one maybe short); one empty record if it is empty."""
    record = (1 << chunk_log2) + 16
    return [payload[i : i + record] for i in range(0, len(payload), record)] or [b""]


def fixed_fields(file_key, suite, chunk_log2, salt):
    return bytes([suite, chunk_log2]) + salt + hkdf(file_key, salt, b"encpipe v2 key commitment")


def trailer_mac(file_key, suite, chunk_log2, salt, records, trailer_before_mac):
    n = len(records).to_bytes(8, "big")
    tags = b"".join(record[-16:] for record in records)
    fixed = fixed_fields(file_key, suite, chunk_log2, salt)
    tag_commitment = hashlib.sha256(b"encpipe v2 tags" + fixed + tags + n).digest()
    trailer_key = hkdf(file_key, salt, b"encpipe v2 trailer")
    return hmac.new(trailer_key, tag_commitment + trailer_before_mac, hashlib.sha256).digest()


def check_trailer(file_key, suite, chunk_log2, salt, records, trailer, authenticated, index, auth_key,
                  sig_count, signers):
    fixed = fixed_fields(file_key, suite, chunk_log2, salt)
    n = len(records).to_bytes(8, "big")
    if not hmac.compare_digest(trailer_mac(file_key, suite, chunk_log2, salt, records, trailer[:-32]), trailer[-32:]):
        raise Rejected("trailer mac")
    if auth_key is not None:
        record_key = hkdf(auth_key, salt, b"encpipe v2 record mac")
        macs = b""
        for i, record in enumerate(records):
            nonce = i.to_bytes(11, "big") + bytes([i == len(records) - 1])
            macs += AES.new(record_key, AES.MODE_GCM, nonce=nonce).update(record).digest()
        expected = hmac.new(auth_key, b"encpipe v2 authenticator" + fixed + macs + n, hashlib.sha256).digest()
        j = authenticated.index(index)
        if not hmac.compare_digest(expected, trailer[32 * j : 32 * j + 32]):
            raise Rejected("slot authenticator")
    c = hashlib.sha256(b"encpipe v2 commitment" + fixed
                       + b"".join(hashlib.sha256(record).digest() for record in records) + n).digest()
    signed_by = []
    entries = trailer[32 * len(authenticated) : -32]
    for k in range(sig_count):
        public, signature = entries[96 * k : 96 * k + 32], entries[96 * k + 32 : 96 * k + 96]
        if refused_verify_key(public):
            raise Rejected("signature by a refused verify key")
        if not signature_verifies(public, b"encpipe v2 signature" + c, signature):
            raise Rejected("signature")
        signed_by.append(public)
    if signers and not set(signers) & set(signed_by):
        raise NotSigned("no required signer signed it")
