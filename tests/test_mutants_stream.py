"""Behaviours of the streaming core (stream.py, relay.py, provenance.py, envelope.py's
seal, open and rewrap, spool.py's use by open, progress.py, workers.py, inplace.py)
that a hand-made mutation review found no test pinning: each test here failed on a
mutant of one product line and passes on the product as it is."""

import io
import os
import threading

import pytest

from cliutil import KEY_A, key_env, run

from encpipe import envelope, provenance, stream
from encpipe.errors import InvalidStream
from encpipe.slots import RawKey

K = RawKey(bytes.fromhex(KEY_A))
CHUNK_LOG2, CHUNK = 14, 1 << 14
RECORD = CHUNK + 16


class CountingFile(io.BytesIO):
    """A seekable input that counts the bytes read from it."""

    read_bytes = 0

    def readinto(self, buffer):
        n = super().readinto(buffer)
        self.read_bytes += n
        return n

    def read(self, n=-1):
        data = super().read(n)
        self.read_bytes += len(data)
        return data


class Pipe(CountingFile):
    """The same input, as a pipe: it cannot seek."""

    def seekable(self):
        return False


def sealed(data, recipients=(K,), signing_keys=(), version=2):
    out = io.BytesIO()
    envelope.seal(io.BytesIO(data), out, list(recipients), chunk_log2=CHUNK_LOG2, signing_keys=signing_keys,
                  version=version)
    return out.getvalue()


def header_size(data):
    return envelope.read_header(io.BytesIO(data)).size


class _Terminal:
    """An input that, as a terminal after Ctrl-D, has more to give after an end of file."""

    def __init__(self, *reads):
        self._reads = list(reads)

    def readinto(self, view):
        data = self._reads.pop(0) if self._reads else b""
        view[: len(data)] = data
        return len(data)


def test_blocks_end_at_the_first_end_of_file():
    """Pins stream.blocks' end: a fill shorter than the buffer is the last one; nothing is read after it."""
    src = _Terminal(b"typed", b"", b"typed after Ctrl-D")
    assert [bytes(block) for block in stream.blocks(src, bytearray(64))] == [b"typed"]


def test_seal_progress_counts_plaintext_bytes_not_records():
    """Pins seal_payload's progress: 1000 bytes sealed are `100% 1000 B of 1000 B`, not their record's 1016."""
    result = run(["seal", "--progress", "--size", "1000"], os.urandom(1000), key_env())
    assert result.code == 0, result.stderr
    assert result.stderr.splitlines()[-1].startswith("encpipe: seal: 100% 1000 B of 1000 B in "), result.stderr


def test_a_single_block_hole_in_a_records_second_half_ends_the_first_pass_there():
    """Pins _has_hole's look (every 1 KiB, over the whole record): a record whose last 4 KiB of
    ciphertext are zeros, as one block of a hole, has its tag checked in the first pass of
    `open FILE`, which stops there (65, nothing written), not after reading the whole file."""
    data = bytearray(sealed(os.urandom(40 * CHUNK)))
    start = header_size(data)
    data[start + 3 * 4096 : start + 4 * 4096] = bytes(4096)  # record 0's bytes 12288..16383
    src, out = CountingFile(bytes(data)), io.BytesIO()
    with pytest.raises(InvalidStream, match="^chunk 0 failed authentication"):
        envelope.unseal(src, out, [K])
    assert out.getvalue() == b""
    assert src.read_bytes < 4 * RECORD, src.read_bytes


def test_peek_sees_each_chunk_in_order_once_it_authenticated():
    """Pins open_payload's peek (how encpipe-verify reads a backup's label and last line):
    every chunk's plaintext with its index, in order; none of a chunk that failed, nor after it."""
    data = os.urandom(3 * CHUNK + 5)
    blob = sealed(data)
    seen = []
    src = io.BytesIO(blob)
    envelope.open_sealed(envelope.read_header(src), src, None, [K], peek=lambda i, chunk: seen.append((i, bytes(chunk))))
    assert seen == [(i, data[i * CHUNK : (i + 1) * CHUNK]) for i in range(4)]
    damaged = bytearray(blob)
    damaged[header_size(blob) + 2 * RECORD + 7] ^= 1
    seen.clear()
    src = io.BytesIO(bytes(damaged))
    with pytest.raises(InvalidStream, match="^chunk 2 failed authentication"):
        envelope.open_sealed(envelope.read_header(src), src, None, [K], peek=lambda i, chunk: seen.append(i))
    assert seen == [0, 1]


