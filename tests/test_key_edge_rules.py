"""README "Edge rules", "Where keys come from" and the key commands, through the
CLI: the order in which keys of every source and kind are tried (the first slot
that unwraps decides, so a slot wrapping another file key makes the order
visible: 0 when the right key comes first, 65 when the other does); how a
passphrase is read from each source; how key, recipient and signer files and
ENCPIPE_KEY and ENCPIPE_SIGNER are read; which options count as key options; the
order of the slots seal and rewrap write; what keygen, pubkey and keyid print;
rewrap's --remove values; inspect without --verify; recipients of small order.
Where the rule is one a second decoder needs, its reading in
tests/independent_decoder.py is held to encpipe's."""

import hashlib
import io
import os

import pytest

import independent_decoder
from cliutil import FAST_SCRYPT, KEY_A, KEY_B, assert_one_line_error, ok, run, secret_file
from test_vectors import VECTORS, load

DATA = b"edge rules\n" * 7


def refused(result, status=64):
    assert (result.code, result.stdout) == (status, b""), result.stderr
    assert_one_line_error(result.stderr)


def reslotted(recipients, opener, change):
    """A v2 file sealed for `recipients`, its slots rewritten by `change` (a list of
    decoded slots in, one out) and its header MAC'd again under the file key that
    `opener` unwraps: the trailer stays valid (authenticators come from each slot's
    own secret)."""
    from encpipe.envelope import build_header, read_header, seal, unlock

    out = io.BytesIO()
    seal(io.BytesIO(DATA), out, recipients, chunk_log2=14, version=2)
    base = out.getvalue()
    parsed = read_header(io.BytesIO(base))
    file_key = unlock(parsed, [opener])[0]
    header = build_header(file_key, change(list(parsed.slots)), 14, parsed.header.payload_salt, version=2)
    return header.encode() + base[parsed.size:]


def wrapping_another_key(slot, kek):
    from encpipe.slots import wrap_file_key

    return slot._replace(wrapped=wrap_file_key(kek, bytes(range(100, 132))))


# --- which key opens --------------------------------------------------------------

ORDER_FIELDS, ORDER_FILE = load(VECTORS / "v2_key_order_first_key_decides.vec")
RIGHT, WRONG = ORDER_FIELDS["key"]  # WRONG's slot, first in the header, wraps another file key


@pytest.mark.parametrize("argv, status", [
    (["--key-command", f"echo {WRONG}", "--key-file", "RIGHT"], 0),  # key files before key commands
    (["--key-command", f"echo {RIGHT}", "--key-file", "WRONG"], 65),
    (["--identity", "WRONG", "--key-file", "RIGHT"], 0),  # key files before identity files
    (["--identity", "RIGHT", "--key-file", "WRONG"], 65),
    (["--key-command", f"echo {WRONG}", "--identity", "RIGHT"], 0),  # identity files before key commands
    (["--key-file", "BOTH_WRONG_FIRST"], 65),  # in a file, in its order
    (["--key-file", "BOTH_RIGHT_FIRST"], 0),
], ids=["file-then-command", "file-then-command-wrong", "file-then-identity", "file-then-identity-wrong",
        "identity-then-command", "file-order-wrong", "file-order-right"])
def test_raw_keys_are_tried_key_files_then_identity_files_then_key_commands(tmp_path, argv, status):
    """Whatever the options' order on the command line: README "Which key opens"."""
    files = {"RIGHT": RIGHT + "\n", "WRONG": WRONG + "\n", "BOTH_WRONG_FIRST": f"{WRONG}\n{RIGHT}\n",
             "BOTH_RIGHT_FIRST": f"# keyring\n{RIGHT}\r\n{WRONG}\r\n"}
    argv = [secret_file(tmp_path, a, files[a]) if a in files else a for a in argv]
    result = run(["open", *argv], ORDER_FILE)
    if status:
        refused(result, status)
        assert "header authentication failed" in result.stderr
    else:
        assert hashlib.sha256(ok(result)).hexdigest() == ORDER_FIELDS["plaintext sha256"][0]


@pytest.fixture(scope="module")
def raw_before_passphrase():
    """Slots: KEY_B's (wrapping another file key), then the passphrase "pw"'s."""
    from encpipe.primitives import hkdf
    from encpipe.slots import INFO_RAW_WRAP, Passphrase, RawKey

    phrase = Passphrase(b"pw", log2_n=10)
    kek = hkdf(bytes.fromhex(KEY_B), b"", INFO_RAW_WRAP)
    return reslotted([RawKey(bytes.fromhex(KEY_B)), phrase], phrase,
                     lambda slots: [wrapping_another_key(slots[0], kek), slots[1]])


