"""Verify keys that prove nothing. Under a point of small order of edwards25519 (the
neutral element, the point of order 2, and those of order 4 and 8), the signature
R = the neutral element, S = 0 satisfies RFC 8032's check for every message, so a
user told to trust such a key would accept any file. Such keys, and non-canonical
encodings (y >= p), are refused wherever a verify key is read: 64 from the user,
65 in a file's trailer (README "Edge rules"). Each test failed before the fix."""

import io
import os

import pytest

import independent_decoder
from cliutil import assert_one_line_error, ok, run
from test_provenance import EVIL, forge, identity

from encpipe import envelope, provenance
from encpipe import aead, signing
from encpipe.signing import SigningKey, VerifyKey

P = 2**255 - 19
# The canonical encodings of the eight points of small order.
SMALL_ORDER = [bytes.fromhex(h) for h in (
    "0100000000000000000000000000000000000000000000000000000000000000",  # neutral element, order 1
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # (0, -1), order 2
    "0000000000000000000000000000000000000000000000000000000000000000",  # y = 0, order 4
    "0000000000000000000000000000000000000000000000000000000000000080",  # y = 0, order 4
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",  # order 8
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",  # order 8
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",  # order 8
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",  # order 8
)]
# y >= p with either sign (OpenSSL's Ed25519 takes them: y = p + 1 is the neutral
# element again), and x = 0 with the sign bit set (the neutral element, (0, -1)).
NON_CANONICAL = [((P + k) | (sign << 255)).to_bytes(32, "little") for k in range(19) for sign in (0, 1)]
NON_CANONICAL += [(y | 1 << 255).to_bytes(32, "little") for y in (1, P - 1)]
REFUSED = SMALL_ORDER + NON_CANONICAL
# A "signature" that verifies under each key of small order, whatever the message.
ANY_MESSAGE = (1).to_bytes(32, "little") + bytes(32)


def hexes(keys):
    return [k.hex()[:8] + ".." + k.hex()[-2:] for k in keys]


def test_the_library_alone_accepts_such_a_signature_of_any_message():
    """Why the rule exists: pycryptodome 4 checks this signature as valid under every
    canonical key of small order, for any message (3.23, which setup.cfg admits too,
    refuses some of those keys itself); encpipe refuses each, whatever the library."""
    import Crypto
    from Crypto.Signature import eddsa

    for public in SMALL_ORDER:
        try:
            eddsa.new(eddsa.import_public_key(public), "rfc8032").verify(os.urandom(40), ANY_MESSAGE)
        except ValueError:
            assert Crypto.version_info < (4,), public.hex()
        assert not VerifyKey(public).verify(os.urandom(40), ANY_MESSAGE)


class _TakesEverySignature:
    """A library that checks nothing (as pycryptodome 3.23 checked an R spelt with the
    sign bit of x = 0: it opened vector v2_signature_r_sign_bit_set)."""

    @staticmethod
    def verify(public, message, signature):
        return True


B = (4 * pow(5, P - 2, P)).to_bytes(32, "little")  # the base point, x even
L = 2**252 + 27742317777372353535851937790883648493


@pytest.mark.parametrize("library", aead.NAMES)
def test_an_r_or_s_rfc_8032_refuses_is_refused_by_encpipe_itself(monkeypatch, library):
    """RFC 8032 (5.1.3, 5.1.7) does not decode x = 0 with the sign bit set, nor y >= p,
    nor a y with no x, and takes no S >= l; encpipe refuses such a signature before the
    library sees it, so the rule depends neither on the library nor on its version."""
    monkeypatch.setenv(aead.ENV_CIPHER, library)
    key = SigningKey.generate().verify_key
    monkeypatch.setattr(signing, "_library", lambda name=None: _TakesEverySignature)
    for y in (1, P - 1):
        assert not key.verify(b"m", (y | 1 << 255).to_bytes(32, "little") + bytes(32))
        assert key.verify(b"m", y.to_bytes(32, "little") + bytes(32))  # the library's to judge
    minus_b = B[:31] + bytes([B[31] | 0x80])
    assert key.verify(b"m", minus_b + bytes(32))
    assert key.verify(b"m", B + (L - 1).to_bytes(32, "little"))
    assert not key.verify(b"m", B + L.to_bytes(32, "little"))
    assert not key.verify(b"m", B + (2**256 - 1).to_bytes(32, "little"))
    assert not key.verify(b"m", (P + 1).to_bytes(32, "little") + bytes(32))  # y = 1 spelt y + p
    assert not key.verify(b"m", (2).to_bytes(32, "little") + bytes(32))  # no x has y = 2
    assert not key.verify(b"m", B + bytes(31))  # short


