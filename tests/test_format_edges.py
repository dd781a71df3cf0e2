"""README "Edge rules" and "inspect reports", pinned where no vector can show them:
how passphrases are trimmed, how key, recipient and signer files are read (UTF-8,
a byte-order mark, a file with no key), and the keys of inspect's report."""

import json

import pytest

from cliutil import FAST_SCRYPT, KEY_A, assert_one_line_error, ok, run, secret_file

DATA = b"some data\n" * 10


def _refused(result, status=64, message=None):
    assert (result.code, result.stdout) == (status, b""), result.stderr
    assert_one_line_error(result.stderr)
    if message is not None:
        assert result.stderr.splitlines()[0] == f"encpipe: error: {message}", result.stderr


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """(dir, public key, verify key, identity file, signing key file)."""
    d = tmp_path_factory.mktemp("keys")
    public = ok(run(["keygen", "--x25519", "-o", str(d / "x.id")])).decode().strip()
    verify = ok(run(["keygen", "--sign", "-o", str(d / "s.key")])).decode().strip()
    return d, public, verify, str(d / "x.id"), str(d / "s.key")


def test_every_trailing_cr_and_lf_of_a_passphrase_file_is_removed(tmp_path):
    """keys._passphrase_bytes strips all of them, in any mix, not one line end."""
    sealed = ok(run(["seal", *FAST_SCRYPT], DATA, {"ENCPIPE_PASSPHRASE": "pw"}))
    for tail in ("\r\n\n", "\n\n\n", "\r\r", "\n\r\n\r"):
        phrase = secret_file(tmp_path, "p", "pw" + tail)
        assert ok(run(["open", "--passphrase-file", phrase], sealed)) == DATA, repr(tail)
    inner = secret_file(tmp_path, "inner", "pw\n\nx\n")  # only the end: "pw\n\nx" is another passphrase
    _refused(run(["open", "--passphrase-file", inner], sealed), 77)


@pytest.mark.parametrize("content", ["", "\n", "\r\n\r\n"])
def test_an_empty_passphrase_after_trimming_is_refused(tmp_path, content):
    phrase = secret_file(tmp_path, "p", content)
    _refused(run(["seal", "--passphrase-file", phrase], DATA), 64, "the passphrase is empty")


def test_an_empty_passphrase_variable_is_refused_not_ignored():
    _refused(run(["seal"], DATA, {"ENCPIPE_PASSPHRASE": ""}), 64, "the passphrase is empty")


def test_a_passphrase_variable_keeps_its_trailing_newline():
    sealed = ok(run(["seal", *FAST_SCRYPT], DATA, {"ENCPIPE_PASSPHRASE": "pw\n"}))
    _refused(run(["open"], sealed, {"ENCPIPE_PASSPHRASE": "pw"}), 77)
    assert ok(run(["open"], sealed, {"ENCPIPE_PASSPHRASE": "pw\n"})) == DATA


BOM = "\ufeff"


def test_a_byte_order_mark_is_not_white_space_in_any_key_file(tmp_path, keys):
    """A BOM makes a file's first line malformed, even a comment's: 64 for a key
    file, a recipient file and a signer file alike."""
    d, public, verify, identity, _ = keys
    key = secret_file(tmp_path, "k", BOM + KEY_A + "\n")
    _refused(run(["seal", "--key-file", key], DATA), 64, f"{key}, line 1: a key must be 64 hex characters, not 65")
    commented = secret_file(tmp_path, "c", BOM + "# my key\n" + KEY_A + "\n")
    _refused(run(["seal", "--key-file", commented], DATA))
    recipients = secret_file(tmp_path, "r", BOM + public + "\n")
    _refused(run(["seal", "--recipient-file", recipients], DATA))
    signed = ok(run(["seal", "--recipient", public, "--sign-key", keys[4]], DATA))
    signers = secret_file(tmp_path, "v", BOM + verify + "\n")
    _refused(run(["open", "--identity", identity, "--signer-file", signers], signed))
    plain = secret_file(tmp_path, "v2", verify + "\n")
    assert ok(run(["open", "--identity", identity, "--signer-file", plain], signed)) == DATA


def test_key_recipient_and_signer_files_must_be_utf8(tmp_path, keys):
    """One rule for the three, and for pubkey's key file: bytes that are not UTF-8, even in
    a comment, are 64."""
    d, public, verify, identity, _ = keys
    latin1 = b"# cl\xe9 de secours\n"
    key = secret_file(tmp_path, "k", latin1 + KEY_A.encode() + b"\n")
    _refused(run(["seal", "--key-file", key], DATA), 64, f"{key}: not UTF-8 text")
    recipients = secret_file(tmp_path, "r", latin1 + public.encode() + b"\n")
    _refused(run(["seal", "--recipient-file", recipients], DATA), 64, f"{recipients}: not UTF-8 text")
    signed = ok(run(["seal", "--recipient", public, "--sign-key", keys[4]], DATA))
    signers = secret_file(tmp_path, "v", latin1 + verify.encode() + b"\n")
    _refused(run(["open", "--identity", identity, "--signer-file", signers], signed), 64,
             f"{signers}: not UTF-8 text")
    identity_file = secret_file(tmp_path, "i", latin1 + open(identity, "rb").read())
    _refused(run(["pubkey", identity_file]), 64, f"{identity_file}: not UTF-8 text")