def test_a_raw_key_is_tried_before_a_passphrase_given_before_it(tmp_path, raw_before_passphrase):
    """The first slot that unwraps decides, across kinds: KEY_B's slot unwraps (to the
    wrong file key) before the passphrase is tried, and the header MAC refuses the
    file (65); no other slot is tried after it."""
    phrase = secret_file(tmp_path, "p", "pw\n")
    assert ok(run(["open", "--passphrase-file", phrase], raw_before_passphrase)) == DATA
    key = secret_file(tmp_path, "k", KEY_B + "\n")
    refused(run(["open", "--passphrase-file", phrase, "--key-file", key], raw_before_passphrase), 65)
    assert independent_decoder.decode(raw_before_passphrase, passphrases=[b"pw"]) == DATA
    with pytest.raises(independent_decoder.Rejected):
        independent_decoder.decode(raw_before_passphrase, keys=[bytes.fromhex(KEY_B)], passphrases=[b"pw"])


def test_a_slot_that_does_not_unwrap_is_skipped_and_a_key_of_another_kind_opens(tmp_path):
    """KEY_A's slot fails AES key wrap's check: passed over, the passphrase opens; with
    KEY_A alone, 77 (nothing unwrapped, nothing skipped for a limit)."""
    from encpipe.slots import Passphrase, RawKey

    phrase = Passphrase(b"pw", log2_n=10)
    sealed = reslotted([RawKey(bytes.fromhex(KEY_A)), phrase], phrase,
                       lambda slots: [slots[0]._replace(wrapped=bytes(40)), slots[1]])
    key, pw = secret_file(tmp_path, "k", KEY_A + "\n"), secret_file(tmp_path, "p", "pw\n")
    assert ok(run(["open", "--key-file", key, "--passphrase-file", pw], sealed)) == DATA
    refused(run(["open", "--key-file", key], sealed), 77)
    assert independent_decoder.decode(sealed, keys=[bytes.fromhex(KEY_A)], passphrases=[b"pw"]) == DATA


@pytest.fixture(scope="module")
def two_passphrases():
    """Two passphrase slots of one cost: "wrong"'s first, wrapping another file key;
    "right"'s second, wrapping this file's."""
    from encpipe.slots import Passphrase, scrypt_kek

    wrong, right = Passphrase(b"wrong", log2_n=10), Passphrase(b"right", log2_n=10)

    def change(slots):
        return [wrapping_another_key(slots[0], scrypt_kek(b"wrong", slots[0].salt, 10, 8, 1)), slots[1]]

    return reslotted([wrong, right], right, change)


def _fd(content):
    read, write = os.pipe()
    os.write(write, content)
    os.close(write)
    return read


@pytest.mark.parametrize("first, second", [("file", "fd"), ("file", "command"), ("fd", "command")])
@pytest.mark.parametrize("right_first", [True, False], ids=["right-first", "wrong-first"])
def test_passphrases_are_tried_files_then_fds_then_commands(tmp_path, two_passphrases, first, second, right_first):
    """Each passphrase in that order on the slots of one cost, in header order; the
    options' order on the command line does not matter (the later kind is given first)."""
    phrases = (b"right\n", b"wrong\n") if right_first else (b"wrong\n", b"right\n")
    fds, argv = [], []
    for kind, phrase in zip((second, first), reversed(phrases)):
        if kind == "file":
            argv += ["--passphrase-file", secret_file(tmp_path, "p", phrase)]
        elif kind == "fd":
            fds.append(_fd(phrase))
            argv += ["--passphrase-fd", str(fds[-1])]
        else:
            argv += ["--passphrase-command", f"echo {phrase.decode().strip()}"]
    try:
        result = run(["open", *argv], two_passphrases)
    finally:
        for fd in fds:
            os.close(fd)
    if right_first:
        assert ok(result) == DATA
    else:
        refused(result, 65)


# --- passphrases -------------------------------------------------------------------

PHRASE = b" p\tw "  # leading and trailing white space, kept


@pytest.fixture(scope="module")
def spaced(tmp_path_factory):
    path = secret_file(tmp_path_factory.mktemp("p"), "p", PHRASE + b"\r\n")
    return ok(run(["seal", *FAST_SCRYPT, "--passphrase-file", path], DATA))


@pytest.mark.parametrize("tail", [b"", b"\n", b"\r\n", b"\n\n\r\n\r", b"\r"])
@pytest.mark.parametrize("source", ["file", "fd", "command"])
def test_a_passphrase_loses_every_trailing_cr_and_lf_alike_from_each_source(tmp_path, spaced, source, tail):
    content = PHRASE + tail
    assert independent_decoder.file_passphrase(content) == PHRASE
    if source == "file":
        result = run(["open", "--passphrase-file", secret_file(tmp_path, "p", content)], spaced)
    elif source == "fd":
        fd = _fd(content)
        try:
            result = run(["open", "--passphrase-fd", str(fd)], spaced)
        finally:
            os.close(fd)
    else:
        result = run(["open", "--passphrase-command", f"cat {secret_file(tmp_path, 'p', content)}"], spaced)
    assert ok(result) == DATA


