"""encpipe and tests/independent_decoder.py (written from README's "File format"
alone) agree on every input, not only on the committed vectors. Valid vectors (v1
and v2; raw key, passphrase, x25519, signed, several slots, several chunks) are
mutated, each mutation as is and as the holder of any slot could make it (header
MAC, CRC and trailer MAC made again under the file key), and opened by both:
`encpipe open` in this process (as cli.main runs it, the file a seekable standard
input, or for some a pipe) and the second decoder, with the vector's keys,
passphrases, identities and signers (for some, also a signer that did not sign).

Compared: the outcome, encpipe's exit status (0, 65, 67, 77) against the
decoder's (plaintext, Rejected, NotSigned, NoMatch), and, when both accept, the
plaintext byte for byte. When encpipe refuses, its one error line is checked, and
what it wrote before refusing (the chunks that authenticated before the one that
failed: a v1 file, or a v2 file from a pipe) must be a prefix of the vector's
plaintext. encpipe must not raise out of cli.main (a traceback) nor exit with
another status; the decoder must raise nothing but its three errors. Seeded
(random.Random(vector name)): every run makes the same mutations."""

import hashlib
import io
import random
import struct

import pytest

import independent_decoder
from cliutil import Result, assert_one_line_error, run
from encpipe import cli, commands
from fuzz.craft import fix_crc
from test_passes import Pipe
from test_vectors import VECTORS, decoder_secrets, key_args, load, open_env

SEEDS = [  # v2_signed: raw key and x25519, two signatures, two chunks, a signer required
    "v2_signed", "v2_raw_key_three_chunks", "v2_raw_key_empty", "v2_signed_x25519", "v2_x25519_unsigned",
    "v2_key_order_first_key_decides", "v2_passphrase_before_identity", "v2_unknown_slot_skipped",
    "raw_key_three_chunks", "raw_key_empty", "x25519", "two_slots_second_key", "unknown_slot_skipped",
]
# Required, besides, of files it did not sign: the paths to 67, and what comes before them.
A_SIGNER = load(VECTORS / "v2_signed.vec")[0]["signer"]
CASES = [(name, False, False) for name in SEEDS]
CASES += [(name, True, False) for name in ("v2_x25519_unsigned", "v2_raw_key_three_chunks", "x25519")]
CASES += [("v2_raw_key_three_chunks", False, True), ("v2_x25519_unsigned", False, True),
          ("v2_x25519_unsigned", True, True)]  # from a pipe: one pass, or a spool
OUTCOMES = {0: "accepted", 65: "rejected", 67: "not signed", 77: "no match"}
# Slot bodies: scrypt's (log2_n, r, p) over each limit or cheap, and x25519
# ephemeral keys of small order (the last two: order 8) or not canonical.
SCRYPT = [(21, 8, 1), (9, 8, 1), (10, 0, 1), (10, 33, 1), (10, 8, 0), (10, 8, 17), (20, 9, 1), (16, 17, 16), (10, 1, 1),
          (11, 4, 2)]
