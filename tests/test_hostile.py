"""Hostile input: a short hypothesis fuzz of the entry points tests/fuzz/ fuzzes at length.

Arbitrary bytes, random headers with a correct CRC, and valid files mutated
(bit flips, truncations, insertions, deletions, header field edits with the
CRC recomputed, reordered chunks) go through the header and slot parsers and
through `open`, `inspect` and `inspect --json --verify`. The contract
(tests/fuzz/fuzz_encpipe.py): only encpipe's own errors, a documented exit
status, one `encpipe: error:` line (+ hint) and no traceback on failure,
nothing on stdout from a failing `inspect`, and `open` writes only a prefix of
the true plaintext, all of it only on success. Any change to a valid file
makes `open` and `inspect --verify` fail. The inputs that crashed the long
fuzzer (tests/fuzz/regressions/) are replayed here.
"""

import io
import os
import struct
import subprocess

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from fuzz import craft
from fuzz import fuzz_encpipe as harness
from fuzz.craft import SLOT_RAW, SLOT_SCRYPT, SLOT_X25519, UNKNOWN_KIND, clean_env, command, fix_crc, run_in_process
from cliutil import V1_WARNING

KEY_ENV = {"ENCPIPE_KEY": harness.KEY_HEX}
CHUNK = 1 << 14
FUZZ = settings(
    max_examples=120, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)

# A few genuine files, sealed with the fuzzer's fixed secrets (module scope: made once).
_raw, _ident, _passphrase = harness.identities()
PLAINTEXT_SMALL = os.urandom(300)
PLAINTEXT_CHUNKS = os.urandom(2 * CHUNK + 500)
VALID = [
    (craft.seal_with(PLAINTEXT_SMALL, [_raw]), PLAINTEXT_SMALL),
    (
        craft.seal_with(PLAINTEXT_CHUNKS, [_ident.recipient(), _raw], extra=[(UNKNOWN_KIND, b"\x07" * 17)]),
        PLAINTEXT_CHUNKS,
    ),
    (craft.seal_with(b"", [_raw]), b""),
]


def check_open(data, plaintext, changed):
    status, out, err = run_in_process(["open"], data, KEY_ENV)
    harness.check_status(status)
    harness.check_stderr(status, err)
    harness.check_open_output(status, out, [plaintext])
    if changed:
        assert status != 0, "open accepted a modified file"
    return status


def check_inspect(data, argv, changed=False, env=None):
    status, out, err = run_in_process(argv, data, env or {})
    harness.check_status(status)
    harness.check_stderr(status, err)
    harness.check_inspect_output(status, out, "--json" in argv)
    if changed and "--verify" in argv:
        assert status != 0, "inspect --verify accepted a modified file"
    return status


def check_everything(data, plaintext=b"", changed=True):
    statuses = {
        "open": check_open(data, plaintext, changed),
        "inspect": check_inspect(data, ["inspect"]),
        "verify": check_inspect(data, ["inspect", "--json", "--verify"], changed, KEY_ENV),
    }
    harness.target_header(data)
    return statuses


# --- arbitrary bytes ------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=600))
def test_arbitrary_bytes(data):
    check_everything(data, changed=False)


@FUZZ
@given(st.binary(max_size=400))
def test_arbitrary_bytes_after_the_magic_and_version(data):
    statuses = check_everything(b"ENCPIPE\x01" + data)
    assert statuses["open"] == 65


@FUZZ
@given(st.integers(0, 255), st.binary(max_size=200))
def test_arbitrary_slot_bodies(kind, body):
    harness.target_slot(bytes([kind]) + body)


# --- random headers with a correct CRC ------------------------------------------------------

_LIKELY_BODY_LENGTHS = {SLOT_RAW: 48, SLOT_SCRYPT: 59, SLOT_X25519: 80}