@pytest.mark.parametrize("other", [b"p\tw", b" p\tw", b"p\tw ", b" p\tw \n ", b" p\tw \t\n"])
def test_white_space_other_than_trailing_cr_and_lf_is_kept(tmp_path, spaced, other):
    refused(run(["open", "--passphrase-file", secret_file(tmp_path, "p", other)], spaced), 77)


def test_the_passphrase_variable_is_taken_as_given(spaced):
    assert ok(run(["open"], spaced, {"ENCPIPE_PASSPHRASE": PHRASE.decode()})) == DATA
    refused(run(["open"], spaced, {"ENCPIPE_PASSPHRASE": PHRASE.decode() + "\n"}), 77)


def test_passphrase_bytes_are_not_decoded(tmp_path):
    """Not UTF-8, from a file, and the same bytes from ENCPIPE_PASSPHRASE (as the
    process sees it: os.environ's surrogate escapes)."""
    phrase = b"\xff\xfe\x00\xe9t\xe9"
    sealed = ok(run(["seal", *FAST_SCRYPT, "--passphrase-file", secret_file(tmp_path, "p", phrase + b"\n")], DATA))
    assert ok(run(["open"], sealed, {"ENCPIPE_PASSPHRASE": os.fsdecode(phrase)})) == DATA
    assert ok(run(["open", "--passphrase-command", "printf '\\377\\376\\000\\351t\\351\\r\\n'"], sealed)) == DATA
    fd = _fd(phrase + b"\r\n")
    try:
        assert ok(run(["open", "--passphrase-fd", str(fd)], sealed)) == DATA
    finally:
        os.close(fd)
    refused(run(["open"], sealed, {"ENCPIPE_PASSPHRASE": phrase.decode("latin-1")}), 77)  # its UTF-8: other bytes


def test_a_passphrase_file_is_not_read_as_lines(tmp_path):
    """No comments and no first line: all of it but the trailing CR and LF."""
    content = b"# mine\npw\r\n"
    sealed = ok(run(["seal", *FAST_SCRYPT, "--passphrase-file", secret_file(tmp_path, "p", content)], DATA))
    assert independent_decoder.file_passphrase(content) == b"# mine\npw"
    assert ok(run(["open"], sealed, {"ENCPIPE_PASSPHRASE": "# mine\npw"})) == DATA
    for other in ("pw", "# mine"):
        refused(run(["open"], sealed, {"ENCPIPE_PASSPHRASE": other}), 77)


def test_passphrases_are_not_normalized(tmp_path):
    """é as one code point (NFC) and as e and a combining accent (NFD): the same
    text, two passphrases, from a file as from ENCPIPE_PASSPHRASE; the second
    decoder likewise."""
    nfc, nfd = "caf\u00e9", "cafe\u0301"
    sealed = ok(run(["seal", *FAST_SCRYPT, "--passphrase-file", secret_file(tmp_path, "p", nfc + "\n")], DATA))
    assert ok(run(["open"], sealed, {"ENCPIPE_PASSPHRASE": nfc})) == DATA
    refused(run(["open", "--passphrase-file", secret_file(tmp_path, "q", nfd + "\n")], sealed), 77)
    refused(run(["open"], sealed, {"ENCPIPE_PASSPHRASE": nfd}), 77)
    assert independent_decoder.decode(sealed, passphrases=[nfc.encode()]) == DATA
    with pytest.raises(independent_decoder.NoMatch):
        independent_decoder.decode(sealed, passphrases=[nfd.encode()])


@pytest.mark.parametrize("source", ["file", "fd", "command"])
def test_an_empty_passphrase_is_refused_when_opening_too(tmp_path, source):
    """64, even beside a key that opens the file: the wrong source given is said."""
    key = secret_file(tmp_path, "k", KEY_A + "\n")
    sealed = ok(run(["seal", "--key-file", key], DATA))
    fd = _fd(b"\r\n\n")
    option = {"file": ["--passphrase-file", secret_file(tmp_path, "p", "\n")],
              "fd": ["--passphrase-fd", str(fd)], "command": ["--passphrase-command", "echo"]}[source]
    try:
        refused(run(["open", "--key-file", key, *option], sealed))
    finally:
        os.close(fd)


# --- key files and raw keys --------------------------------------------------------

