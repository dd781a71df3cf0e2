"""Ed25519 from either library: OpenSSL through `cryptography` when that is the
cipher, else pycryptodome. Both must make the same keys and signatures, and
take exactly the signatures README's cofactored check takes (OpenSSL's own check
is cofactorless: what it refuses, pycryptodome decides), or a file would open
under one library and not the other. With `cryptography`, signing and checking
an honest signature load none of pycryptodome's elliptic-curve modules (about
5 MiB of a process: README "Goals", 5)."""

import hashlib
import os
import subprocess
import sys

import pytest

import independent_decoder as ref
from cliutil import KEY_A, ok, run
from encpipe import aead, signing
from encpipe.signing import SigningKey, VerifyKey

P, L = signing.P, signing.L
SEEDS = [bytes(32), b"\xff" * 32, bytes(range(32))] + [os.urandom(32) for _ in range(5)]


@pytest.fixture(params=aead.NAMES)
def library(request, monkeypatch):
    monkeypatch.setenv(aead.ENV_CIPHER, request.param)
    chosen = signing._library()
    assert type(chosen).__name__ == {aead.CRYPTOGRAPHY: "_Cryptography", aead.PYCRYPTODOME: "_Pycryptodome"}[request.param]
    return chosen


def _library(name):
    return signing._library(name)


def test_both_libraries_make_the_same_keys_and_signatures():
    for seed in SEEDS:
        for message in (b"", b"m", os.urandom(1000)):
            publics = {name: _library(name).public(seed) for name in aead.NAMES}
            signatures = {name: _library(name).sign(seed, message) for name in aead.NAMES}
            assert publics[aead.CRYPTOGRAPHY] == publics[aead.PYCRYPTODOME]
            assert signatures[aead.CRYPTOGRAPHY] == signatures[aead.PYCRYPTODOME]
            assert ref.signature_verifies(publics[aead.CRYPTOGRAPHY], message, signatures[aead.CRYPTOGRAPHY])


def _spellings():
    ys = [0, 1, 2, 3, 9, P - 2, P - 1, P, P + 1, P + 2, 2**255 - 1, ref.B[1]] + sorted(signing.SMALL_ORDER_Y)
    ys += [int.from_bytes(os.urandom(32), "little") >> 1 for _ in range(40)]
    return [(y | sign << 255).to_bytes(32, "little") for y in ys for sign in (0, 1)]


def test_points_decode_as_rfc_8032_says():
    for encoded in _spellings():
        assert signing.decodes(encoded) == (ref.decode_point(encoded) is not None), encoded.hex()


def _encode(point):
    z = pow(point[2], P - 2, P)
    x, y = point[0] * z % P, point[1] * z % P
    return (y | (x & 1) << 255).to_bytes(32, "little")


def _scalar(seed):
    return int.from_bytes(hashlib.sha512(seed).digest()[:32], "little") & ((1 << 254) - 8) | 1 << 254


def _mixed_order_signature(seed, message):
    """(A', signature): A' is seed's key plus the point of order 2, (x, y) -> (-x, -y),
    and the challenge k is odd, so [8][S]B = [8]R + [8][k]A' holds and [S]B = R + [k]A'
    does not (as vector v2_signed_by_mixed_order_key)."""
    a = _scalar(seed)
    point = ref._mul_fixed(a, ref.B)
    mixed = _encode((P - point[0], P - point[1], point[2], point[3]))
    for counter in range(256):
        r = int.from_bytes(hashlib.sha512(seed + message + bytes([counter])).digest(), "little") % L
        big_r = _encode(ref._mul_fixed(r, ref.B))
        k = int.from_bytes(hashlib.sha512(big_r + mixed + message).digest(), "little") % L
        if k % 2:
            return mixed, big_r + ((r + k * a) % L).to_bytes(32, "little")
    raise AssertionError("no odd challenge")


