"""Differential fuzzing of freshly sealed files: encpipe, read every way it can
read a file, and tests/independent_decoder.py (written from README's "File
format" alone) agree on each structured mutation of them.

The files are sealed here, by `encpipe seal` itself (v2) or the stream layer (v1,
which `seal` no longer writes), under a DRBG in place of the random source, so
every run seals the same bytes and makes the same mutations: v1 and v2; a raw key,
two raw keys, a passphrase, an x25519 recipient and all of them at once; unsigned,
signed once and twice; an empty input, one byte, exactly one chunk, one chunk and
a byte, three chunks; 16 and 32 KiB chunks. Each is mutated as
tests/test_decoder_agreement.py mutates the vectors (a bit of each header byte: of
the fixed fields and slot framing all, of slot bodies and MACs a quarter; every
field set to its neighbours and extremes, slots dropped and repeated, cut at every
boundary, extended, records dropped, repeated and swapped, trailer bytes and
signature fields), and besides: slots reordered, authenticators and signature
entries swapped, dropped and repeated (sig_count following), the records or the
trailer of a sibling file (same keys, same size) spliced in; each as is and as the
holder of a slot could make it (its MACs made again under the file key); and the
payload sealed anew under the file key, as a slot holder can (another plaintext,
an empty final chunk after a full one, no final chunk).

Each mutation is read by one of the ways below in turn (`open` from a file and
from a pipe, `--verify-first`, `--signer`, `--refuse-unauthenticated`, `inspect
--verify`; `--threads` 1 and 4; ENCPIPE_CIPHER pycryptodome and cryptography,
which also picks the X25519 library), the unchanged file and a sample of the
mutations by all of them. Compared with the decoder (given the same signers, and
require_maker for `--refuse-unauthenticated`): accept or refuse and the exit
status (0, 65, 67, 77), the plaintext byte for byte (`inspect --verify`: its
plaintext_bytes and chunks). A refusal is one error line; with `--signer`,
`--verify-first`, `--refuse-unauthenticated` or `inspect`, and from a file a v2
file opened by a raw key or a passphrase or carrying signatures, nothing on
standard output; else only chunks of the mutated file that authenticate under
its file key, from the first on."""

import functools
import hashlib
import io
import json
import struct

import pytest
from Crypto.Cipher import AES

import independent_decoder
from cliutil import Result, assert_one_line_error
from differential_mutations import all_mutations
from encpipe import cli, commands, signing, slots
from encpipe.envelope import seal as seal_stream
from encpipe.slots import RawKey
from encpipe.x25519 import X25519Identity
from fuzz.craft import fix_crc
from test_decoder_agreement import Shape, decoder_outcome
from test_passes import Pipe
from vectors.vectorkit import Drbg, deterministic

KEY_1, KEY_2 = (hashlib.sha256(b"differential raw key %d" % i).digest() for i in (1, 2))
PASSPHRASE = "différentiel ☂"
IDENTITY = X25519Identity(hashlib.sha256(b"differential identity").digest())
SIGNERS = [signing.SigningKey(hashlib.sha256(b"differential signer %d" % i).digest()) for i in (1, 2)]
OUTCOMES = {0: "accepted", 65: "rejected", 67: "not signed", 77: "no match"}

