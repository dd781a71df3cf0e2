"""rewrap to standard output writes nothing before the whole input has been
checked (every chunk's tag and the old trailer): a forgery or a damaged file
leaves nothing on stdout, from a file (read twice) and from a pipe (spooled as
ciphertext); a file changed between the two passes stops before the first
record that changed."""

import io
import json

import pytest

from cliutil import KEY_A, assert_one_line_error, ok, run, run_process
from test_provenance import DATA, _damaged, forge, identity

from encpipe import envelope, provenance
from encpipe.errors import InvalidStream
from encpipe.slots import RawKey

RECORD = 16 * 1024 + 16


def _keyid(path):
    return ok(run(["keyid", "--key-file", path])).decode().split()[0]


def _assert_nothing_out(argv, data, message):
    """65 with nothing on stdout and one line, in this process (a seekable input)
    and as a process reading a pipe."""
    piped = run_process(argv, stdin=data)
    for code, out, err in (run(argv, data), (piped.returncode, piped.stdout, piped.stderr)):
        assert (code, out) == (65, b""), (argv, err)
        err = err.decode() if isinstance(err, bytes) else err
        assert message in err, err
        assert_one_line_error(err)


def test_rewrap_of_a_forgery_by_another_slot_holder_writes_nothing(world):
    sealed = world.seal(DATA, "--key-file", world.K, "--recipient", world.X_pub)
    forged = forge(sealed, identity(world.X))
    argv = ["rewrap", "--key-file", world.K, "--remove", _keyid(world.K), "--add-recipient", world.X_pub]
    _assert_nothing_out(argv, forged, "slot authenticator failed")


def test_rewrap_of_a_damaged_file_writes_nothing(world):
    sealed = world.seal(DATA, "--key-file", world.K, "--sign-key", world.S1)
    argv = ["rewrap", "--key-file", world.K, "--add-recipient", world.X_pub]
    for what, data in _damaged(sealed):
        result = run(argv, data)
        assert (result.code, result.stdout) == (65, b""), (what, result.stderr)
        assert_one_line_error(result.stderr)
    for what, data in list(_damaged(sealed))[:8]:  # through a pipe: the spooled copy
        piped = run_process(argv, stdin=data)
        assert (piped.returncode, piped.stdout) == (65, b""), (what, piped.stderr)


def test_rewrap_gives_the_same_bytes_from_a_file_and_from_a_pipe(world, tmp_path):
    sealed = world.seal(DATA, "--key-file", world.K, "--recipient", world.X_pub, "--sign-key", world.S1)
    argv = ["rewrap", "--key-file", world.K, "--remove", json.loads(ok(run(["inspect", "--json"], sealed)))
            ["slots"][1]["key_id"], "--signer", world.V1]
    spools = tmp_path / "tmp"
    spools.mkdir()
    from_file = ok(run(argv, sealed))
    piped = run_process(argv, stdin=sealed, env={"TMPDIR": str(spools)})
    assert (piped.returncode, piped.stdout) == (0, from_file), piped.stderr
    assert list(spools.iterdir()) == []  # the spool was never named
    assert ok(run(["open", "--key-file", world.K, "--signer", world.V1], from_file)) == DATA
    assert run(["open", "--identity", world.X], from_file).code == 77


class _ChangedOnReplay(io.BytesIO):
    """A file whose record `index` is replaced by `other`'s when the second pass
    seeks back to its start (what a writer of the file can do between passes)."""

    def __init__(self, data, other, start, index):
        super().__init__(data)
        self._other, self._at = other, start + index * RECORD
        self.replays = 0

    def seek(self, offset, whence=0):
        if self.replays == 0 and whence == 0 and self.tell() > offset:
            self.replays += 1
            with self.getbuffer() as view:
                view[self._at : self._at + RECORD] = self._other[self._at : self._at + RECORD]
        return super().seek(offset, whence)


@pytest.mark.parametrize("opener", ["K", "X"])
def test_a_record_changed_between_the_passes_is_not_written(world, opener):
    """A holder of the file key swaps in record 2 of another payload under the same
    file key between the passes: the copy stops before it, 65."""
    sealed = world.seal(DATA, "--key-file", world.K, "--recipient", world.X_pub)
    other = forge(sealed, identity(world.X), payload=bytes(len(DATA)))
    start = envelope.read_header(io.BytesIO(sealed)).size
    assert sealed[start + 2 * RECORD : start + 3 * RECORD] != other[start + 2 * RECORD : start + 3 * RECORD]
    identities = [RawKey(bytes.fromhex(KEY_A)) if opener == "K" else identity(world.X)]
    src, out = _ChangedOnReplay(sealed, other, start, 2), io.BytesIO()
    with pytest.raises(InvalidStream, match=provenance.CHANGED):
        envelope.rewrap(src, out, identities, add=(), check_first=True)
    assert src.replays == 1
    written = out.getvalue()
    new_header = envelope.read_header(io.BytesIO(written)).size
    assert written[new_header:] == sealed[start : start + 2 * RECORD]