@st.composite
def slot(draw):
    kind = draw(st.sampled_from([SLOT_RAW, SLOT_SCRYPT, SLOT_X25519, 0, UNKNOWN_KIND, 255]))
    length = draw(st.one_of(st.just(_LIKELY_BODY_LENGTHS.get(kind, 0)), st.integers(0, 100)))
    body = bytearray(draw(st.binary(min_size=length, max_size=length)))
    if kind == SLOT_RAW and length >= 8 and draw(st.booleans()):
        body[:8] = _raw.key_id  # reach the unwrap with our key's id
    if kind == SLOT_X25519 and length >= 40 and draw(st.booleans()):
        body[:8] = _ident.key_id
        body[8:40] = draw(st.sampled_from([b"\x00" * 32, b"\x01" + b"\x00" * 31, b"\xff" * 32, bytes(body[8:40])]))
    if kind == SLOT_SCRYPT and length == 59:
        body[16:19] = bytes([draw(st.integers(0, 21)), draw(st.integers(0, 40)), draw(st.integers(0, 20))])
    return kind, bytes(body)


@st.composite
def crafted_file(draw):
    slots = draw(st.lists(slot(), min_size=0, max_size=6))
    header = craft.raw_header(
        slots,
        chunk_log2=draw(st.one_of(st.just(14), st.integers(0, 255))),
        suite=draw(st.sampled_from([1, 1, 1, 0, 2, 255])),
        slot_count=draw(st.one_of(st.none(), st.integers(0, 255))),
        length=draw(st.one_of(st.none(), st.integers(0, 700))),
    )
    return fix_crc(header) + draw(st.binary(max_size=100))


@FUZZ
@given(crafted_file())
def test_crafted_headers_with_a_correct_crc(data):
    statuses = check_everything(data)
    assert statuses["open"] in (65, 77)


# --- valid files, mutated -----------------------------------------------------------------


def _header_fields(data):
    """(offset, size) of each header field a mutation may rewrite: fixed fields and slot heads."""
    fields = [(craft.OFF_VERSION, 1), (craft.OFF_HEADER_LEN, 2), (craft.OFF_SUITE, 1), (craft.OFF_CHUNK_LOG2, 1)]
    fields.append((craft.OFF_SLOT_COUNT, 1))
    pos = craft.OFF_SLOTS
    for _ in range(data[craft.OFF_SLOT_COUNT]):
        fields += [(pos, 1), (pos + 1, 2)]  # kind, body_len
        pos += 3 + struct.unpack_from(">H", data, pos + 1)[0]
    return fields


@st.composite
def mutation(draw, data, original):
    """One edit of `data`, a (maybe already edited) copy of the valid file `original`."""
    hlen = craft.header_len(original)
    kind = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "field", "byte", "records"]))
    out = bytearray(data)
    if kind == "flip":
        pos = draw(st.integers(0, len(out) - 1))
        out[pos] ^= 1 << draw(st.integers(0, 7))
    elif kind == "truncate":
        out = out[: draw(st.integers(0, len(out) - 1))]
    elif kind == "insert":
        pos = draw(st.integers(0, len(out)))
        out[pos:pos] = draw(st.binary(min_size=1, max_size=40))
    elif kind == "delete":
        pos = draw(st.integers(0, len(out) - 1))
        del out[pos : pos + draw(st.integers(1, 40))]
    elif kind == "field":
        offset, size = draw(st.sampled_from(_header_fields(original)))
        value = draw(st.integers(0, (1 << (8 * size)) - 1))
        out[offset : offset + size] = value.to_bytes(size, "big")
    elif kind == "byte":
        out[draw(st.integers(0, hlen - 5))] = draw(st.integers(0, 255))
    else:
        records = [out[i : i + CHUNK + 16] for i in range(hlen, len(out), CHUNK + 16)]
        reordered = list(draw(st.permutations(records))) if len(records) > 1 else records
        if records and draw(st.booleans()):
            reordered.append(draw(st.sampled_from(records)))
        elif len(records) > 1 and draw(st.booleans()):
            reordered.pop(draw(st.integers(0, len(reordered) - 1)))
        out = out[:hlen] + b"".join(reordered)
    if kind in ("field", "byte") or draw(st.booleans()):
        out = bytearray(fix_crc(out, min(hlen, len(out))))  # reach the check behind the CRC
    return bytes(out)


@st.composite
def mutated_file(draw):
    original, plaintext = draw(st.sampled_from(VALID))
    mutated = original
    for _ in range(draw(st.integers(1, 3))):
        if len(mutated) <= craft.header_len(original):
            break
        mutated = draw(mutation(mutated, original))
    return mutated, plaintext, mutated != original