# name: (version, plaintext length, chunk_log2, sealed for, signed by, opened with)
FILES = {
    "v2 raw key, empty": (2, 0, 14, "k", "", "k"),
    "v2 raw key, one byte": (2, 1, 14, "k", "", "k"),
    "v2 two raw keys, one chunk, the second opens": (2, 1 << 14, 14, "kK", "", "K"),
    "v2 raw key, a chunk and a byte, signed": (2, (1 << 14) + 1, 14, "k", "1", "k"),
    "v2 every kind, three chunks, signed twice": (2, 40000, 14, "kpx", "12", "kpx"),
    "v2 every kind, opened by the identity": (2, 40000, 15, "kpx", "2", "x"),
    "v2 passphrase and identity, empty, signed": (2, 0, 14, "px", "1", "p"),
    "v2 x25519, unsigned": (2, 1000, 14, "x", "", "x"),
    "v1 raw key and x25519, a chunk and a byte": (1, (1 << 14) + 1, 14, "kx", "", "k"),
    "v1 passphrase, one chunk": (1, 1 << 14, 14, "pk", "", "p"),
}
# (command, options, standard input a pipe, threads, cipher): each mutation is read by one in turn.
WAYS = [
    ("open", [], False, 1, "pycryptodome"),
    ("open", [], True, 4, "cryptography"),
    ("open", ["--verify-first"], True, 1, "cryptography"),
    ("open", ["--verify-first"], False, 4, "pycryptodome"),
    ("open", ["--signer"], False, 1, "cryptography"),
    ("open", ["--signer"], True, 4, "pycryptodome"),
    ("inspect", ["--verify"], False, 4, "cryptography"),
    ("inspect", ["--verify"], True, 1, "pycryptodome"),
    ("inspect", ["--verify", "--signer"], True, 1, "pycryptodome"),
    ("open", [], True, 1, "pycryptodome"),
    ("open", [], False, 4, "cryptography"),
    ("open", ["--refuse-unauthenticated"], True, 4, "pycryptodome"),
    ("open", ["--refuse-unauthenticated", "--signer"], False, 1, "cryptography"),
]
EVERY_WAY = 23  # every 23rd mutation is read by all of them


def plaintext_of(name, length):
    return Drbg("differential plaintext " + name)(length)


def seal_file(name, tmp_path, seed=""):
    """The file `name` of FILES, sealed under a DRBG seeded with its name and `seed`:
    the same bytes every run; another `seed`, a sibling (same keys and plaintext)."""
    version, length, chunk_log2, sealed_for, signed_by, _ = FILES[name]
    data = plaintext_of(name, length)
    with deterministic(f"differential {name}{seed}"):
        if version == 2:
            sealed = seal_cli(data, sealed_for, signed_by, chunk_log2, tmp_path)
        elif "p" in sealed_for:  # the stream layer takes no passphrase: seal v2, lay it out as v1
            sealed = as_v1(seal_cli(data, sealed_for, "", chunk_log2, tmp_path), sealed_for)
        else:
            recipients = [RawKey(KEY_1)] if "k" in sealed_for else []
            recipients += [IDENTITY.recipient()] if "x" in sealed_for else []
            out = io.BytesIO()
            seal_stream(io.BytesIO(data), out, recipients, chunk_log2=chunk_log2, version=1)
            sealed = out.getvalue()
    return data, sealed


def seal_cli(data, sealed_for, signed_by, chunk_log2, tmp_path):
    args = ["seal", "--chunk-size", f"{1 << chunk_log2 >> 10}K", "--work-factor", "10"]
    args += secret_args(tmp_path, sealed_for, "seal")
    for i in signed_by:
        args += ["--sign-key", write(tmp_path / f"sign{i}", f"{SIGNERS[int(i) - 1]}\n")]
    out, err = io.BytesIO(), io.StringIO()
    assert cli.main(args, stdin=io.BytesIO(data), stdout=out, stderr=err, env={}) == 0, err.getvalue()
    return out.getvalue()


def as_v1(data, sealed_for):
    """A v2 file of no signature as the v1 file of its slots: version 1, no sig_count,
    no trailer, its header MAC made again (the v1 layout of the same payload)."""
    shape = Shape(data)
    assert shape.sig_count == 0
    head = data[:7] + b"\x01" + struct.pack(">H", shape.header_len - 1) + data[10:45] + data[46 : shape.header_len]
    key = file_key(data, sealed_for)
    head = head[:-36] + independent_decoder.header_mac(key, data[12:44], head[:-36]) + head[-4:]
    return fix_crc(head, len(head)) + data[shape.header_len : shape.trailer_start]


def write(path, text):
    path.write_text(text)
    path.chmod(0o600)
    return str(path)


def secret_args(tmp_path, which, prefix):
    """Key options for the secrets named by `which`: k and K raw keys, p the
    passphrase, x the identity (for `seal`: its public key)."""
    args, ring = [], [key.hex() for c, key in (("k", KEY_1), ("K", KEY_2)) if c in which]
    if "x" in which and prefix == "seal":
        args += ["--recipient", str(IDENTITY.recipient())]
    ring += [str(IDENTITY)] if "x" in which and prefix != "seal" else []
    if ring:
        args += ["--key-file", write(tmp_path / f"{prefix}-ring", "\n".join(ring) + "\n")]
    if "p" in which:
        args += ["--passphrase-file", write(tmp_path / f"{prefix}-pass", PASSPHRASE + "\n")]
    return args