GOOD_KEY_FILES = {
    "crlf": KEY_A + "\r\n", "cr": "# mine\r" + KEY_A + "\r", "indented comment": "  \t# mine\n\n \t\v\f\n" + KEY_A,
    "upper": KEY_A.upper(), "mixed case": "A" * 10 + KEY_A[10:], "white space around": "\v\f \t" + KEY_A + " \t\v\f",
    "no key for this file first": KEY_B + "\n" + KEY_A + "\n",
}
BAD_KEY_FILES = {
    "a form feed ends no line": "# mine\f" + KEY_A + "\n", "a line separator ends no line": "# mine\u2028" + KEY_A,
    "# after the key": KEY_A + " # mine", "a no-break space line": "\u00a0\n" + KEY_A, "0x": "0x" + KEY_A,
    "two keys on a line": KEY_A + " " + KEY_B, "garbage after": KEY_A + "\nxyz\n", "a NUL": KEY_A + "\x00",
    "a no-break space around": "\u00a0" + KEY_A, "a full-width digit": KEY_A[:-1] + "\uff41",
    "spaces inside": KEY_A[:30] + " " + KEY_A[30:60] + " " + KEY_A[60:62], "63 digits": KEY_A[:63],
    "only comments": "# mine\n\n", "empty": "", "a BOM": "\ufeff" + KEY_A,
}


@pytest.mark.parametrize("name", sorted(GOOD_KEY_FILES) + sorted(BAD_KEY_FILES))
def test_key_file_lines(tmp_path, name):
    """README "Key files" and "Raw keys", through `open`, and the second decoder's
    reading of the same text."""
    key = secret_file(tmp_path, "a", KEY_A + "\n")
    sealed = ok(run(["seal", "--key-file", key], DATA))
    text = GOOD_KEY_FILES.get(name, BAD_KEY_FILES.get(name))
    result = run(["open", "--key-file", secret_file(tmp_path, "k", text)], sealed)
    if name in GOOD_KEY_FILES:
        assert ok(result) == DATA
        assert bytes.fromhex(KEY_A) in independent_decoder.keyring(text)[0]
    else:
        refused(result)
        with pytest.raises(ValueError):
            independent_decoder.keyring(text)


@pytest.mark.parametrize("inside", ["  ", " \t", "\t\t\t\t", " "])
def test_white_space_inside_a_raw_key_names_its_line(tmp_path, inside):
    """64 characters, white space among them: refused as not hex, naming the file
    and line (before, bytes.fromhex skipped the spaces and the error was `a key must
    be 32 bytes, not 31`, naming nothing)."""
    text = KEY_A[:32] + inside + KEY_A[32 + len(inside) :]
    path, sealed = secret_file(tmp_path, "k", "# mine\n" + text + "\n"), ok(run(["seal"], DATA, {"ENCPIPE_KEY": KEY_A}))
    result = run(["open", "--key-file", path], sealed)
    refused(result)
    assert result.stderr == f"encpipe: error: {path}, line 2: a key must be hex characters (0-9, a-f)\n"
    result = run(["open"], sealed, {"ENCPIPE_KEY": text})
    refused(result)
    assert result.stderr == "encpipe: error: ENCPIPE_KEY: a key must be hex characters (0-9, a-f)\n"


@pytest.mark.parametrize("value, status", [(" \t" + KEY_A + "\n\v", 0), (KEY_A.upper(), 0), ("", 64),
                                           ("\u00a0" + KEY_A, 64), (KEY_A + "0", 64)])
def test_the_key_variable_is_read_as_a_raw_key(value, status):
    """An empty ENCPIPE_KEY is a malformed key, not an unset one."""
    sealed = ok(run(["seal"], DATA, {"ENCPIPE_KEY": KEY_A}))
    result = run(["open"], sealed, {"ENCPIPE_KEY": value})
    if status:
        refused(result, status)
    else:
        assert ok(result) == DATA


def test_a_recipient_file_holds_one_key_a_line(tmp_path):
    """Only signer files (and ENCPIPE_SIGNER) may put several keys on a line."""
    one = ok(run(["keygen", "--x25519", "-o", str(tmp_path / "1.id")])).decode().strip()
    two = ok(run(["keygen", "--x25519", "-o", str(tmp_path / "2.id")])).decode().strip()
    refused(run(["seal", "--recipient-file", secret_file(tmp_path, "r", f"{one} {two}\n")], DATA))
    lines = f"\t{one}  \r\n# the escrow key\n{'encpipe1' + two[8:].upper()}\n"
    sealed = ok(run(["seal", "--recipient-file", secret_file(tmp_path, "r2", lines)], DATA))
    for identity in ("1.id", "2.id"):
        assert ok(run(["open", "--identity", str(tmp_path / identity)], sealed)) == DATA


