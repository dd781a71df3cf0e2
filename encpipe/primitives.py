"""Key derivation and the header MAC: every HKDF info string lives here."""

import hmac

from .errors import InvalidStream

FILE_KEY_LEN = 32

INFO_HEADER = b"encpipe v1 header"
INFO_PAYLOAD = b"encpipe v1 payload"


def hkdf(ikm, salt, info, length=32):
    """HKDF-SHA256 (RFC 5869), on the standard library's HMAC: it is C code, and
    importing it costs nothing at start-up. An empty salt is HashLen zero bytes."""
    prk = hmac.digest(salt, ikm, "sha256")
    okm, block, counter = b"", b"", 1
    while len(okm) < length:
        block = hmac.digest(prk, block + info + bytes([counter]), "sha256")
        okm += block
        counter += 1
    return okm[:length]


def payload_key(file_key, header):
    return hkdf(file_key, header.payload_salt, INFO_PAYLOAD)


def header_mac(file_key, header):
    key = hkdf(file_key, header.payload_salt, INFO_HEADER)
    return hmac.digest(key, header.authenticated_bytes(), "sha256")


def verify_header_mac(file_key, header):
    if not hmac.compare_digest(header_mac(file_key, header), header.mac):
        raise InvalidStream("header authentication failed: the file was tampered with")