def test_a_signer_file_with_no_key_is_refused_even_beside_another(tmp_path, keys):
    """As a key file with no key: the wrong file given, refused whatever else is given."""
    d, public, verify, identity, _ = keys
    signed = ok(run(["seal", "--recipient", public, "--sign-key", keys[4]], DATA))
    empty = secret_file(tmp_path, "empty", "# trusted signers\n\n")
    full = secret_file(tmp_path, "full", verify + "\n")
    for argv in (["--signer-file", empty], ["--signer-file", full, "--signer-file", empty],
                 ["--signer", verify, "--signer-file", empty]):
        _refused(run(["open", "--identity", identity, *argv], signed), 64, f"{empty}: no verify key found")


def _inspect(data, *args, env=None):
    return json.loads(ok(run(["inspect", "--json", *args], data, env)))


COMMON = ["format", "version", "suite", "chunk_size", "header_bytes", "payload_bytes", "plaintext_bytes", "chunks",
          "verified", "sender_authenticated", "slots", "checked"]


def test_inspect_reports_the_keys_readme_lists(tmp_path, keys):
    d, public, verify, identity, signing = keys
    env = {"ENCPIPE_KEY": KEY_A, "ENCPIPE_PASSPHRASE": "pw"}
    key = secret_file(tmp_path, "k", KEY_A + "\n")
    sealed = ok(run(["seal", "--key-file", key, "--recipient", public, "--passphrase-file",
                     secret_file(tmp_path, "p", "pw\n"), *FAST_SCRYPT, "--sign-key", signing,
                     "--sign-key", signing, "--chunk-size", "16K"], DATA, env))  # one key twice: one signature
    keyid = ok(run(["keyid", "--signer", verify])).decode().split()[0]
    plain = _inspect(sealed)
    assert set(plain) == set(COMMON + ["signers"])
    assert (plain["format"], plain["version"], plain["chunk_size"], plain["verified"]) == ("encpipe", 2, 16384, False)
    assert plain["sender_authenticated"] is None and plain["signers"] == [keyid]
    assert plain["payload_bytes"] == len(DATA) + 16 and (plain["plaintext_bytes"], plain["chunks"]) == (len(DATA), 1)
    assert plain["header_bytes"] + plain["payload_bytes"] + 2 * 32 + 96 + 32 == len(sealed)
    assert [s["type"] for s in plain["slots"]] == ["raw-key", "x25519", "passphrase"]
    assert plain["slots"][2] == {"type": "passphrase", "kdf": "scrypt", "log2_n": 10, "r": 8, "p": 1}
    assert set(plain["slots"][0]) == {"type", "key_id"} and len(plain["slots"][0]["key_id"]) == 16
    verified = _inspect(sealed, "--verify", "--key-file", key, "--signer", verify)
    assert set(verified) == set(COMMON + ["authenticated_by", "signed_by", "trusted_signer"])
    assert verified["verified"] is True and verified["sender_authenticated"] is True
    assert verified["authenticated_by"] == "raw key " + plain["slots"][0]["key_id"]
    assert (verified["signed_by"], verified["trusted_signer"]) == ([keyid], keyid)
    by_identity = _inspect(sealed, "--verify", "--identity", identity)
    assert (by_identity["sender_authenticated"], by_identity["authenticated_by"], by_identity["trusted_signer"]) == (
        False, None, None)
    text = ok(run(["inspect", sealed_path(tmp_path, sealed)])).decode().splitlines()
    assert "sender authenticated" not in " ".join(text)  # null: left out
    assert "format: encpipe" in text and "chunk size: 16384" in text
    assert not [line for line in text if line.startswith(("verified", "slots"))]
    assert f"signers: {keyid}" in text
    assert text[-3:] == [f"slot 1: raw-key {plain['slots'][0]['key_id']}",
                         f"slot 2: x25519 {plain['slots'][1]['key_id']}",
                         "slot 3: passphrase (scrypt log2(N)=10 r=8 p=1)"]


def sealed_path(tmp_path, data):
    path = tmp_path / "f.enc"
    path.write_bytes(data)
    return str(path)


