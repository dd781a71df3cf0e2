"""X25519 from either library: OpenSSL through `cryptography` when that is the
cipher, else pycryptodome. Both must derive the same public key, the same
shared secret, and refuse exactly the same peer keys (those of small order, in
any encoding), or a file would open under one library and not the other."""

import os

import pytest

from encpipe import aead, x25519
from encpipe.errors import UsageError

P = 2**255 - 19
SMALL_ORDER = [  # RFC 7748 section 7 and its errata; P and P + 1 are 0 and 1 again
    0,
    1,
    325606250916557431795983626356110631294008115727848805560023387167927233504,
    39382357235489614581723060781553021112529911719440698176882885853963445705823,
    P - 1,
    P,
    P + 1,
]
OTHER = [2, 9, P - 2, P + 2, P + 9, P + 18, 2**255 - 1]  # usable, some not reduced modulo P
SECRETS = [bytes(32), b"\xff" * 32, bytes(range(32)), os.urandom(32)]


def _encodings(u):
    """u as 32 bytes little-endian, with and without the top bit (which X25519 ignores)."""
    return [(u % 2**255).to_bytes(32, "little"), ((u % 2**255) | 1 << 255).to_bytes(32, "little")]


def _library(name):
    library = x25519._library(name)
    assert type(library).__name__ == {aead.CRYPTOGRAPHY: "_Cryptography", aead.PYCRYPTODOME: "_Pycryptodome"}[name]
    return library


def _agree(name, secret, public):
    try:
        return _library(name).agree(secret, public)
    except ValueError:
        return "refused"


@pytest.mark.parametrize("u", SMALL_ORDER + OTHER, ids=hex)
def test_both_libraries_agree_on_each_peer_key(u):
    for public in _encodings(u):
        for secret in SECRETS:
            results = {name: _agree(name, secret, public) for name in aead.NAMES}
            assert results[aead.CRYPTOGRAPHY] == results[aead.PYCRYPTODOME]
            assert (results[aead.CRYPTOGRAPHY] == "refused") == (u in SMALL_ORDER), (hex(u), results)


def test_both_libraries_agree_on_random_keys_and_derive_the_same_public_key():
    for _ in range(20):
        secret, peer = os.urandom(32), x25519._library(aead.PYCRYPTODOME).public(os.urandom(32))
        publics = {name: _library(name).public(secret) for name in aead.NAMES}
        assert publics[aead.CRYPTOGRAPHY] == publics[aead.PYCRYPTODOME]
        assert _agree(aead.CRYPTOGRAPHY, secret, peer) == _agree(aead.PYCRYPTODOME, secret, peer) != "refused"


@pytest.mark.parametrize("library", aead.NAMES)
def test_the_cipher_setting_picks_the_library_and_small_order_recipients_are_refused(monkeypatch, library):
    monkeypatch.setenv(aead.ENV_CIPHER, library)
    assert x25519._library() is _library(library)
    for u in SMALL_ORDER:
        for public in _encodings(u):
            with pytest.raises(UsageError, match="not a valid X25519 public key"):
                x25519.X25519Recipient(public)
    identity = x25519.X25519Identity.generate()
    recipient = identity.recipient()
    file_key = os.urandom(32)
    assert identity.unwrap(recipient.wrap(file_key)) == file_key


def test_a_file_key_wrapped_under_one_library_unwraps_under_the_other(monkeypatch):
    identity, file_key = x25519.X25519Identity(os.urandom(32)), os.urandom(32)
    for sealer, opener in ((aead.CRYPTOGRAPHY, aead.PYCRYPTODOME), (aead.PYCRYPTODOME, aead.CRYPTOGRAPHY)):
        monkeypatch.setenv(aead.ENV_CIPHER, sealer)
        slot = identity.recipient().wrap(file_key)
        monkeypatch.setenv(aead.ENV_CIPHER, opener)
        assert identity.unwrap(slot) == file_key