def test_a_signing_key_is_no_key_to_seal_or_open_with_nor_the_reverse(tmp_path):
    """README "Key files": a signing key in a key file, or a raw key or identity in a
    --sign-key file, is 64."""
    ok(run(["keygen", "--sign", "-o", str(tmp_path / "s.key")]))
    signing = str(tmp_path / "s.key")
    key = secret_file(tmp_path, "k", KEY_A + "\n")
    sealed = ok(run(["seal", "--key-file", key], DATA))
    both = secret_file(tmp_path, "both", open(key).read() + open(signing).read())
    refused(run(["seal", "--key-file", signing], DATA))
    refused(run(["open", "--key-file", both], sealed))
    refused(run(["open", "--identity", signing], sealed))
    refused(run(["seal", "--key-file", key, "--sign-key", both], DATA))


# --- which options are key options -------------------------------------------------

def test_the_signing_options_do_not_count_as_key_options(tmp_path):
    """ENCPIPE_KEY and ENCPIPE_PASSPHRASE are read when no option gives a key to seal or
    open with: --sign-key and --signer do not, --key-file (even of another key) does."""
    verify = ok(run(["keygen", "--sign", "-o", str(tmp_path / "s.key")])).decode().strip()
    env = {"ENCPIPE_KEY": KEY_A}
    sealed = ok(run(["seal", "--sign-key", str(tmp_path / "s.key")], DATA, env))
    assert ok(run(["open", "--signer", verify], sealed, env)) == DATA
    assert ok(run(["open", "--signer-file", secret_file(tmp_path, "v", verify + "\n")], sealed, env)) == DATA
    other = secret_file(tmp_path, "b", KEY_B + "\n")
    refused(run(["open", "--key-file", other], sealed, env), 77)
    refused(run(["open", "--signer", verify], sealed), 78)
    mine = secret_file(tmp_path, "a", KEY_A + "\n")  # given a key option, the variables are not even read
    assert ok(run(["open", "--key-file", mine], sealed, {"ENCPIPE_KEY": "bad", "ENCPIPE_PASSPHRASE": ""})) == DATA


# --- pubkey ------------------------------------------------------------------------

def test_pubkey_prints_each_identity_and_signing_key_in_order_passing_raw_keys_over(tmp_path):
    one = ok(run(["keygen", "--x25519", "-o", str(tmp_path / "1.id")])).decode().strip()
    verify = ok(run(["keygen", "--sign", "-o", str(tmp_path / "s.key")])).decode().strip()
    two = ok(run(["keygen", "--x25519", "-o", str(tmp_path / "2.id")])).decode().strip()
    texts = [open(tmp_path / name).read() for name in ("1.id", "s.key", "2.id")]
    ring = secret_file(tmp_path, "ring", KEY_A + "\r\n" + "".join(texts) + KEY_B + "\n")
    assert ok(run(["pubkey", ring])).decode().splitlines() == [one, verify, two]
    refused(run(["pubkey", secret_file(tmp_path, "raw", KEY_A + "\n")]))


def test_keyid_prints_one_line_a_key_in_a_stated_order(tmp_path):
    """The verify keys of --sign-key, then --signer and --signer-file, then the keys
    as seal takes them: key files, identity files, key commands (each in its order),
    then --recipient and --recipient-file. Passphrases have none."""
    public = ok(run(["keygen", "--x25519", "-o", str(tmp_path / "x.id")])).decode().strip()
    verify = ok(run(["keygen", "--sign", "-o", str(tmp_path / "s.key")])).decode().strip()

    def one(*argv):
        return ok(run(["keyid", *argv])).decode().split()

    [raw_a], [raw_b], [x], [s] = (one("--key-file", secret_file(tmp_path, "a", KEY_A)),
                                  one("--key-file", secret_file(tmp_path, "b", KEY_B)),
                                  one("--recipient", public), one("--signer", verify))
    assert one("--identity", str(tmp_path / "x.id")) == [x] and one("--sign-key", str(tmp_path / "s.key")) == [s]
    ring = secret_file(tmp_path, "ring", f"{KEY_B}\n{open(tmp_path / 'x.id').read()}{KEY_A}\n")
    got = one("--recipient", public, "--key-command", f"echo {KEY_A}", "--identity", secret_file(tmp_path, "i", KEY_A),
              "--key-file", ring, "--signer", verify, "--key-file", secret_file(tmp_path, "b2", KEY_B))
    assert got == [s, raw_b, x, raw_a, raw_b, raw_a, raw_a, x]
    signing = str(tmp_path / "s.key")
    assert one("--sign-key", signing, "--sign-key", signing, "--signer", verify, "--signer", verify) == [s, s, s]
    assert ok(run(["keyid"], env={"ENCPIPE_KEY": KEY_A})).decode().split() == [raw_a]  # no option: the environment
    refused(run(["keyid"], env={"ENCPIPE_PASSPHRASE": "pw"}))