@FUZZ
@given(mutated_file())
def test_mutated_valid_files(case):
    data, plaintext, changed = case
    check_everything(data, plaintext, changed)


@settings(max_examples=60, deadline=None, database=None)
@given(st.data())
def test_header_field_edits_with_the_crc_recomputed_are_rejected_before_output(data):
    """Every header field edit (slot_count, header_len, body_len...) fails, and writes nothing."""
    valid, plaintext = VALID[1]
    offset, size = data.draw(st.sampled_from(_header_fields(valid)))
    value = data.draw(st.integers(0, (1 << (8 * size)) - 1))
    edited = bytearray(valid)
    edited[offset : offset + size] = value.to_bytes(size, "big")
    edited = fix_crc(edited, craft.header_len(valid))
    assume(edited != valid)
    status, out, err = run_in_process(["open"], edited, KEY_ENV)
    assert status in (65, 77) and out == b"", err
    harness.check_stderr(status, err)


def test_valid_files_open():
    for data, plaintext in VALID:
        statuses = check_everything(data, plaintext, changed=False)
        assert statuses == {"open": 0, "inspect": 0, "verify": 0}


def test_a_slot_wrapping_another_file_key_fails_the_header_mac():
    """GCM does not commit to its key; the header MAC does. A header whose second slot wraps a
    different file key cannot make that slot's key open the file to another plaintext."""
    from encpipe import envelope
    from encpipe.slots import RawKey

    other = RawKey(bytes.fromhex("71" * 32))
    good, _ = VALID[0]
    sealed = envelope.read_header(io.BytesIO(good))
    rogue = other.wrap(os.urandom(32)).encode()
    slots = list(sealed.header.slots) + [rogue]
    header = craft.raw_header(
        [(s.kind, s.body) for s in slots], chunk_log2=sealed.header.chunk_log2,
        salt=sealed.header.payload_salt, mac=sealed.header.mac,
    )
    forged = header + good[craft.header_len(good) :]
    status, out, err = run_in_process(["open"], forged, {"ENCPIPE_KEY": "71" * 32})
    assert (status, out) == (65, b"")
    craft.assert_error_lines(err, "header authentication failed")
    status, out, err = run_in_process(["open"], forged, KEY_ENV)  # the MAC covers the added slot too
    assert (status, out) == (65, b""), err


# --- real processes -----------------------------------------------------------------------


def _x25519_slot(ephemeral):
    return (SLOT_X25519, _ident.key_id + ephemeral + b"\x00" * 40)


