"""How many times `open` reads a seekable file: once when the chunk tags tell all
there is to know of who made it (v1; opened by an X25519 identity, unsigned),
twice (a first pass that checks the trailer and writes nothing) when the file
has more to say: an authenticator for the raw-key or passphrase slot that opened
it, even when that is its only slot (the header is the maker's to write; see
test_provenance.py's slot-dropping forgery), or signatures. Counted in bytes
read, through the library."""

import io
import os

import pytest

from encpipe import envelope
from encpipe.signing import SigningKey
from encpipe.slots import RawKey
from encpipe.x25519 import X25519Identity, X25519Recipient

DATA = os.urandom(5 * 16384 + 99)
K, OTHER = RawKey(b"\x11" * 32), RawKey(b"\x22" * 32)
ESCROW = X25519Identity(b"\x33" * 32)
SIGNER = SigningKey(b"\x44" * 32)


class CountingFile(io.BytesIO):
    """A seekable input that counts the bytes read from it."""

    read_bytes = 0

    def read(self, n=-1):
        data = super().read(n)
        self.read_bytes += len(data)
        return data

    def readinto(self, buffer):
        n = super().readinto(buffer)
        self.read_bytes += n
        return n


def sealed(recipients, signing_keys=(), version=2):
    out = io.BytesIO()
    envelope.seal(io.BytesIO(DATA), out, recipients, chunk_log2=14, signing_keys=signing_keys, version=version)
    return out.getvalue()


CASES = {
    # name: (recipients, signing keys, version, the identity that opens, passes)
    "v1, raw key": ([K, OTHER], (), 1, K, 1),
    "v2, its only slot a raw key": ([K], (), 2, K, 2),
    "v2, X25519 only, unsigned": ([X25519Recipient(ESCROW.recipient().public)], (), 2, ESCROW, 1),
    "v2, raw key and another raw key": ([K, OTHER], (), 2, K, 2),
    "v2, raw key and an escrow recipient": ([K, X25519Recipient(ESCROW.recipient().public)], (), 2, K, 2),
    "v2, raw key and an escrow recipient, opened by escrow": (
        [K, X25519Recipient(ESCROW.recipient().public)], (), 2, ESCROW, 1),
    "v2, its only slot a raw key, signed": ([K], [SIGNER], 2, K, 2),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_open_reads_a_seekable_file_twice_when_its_trailer_can_tell_more_of_its_maker(case):
    recipients, signing_keys, version, opener, passes = CASES[case]
    data = sealed(recipients, signing_keys, version)
    src, out = CountingFile(data), io.BytesIO()
    envelope.unseal(src, out, [opener])
    assert out.getvalue() == DATA
    assert round(src.read_bytes / len(data)) == passes, (src.read_bytes, len(data))


def test_verify_first_reads_even_a_single_slot_file_twice():
    data = sealed([K])
    src, out = CountingFile(data), io.BytesIO()
    envelope.unseal(src, out, [K], verify_first=True)
    assert out.getvalue() == DATA and round(src.read_bytes / len(data)) == 2


class Pipe(io.BytesIO):
    """An input that cannot seek, as a pipe."""

    def seekable(self):
        return False


@pytest.mark.parametrize("kind", [CountingFile, Pipe])
def test_verify_first_checks_every_chunk_tag_before_any_output(kind):
    """Pins verify_first's first pass: it checks each chunk's tag, not only the
    trailer (whose MAC covers the tags, not the ciphertext). A changed byte of the
    last chunk's ciphertext, its tag kept, lets out nothing; read once, the chunks
    before it stream from a pipe; a file is checked whole first (its trailer can
    tell more of its maker than its chunk tags) and lets out nothing."""
    bad = bytearray(sealed([K]))
    bad[-(64 + 16 + 1)] ^= 1  # the last ciphertext byte, before its tag, one authenticator and the MAC
    out = io.BytesIO()
    with pytest.raises(envelope.InvalidStream, match="^chunk 5 failed authentication"):
        envelope.unseal(kind(bytes(bad)), out, [K], verify_first=True)
    assert out.getvalue() == b""
    # without it a file's first pass checks the trailer, whose authenticator covers the ciphertext
    first = "^chunk 5 failed authentication" if kind is Pipe else "^slot authenticator failed"
    with pytest.raises(envelope.InvalidStream, match=first):
        envelope.unseal(kind(bytes(bad)), out, [K])
    assert out.getvalue() == (DATA[: 5 * 16384] if kind is Pipe else b"")


@pytest.mark.parametrize("recipients", [[K], [K, OTHER]], ids=["one slot", "two slots"])
@pytest.mark.parametrize("kind", [CountingFile, Pipe])
def test_a_file_cut_before_its_trailer_is_named_so(kind, recipients):
    """Pins _RecordReader's holdback check: input that ends before a whole trailer
    (here 10 bytes after the header, trailer_len 64 or 96) is a truncated stream,
    said so, in either pass, with nothing written."""
    data = sealed(recipients)
    cut = data[: envelope.read_header(io.BytesIO(data)).size + 10]
    out = io.BytesIO()
    with pytest.raises(envelope.InvalidStream, match="^truncated stream: it ends before its trailer$"):
        envelope.unseal(kind(cut), out, [K])
    assert out.getvalue() == b""


@pytest.mark.parametrize("verify_first", [False, True], ids=["", "verify_first"])
@pytest.mark.parametrize("kind", [CountingFile, Pipe])
def test_a_chunk_that_fails_is_65_before_an_absent_signer_is_67(kind, verify_first):
    """README "Reading a v2 file": each chunk is read as in v1 before the trailer's
    steps, the last of which is the required signer (67). Before, a first pass that
    checks only the trailer found no signer and said 67 of an unsigned X25519 file
    whose chunk had been changed, its tag kept (the trailer MAC covers the tags):
    65 under verify_first, 65 for `inspect --verify`, 67 for a plain `open`.
    Found by tests/test_decoder_agreement.py (sig_count = 0, as a slot holder)."""
    bad = bytearray(sealed([X25519Recipient(ESCROW.recipient().public)]))
    bad[-(32 + 16 + 1)] ^= 1  # the last ciphertext byte, before its tag and the trailer MAC
    out = io.BytesIO()
    with pytest.raises(envelope.InvalidStream, match="^chunk 5 failed authentication"):
        envelope.unseal(kind(bytes(bad)), out, [ESCROW], signers=[SIGNER.verify_key], verify_first=verify_first)
    assert out.getvalue() == b""
    with pytest.raises(envelope.NotSigned):  # unchanged, it is unsigned: 67
        envelope.unseal(kind(sealed([X25519Recipient(ESCROW.recipient().public)])), out, [ESCROW],
                        signers=[SIGNER.verify_key], verify_first=verify_first)
    assert out.getvalue() == b""
