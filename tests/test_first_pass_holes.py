"""A v2 file's first pass (open from a file, with or without --signer or
--refuse-unauthenticated) checks its trailer, not its chunk tags: every record is
read before anything can fail. A genuine header, which anyone who can read a
backup can copy, followed by a terabyte of holes (no disk at all) was read to its
end, and its records' witnesses written to TMPDIR meanwhile. A record that may hold
a hole (4 KiB of zeros at least; stream._has_hole) has its tag checked in the first
pass: such a file ends at its first hole (README "Resource limits"), and a genuine
file with such zeros opens.
"""

import io
import os

import pytest

from cliutil import KEY_A
from test_resources import TIB, encpipe, one_error

from encpipe import envelope, signing
from encpipe.errors import InvalidStream
from encpipe.slots import RawKey
from encpipe.x25519 import X25519Identity

IDENTITY = X25519Identity(bytes(range(32)))
SIGNER = signing.SigningKey(bytes(range(1, 33)))
FAILED = "encpipe: error: chunk 0 failed authentication: the file is corrupt or was tampered with"


def sealed(data, recipients, signed=False, chunk_log2=19):
    out = io.BytesIO()
    envelope.seal(io.BytesIO(data), out, recipients, chunk_log2=chunk_log2, signing_keys=[SIGNER] if signed else [])
    return out.getvalue()


def secret(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text + "\n")
    path.chmod(0o600)
    return str(path)


def holes_after(path, genuine, size=TIB):
    """The header of `genuine`, then holes to `size` (the last bytes read as its trailer)."""
    header = envelope.read_header(io.BytesIO(genuine))
    with open(path, "wb") as f:
        f.write(genuine[: header.size])
        f.truncate(size)
    return str(path)


CASES = {
    "a raw key": ([RawKey(bytes.fromhex(KEY_A)), IDENTITY.recipient()], False, ["--key-file", "key"], []),
    "a raw key, --signer": ([RawKey(bytes.fromhex(KEY_A))], True, ["--key-file", "key"], ["--signer"]),
    "a raw key, --refuse-unauthenticated": ([RawKey(bytes.fromhex(KEY_A))], False, ["--key-file", "key"],
                                            ["--refuse-unauthenticated"]),
    "an identity, a signed file": ([IDENTITY.recipient()], True, ["--identity", "id"], []),
    "an identity, --signer": ([IDENTITY.recipient()], True, ["--identity", "id"], ["--signer"]),
}


def key_options(tmp_path, options, extra):
    keys = {"key": lambda: secret(tmp_path, "key", KEY_A), "id": lambda: secret(tmp_path, "id", str(IDENTITY))}
    argv = [option if option.startswith("-") else keys[option]() for option in options]
    return argv + [word for option in extra for word in (
        [option, str(SIGNER.verify_key)] if option == "--signer" else [option])]


@pytest.mark.parametrize("case", CASES)
def test_open_of_a_genuine_header_and_a_terabyte_of_holes_ends_at_the_first(tmp_path, case):
    """Before: each of these read the terabyte (and wrote 32 MiB of witnesses)."""
    recipients, signed, options, extra = CASES[case]
    path = holes_after(tmp_path / "f.enc", sealed(b"genuine", recipients, signed))
    (tmp_path / "t").mkdir()
    argv = ["open", *key_options(tmp_path, options, extra), path]
    code, out, err = encpipe(*argv, env={"TMPDIR": str(tmp_path / "t")})
    assert (code, out, one_error(err)) == (65, b"", FAILED), err
    assert os.listdir(tmp_path / "t") == []


