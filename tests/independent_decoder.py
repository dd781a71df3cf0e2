"""A second decoder for the v1 format, written from README's "File format" section
alone and sharing no code with the encpipe package: the vectors must open the
same way in both, which keeps the specification honest."""

import base64
import hashlib
import hmac
import struct
import zlib

from Crypto.Cipher import AES
from Crypto.Hash import SHA256
from Crypto.Protocol.DH import import_x25519_private_key, import_x25519_public_key, key_agreement
from Crypto.Protocol.KDF import HKDF, scrypt


class Rejected(Exception):
    pass


class NoMatch(Rejected):
    pass


def hkdf(ikm, salt, info, length=32):
    return HKDF(ikm, length, salt, SHA256, context=info)


def unwrap(kek, wrapped):
    try:
        return AES.new(kek, AES.MODE_KW).unseal(wrapped)
    except ValueError:
        return None


def identity_secret(text):
    body = text[len("ENCPIPE-SECRET-KEY-1") :]
    raw = base64.b32decode(body + "=" * (-len(body) % 8))
    secret, check = raw[:32], raw[32:]
    assert hashlib.sha256(b"encpipe v1 x25519 secret key" + secret).digest()[:4] == check
    return secret


def scrypt_within_limits(log2_n, r, p):
    n = 1 << log2_n
    return 10 <= log2_n <= 20 and 1 <= r <= 32 and 1 <= p <= 16 and 128 * n * r <= 1 << 30 and n * r * p <= 1 << 24


def try_slot(kind, body, keys, passphrases, identities):
    if kind == 1 and len(body) == 48:
        for key in keys:
            if hkdf(key, b"", b"encpipe v1 key id", 8) == body[:8]:
                return unwrap(hkdf(key, b"", b"encpipe v1 raw-key wrap"), body[8:])
    if kind == 2 and len(body) == 59 and passphrases:
        salt, (log2_n, r, p), wrapped = body[:16], body[16:19], body[19:]
        if not scrypt_within_limits(log2_n, r, p):
            raise Rejected("scrypt parameters over the limit")
        for passphrase in passphrases:
            kek = scrypt(passphrase, b"encpipe v1 scrypt" + salt, 32, N=1 << log2_n, r=r, p=p)
            found = unwrap(kek, wrapped)
            if found:
                return found
    if kind == 3 and len(body) == 80:
        for secret in identities:
            private = import_x25519_private_key(secret)
            public = private.public_key().export_key(format="raw")
            if hkdf(public, b"", b"encpipe v1 x25519 key id", 8) != body[:8]:
                continue
            ephemeral = body[8:40]
            peer = import_x25519_public_key(ephemeral)
            shared = key_agreement(static_priv=private, eph_pub=peer, kdf=lambda s: s)
            return unwrap(hkdf(shared, ephemeral + public, b"encpipe v1 x25519 wrap"), body[40:])
    return None


def decode(data, keys=(), passphrases=(), identities=()):
    """The plaintext of `data`; raises Rejected (or NoMatch) otherwise."""
    if data[:7] != b"ENCPIPE":
        raise Rejected("magic")
    if len(data) < 10 or data[7] != 1:
        raise Rejected("version")
    (header_len,) = struct.unpack(">H", data[8:10])
    if not 84 <= header_len <= 16384 or len(data) < header_len:
        raise Rejected("header length")
    header = data[:header_len]
    if zlib.crc32(header[:-4]) != struct.unpack(">I", header[-4:])[0]:
        raise Rejected("crc")
    suite, chunk_log2, salt, count = header[10], header[11], header[12:44], header[44]
    if suite != 1 or not 14 <= chunk_log2 <= 24 or not 1 <= count <= 64:
        raise Rejected("fixed fields")
    pos, file_key = 45, None
    for _ in range(count):
        kind, body_len = struct.unpack(">BH", header[pos : pos + 3])
        body = header[pos + 3 : pos + 3 + body_len]
        pos += 3 + body_len
        if pos > header_len - 36:
            raise Rejected("slot framing")
        file_key = file_key or try_slot(kind, body, keys, passphrases, identities)
    if pos != header_len - 36:
        raise Rejected("slot framing")
    if file_key is None:
        raise NoMatch("no slot opens")
    mac = hmac.new(hkdf(file_key, salt, b"encpipe v1 header"), header[:-36], hashlib.sha256).digest()
    if not hmac.compare_digest(mac, header[-36:-4]):
        raise Rejected("header mac")
    key = hkdf(file_key, salt, b"encpipe v1 payload")
    payload, record = data[header_len:], (1 << chunk_log2) + 16
    records = [payload[i : i + record] for i in range(0, len(payload), record)] or [b""]
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
    return b"".join(out)