# --- rewrap --remove ------------------------------------------------------------------

@pytest.mark.parametrize("value", [KEY_B, "ENCPIPE-SECRET-KEY-1" + "A" * 58, "correct horse battery", "a819f39cdb31680",
                                   "0xa819f39cdb316802", " a819f39cdb316802"],
                         ids=["raw key", "identity", "words", "15 digits", "0x", "space"])
def test_a_remove_value_that_is_no_key_id_is_64_and_not_shown(tmp_path, value):
    """A raw key or an identity given to --remove in place of its key id was echoed:
    `no slot has key id 0123...`. Refused before anything is read, not shown."""
    key = secret_file(tmp_path, "k", KEY_A + "\n")
    path = tmp_path / "f.enc"
    path.write_bytes(ok(run(["seal", "--key-file", key, "--key-file", secret_file(tmp_path, "b", KEY_B)], DATA)))
    before = path.read_bytes()
    for argv, stdin in ((["--in-place", str(path)], b""), ([], before)):
        result = run(["rewrap", *argv, "--key-file", key, "--remove", value], stdin)
        refused(result)
        assert value.strip().lower() not in result.stderr.lower() and "--remove" in result.stderr
    assert path.read_bytes() == before


def test_a_remove_key_id_may_be_in_either_case_and_one_in_no_slot_is_named(tmp_path):
    key, other = secret_file(tmp_path, "k", KEY_A + "\n"), secret_file(tmp_path, "b", KEY_B + "\n")
    sealed = ok(run(["seal", "--key-file", key, "--key-file", other], DATA))
    [wanted] = ok(run(["keyid", "--key-file", other])).decode().split()
    rewrapped = ok(run(["rewrap", "--key-file", key, "--remove", wanted.upper()], sealed))
    refused(run(["open", "--key-file", other], rewrapped), 77)
    assert ok(run(["open", "--key-file", key], rewrapped)) == DATA
    result = run(["rewrap", "--key-file", key, "--remove", wanted], rewrapped)
    refused(result)
    assert result.stderr.startswith(f"encpipe: error: no slot has key id {wanted}\n")


# --- keygen without -o -------------------------------------------------------------

def test_keygen_without_output_prints_a_raw_key_or_an_identity_but_no_signing_key(tmp_path):
    """A raw key: 64 lower-case hex digits and a newline; an identity: what its file
    would hold, the `# public key:` comment first; a signing key needs -o (64)."""
    raw = ok(run(["keygen"])).decode()
    assert len(raw) == 65 and raw.endswith("\n") and all(c in "0123456789abcdef" for c in raw[:-1])
    comment, identity, *rest = ok(run(["keygen", "--x25519"])).decode().split("\n")
    assert rest == [""] and comment.startswith("# public key: encpipe1") and identity.startswith("ENCPIPE-SECRET-KEY-1")
    assert ok(run(["pubkey", secret_file(tmp_path, "id", f"{comment}\n{identity}\n")])).decode() == comment[14:] + "\n"
    refused(run(["keygen", "--sign"]))


def test_inspect_without_verify_reads_no_key(tmp_path):
    """Not even a malformed one: the report is the one given no key."""
    sealed = ok(run(["seal"], DATA, {"ENCPIPE_KEY": KEY_A}))
    plain = ok(run(["inspect", "--json"], sealed))
    for argv, env in ((["--key-file", secret_file(tmp_path, "k", "not a key\n")], {}), (["--signer", "x"], {}),
                      (["--passphrase-file", secret_file(tmp_path, "p", "\n")], {}), ([], {"ENCPIPE_KEY": "x"}),
                      (["--key-file", secret_file(tmp_path, "a", KEY_A + "\n")], {})):
        assert ok(run(["inspect", "--json", *argv], sealed, env)) == plain, argv
    assert b'"verified": false' in plain


def test_inspect_without_verify_still_refuses_a_key_another_user_could_replace(tmp_path):
    """What every command checks before it reads anything is checked here too, though no
    key is read: a key file in a directory others can write (73), a closed
    --passphrase-fd (66); nothing on standard output. README said "not even checked"."""
    sealed = ok(run(["seal"], DATA, {"ENCPIPE_KEY": KEY_A}))
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared").chmod(0o777)
    refused = run(["inspect", "--key-file", secret_file(tmp_path / "shared", "k", KEY_A + "\n")], sealed)
    assert (refused.code, refused.stdout) == (73, b"")
    closed = run(["inspect", "--passphrase-fd", "1000000"], sealed)
    assert (closed.code, closed.stdout) == (66, b"")


# --- signers -------------------------------------------------------------------------