def _cases():
    """(public, message, signature) that README's check takes and OpenSSL's does not,
    that both refuse, and that both take."""
    seed = bytes(range(32))
    public = _library(aead.PYCRYPTODOME).public(seed)
    good = _library(aead.PYCRYPTODOME).sign(seed, b"m")
    a = _scalar(seed)
    rs = (P - 1).to_bytes(32, "little")  # (0, -1), of order 2
    k = int.from_bytes(hashlib.sha512(rs + public + b"m").digest(), "little") % L
    small_r = rs + (k * a % L).to_bytes(32, "little")  # [8]R is neutral: only the cofactored check takes it
    mixed, mixed_signature = _mixed_order_signature(bytes(range(1, 33)), b"encpipe mixed")
    return [
        (public, b"m", good),
        (public, b"n", good),
        (public, b"m", good[:32] + ((int.from_bytes(good[32:], "little") + 1) % L).to_bytes(32, "little")),
        (public, b"m", small_r),
        (mixed, b"encpipe mixed", mixed_signature),
        (mixed, b"other", mixed_signature),
    ]


def test_openssl_refuses_what_the_cofactored_check_takes_and_encpipe_follows_the_check():
    """The two cases that tell the checks apart are there (else the fallback is untested)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    cases = _cases()
    for public, message, signature in (cases[3], cases[4]):
        assert ref.signature_verifies(public, message, signature)
        with pytest.raises(InvalidSignature):
            Ed25519PublicKey.from_public_bytes(public).verify(signature, message)


def test_each_library_takes_exactly_what_readme_s_check_takes(library):
    verdicts = [VerifyKey(public).verify(message, signature) for public, message, signature in _cases()]
    assert verdicts == [ref.signature_verifies(*case) for case in _cases()] == [True, False, False, True, True, False]


_LOADED = """
import sys
from encpipe.signing import SigningKey
key = SigningKey(bytes(range(32)))
assert key.verify_key.verify(b"m", key.sign(b"m"))
print(" ".join(sorted(name for name in sys.modules if name.startswith("Crypto"))))
"""


@pytest.mark.parametrize("name", aead.NAMES)
def test_with_cryptography_an_honest_signature_loads_no_pycryptodome_curve_module(name):
    env = dict(os.environ, **{aead.ENV_CIPHER: name})
    loaded = subprocess.run([sys.executable, "-c", _LOADED], env=env, capture_output=True, check=True).stdout.split()
    assert (b"Crypto.Signature.eddsa" in loaded) == (name == aead.PYCRYPTODOME), loaded
    assert (b"Crypto.PublicKey.ECC" in loaded) == (name == aead.PYCRYPTODOME), loaded


def test_a_file_signed_under_one_library_opens_under_the_other_with_its_signer(tmp_path, monkeypatch):
    data = os.urandom(70000)
    sign_key = tmp_path / "sign.key"
    verify = ok(run(["keygen", "--sign", "-o", str(sign_key)])).decode().strip()
    for sealer, opener in ((aead.CRYPTOGRAPHY, aead.PYCRYPTODOME), (aead.PYCRYPTODOME, aead.CRYPTOGRAPHY)):
        monkeypatch.setenv(aead.ENV_CIPHER, sealer)
        sealed = ok(run(["seal", "--sign-key", str(sign_key)], data, {"ENCPIPE_KEY": KEY_A}))
        monkeypatch.setenv(aead.ENV_CIPHER, opener)
        assert ok(run(["open", "--signer", verify], sealed, {"ENCPIPE_KEY": KEY_A})) == data
    assert SigningKey(bytes(32)).verify_key.public == _library(aead.PYCRYPTODOME).public(bytes(32))


def test_a_cryptography_older_than_the_cipher_takes_is_not_used_for_the_curves(monkeypatch):
    """Installed but older than 47 (a distribution's, say 38, which has no
    public_bytes_raw), `cryptography` gives the cipher to pycryptodome, and the curve
    arithmetic too: before, an X25519 or Ed25519 key ended in an internal error."""
    import cryptography

    from encpipe import x25519

    monkeypatch.delenv(aead.ENV_CIPHER, raising=False)
    monkeypatch.setattr(cryptography, "__version__", "38.0.4")
    for module in (signing, x25519):
        monkeypatch.setattr(module, "_libraries", {})
        assert type(module._library()).__name__ == "_Pycryptodome"
    key = SigningKey(bytes(range(32)))
    assert key.verify_key.verify(b"m", key.sign(b"m"))
    identity = x25519.X25519Identity(bytes(32))
    assert identity.unwrap(identity.recipient().wrap(bytes(range(32)))) == bytes(range(32))
    monkeypatch.setattr(cryptography, "__version__", "51.0.1")
    for module in (signing, x25519):
        monkeypatch.setattr(module, "_libraries", {})
        assert type(module._library()).__name__ == "_Cryptography"