@pytest.mark.parametrize("public", REFUSED, ids=hexes(REFUSED))
def test_a_refused_verify_key_given_by_the_user_is_a_usage_error(world, tmp_path, public):
    text = str(VerifyKey(public))
    planted = forge(world.seal(EVIL, "--recipient", world.X_pub, "--sign-key", world.S1), identity(world.X),
                    signatures=[(VerifyKey(public), ANY_MESSAGE)])
    listed = tmp_path / "signers"
    listed.write_text(f"{world.V1}\n{world.V2} {text}\n")
    for argv, env in [
        (["open", "--identity", world.X, "--signer", text], {}),
        (["open", "--identity", world.X, "--signer", world.V1, "--signer", text], {}),
        (["open", "--identity", world.X, "--signer-file", str(listed)], {}),
        (["open", "--identity", world.X], {"ENCPIPE_SIGNER": f"{world.V1} {text}"}),
        (["inspect", "--verify", "--identity", world.X, "--signer", text], {}),
        (["rewrap", "--identity", world.X, "--add-recipient", world.X_pub, "--signer", text], {}),
        (["keyid", "--signer", text], {}),
        (["keyid", "--signer-file", str(listed)], {}),
    ]:
        result = run(argv, planted, env)
        assert (result.code, result.stdout) == (64, b""), (argv, result)
        assert_one_line_error(result.stderr)
        assert "verify key" in result.stderr and ("small order" in result.stderr or "canonical" in result.stderr)


@pytest.mark.parametrize("public", SMALL_ORDER, ids=hexes(SMALL_ORDER))
def test_a_trailer_signature_by_a_key_of_small_order_rejects_the_file(world, tmp_path, public):
    """README "Format v2", reading step 3: such a signature does not verify. Anyone
    with the escrow public key can make this file: it must not open as signed by
    anyone, and not at all, like a file whose signature was changed."""
    planted = forge(world.seal(EVIL, "--recipient", world.X_pub, "--sign-key", world.S1), identity(world.X),
                    signatures=[(VerifyKey(public), ANY_MESSAGE)])
    path = tmp_path / "planted.enc"
    path.write_bytes(planted)
    new = tmp_path / "new.id"
    new_pub = ok(run(["keygen", "--x25519", "-o", str(new)])).decode().strip()
    for argv in (["open", "--identity", world.X],
                 ["open", "--identity", world.X, str(path)],
                 ["open", "--identity", world.X, "--verify-first", str(path)],
                 ["open", "--identity", world.X, "--signer", world.V1],
                 ["inspect", "--verify", "--identity", world.X],
                 ["rewrap", "--in-place", str(path), "--identity", world.X, "--add-recipient", new_pub]):
        result = run(argv, planted)
        assert (result.code, result.stdout) == (65, b""), (argv, result)
        assert_one_line_error(result.stderr)
        assert f"signature by {VerifyKey(public).key_id.hex()}" in result.stderr
        assert "small order" in result.stderr
    assert path.read_bytes() == planted
    # beside a trusted signer's genuine signature (the payload sealed again is the same bytes), still 65
    both = world.seal(EVIL, "--recipient", world.X_pub, "--sign-key", world.S1, "--sign-key", world.S2)
    signed = forge(both, identity(world.X), signatures=[entries(both)[0], (VerifyKey(public), ANY_MESSAGE)])
    assert ok(run(["open", "--identity", world.X, "--signer", world.V1], forge(both, identity(world.X),
                                                                               keep_signatures=True))) == EVIL
    result = run(["open", "--identity", world.X, "--signer", world.V1], signed)
    assert (result.code, result.stdout) == (65, b""), result


def entries(sealed):
    """The (verify key, signature) entries of `sealed`'s trailer, as stored."""
    parsed = envelope.read_header(io.BytesIO(sealed))
    return provenance.Trailer.parse(sealed[-parsed.trailer_len :], parsed.header).signatures


def test_the_independent_decoder_refuses_the_same_verify_keys():
    """tests/independent_decoder.py implements README's rule by point arithmetic
    ([8]A is the neutral element), not from a list: it agrees with encpipe."""
    genuine = [SigningKey(os.urandom(32)).verify_key.public for _ in range(20)]
    noise = [os.urandom(32) for _ in range(200)]  # about half are not points at all
    for public in REFUSED + genuine + noise:
        assert independent_decoder.refused_verify_key(public) == (signing.refusal(public) is not None), public.hex()
    assert not any(signing.refusal(public) for public in genuine)
    assert all(signing.refusal(public) for public in REFUSED)


def test_readme_lists_the_eight_points_of_small_order():
    import re
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    listed = [bytes.fromhex(h) for h in re.findall(r"^ {6}([0-9a-f]{64})  order [1248]", readme, re.M)]
    assert listed == SMALL_ORDER
    y = int(re.search(r"`Y = 0x([0-9a-f]{64})`", readme).group(1), 16)
    assert {int.from_bytes(k, "little") & ((1 << 255) - 1) for k in listed} == {0, 1, P - 1, y, P - y}
    assert all(independent_decoder.refused_verify_key(k) for k in listed)
