"""Key derivation and the header MAC: every HKDF info string lives here."""

import hmac

from Crypto.Hash import HMAC, SHA256
from Crypto.Protocol.KDF import HKDF

from .errors import InvalidStream

FILE_KEY_LEN = 32

INFO_HEADER = b"encpipe v1 header"
INFO_PAYLOAD = b"encpipe v1 payload"


def hkdf(ikm, salt, info, length=32):
    """HKDF-SHA256 (RFC 5869)."""
    return HKDF(ikm, length, salt, SHA256, context=info)


def payload_key(file_key, header):
    return hkdf(file_key, header.payload_salt, INFO_PAYLOAD)


def header_mac(file_key, header):
    key = hkdf(file_key, header.payload_salt, INFO_HEADER)
    return HMAC.new(key, header.authenticated_bytes(), SHA256).digest()


def verify_header_mac(file_key, header):
    if not hmac.compare_digest(header_mac(file_key, header), header.mac):
        raise InvalidStream("header authentication failed: the file was tampered with")