def test_a_pipe_of_a_genuine_header_and_zeros_under_signer_ends_at_the_first_record(tmp_path):
    """Spooled as it is checked: before, all of it was read and spooled (endless, until TMPDIR
    was full: 74), then its trailer failed."""
    genuine = sealed(b"genuine", [RawKey(bytes.fromhex(KEY_A))], signed=True)
    header = envelope.read_header(io.BytesIO(genuine)).size
    argv = ["open", "--key-file", secret(tmp_path, "key", KEY_A), "--signer", str(SIGNER.verify_key)]
    code, out, err = encpipe(*argv, input=genuine[:header] + bytes(64 << 20))
    assert (code, out, one_error(err)) == (65, b"", FAILED), err


@pytest.mark.parametrize("way", [[], ["--signer"], ["--refuse-unauthenticated"], ["--verify-first"]])
def test_a_genuine_file_whose_records_hold_runs_of_zeros_still_opens(tmp_path, way):
    """A record that may hold a hole has its tag checked, and is not refused when it
    authenticates. Here each full record holds 5000 zero bytes (more than a hole's 4
    KiB): sealed twice under one file key and salt (the random source replayed), the
    second time with plaintext bytes 1000..5999 of each chunk the keystream's."""
    size, data = 1 << 14, os.urandom((1 << 14) * 3 + 200)
    first = _sealed_again(data)
    start = envelope.read_header(io.BytesIO(first)).size
    chosen = bytearray(data)
    for n in range(3):
        for i in range(1000, 6000):
            chosen[n * size + i] ^= first[start + n * (size + 16) + i]
    with_zeros = _sealed_again(bytes(chosen))
    assert all(with_zeros[start + n * (size + 16) + 1000 :][:5000] == bytes(5000) for n in range(3))
    path = tmp_path / "z.enc"
    path.write_bytes(with_zeros)
    signer = [str(SIGNER.verify_key)] if way == ["--signer"] else []
    code, out, err = encpipe("open", "--key-file", secret(tmp_path, "key", KEY_A), *way, *signer, str(path))
    assert (code, out, err) == (0, bytes(chosen), "")


def _sealed_again(data):
    """`data` sealed to the raw key and signed, under the same file key and salt every time."""
    from vectors.vectorkit import deterministic

    with deterministic("runs of zeros"):
        return sealed(data, [RawKey(bytes.fromhex(KEY_A))], signed=True, chunk_log2=14)


class _Endless(io.RawIOBase):
    """A pipe, or a FIFO a writer of the backup directory planted under a backup's name,
    that gives `head` (a genuine header, which anyone who can read a backup can copy),
    then random bytes for ever (here: to `limit`); counts what was read."""

    def __init__(self, head, limit=8 << 20):
        self.head, self.block, self.limit, self.given = head, os.urandom(1 << 16), limit, 0

    def readable(self):
        return True

    def readinto(self, view):
        data = self.head or self.block
        n = min(len(view), len(data), self.limit - self.given)
        view[:n] = data[:n]
        self.head = self.head[n:]
        self.given += n
        return n


ENDLESS = {
    "a FIFO FILE": (False, {"named": True}),
    "a pipe, --signer": (True, {"signers": [SIGNER.verify_key]}),
    "a pipe, --refuse-unauthenticated": (False, {"require_maker": True}),
}


@pytest.mark.parametrize("case", ENDLESS)
def test_a_spooled_genuine_header_and_random_bytes_end_at_the_first_record(case):
    """Spooled as it is checked, every record's tag is checked too: before, a first pass
    that checked only the tag of a record of zeros read random bytes for ever, spooling
    them to TMPDIR until it was full (74), and only then could fail."""
    signed, options = ENDLESS[case]
    genuine = sealed(b"genuine", [RawKey(bytes.fromhex(KEY_A))], signed, chunk_log2=14)
    src, out = _Endless(genuine[: envelope.read_header(io.BytesIO(genuine)).size]), io.BytesIO()
    with pytest.raises(InvalidStream, match="^chunk 0 failed authentication"):
        envelope.open_sealed(envelope.read_header(src), src, out, [RawKey(bytes.fromhex(KEY_A))], **options)
    assert (out.getvalue(), src.given < 1 << 20) == (b"", True), src.given