def decoder_secrets(which, signers):
    return dict(keys=[key for c, key in (("k", KEY_1), ("K", KEY_2)) if c in which],
                passphrases=[PASSPHRASE.encode()] if "p" in which else [],
                identities=[IDENTITY._secret] if "x" in which else [], signers=signers)


def file_key(data, which):
    shape = Shape(data)
    bodies = [(kind, data[pos + 3 : pos + 3 + length]) for pos, kind, length in shape.slots]
    secrets = decoder_secrets(which, [])
    del secrets["signers"]
    return independent_decoder.open_slot(bodies, **secrets)[1][0]


def required_signer(signed_by):
    """The signer the `--signer` ways require: the last that signed, else one that did not."""
    return SIGNERS[int(signed_by[-1]) - 1 if signed_by else 0].verify_key


# --- reading ---------------------------------------------------------------------------


def authenticated_prefixes(data, key):
    """What `open` may have written before refusing `data`: its records' plaintexts,
    from the first on, as long as each authenticates under `key` (as the header laid
    out in `data` cuts them); b"" always."""
    prefixes, out = {b""}, b""
    try:
        shape = Shape(data)
    except (struct.error, IndexError):
        return prefixes
    if not 14 <= shape.chunk_log2 <= 24 or shape.header_len > shape.trailer_start:
        return prefixes
    records = independent_decoder.cut_records(data[shape.header_len : shape.trailer_start], shape.chunk_log2)
    payload_key = independent_decoder.hkdf(key, data[12:44], b"encpipe v1 payload")
    for i, record in enumerate(records):
        nonce = i.to_bytes(11, "big") + bytes([i == len(records) - 1])
        try:
            out += AES.new(payload_key, AES.MODE_GCM, nonce=nonce).decrypt_and_verify(record[:-16], record[-16:])
        except ValueError:
            break
        prefixes.add(out)
    return prefixes


def checked_whole_first(data, secrets):
    """README "Streaming and partial output": read from a file, a v2 file opened by
    a raw key or a passphrase, or carrying signatures, is checked whole (trailer,
    authenticator, signatures) before anything is written; and nothing is written
    when no slot opens or the header is not laid out."""
    try:
        shape = Shape(data)
        bodies = [(kind, data[pos + 3 : pos + 3 + length]) for pos, kind, length in shape.slots]
        index = independent_decoder.open_slot(bodies, **secrets)[0]
    except (struct.error, IndexError, independent_decoder.Rejected):
        return True
    return shape.version == 2 and (shape.sig_count > 0 or bodies[index][0] in (1, 2))


class Reader:
    """One way of reading: the command's options parsed once, then run in this
    process on each input, as cli.main runs it."""

    def __init__(self, way, opening, signer, tmp_path):
        self.command, options, self.pipe, threads, self.cipher = way
        self.signed, self.maker = "--signer" in options, "--refuse-unauthenticated" in options
        self.verify_first = "--verify-first" in options or self.maker or self.command == "inspect"
        self.path, self.secrets = tmp_path / "input", decoder_secrets(opening, [])
        del self.secrets["signers"]
        args = [self.command, *[o for o in options if o != "--signer"], "--threads", str(threads)]
        args += ["--json"] if self.command == "inspect" else []
        args += secret_args(tmp_path, opening, "open") + (["--signer", str(signer)] if self.signed else [])
        self.parsed = cli.parse(self.command, args + ([] if self.pipe else [str(self.path)]))
        self.label = " ".join(args[:1] + options + ["pipe" if self.pipe else "file", f"threads {threads}", self.cipher])

    def __call__(self, data, monkeypatch):
        monkeypatch.setenv("ENCPIPE_CIPHER", self.cipher)
        if not self.pipe:
            self.path.write_bytes(data)
        out, err = io.BytesIO(), io.StringIO()
        streams = cli.Io(Pipe(data) if self.pipe else io.BytesIO(b""), out, err, {"ENCPIPE_CIPHER": self.cipher})
        code = cli.report_errors(streams, lambda: commands.dispatch(dict(self.parsed), streams))
        return Result(code, out.getvalue(), err.getvalue())


