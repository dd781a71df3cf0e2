"""Key derivation and the header MAC: every HKDF info string lives here. hmac is
imported where a key is used: with it comes OpenSSL's libcrypto (_hashlib, about
2 ms of a start), which a command that uses no key (inspect, encpipe-list) spares."""

from .errors import InvalidStream

FILE_KEY_LEN = 32

INFO_HEADER = b"encpipe v1 header"
INFO_PAYLOAD = b"encpipe v1 payload"


def hkdf(ikm, salt, info, length=32):
    """HKDF-SHA256 (RFC 5869), on the standard library's HMAC (C code). An empty salt is HashLen zero bytes."""
    import hmac

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
    import hmac

    key = hkdf(file_key, header.payload_salt, INFO_HEADER)
    return hmac.digest(key, header.authenticated_bytes(), "sha256")


def verify_header_mac(file_key, header):
    import hmac

    if not hmac.compare_digest(header_mac(file_key, header), header.mac):
        raise InvalidStream("header authentication failed: the file was tampered with")
