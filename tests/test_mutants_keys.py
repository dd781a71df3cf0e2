"""How keys and passphrases are read, and the header's limits (README "Edge
rules"; textform.decode, keys.py, envelope.build_header): a text form's
characters after the prefix may be in either case, the prefix itself is exact,
and padding is refused; a raw key is exactly 64 hex characters; a passphrase
file loses its trailing line ends only; a file has at most 64 key slots and 16
signatures. Each refusal is a usage error (64) with nothing on stdout."""

import base64
import hashlib

import pytest

from cliutil import KEY_A, assert_one_line_error, ok, run, secret_file

DATA = b"a line of data\n" * 100


def _secret_line(path):
    return next(line for line in path.read_text().splitlines() if line and not line.startswith("#"))


@pytest.fixture(scope="module")
def forms(tmp_path_factory):
    """(dir, public key, identity line, verify key, a file sealed to the public key and signed)."""
    d = tmp_path_factory.mktemp("forms")
    public = ok(run(["keygen", "--x25519", "-o", str(d / "x.id")])).decode().strip()
    verify = ok(run(["keygen", "--sign", "-o", str(d / "s.key")])).decode().strip()
    sealed = ok(run(["seal", "--recipient", public, "--sign-key", str(d / "s.key")], DATA))
    return d, public, _secret_line(d / "x.id"), verify, sealed


def _refused(result, *phrases):
    assert (result.code, result.stdout) == (64, b""), result.stderr
    assert_one_line_error(result.stderr)
    for phrase in phrases:
        assert phrase in result.stderr, result.stderr


def test_the_prefix_is_exact_though_the_body_may_change_case(forms):
    """Pins textform.decode's exact prefix: ENCPIPE1..., encpipe-secret-key-1...
    and ENCPIPESIGN1... are refused; the same keys with the body's case swapped open."""
    d, public, secret, verify, sealed = forms
    assert ok(run(["seal", "--recipient", "encpipe1" + public[8:].upper()], b""))
    _refused(run(["seal", "--recipient", "ENCPIPE1" + public[8:]], b""), "must start with encpipe1")
    swapped = secret_file(d, "swapped.id", "ENCPIPE-SECRET-KEY-1" + secret[20:].lower() + "\n")
    verify_upper = "encpipesign1" + verify[12:].upper()
    assert ok(run(["open", "--identity", swapped, "--signer", verify_upper], sealed)) == DATA
    lower = secret_file(d, "lower.id", "encpipe-secret-key-1" + secret[20:] + "\n")
    _refused(run(["open", "--identity", lower], sealed), "line 1", "must start with ENCPIPE-SECRET-KEY-1")
    _refused(run(["open", "--identity", str(d / "x.id"), "--signer", "ENCPIPESIGN1" + verify[12:]], sealed),
             "must start with encpipesign1")


@pytest.mark.parametrize("padding", ["=", "======", "========"])
def test_base32_padding_is_refused(forms, padding):
    """Pins textform.decode's refusal of padding (the canonical form has none), for
    a recipient, an identity line and a verify key alike."""
    d, public, secret, verify, sealed = forms
    _refused(run(["seal", "--recipient", public + padding], b""), "malformed")
    padded = secret_file(d, "padded.id", secret + padding + "\n")
    _refused(run(["open", "--identity", padded], sealed), "line 1", "malformed")
    _refused(run(["open", "--identity", str(d / "x.id"), "--signer", verify + padding], sealed), "malformed")


@pytest.mark.parametrize("length", [62, 66, 128])
def test_a_raw_key_is_exactly_64_hex_characters(tmp_path, length):
    """Pins keys.parse_hex_key's length check: a longer key is not cut to 32 bytes
    nor read as more; surrounding ASCII white space does not count, other white space does."""
    assert ok(run(["seal", "--key-file", secret_file(tmp_path, "k", f" {KEY_A}\r\n")], b""))
    key = secret_file(tmp_path, "bad", (KEY_A * 2)[:length] + "\n")
    _refused(run(["seal", "--key-file", key], b""), f"a key must be 64 hex characters, not {length}")
    no_break = secret_file(tmp_path, "nbsp", "\u00a0" + KEY_A + "\n")  # white space, but not ASCII: part of the key
    _refused(run(["seal", "--key-file", no_break], b""), "a key must be 64 hex characters, not 65")


