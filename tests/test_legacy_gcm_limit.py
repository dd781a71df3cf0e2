"""AES-GCM holds at most 2^39 - 256 bits (64 GiB less 32 bytes) of ciphertext (NIST SP
800-38D): no file of the previous tool is longer. A longer input is not one of its
files (65, nothing on stdout), not an internal error (70) from the cipher library
once 64 GiB were read (and spooled). The limit is scaled down here, in both the
library and encpipe, so that the test reads kilobytes, not 64 GiB. pycryptodome 3.23
(which setup.cfg admits) names no limit and checks none when it decrypts: encpipe's
own is then the only one."""

import io

import pytest
from Crypto.Cipher import _mode_gcm

from encpipe import cli, legacy

KEY = bytes(range(32))
LIMIT = 4096


def old_file(length):
    out = io.BytesIO()
    legacy.seal_legacy(io.BytesIO(b"x" * length), out, KEY)
    return out.getvalue()


OVER, AT = old_file(LIMIT + 1), old_file(LIMIT)  # made under the library's own limit


def test_the_limit_is_gcms():
    assert legacy.MAX_CIPHERTEXT == (2**39 - 256) // 8 == getattr(_mode_gcm, "_MAX_MSG_LEN", legacy.MAX_CIPHERTEXT)


@pytest.fixture
def small_limit(monkeypatch):
    monkeypatch.setattr(legacy, "MAX_CIPHERTEXT", LIMIT, raising=False)
    monkeypatch.setattr(_mode_gcm, "_MAX_MSG_LEN", LIMIT, raising=False)


def run(argv, data):
    out, err = io.BytesIO(), io.StringIO()
    try:
        status = cli.main(argv, stdin=io.BytesIO(data), stdout=out, stderr=err, env={"ENCPIPE_KEY": KEY.hex()})
    except Exception as e:  # what the process turns into 70, "internal error"
        status = f"uncaught {type(e).__name__}"
    return status, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("argv", [["open", "--legacy", "-"], ["inspect", "--legacy", "--verify", "-"]])
def test_an_input_longer_than_gcm_allows_is_not_a_legacy_file(small_limit, argv):
    status, out, err = run(argv, OVER)
    assert (status, out) == (65, b"")
    assert "longer than AES-GCM allows" in err


def test_an_input_at_the_limit_opens(small_limit):
    status, out, err = run(["open", "--legacy", "-"], AT)
    assert (status, out, err) == (0, b"x" * LIMIT, "")


def test_a_regular_file_over_the_limit_is_refused_before_it_is_read(small_limit, tmp_path):
    path = tmp_path / "big.sql.enc"
    path.write_bytes(OVER)
    with open(path, "rb") as f:
        with pytest.raises(legacy.InvalidStream, match="longer than AES-GCM allows"):
            legacy.open_legacy(f, io.BytesIO(), [legacy.LegacyKey(KEY, "k")], tmpdir=str(tmp_path))
        assert f.tell() == legacy.HEADER_LEN


def test_a_terabyte_of_holes_is_refused_by_its_size_alone(tmp_path):
    """Unscaled: a sparse file costs no disk; nothing of it is read past its header."""
    path = tmp_path / "holes.sql.enc"
    with open(path, "wb") as f:
        f.write(bytes(range(64)))
        f.truncate(1 << 40)
    with open(path, "rb") as f:
        with pytest.raises(legacy.InvalidStream, match="longer than AES-GCM allows"):
            legacy.open_legacy(f, io.BytesIO(), [legacy.LegacyKey(KEY, "k")], tmpdir=str(tmp_path))
        assert f.tell() == legacy.HEADER_LEN