SIGNED_FIELDS, SIGNED = load(VECTORS / "v2_signed_x25519.vec")  # signed by signer 1, sealed to an identity only
OTHER_SIGNER = load(VECTORS / "v2_wrong_signer.vec")[0]["signer"][0]


@pytest.mark.parametrize("value, status", [
    ("", 0), (" \t\n", 0), ("# none for now\n", 0),  # no item: no signer, the file opens unsigned-for-us
    ("{other}", 67), ("{other} {v}", 0), ("{other}\t{v}", 0), ("{other}\v{v}", 0), ("{other}\f{v}", 0),
    ("{other}\r\n{v}\r\n", 0), ("# trusted\n  {v}  \n", 0), ("{other},{v}", 64), ("{other}\u00a0{v}", 64),
    ("{v} # ours", 64),
], ids=lambda v: repr(v) if isinstance(v, str) else str(v))
def test_signer_variable_and_file_are_read_alike(tmp_path, value, status):
    """ENCPIPE_SIGNER is read as a signer file's text: lines, # comments, keys also
    apart on a line by ASCII white space; with no item it means no signer, where a
    signer file with no item is refused (64)."""
    text = value.format(v=SIGNED_FIELDS["signer"][0], other=OTHER_SIGNER)
    identity = secret_file(tmp_path, "id", SIGNED_FIELDS["identity"][0] + "\n")
    by_env = run(["open", "--identity", identity], SIGNED, {"ENCPIPE_SIGNER": text})
    by_file = run(["open", "--identity", identity, "--signer-file", secret_file(tmp_path, "v", text)], SIGNED)
    if status:
        refused(by_env, status)
    else:
        none = "encpipesign1" not in text
        assert ok(by_env) == ok(run(["open", "--identity", identity], SIGNED))
        assert ("anyone with its public key can make such a file" in by_env.stderr) == none
    file_status = 64 if status == 0 and "encpipesign1" not in text else status
    if file_status:
        refused(by_file, file_status)
    else:
        assert ok(by_file)


def test_seal_writes_one_slot_a_key_in_a_stated_order(tmp_path):
    """Key files, identity files (an identity as its public key), key commands,
    --recipient, --recipient-file, then passphrases (files, fds, commands); a key given
    twice gets two slots. Whatever the options' order."""
    import json

    public = ok(run(["keygen", "--x25519", "-o", str(tmp_path / "x.id")])).decode().strip()
    other = ok(run(["keygen", "--x25519", "-o", str(tmp_path / "y.id")])).decode().strip()
    ids = {name: ok(run(["keyid", *argv])).decode().strip() for name, argv in (
        ("a", ["--key-file", secret_file(tmp_path, "a", KEY_A)]), ("b", ["--key-file", secret_file(tmp_path, "b", KEY_B)]),
        ("x", ["--recipient", public]), ("y", ["--recipient", other]))}
    fd = _fd(b"second\n")
    try:
        sealed = ok(run(["seal", *FAST_SCRYPT, "--passphrase-fd", str(fd), "--recipient-file",
                         secret_file(tmp_path, "r", other + "\n"), "--recipient", public, "--key-command", f"echo {KEY_A}",
                         "--identity", str(tmp_path / "x.id"), "--passphrase-file", secret_file(tmp_path, "p", "first"),
                         "--key-file", secret_file(tmp_path, "ab", f"{KEY_B}\n{KEY_A}\n")], DATA))
    finally:
        os.close(fd)
    slots = json.loads(ok(run(["inspect", "--json"], sealed)))["slots"]
    assert [s.get("key_id", s["type"]) for s in slots] == [ids["b"], ids["a"], ids["x"], ids["a"], ids["x"], ids["y"],
                                                           "passphrase", "passphrase"]
    assert ok(run(["open", "--passphrase-file", secret_file(tmp_path, "p2", "second")], sealed)) == DATA


def test_rewrap_keeps_the_slots_in_order_and_appends_the_new_ones_in_a_stated_order(tmp_path):
    import json

    public = ok(run(["keygen", "--x25519", "-o", str(tmp_path / "x.id")])).decode().strip()
    a, b = secret_file(tmp_path, "a", KEY_A), secret_file(tmp_path, "b", KEY_B)
    sealed = ok(run(["seal", *FAST_SCRYPT, "--key-file", a, "--recipient", public, "--key-file", b], DATA))
    [id_a], [id_b] = (ok(run(["keyid", "--key-file", k])).decode().split() for k in (a, b))
    [id_x] = ok(run(["keyid", "--recipient", public])).decode().split()
    rewrapped = ok(run(["rewrap", *FAST_SCRYPT, "--key-file", b, "--remove", id_a,
                        "--add-passphrase-file", secret_file(tmp_path, "p", "pw"), "--add-recipient", public,
                        "--add-key-file", a], sealed))
    slots = json.loads(ok(run(["inspect", "--json"], rewrapped)))["slots"]
    assert [s.get("key_id", s["type"]) for s in slots] == [id_b, id_x, id_a, id_x, "passphrase"]  # sealed a, b, x
    for argv in (["--key-file", a], ["--key-file", b], ["--passphrase-file", secret_file(tmp_path, "p2", "pw")]):
        assert ok(run(["open", *argv], rewrapped)) == DATA