def test_a_passphrase_file_loses_only_its_trailing_line_ends(tmp_path):
    """Pins keys._passphrase_bytes: trailing spaces and tabs are part of a
    passphrase; only CR and LF at its end are not."""
    sealed = ok(run(["seal", "--work-factor", "10", "--passphrase-file",
                     secret_file(tmp_path, "p", "pass word \t\n")], DATA))
    crlf = secret_file(tmp_path, "crlf", "pass word \t\r\n")
    assert ok(run(["open", "--passphrase-file", crlf], sealed)) == DATA
    trimmed = run(["open", "--passphrase-file", secret_file(tmp_path, "trimmed", "pass word\n")], sealed)
    assert (trimmed.code, trimmed.stdout) == (77, b""), trimmed.stderr
    assert_one_line_error(trimmed.stderr)
    assert trimmed.stderr.startswith("encpipe: error: no supplied key opens this file\n")


def test_a_key_file_with_no_key_is_refused_even_beside_another(tmp_path):
    """Pins keys.parse_keyring's "no key found": a key file of comments and blank
    lines is a mistake (the wrong file?), refused even when another key is given."""
    empty = secret_file(tmp_path, "empty", "# the key goes here\n\n \t\r\n")
    good = secret_file(tmp_path, "good", KEY_A + "\n")
    for argv in (["--key-file", empty], ["--key-file", good, "--key-file", empty]):
        result = run(["seal", *argv], DATA)
        assert (result.code, result.stdout, result.stderr) == (64, b"", f"encpipe: error: {empty}: no key found\n")


def test_a_file_holds_at_most_64_key_slots(tmp_path):
    """Pins envelope.build_header's slot limit: 64 slots seal; a 65th is a usage
    error (64) naming the limit, before anything is written."""
    key = secret_file(tmp_path, "k", KEY_A + "\n")
    assert ok(run(["seal", *["--key-file", key] * 64], DATA))
    result = run(["seal", *["--key-file", key] * 65], DATA)
    assert (result.code, result.stdout, result.stderr) == (64, b"", "encpipe: error: a file holds at most 64 key slots\n")


def test_a_file_holds_at_most_16_signatures(tmp_path):
    """Pins envelope.build_header's signature limit: 16 signing keys seal; a 17th is
    a usage error (64) naming the limit, before anything is written."""
    key = secret_file(tmp_path, "k", KEY_A + "\n")
    signing = []
    for n in range(17):
        ok(run(["keygen", "--sign", "-o", str(tmp_path / f"s{n}")]))
        signing += ["--sign-key", str(tmp_path / f"s{n}")]
    assert ok(run(["seal", "--key-file", key, *signing[:32]], DATA))
    result = run(["seal", "--key-file", key, *signing], DATA)
    assert (result.code, result.stdout, result.stderr) == (64, b"", "encpipe: error: a file holds at most 16 signatures\n")


def test_a_text_form_of_the_wrong_length_is_named_so(tmp_path):
    """Pins textform.decode's length check: a well-formed base32 body with a 33-byte
    key and its checksum is refused for its length, not as a checksum mismatch."""
    raw = bytes(range(33))
    body = base64.b32encode(raw + hashlib.sha256(b"encpipe v1 x25519 public key" + raw).digest()[:4]).decode()
    result = run(["seal", "--recipient", "encpipe1" + body.rstrip("=").lower()], b"")
    assert (result.code, result.stdout, result.stderr) == (
        64, b"", "encpipe: error: --recipient: malformed public key: wrong length\n")