@pytest.mark.parametrize("change", ["bit 255 set", "u + p"])
def test_a_public_key_not_in_canonical_form_is_refused(tmp_path, keys, change):
    """X25519 ignores bit 255 and reduces u modulo p, but the key id is of the 32 bytes
    as given: sealed to such a spelling, a file would carry a slot its identity never
    finds (77). Refused, 64, as a --recipient and in a recipient file."""
    from encpipe import textform, x25519

    d, public, verify, identity, _ = keys
    raw = textform.decode(public, "encpipe1", b"encpipe v1 x25519 public key", "public key", "test")
    u = int.from_bytes(raw, "little")
    if change == "bit 255 set":
        odd = (u | 1 << 255).to_bytes(32, "little")
    else:
        odd = (2**255 - 19 + 9).to_bytes(32, "little")  # u = 9 (the base point), spelt u + p
    text = textform.encode("encpipe1", b"encpipe v1 x25519 public key", odd, upper=False)
    message = "not a valid X25519 public key: not in canonical form (u >= 2^255 - 19)"
    _refused(run(["seal", "--recipient", text], DATA), 64, message)
    recipients = secret_file(tmp_path, "r", text + "\n")
    _refused(run(["seal", "--recipient-file", recipients], DATA), 64)
    assert x25519.X25519Identity(bytes(32)).recipient()  # a canonical key still passes


def test_a_low_order_recipient_is_64_before_anything_is_written(tmp_path):
    """README "Edge rules": as --recipient, in a recipient file and as rewrap's
    --add-recipient; u = 0 (a point of small order)."""
    from encpipe import textform

    text = textform.encode("encpipe1", b"encpipe v1 x25519 public key", bytes(32), upper=False)
    _refused(run(["seal", "--recipient", text], DATA), 64, "not a valid X25519 public key")
    _refused(run(["seal", "--recipient-file", secret_file(tmp_path, "r", text + "\n")], DATA), 64)
    key = secret_file(tmp_path, "k", KEY_A + "\n")
    sealed = ok(run(["seal", "--key-file", key], DATA))
    _refused(run(["rewrap", "--key-file", key, "--add-recipient", text], sealed), 64, "not a valid X25519 public key")


def test_a_rewrap_whose_header_would_pass_16384_bytes_is_64_before_anything_is_written():
    """A file may hold unknown slots up to the header's 16384 bytes; a slot that
    rewrap adds past that was a ValueError (70, "internal error"): now a usage
    error naming the limit, and nothing written (in-process: envelope.rewrap)."""
    import io

    from encpipe import envelope, format as fmt
    from encpipe.errors import UsageError
    from encpipe.slots import RawKey

    key, other = RawKey(bytes(32)), RawKey(bytes([1]) * 32)
    out = io.BytesIO()
    envelope.seal(io.BytesIO(b"x"), out, [key], chunk_log2=14)
    sealed = envelope.read_header(io.BytesIO(out.getvalue()))
    filler = fmt.SlotRecord(200, bytes(fmt.MAX_HEADER_LEN - sealed.size - 3 - 20))  # 20 bytes to spare
    header = envelope.build_header(key.unwrap(sealed.slots[0]), sealed.header.slots + (filler,), 14,
                                   sealed.header.payload_salt)
    big = header.encode() + out.getvalue()[sealed.size:]
    assert len(header.encode()) == fmt.MAX_HEADER_LEN - 20
    dst = io.BytesIO()
    with pytest.raises(UsageError, match="^a file's header holds at most 16384 bytes"):
        envelope.rewrap(io.BytesIO(big), dst, [key], add=[other])
    assert dst.getvalue() == b""


def test_an_input_that_ends_before_its_header_does_is_refused_and_said_so():
    """README "Layout": an empty input is "not an encpipe file"; one that ends
    anywhere inside a header, even inside a magic it matches so far, "truncated
    header"; a byte that departs from the magic, "not an encpipe file". Each is 65
    (InvalidStream), and the second decoder refuses each too."""
    import io

    import independent_decoder
    from encpipe import envelope, format as fmt
    from encpipe.errors import InvalidStream
    from encpipe.slots import RawKey

    key = RawKey(bytes(32))
    out = io.BytesIO()
    envelope.seal(io.BytesIO(b"x"), out, [key], chunk_log2=14)
    data = out.getvalue()
    size = envelope.read_header(io.BytesIO(data)).size
    cases = [(data[:n], "truncated header" if n else "not an encpipe file (empty input)") for n in range(size)]
    cases += [(data[:n] + b"X", "not an encpipe file") for n in range(7)]
    for cut, message in cases:
        with pytest.raises(InvalidStream) as refused:
            fmt.read_header(io.BytesIO(cut))
        assert str(refused.value) == message, cut
        with pytest.raises(independent_decoder.Rejected):
            independent_decoder.decode(cut, keys=[bytes(32)])