# --- recipients of small order ----------------------------------------------------------

P = 2**255 - 19
SMALL_ORDER_U = [0, 1, P - 1,  # and the two of order 8 (RFC 7748, section 7)
                 325606250916557431795983626356110631294008115727848805560023387167927233504,
                 39382357235489614581723060781553021112529911719440698176882885853963445705823]


@pytest.mark.parametrize("u", SMALL_ORDER_U, ids=lambda u: hex(u)[:12])
def test_every_recipient_of_small_order_is_64(tmp_path, u):
    """README "A low-order or invalid x25519 point": as --recipient, in a recipient
    file and as --add-recipient; the second decoder refuses each too."""
    from encpipe import textform

    text = textform.encode("encpipe1", b"encpipe v1 x25519 public key", u.to_bytes(32, "little"), upper=False)
    with pytest.raises(ValueError):
        independent_decoder.recipient_public(text)
    refused(run(["seal", "--recipient", text], DATA))
    refused(run(["seal", "--recipient-file", secret_file(tmp_path, "r", text + "\n")], DATA))
    key = secret_file(tmp_path, "k", KEY_A + "\n")
    refused(run(["rewrap", "--key-file", key, "--add-recipient", text], ok(run(["seal", "--key-file", key], DATA))))


def test_a_low_order_slot_of_another_key_id_is_not_looked_at(tmp_path):
    """README "Which key opens": the vector's only slot has an ephemeral key of small
    order (65 for its identity); an identity of another key id never tries it: 77."""
    fields, data = load(VECTORS / "v2_x25519_low_order_only.vec")
    ok(run(["keygen", "--x25519", "-o", str(tmp_path / "other.id")]))
    refused(run(["open", "--identity", str(tmp_path / "other.id")], data), 77)
    refused(run(["open", "--identity", secret_file(tmp_path, "id", fields["identity"][0])], data), 65)
    other = [line for line in open(tmp_path / "other.id").read().split() if line.startswith("ENCPIPE-")][0]
    with pytest.raises(independent_decoder.NoMatch):
        independent_decoder.decode(data, identities=[independent_decoder.identity_secret(other)])


def test_one_passphrase_descriptor_given_twice_is_refused_as_such(tmp_path):
    """It holds one passphrase: the second read found it at its end and said `the
    passphrase is empty`. Now named, before anything is read (the descriptor's content
    stays unread)."""
    fd = _fd(b"pw\n")
    try:
        result = run(["seal", "--passphrase-fd", str(fd), "--passphrase-fd", str(fd)], DATA)
        refused(result)
        assert result.stderr.startswith(f"encpipe: error: --passphrase-fd {fd} is given twice")
        assert os.read(fd, 10) == b"pw\n"
    finally:
        os.close(fd)


# --- the order of the checks -------------------------------------------------------------

def test_open_checks_the_header_then_the_keys_then_the_signers_and_rewrap_its_keys_first(tmp_path):
    """open and inspect --verify: a header that is not valid is 65 whatever the keys and
    signers; then the keys are read (66, 78, 64), then the signers (64); a v1 file with
    signers required is 67 before any key is tried. rewrap reads its keys before the
    file."""
    from cliutil import seal_v1
    from encpipe import textform

    small = textform.encode("encpipesign1", b"encpipe v2 ed25519 public key", (1).to_bytes(32, "little"), upper=False)
    verify = ok(run(["keygen", "--sign", "-o", str(tmp_path / "s.key")])).decode().strip()
    key, other = secret_file(tmp_path, "k", KEY_A + "\n"), secret_file(tmp_path, "b", KEY_B + "\n")
    sealed = ok(run(["seal", "--key-file", key], DATA))
    for command in (["open"], ["inspect", "--verify"]):
        for argv, data, status in (
            (["--key-file", "/nonexistent", "--signer", small], b"not a sealed file", 65),
            (["--key-file", "/nonexistent", "--signer", small], sealed, 66),
            (["--signer", small], sealed, 78),
            (["--key-file", key, "--signer", small], sealed, 64),
            (["--key-file", other, "--signer", verify], seal_v1(DATA), 67),
        ):
            refused(run([*command, *argv], data), status)
    refused(run(["rewrap", "--key-file", "/nonexistent"], b"not a sealed file"), 66)
    refused(run(["rewrap"], b"not a sealed file"), 78)