def check(reader, data, expected, key, monkeypatch, label):
    """`reader` on `data` against the decoder's (outcome, plaintext); a list of the
    disagreements found (empty when they agree)."""
    try:
        result = reader(data, monkeypatch)
    except Exception as e:  # out of cli.main: a traceback
        return [f"{label}: {reader.label}: raised {type(e).__name__}: {e}"]
    if result.code not in OUTCOMES:
        return [f"{label}: {reader.label}: exit {result.code}: {result.stderr!r}"]
    ours, (theirs, plaintext) = OUTCOMES[result.code], expected
    found = [] if ours == theirs else [f"{label}: {reader.label}: encpipe {ours}, the decoder {theirs}"]
    if ours != "accepted":
        assert_one_line_error(result.stderr)
        if reader.signed or reader.verify_first or not reader.pipe and checked_whole_first(data, reader.secrets):
            found += [f"{label}: {reader.label}: {len(result.stdout)} bytes out"] if result.stdout else []
        elif result.stdout not in authenticated_prefixes(data, key):
            found.append(f"{label}: {reader.label}: wrote {len(result.stdout)} bytes not authenticated")
    elif ours == theirs and reader.command == "inspect":
        report, shape = json.loads(result.stdout), Shape(data)
        records = len(independent_decoder.cut_records(data[shape.header_len : shape.trailer_start], data[11]))
        if (report["plaintext_bytes"], report["chunks"], report["verified"]) != (len(plaintext), records, True):
            found.append(f"{label}: {reader.label}: reports {report['plaintext_bytes']} bytes, {report['chunks']}")
    elif ours == theirs and result.stdout != plaintext:
        found.append(f"{label}: {reader.label}: another plaintext")
    return found


@pytest.fixture
def scrypt_once(monkeypatch):
    """scrypt run once per passphrase, salt and parameters, in encpipe and in the
    decoder: a pure function, most of the run's time when it is run again."""
    monkeypatch.setattr(slots, "scrypt_kek", functools.lru_cache(maxsize=None)(slots.scrypt_kek))
    monkeypatch.setattr(independent_decoder, "scrypt", functools.lru_cache(maxsize=None)(independent_decoder.scrypt))


@pytest.mark.usefixtures("scrypt_once")
@pytest.mark.parametrize("name", list(FILES))
def test_every_way_of_reading_agrees_with_the_independent_decoder(name, tmp_path, monkeypatch):
    version, _, _, sealed_for, signed_by, opening = FILES[name]
    clear, data = seal_file(name, tmp_path)
    assert (data[7], seal_file(name, tmp_path)[1]) == (version, data)  # the same bytes every run
    sibling = seal_file(name, tmp_path, " (sibling)")[1]
    key = file_key(data, sealed_for)
    signer = required_signer(signed_by)
    readers = [Reader(way, opening, signer, tmp_path) for way in WAYS]
    secrets = {(signed, maker): {**decoder_secrets(opening, [signer.public] if signed else []), "require_maker": maker}
               for signed in (False, True) for maker in (False, True)}
    assert independent_decoder.decode(data, **secrets[False, False]) == clear
    disagreements, outcomes = [], {reader.label: {} for reader in readers}
    for n, (label, mutated) in enumerate(all_mutations(name, data, sibling, key, clear, SIGNERS[1])):
        expected = {}
        for reader in readers if n % EVERY_WAY == 0 else [readers[n % len(readers)]]:
            how = reader.signed, reader.maker
            expected[how] = expected.get(how) or decoder_outcome(mutated, secrets[how], label)
            disagreements += check(reader, mutated, expected[how], key, monkeypatch, label)
            counts = outcomes[reader.label]
            counts[expected[how][0]] = counts.get(expected[how][0], 0) + 1
    assert not disagreements, "\n".join(disagreements[:40])
    assert all(sum(counts.values()) - counts.get("accepted", 0) >= 30 for counts in outcomes.values()), outcomes
    for reader in readers:  # the unchanged file first, read by each: accepted, or not signed by the signer
        unsigned = reader.signed and not signed_by or (
            reader.maker and not reader.signed and (version == 1 or opening == "x"))
        assert outcomes[reader.label].get("not signed" if unsigned else "accepted"), (reader.label, outcomes)