def test_workers_start_only_after_the_calling_thread_prepared_the_cipher(monkeypatch):
    """Pins run_records' cipher.prepare: with several threads, the cipher imports what a full
    record needs once, in the calling thread, before any worker starts (two workers importing
    at once hung under a memory limit)."""
    from encpipe import aead

    calls = []
    cls = type(aead.gcm(bytes(32)))
    monkeypatch.setattr(cls, "prepare", lambda self, n: calls.append((n, threading.current_thread().name)))
    sealed_payload = io.BytesIO()
    stream.seal_payload(io.BytesIO(os.urandom(3 * CHUNK)), sealed_payload, bytes(32), CHUNK, threads=2)
    stream.open_payload(io.BytesIO(sealed_payload.getvalue()), io.BytesIO(), bytes(32), CHUNK, threads=2)
    v1_ledger = provenance.Ledger(envelope.read_header(io.BytesIO(sealed(b"", version=1))).header, bytes(32))
    stream.hash_records(io.BytesIO(sealed_payload.getvalue()), None, CHUNK, v1_ledger, threads=2, key=bytes(32))
    main = threading.current_thread().name
    assert calls == [(CHUNK, main), (RECORD, main), (RECORD, main)]


def test_inspect_of_a_file_cut_inside_its_trailer_counts_no_payload():
    """Pins read_to_trailer's seek (never back before the payload): a v2 file cut 10 bytes
    after its header has a payload of 0 bytes, not of 10 bytes less its trailer's length."""
    blob = sealed(b"x" * 100)
    result = run(["inspect", "--json"], blob[: header_size(blob) + 10], key_env())
    assert (result.code, result.stdout) == (65, b"")
    assert result.stderr.splitlines()[0] == ("encpipe: error: truncated or corrupt: a payload of 0 bytes cannot be a "
                                             f"complete stream of {CHUNK}-byte chunks"), result.stderr


def test_a_v1_stream_read_to_its_end_from_a_pipe_keeps_no_tail():
    """Pins read_to_trailer's tail for a file without a trailer: from a pipe, nothing of the
    payload is kept (memory stays flat), and all of it is counted."""
    blob = sealed(os.urandom(3 * CHUNK), version=1)
    src = Pipe(blob)
    sealed_header = envelope.read_header(src)
    assert provenance.read_to_trailer(src, sealed_header) == (len(blob) - sealed_header.size, b"")


def test_a_tail_shorter_than_the_trailer_names_no_signer():
    """Pins trailer_signers' length check: the end of a file shorter than its trailer (a listed
    object cut short) names no signer, where reading it as a trailer would name a made-up one."""
    from encpipe.signing import SigningKey

    signer = SigningKey(b"\x44" * 32)
    blob = sealed(b"x", signing_keys=[signer])
    sealed_header = envelope.read_header(io.BytesIO(blob))
    assert provenance.trailer_signers(sealed_header, blob[-sealed_header.trailer_len :]) == [
        signer.verify_key.key_id.hex()]
    assert provenance.trailer_signers(sealed_header, blob[-sealed_header.trailer_len + 40 :]) == []


def test_the_pass_that_writes_is_reported_from_zero_after_the_first():
    """Pins open_sealed's on_progress(0) between the passes: the first pass's progress
    (on_check) ends, and the pass that writes reports 0 before its first chunk (so that
    --progress ends the "verifying" line and starts the second pass's clock then)."""
    data = os.urandom(3 * CHUNK)
    calls = []
    src = io.BytesIO(sealed(data))
    envelope.open_sealed(envelope.read_header(src), src, io.BytesIO(), [K],
                         on_check=lambda n: calls.append(("check", n)), on_progress=lambda n: calls.append(("open", n)))
    assert calls[-4:] == [("open", 0), ("open", CHUNK), ("open", 2 * CHUNK), ("open", 3 * CHUNK)], calls
    assert {kind for kind, _ in calls[:-4]} == {"check"}, calls


def test_the_library_seals_a_pipe_in_pipe_sized_chunks():
    """Pins envelope.seal's default chunk size (encpipe.seal, the library's call): 4 MiB
    chunks from a seekable source, 512 KiB from a pipe."""
    from encpipe import format as fmt

    for src, expected in ((io.BytesIO(b"data"), fmt.FILE_CHUNK_LOG2), (Pipe(b"data"), fmt.PIPE_CHUNK_LOG2)):
        out = io.BytesIO()
        envelope.seal(src, out, [K])
        assert envelope.read_header(io.BytesIO(out.getvalue())).header.chunk_log2 == expected


class _TrailerChangedOnReplay(io.BytesIO):
    """A file whose last byte (its trailer's) changes when a second pass seeks back."""

    replays = 0

    def seek(self, offset, whence=0):
        if self.replays == 0 and whence == 0 and self.tell() > offset:
            self.replays += 1
            with self.getbuffer() as view:
                view[-1] ^= 1
        return super().seek(offset, whence)