HOSTILE = {
    "empty": b"",
    "magic only": b"ENCPIPE",
    "version 2": b"ENCPIPE\x02" + b"\x00" * 100,
    "header length lies": craft.raw_header([(UNKNOWN_KIND, b"")], length=500),
    "slot runs past the header": fix_crc(craft.raw_header([(UNKNOWN_KIND, b"\x00" * 10)])[:47] + b"\xff\xff"
                                         + craft.raw_header([(UNKNOWN_KIND, b"\x00" * 10)])[49:]),
    "wrong body length for a raw-key slot": craft.raw_header([(SLOT_RAW, b"\x00" * 47)]),
    "x25519 slot with a zero ephemeral key": craft.raw_header([_x25519_slot(b"\x00" * 32)]) + b"\x00" * 16,
    "x25519 slot with a low-order ephemeral key": craft.raw_header([_x25519_slot(b"\x01" + b"\x00" * 31)]),
    "raw-key slot that does not unwrap": craft.raw_header([(SLOT_RAW, _raw.key_id + b"\x00" * 40)]),
    "valid header, no payload": VALID[0][0][: craft.header_len(VALID[0][0])],
    "trailing byte": VALID[0][0] + b"\x00",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_inputs_in_a_real_process(tmp_path, name):
    path = tmp_path / "in.enc"
    path.write_bytes(HOSTILE[name])
    keyring = tmp_path / "keys"
    keyring.write_text(f"{harness.KEY_HEX}\n{_ident}\n")
    keyring.chmod(0o600)
    for argv in (
        ["open", "--key-file", str(keyring), str(path)],
        ["inspect", "--json", "--verify", "--key-file", str(keyring), str(path)],
    ):
        done = subprocess.run(command(*argv), capture_output=True, env=clean_env(), timeout=60)
        assert done.returncode in (65, 77), done.stderr
        assert done.stdout == b""
        craft.assert_error_lines(done.stderr.decode())


# --- the long fuzzer's findings and the harness itself ---------------------------------------


# One test per kept input; with none kept, pytest reports the empty set as skipped
# rather than passing a loop that checked nothing.
@pytest.mark.parametrize("target, path", harness.regression_files())
def test_regression_vectors_of_the_fuzzer(target, path):
    """A kept crashing input now passes its target's checks (a real process for CLI targets)."""
    with open(path, "rb") as f:
        data = f.read()
    harness.check_input(target, data)
    if target in ("open", "inspect", "inspect-verify"):
        argv = {"open": ["open"], "inspect": ["inspect"], "inspect-verify": ["inspect", "--verify"]}[target]
        done = subprocess.run(command(*argv), input=data, capture_output=True, env=clean_env(KEY_ENV), timeout=60)
        harness.check_status(done.returncode)
        harness.check_stderr(done.returncode, done.stderr.decode())


def test_harness_seeds_pass_every_target(tmp_path):
    for target in harness.TARGETS:
        if target == "legacy" and not harness.legacy_available():
            continue
        directory = tmp_path / target
        assert harness.write_seeds(target, str(directory)) > 0
        for name in sorted(os.listdir(directory)):
            harness.check_input(target, (directory / name).read_bytes())


def test_harness_seeds_open_to_their_plaintexts():
    scratch = harness.scratch_dir()
    keys = ["--key-file", os.path.join(scratch, "keyring"), "--passphrase-file", os.path.join(scratch, "passphrase")]
    for name, data in harness.make_seed_files().items():
        status, out, err = run_in_process(["open", *keys], data)
        assert (status, err) == (0, V1_WARNING) and out == harness.PLAINTEXTS[name], name  # seeds are v1


@pytest.mark.parametrize(
    "status, out, err",
    [
        (70, b"", "encpipe: error: boom\n"),
        (1, b"", "encpipe: error: boom\n"),
        (65, b"", "Traceback (most recent call last):\n"),
        (65, b"", "encpipe: error: a\nencpipe: error: b\n"),
        (65, b"", ""),
        (0, b"", "encpipe: warning: x\n"),
        (65, b"not a plaintext", "encpipe: error: boom\n"),
    ],
)
def test_the_contract_checks_catch_violations(status, out, err):
    with pytest.raises(harness.ContractViolation):
        harness.check_status(status)
        harness.check_stderr(status, err)
        harness.check_open_output(status, out, [b"plaintext"])


# --- inspect ------------------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [["inspect"], ["inspect", "--json"]])
@pytest.mark.parametrize("payload", [5, 2 * (CHUNK + 16) + 10, 2 * (CHUNK + 16) + 16])
def test_failing_inspect_writes_nothing_on_stdout(tmp_path, argv, payload):
    """A payload no complete stream has: inspect fails (65) without printing a report first."""
    data = VALID[1][0][: craft.header_len(VALID[1][0]) + payload]
    path = tmp_path / "cut.enc"
    path.write_bytes(data)
    status, out, err = run_in_process(argv, data)
    assert (status, out) == (65, b""), out
    craft.assert_error_lines(err, "cannot be a complete stream")
    done = subprocess.run(command(*argv, str(path)), capture_output=True, env=clean_env(), timeout=60)
    assert (done.returncode, done.stdout) == (65, b"")


def test_the_harness_memoizes_the_parser_encpipe_uses(monkeypatch):
    """The fuzzing run parses each fixed command line once, through the parser encpipe
    looks up (cli.docopt_parser): a patch of a name encpipe no longer uses failed at start."""
    from encpipe import cli

    monkeypatch.setattr(cli, "docopt_parser", cli.docopt_parser)
    harness._memoize_docopt()
    first = cli.parse("open", ["open", "--key-file", "k"])
    first["--key-file"].append("changed")
    assert cli.parse("open", ["open", "--key-file", "k"])["--key-file"] == ["k"]
    parse, _ = cli.docopt_parser()
    assert parse.__name__ == "cached"