P = 2**255 - 19
EPHEMERALS = [u.to_bytes(32, "little") for u in (0, 1, P - 1, P, P + 1, P + 9, 2**255 + 9, 2**256 - 1)]
EPHEMERALS += [bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
               bytes.fromhex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157")]
# A signature entry's verify key and Rs set to these (y = p and p + 1, y = 1 with the sign bit set, small
# order, no x for y = 2), and its S to these (0, l - 1, l, l + 1, 2^256 - 1): Edge rules, Format v2.
L_ORDER = 2**252 + 27742317777372353535851937790883648493
POINTS = [(y | sign << 255).to_bytes(32, "little") for y, sign in
          ((P, 0), (P + 1, 0), (1, 1), (1, 0), (P - 1, 0), (0, 1), (2, 0), (2**255 - 1, 1))]
SCALARS = [s.to_bytes(32, "little") for s in (0, L_ORDER - 1, L_ORDER, L_ORDER + 1, 2**256 - 1)]
PAYLOAD_SAMPLE = 24
OTHER_CUTS = 16


class Shape:
    """Where a valid file's parts begin and end, read from its header."""

    def __init__(self, data):
        self.version, self.header_len = data[7], struct.unpack_from(">H", data, 8)[0]
        self.chunk_log2, self.slot_count = data[11], data[44]
        self.sig_count = data[45] if self.version == 2 else 0
        self.slots, pos = [], 45 + (self.version == 2)
        for _ in range(self.slot_count):
            kind, body_len = struct.unpack_from(">BH", data, pos)
            self.slots.append((pos, kind, body_len))
            pos += 3 + body_len
        self.authenticated = authenticated = sum(kind in (1, 2) for _, kind, _ in self.slots)
        self.trailer_len = 32 * authenticated + 96 * self.sig_count + 32 if self.version == 2 else 0
        self.trailer_start = len(data) - self.trailer_len
        record = (1 << self.chunk_log2) + 16
        starts = list(range(self.header_len, self.trailer_start, record))
        self.records = list(zip(starts, starts[1:] + [self.trailer_start]))
        trailer_fields = [self.trailer_start + 32 * i for i in range(authenticated + 1)]
        trailer_fields += [trailer_fields[-1] + 96 * j for j in range(1, self.sig_count + 1)]
        self.boundaries = sorted({0, 7, 8, 10, 11, 12, 44, 45, 46, self.header_len - 36, self.header_len - 4}
                                 | {start for start, _ in self.records} | set(trailer_fields)
                                 | {pos for pos, _, _ in self.slots} | {self.trailer_start, len(data)})


def relaid(data, shape, slots, count=None):
    """`data` with the slot list `slots` [(kind, body)] (and `count` as slot_count,
    else their number), header_len and CRC made to fit, the old MAC kept."""
    start = 45 + (shape.version == 2)
    listed = b"".join(struct.pack(">BH", kind, len(body)) + body for kind, body in slots)
    length = start + len(listed) + 36
    head = data[:8] + struct.pack(">H", length) + data[10:44] + bytes([len(slots) if count is None else count])
    rest = data[shape.header_len - 36 :]
    return fix_crc(head + data[45:start] + listed + rest, length)


def as_slot_holder(data, file_key):
    """`data` with its header MAC and CRC, and a v2 trailer's MAC, made again under
    `file_key`, as the holder of any slot can: the change then reaches the checks
    after the MACs. None when its header cannot be laid out."""
    try:
        shape = Shape(data)
    except (struct.error, IndexError):
        return None
    length, salt = shape.header_len, data[12:44]
    if not 84 <= length <= len(data):
        return None
    before_mac = data[: length - 36]
    data = fix_crc(before_mac + independent_decoder.header_mac(file_key, salt, before_mac) + data[length - 4 :], length)
    if shape.version != 2 or shape.trailer_start < length:
        return data
    records = independent_decoder.cut_records(data[length : shape.trailer_start], data[11])
    body = data[shape.trailer_start : -32]
    return data[:-32] + independent_decoder.trailer_mac(file_key, data[10], data[11], salt, records, body)


def flipped(data, offset, bit):
    out = bytearray(data)
    out[offset] ^= 1 << bit
    return bytes(out)


def with_byte(data, offset, value, shape):
    """`data` with one header byte set to `value`, its CRC recomputed (else only
    the CRC check would ever see the change)."""
    return fix_crc(data[:offset] + bytes([value]) + data[offset + 1 :], shape.header_len)


def field_values(current, *candidates):
    return sorted({v for v in candidates if 0 <= v <= 255 and v != current})


def header_mutations(data, shape, rng):
    for i in range(shape.header_len):
        bit = rng.randrange(8)
        yield f"header byte {i}: bit {bit} flipped", flipped(data, i, bit)
        if i < shape.header_len - 4:
            yield f"header byte {i}: bit {bit} flipped, CRC recomputed", fix_crc(flipped(data, i, bit), shape.header_len)
    fields = {7: ("version", (0, 1, 2, 3, 255)), 10: ("suite", (0, 2, 255)),
              11: ("chunk_log2", (0, 13, 14, shape.chunk_log2 - 1, shape.chunk_log2 + 1, 24, 25, 255)),
              44: ("slot_count", (0, 1, shape.slot_count - 1, shape.slot_count + 1, 64, 65, 255))}
    if shape.version == 2:
        fields[45] = ("sig_count", (0, 1, shape.sig_count - 1, shape.sig_count + 1, 16, 17, 255))
    for offset, (name, candidates) in fields.items():
        for value in field_values(data[offset], *candidates):
            yield f"{name} = {value}, CRC recomputed", with_byte(data, offset, value, shape)
    for length in (0, 83, 84, 85, shape.header_len - 1, shape.header_len + 1, 16384, 16385, 65535):
        changed = data[:8] + struct.pack(">H", length) + data[10:]
        yield f"header_len = {length}, CRC recomputed", fix_crc(changed, shape.header_len)
        yield f"header_len = {length}, CRC recomputed at its end", fix_crc(changed, length)
    for n, (pos, kind, body_len) in enumerate(shape.slots):
        for value in field_values(kind, 0, 1, 2, 3, 4, 200, 255):
            yield f"slot {n}: kind = {value}, CRC recomputed", with_byte(data, pos, value, shape)
        for length in (0, body_len - 1, body_len + 1, 65535):
            changed = data[: pos + 1] + struct.pack(">H", length) + data[pos + 3 :]
            yield f"slot {n}: body_len = {length}, CRC recomputed", fix_crc(changed, shape.header_len)
    bodies = [(kind, data[pos + 3 : pos + 3 + body_len]) for pos, kind, body_len in shape.slots]
    for n, (kind, body) in enumerate(bodies):
        yield f"slot {n} removed", relaid(data, shape, bodies[:n] + bodies[n + 1 :])
        yield f"slot {n} twice", relaid(data, shape, bodies[: n + 1] + bodies[n:])
        yield f"slot {n}: body one byte longer", relaid(data, shape, bodies[:n] + [(kind, body + b"\0")] + bodies[n + 1 :])
        yield f"slot {n}: body one byte shorter", relaid(data, shape, bodies[:n] + [(kind, body[:-1])] + bodies[n + 1 :])
    for n, (kind, body) in enumerate(bodies):
        changes = {2: [(16, bytes(v)) for v in SCRYPT], 3: [(8, e) for e in EPHEMERALS]}.get(kind, [])
        for at, value in changes:
            changed = (kind, body[:at] + value + body[at + len(value) :])
            yield f"slot {n}: {value.hex()} at {at}", relaid(data, shape, bodies[:n] + [changed] + bodies[n + 1 :])
    yield "an unknown slot first", relaid(data, shape, [(200, b"x")] + bodies)
    yield "an unknown slot last", relaid(data, shape, bodies + [(200, b"")])
    for slots in (64, 65):
        yield f"unknown slots up to {slots}", relaid(data, shape, bodies + [(200, b"")] * (slots - len(bodies)))
    for length in (16384, 16385):  # an unknown slot's body makes the header this long
        grown = [(200, bytes(length - shape.header_len - 3))]
        yield f"header_len {length}, by an unknown slot", relaid(data, shape, bodies + grown)
    # The other version's layout, sig_count dropped or added: the MAC no longer covers it.
    if shape.version == 2:
        changed = data[:7] + bytes([1]) + struct.pack(">H", shape.header_len - 1) + data[10:45] + data[46:]
        yield "v2 header rewritten as v1", fix_crc(changed, shape.header_len - 1)
    else:
        changed = data[:7] + bytes([2]) + struct.pack(">H", shape.header_len + 1) + data[10:45] + b"\0" + data[45:]
        yield "v1 header rewritten as v2 (sig_count 0)", fix_crc(changed, shape.header_len + 1)


def body_mutations(data, shape, rng):
    for i in range(shape.trailer_start, len(data)):
        bit = rng.randrange(8)
        yield f"trailer byte {i - shape.trailer_start}: bit {bit} flipped", flipped(data, i, bit)
    entries = shape.trailer_start + 32 * shape.authenticated
    for j in range(shape.sig_count):  # each part of a signature entry set to the curves' edge encodings
        for at, values in ((0, POINTS), (32, POINTS), (64, SCALARS)):
            start = entries + 96 * j + at
            for value in values:
                yield f"signature {j}: {value.hex()} at {at}", data[:start] + value + data[start + 32 :]
    payload = range(shape.header_len, shape.trailer_start)
    edges = {p for start, end in shape.records for p in (start, end - 17, end - 16, end - 1)}
    for i in sorted(edges | set(rng.sample(payload, min(PAYLOAD_SAMPLE, len(payload))))):
        bit = rng.randrange(8)
        yield f"payload byte {i - shape.header_len}: bit {bit} flipped", flipped(data, i, bit)
    cuts = {c + d for c in shape.boundaries for d in (-1, 0, 1) if 0 <= c + d < len(data)}
    cuts |= set(rng.sample(range(len(data)), OTHER_CUTS))
    for cut in sorted(cuts):
        yield f"truncated to {cut} bytes", data[:cut]
    head, tail = data[: shape.header_len], data[shape.trailer_start :]
    last_start, last_end = shape.records[-1]
    for extra in (b"\0", b"\xff" * 16, data[-32:], data[last_start:last_end], head):
        yield f"{len(extra)} bytes appended", data + extra
    records = [data[start:end] for start, end in shape.records]
    for i in range(len(records)):
        yield f"record {i} dropped", head + b"".join(records[:i] + records[i + 1 :]) + tail
        yield f"record {i} duplicated", head + b"".join(records[: i + 1] + records[i:]) + tail
        if i + 1 < len(records):
            swapped = records[:i] + [records[i + 1], records[i]] + records[i + 2 :]
            yield f"records {i} and {i + 1} swapped", head + b"".join(swapped) + tail
    yield "every record dropped", head + tail
    if len(records) > 1:
        yield "the first record last", head + b"".join(records[1:] + records[:1]) + tail
    if shape.version == 2:
        payload_bytes = b"".join(records)
        yield "trailer moved before the payload", head + tail + payload_bytes
        yield "trailer moved before the final record", head + b"".join(records[:-1]) + tail + records[-1]
        yield "trailer moved one byte earlier", head + payload_bytes[:-1] + tail + payload_bytes[-1:]
        yield "trailer twice", data + tail
        yield "trailer without its MAC, the MAC before it", head + payload_bytes + tail[-32:] + tail[:-32]


def mutations(name, data, file_key):
    """(label, bytes): each mutation as is and as a slot holder would make it (its
    MACs made again), each distinct input once."""
    rng, shape, seen = random.Random(name), Shape(data), set()
    yield "unchanged", data
    for label, mutated in [*header_mutations(data, shape, rng), *body_mutations(data, shape, rng)]:
        for label, mutated in ((label, mutated), (label + ", as a slot holder", as_slot_holder(mutated, file_key))):
            digest = mutated is not None and hashlib.sha256(mutated).digest()
            if digest and digest not in seen and mutated != data:
                seen.add(digest)
                yield label, mutated


def opener(args, pipe):
    """`encpipe open ARGS` as cli.main runs it, the file as standard input (a pipe
    or seekable): docopt's parse, most of a short run's time, done once."""
    parsed = cli.parse("open", ["open", *args])

    def run_open(data, env):
        out, err = io.BytesIO(), io.StringIO()
        streams = cli.Io((Pipe if pipe else io.BytesIO)(data), out, err, dict(env))
        code = cli.report_errors(streams, lambda: commands.dispatch(dict(parsed), streams))
        return Result(code, out.getvalue(), err.getvalue())

    return run_open


def file_key_of(data, secrets):
    shape = Shape(data)
    slots = [(kind, data[pos + 3 : pos + 3 + body_len]) for pos, kind, body_len in shape.slots]
    secrets = {name: secrets[name] for name in ("keys", "passphrases", "identities")}
    return independent_decoder.open_slot(slots, **secrets)[1][0]


def encpipe_outcome(run_open, data, env, label):
    try:
        result = run_open(data, env)
    except Exception as e:  # cli.main let it out: a traceback
        pytest.fail(f"{label}: encpipe raised {type(e).__name__}: {e}")
    assert result.code in OUTCOMES, (label, result.code, result.stderr)
    return OUTCOMES[result.code], result


def decoder_outcome(data, secrets, label):
    try:
        return "accepted", independent_decoder.decode(data, **secrets)
    except independent_decoder.NoMatch:
        return "no match", None
    except independent_decoder.Rejected:
        return "rejected", None
    except independent_decoder.NotSigned:
        return "not signed", None
    except Exception as e:
        pytest.fail(f"{label}: the independent decoder raised {type(e).__name__}: {e}")


@pytest.mark.parametrize("name, another_signer, pipe", CASES,
                         ids=[n + " signer" * s + " pipe" * p for n, s, p in CASES])
def test_encpipe_and_the_independent_decoder_agree_on_mutations(name, another_signer, pipe, tmp_path):
    fields, data = load(VECTORS / f"{name}.vec")
    assert fields["expect"] == ["success"]
    clear = run(["open", *key_args(tmp_path, fields)], data, open_env(fields)).stdout
    assert hashlib.sha256(clear).hexdigest() == fields["plaintext sha256"][0]
    fields = {**fields, "signer": A_SIGNER} if another_signer else fields
    args, env, secrets = key_args(tmp_path, fields), open_env(fields), decoder_secrets(fields)
    run_open = opener(args, pipe)
    assert run_open(data, env).code == (67 if another_signer else 0)
    disagreements, outcomes = [], {}
    for label, mutated in mutations(name, data, file_key_of(data, secrets)):
        ours, result = encpipe_outcome(run_open, mutated, env, label)
        theirs, plaintext = decoder_outcome(mutated, secrets, label)
        outcomes[ours] = outcomes.get(ours, 0) + 1
        if ours != "accepted":
            assert_one_line_error(result.stderr)
            assert clear.startswith(result.stdout), label
        if (ours, result.stdout if ours == "accepted" else None) != (theirs, plaintext):
            disagreements.append(f"{label}: encpipe {ours}, the independent decoder {theirs}")
    assert not disagreements, "\n".join(disagreements)
    assert sum(n for outcome, n in outcomes.items() if outcome != "accepted") >= 300, outcomes


NO_KEY_CASES = ["v2_signed", "v2_raw_key_three_chunks", "raw_key_three_chunks", "x25519"]


@pytest.mark.parametrize("name", NO_KEY_CASES)
def test_they_agree_on_mutations_with_a_key_that_opens_nothing(name, tmp_path):
    """The same mutations opened with a raw key no slot is for (and a signer, which a
    v1 file refuses from its header): what is checked before the keys (65, 67) and
    what only after them (77 first) is the same in both."""
    fields, data = load(VECTORS / f"{name}.vec")
    key = hashlib.sha256(b"a key no vector is sealed for").hexdigest()
    opening = {"key": [key], "signer": A_SIGNER}
    args, env, secrets = key_args(tmp_path, opening), {}, decoder_secrets(opening)
    run_open, outcomes, disagreements = opener(args, False), {}, []
    for label, mutated in mutations(name, data, file_key_of(data, decoder_secrets(fields))):
        ours, result = encpipe_outcome(run_open, mutated, env, label)
        theirs, _ = decoder_outcome(mutated, secrets, label)
        outcomes[ours] = outcomes.get(ours, 0) + 1
        assert ours != "accepted" and result.stdout == b"", label
        assert_one_line_error(result.stderr)
        if ours != theirs:
            disagreements.append(f"{label}: encpipe {ours}, the independent decoder {theirs}")
    assert not disagreements, "\n".join(disagreements)
    assert outcomes.get("rejected", 0) >= 100 and outcomes.get("no match" if data[7] == 2 else "not signed"), outcomes