def test_rewrap_check_first_refuses_a_trailer_changed_between_the_passes():
    """Pins rewrap's comparison of the two passes' trailers: a trailer changed after the
    first pass checked it is 65 ("its trailer differs"), as open says of it."""
    src = _TrailerChangedOnReplay(sealed(os.urandom(2 * CHUNK)))
    with pytest.raises(InvalidStream, match=f"^{provenance.CHANGED}: its trailer differs$"):
        envelope.rewrap(src, io.BytesIO(), [K], check_first=True)
    assert src.replays == 1


def test_the_second_pass_over_a_signed_file_does_not_hash_it_again():
    """Pins opening_ledger's `again` (README: the second pass does not compute the SHA-256 of
    a signed file again): a second pass's ledger builds no commitment C; a first pass's does."""
    from encpipe.signing import SigningKey

    blob = sealed(b"signed", signing_keys=[SigningKey(b"\x44" * 32)])
    parsed = envelope.read_header(io.BytesIO(blob))
    file_key, opened = envelope.unlock(parsed, [K])
    first = provenance.opening_ledger(parsed.header, file_key, opened)
    again = provenance.opening_ledger(parsed.header, file_key, opened, again=True)
    assert (first.commitment() is not None, again.commitment()) == (True, None)


@pytest.mark.parametrize("n, shown", [(1023, "1023 B"), (1024, "1.0 KiB"), (1 << 20, "1.0 MiB")])
def test_progress_shows_1024_bytes_as_a_kib(n, shown):
    """Pins human_bytes' unit rule: 1024 bytes are 1.0 KiB, not 1024 B."""
    from encpipe.progress import human_bytes

    assert human_bytes(n) == shown


@pytest.mark.parametrize("seconds, shown", [(59.4, "0:59"), (59.6, "1:00"), (3599.5, "1:00:00")])
def test_an_eta_is_rounded_to_the_nearest_second(seconds, shown):
    """Pins clock_time's rounding: 59.6 s is 1:00, not 0:59."""
    from encpipe.progress import clock_time

    assert clock_time(seconds) == shown


@pytest.mark.parametrize("groups_directory", [False, True])
def test_rewrap_in_place_not_as_root_leaves_a_file_of_a_group_it_cannot_keep(tmp_path, as_operator, groups_directory):
    """Pins rewrap_keeps' refusal: not run as root, `rewrap --in-place` of a file in a group the
    caller is not in is 73, one line, FILE left as it was (its new version would lose that group).
    Also in a directory of that group that is not set-group-ID: a new file there takes the
    caller's group, not the directory's (inplace.owner_not_kept's `inherited`)."""
    from cliutil import secret_file
    from notroot import OPERATOR, READERS

    directory = tmp_path
    if groups_directory:
        directory = tmp_path / "d"
        directory.mkdir()
        os.chown(directory, OPERATOR, READERS)
        os.chmod(directory, 0o755)
    path = directory / "f.enc"
    path.write_bytes(sealed(b"data"))
    os.chown(path, OPERATOR, READERS)
    before = path.read_bytes()
    other = secret_file(tmp_path, "other.key", "5e" * 32)
    result = run(["rewrap", "--in-place", str(path), "--add-key-file", other], env=key_env())
    assert (result.code, result.stdout) == (73, b""), result.stderr
    assert result.stderr.startswith(f"encpipe: error: {path}: in group "), result.stderr
    assert ", which the user running rewrap is not in: rewrapped, it would lose that group" in result.stderr
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == (["d", "other.key"] if groups_directory else ["f.enc", "other.key"])
    assert os.listdir(directory) == ["f.enc"] or not groups_directory


def test_a_chunk_size_that_is_no_power_of_two_is_a_usage_error():
    """Pins workers.chunk_log2's power-of-two rule: --chunk-size 17K is 64, not taken as 16K."""
    result = run(["seal", "--chunk-size", "17K"], b"data", key_env())
    assert (result.code, result.stdout) == (64, b"")
    assert result.stderr.startswith("encpipe: error: --chunk-size must be a power of two from 16K to 16M"), result.stderr


def test_threads_1_is_one_thread_where_auto_would_run_more(monkeypatch):
    """Pins workers.threads' explicit count: --threads 1 is 1 on four idle cores, where auto is 4."""
    from encpipe import aead, workers

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setattr(workers, "busy_cores", lambda: 0)
    monkeypatch.setattr(aead, "parallel", lambda chunk_size: True)
    monkeypatch.setattr(aead, "buffers_per_chunk", lambda chunk_size: 1)
    assert workers.threads({"--threads": "auto"}, 1 << 20) == 4
    assert workers.threads({"--threads": "1"}, 1 << 20) == 1


def test_the_load_count_of_runnable_processes_leaves_this_one_out(monkeypatch):
    """Pins runnable_others' `- 1`: /proc/loadavg's runnable count includes this process."""
    from encpipe import workers

    monkeypatch.setattr(workers, "open", lambda path: io.StringIO("0.10 0.20 0.30 3/321 4567\n"), raising=False)
    assert workers.runnable_others() == 2
