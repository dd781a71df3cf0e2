"""Limits judged at their exact boundary, where a test with a margin let an off-by-one
pass: a header of exactly 16384 bytes is written and one byte more is a usage error
(64; before that check existed, 70); a scrypt attempt that would take the spent work
exactly to the budget is made, and one that would pass it by one unit is not; a v2
header_len of 84 is refused as too short before its checksum is looked at."""

import io

import pytest

import fuzz.craft as craft
from cliutil import KEY_A, run, write_secret
from encpipe import envelope, format as fmt
from encpipe.errors import UsageError
from encpipe.slots import RawKey
import test_scrypt_budget
from test_scrypt_budget import PLAINTEXT, decoys
from test_vectors import VECTORS, load

evaluations = test_scrypt_budget.evaluations  # the fixture that counts scrypt's evaluations


@pytest.mark.parametrize("over", [0, 1])
def test_a_rewrap_to_a_header_of_16384_bytes_is_written_and_one_more_is_64(over):
    key, other = RawKey(bytes(32)), RawKey(bytes([1]) * 32)
    out = io.BytesIO()
    envelope.seal(io.BytesIO(b"x"), out, [key], chunk_log2=14)
    sealed = envelope.read_header(io.BytesIO(out.getvalue()))
    file_key, salt = key.unwrap(sealed.slots[0]), sealed.header.payload_salt

    def header(*extra):
        return envelope.build_header(file_key, sealed.header.slots + extra, 14, salt)

    added = len(header(other.wrap(file_key)).encode()) - len(header().encode())  # what rewrap's slot takes
    filler = fmt.SlotRecord(200, bytes(fmt.MAX_HEADER_LEN - sealed.size - 3 - added + over))
    big = header(filler).encode() + out.getvalue()[sealed.size:]
    assert len(header(filler).encode()) + added == fmt.MAX_HEADER_LEN + over
    dst = io.BytesIO()
    if over:
        with pytest.raises(UsageError, match="^a file's header holds at most 16384 bytes"):
            envelope.rewrap(io.BytesIO(big), dst, [key], add=[other])
        assert dst.getvalue() == b""
    else:
        envelope.rewrap(io.BytesIO(big), dst, [key], add=[other])
        assert envelope.read_header(io.BytesIO(dst.getvalue())).size == fmt.MAX_HEADER_LEN
        for opener in ("00", "01"):
            assert run(["open"], dst.getvalue(), {"ENCPIPE_KEY": opener * 32}).stdout == b"x"


CHEAP, COSTLY = (10, 1, 1), (18, 8, 1)  # 1024 and 2097152 units of scrypt work (N * r * p)


@pytest.mark.parametrize("budget, code, count", [(1024 + 2097152 - 1, 65, 1), (1024 + 2097152, 77, 2)])
def test_an_attempt_that_reaches_the_budget_exactly_is_made(tmp_path, evaluations, budget, code, count):
    data = craft.seal_with(PLAINTEXT, [], extra=decoys(1, CHEAP) + decoys(1, COSTLY))
    path = write_secret(tmp_path / "pass", b"wrong")
    result = run(["open", "--passphrase-file", path], data, {"ENCPIPE_SCRYPT_BUDGET": str(budget)})
    assert (result.code, result.stdout) == (code, b""), result.stderr
    assert len(evaluations) == count


def test_a_v2_header_len_of_84_is_too_short_whatever_its_checksum():
    _, data = load(VECTORS / "v2_header_len_too_short.vec")
    result = run(["open"], data, {"ENCPIPE_KEY": KEY_A})
    assert (result.code, result.stdout) == (65, b"")
    assert result.stderr.startswith("encpipe: error: header length 84 is too short"), result.stderr
