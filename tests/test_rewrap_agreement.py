"""`encpipe rewrap` keeps every property of a file, as tests/independent_decoder.py
(written from README's "File format" alone) reads the result: the payload bytes
unchanged; each kept slot still opens it, and each added raw-key or passphrase
slot too, its new authenticator verifying (the decoder checks the authenticator of
the slot that opened it); a removed slot no longer opens it; every signature kept
and verifying, and a --sign-key's added (README "Re-wrapping"). A file opened by
an x25519 identity gets no authenticator or signature unless a trusted --signer
vouches for it (67, nothing written); a v1 file stays v1 and cannot be signed."""

import hashlib
import io
import unicodedata

import pytest

import independent_decoder
from cliutil import assert_one_line_error
from encpipe import cli, signing
from test_decoder_agreement import Shape
from test_differential import (FILES, IDENTITY, KEY_1, KEY_2, PASSPHRASE, SIGNERS, decoder_secrets, secret_args,
                               seal_file, write)

SIGNER_3 = signing.SigningKey(hashlib.sha256(b"differential signer 3").digest())
NFD = unicodedata.normalize("NFD", PASSPHRASE)  # the same text, its accents as combining marks
KEY_1_ID = independent_decoder.hkdf(KEY_1, b"", b"encpipe v1 key id", 8).hex()
SIGNED_TWICE = "v2 every kind, three chunks, signed twice"  # raw key 1, the passphrase, the identity; signers 1, 2
V1 = "v1 raw key and x25519, a chunk and a byte"

# (file, opened with, rewrap options (k K: key files, n: the NFD passphrase, 3: signing key 3,
# s1: signing key 1, signer: --signer 1), what opens the result, what does not, its signatures' signers in
# order; or an exit status)
CASES = {
    "a raw key added": (SIGNED_TWICE, "k", ["+K"], "kKpx", "", [0, 1]),
    "the NFD passphrase added": (SIGNED_TWICE, "k", ["+n"], "kpnx", "K", [0, 1]),
    "the raw key removed": (SIGNED_TWICE, "k", ["-k"], "px", "k", [0, 1]),
    "the passphrase opens, a raw key added": (SIGNED_TWICE, "p", ["+K"], "kKpx", "", [0, 1]),
    "every slot replaced by a raw key, signed again": (SIGNED_TWICE, "k", ["replace", "+K", "3"], "K", "kpx",
                                                       [0, 1, 2]),
    "signed again by a signer that signed it": (SIGNED_TWICE, "p", ["s1"], "kpx", "", [0, 1, 0]),
    "opened by the identity, a raw key added": (SIGNED_TWICE, "x", ["+K"], 67),
    "opened by the identity, signed": (SIGNED_TWICE, "x", ["3"], 67),
    "opened by the identity, a recipient added": (SIGNED_TWICE, "x", ["+x"], "kpx", "", [0, 1]),
    "opened by the identity, trusted, a raw key added": (SIGNED_TWICE, "x", ["signer", "+K"], "kKpx", "", [0, 1]),
    "a v1 file, a raw key added": (V1, "k", ["+K"], "kKx", "", []),
    "a v1 file, signed": (V1, "k", ["3"], 67),
}
SIGNING_KEYS = [*SIGNERS, SIGNER_3]


def rewrap_args(tmp_path, opened, options):
    args = ["rewrap", *secret_args(tmp_path, opened, "open"), "--work-factor", "10"]
    for option in options:
        if option == "+K":
            args += ["--add-key-file", write(tmp_path / "add-ring", KEY_2.hex() + "\n")]
        elif option == "+n":
            args += ["--add-passphrase-file", write(tmp_path / "add-pass", NFD + "\n")]
        elif option == "+x":
            args += ["--add-recipient", str(IDENTITY.recipient())]
        elif option == "-k":
            args += ["--remove", KEY_1_ID]
        elif option == "replace":
            args += ["--replace"]
        elif option == "signer":
            args += ["--signer", str(SIGNERS[0].verify_key)]
        else:  # 3, s1: sign with that signing key
            args += ["--sign-key", write(tmp_path / "sign", f"{SIGNING_KEYS[int(option[-1]) - 1]}\n")]
    return args


def opened_by(which, signers=()):
    """The decoder's secrets for `which` (as decoder_secrets; n: the NFD passphrase)."""
    secrets = decoder_secrets(which.replace("n", ""), list(signers))
    secrets["passphrases"] += [NFD.encode()] if "n" in which else []
    return secrets


@pytest.mark.parametrize("case", list(CASES))
def test_rewrap_keeps_what_the_independent_decoder_reads(case, tmp_path):
    name, opened, options, *expected = CASES[case]
    clear, data = seal_file(name, tmp_path)
    out, err = io.BytesIO(), io.StringIO()
    code = cli.main(rewrap_args(tmp_path, opened, options), stdin=io.BytesIO(data), stdout=out, stderr=err, env={})
    if len(expected) == 1:
        assert (code, out.getvalue()) == (expected[0], b""), err.getvalue()
        assert_one_line_error(err.getvalue())
        return
    opens, refused, signed_by = expected
    assert code == 0, err.getvalue()
    new, old_shape = out.getvalue(), Shape(data)
    shape = Shape(new)
    assert new[7] == data[7] and new[shape.header_len : shape.trailer_start] == \
        data[old_shape.header_len : old_shape.trailer_start]
    entries = new[shape.trailer_start + 32 * shape.authenticated : -32]
    assert [entries[96 * j : 96 * j + 32] for j in range(shape.sig_count)] == \
        [SIGNING_KEYS[signer].verify_key.public for signer in signed_by]
    for which in opens:  # each alone: its own slot opens the file, its authenticator verifies
        assert independent_decoder.decode(new, **opened_by(which)) == clear, which
    for which in refused:
        with pytest.raises(independent_decoder.NoMatch):
            independent_decoder.decode(new, **opened_by(which))
    for signer in signed_by:
        public = SIGNING_KEYS[signer].verify_key.public
        assert independent_decoder.decode(new, **opened_by(opens[0], [public])) == clear, signer
    if new[7] == 2 and 2 not in signed_by:
        with pytest.raises(independent_decoder.NotSigned):
            independent_decoder.decode(new, **opened_by(opens[0], [SIGNER_3.verify_key.public]))
    assert FILES[name][0] == new[7]
