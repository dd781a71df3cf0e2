"""Resource limits on untrusted headers (README "Security model", "File format").

Each limit gets a crafted header just over it, with a correct CRC so that the
limit check itself is what rejects it: exit 65, nothing on stdout, one error
line naming the limit, and the check takes well under a second (measured
in-process, so interpreter start-up does not count). Just at each limit, a
genuine file is accepted.
"""

import os
import subprocess
import time

import pytest

from fuzz import craft
from fuzz.craft import SLOT_SCRYPT, UNKNOWN_KIND, assert_error_lines, clean_env, command, raw_header, run_in_process
from cliutil import V1_WARNING

KEY = "5c" * 32
PASSPHRASE = "limits passphrase"
PLAINTEXT = os.urandom(1000)
CHECK_SECONDS = 1.0


def rejected(data, env, *words, argv=("open",)):
    """Assert the limit rejects `data` quickly (in-process) and as a real process."""
    started = time.monotonic()
    status, out, err = run_in_process(list(argv), data, env)
    elapsed = time.monotonic() - started
    assert (status, out) == (65, b""), err
    assert_error_lines(err, *words)
    assert elapsed < CHECK_SECONDS, f"the limit check took {elapsed:.2f} s"
    done = subprocess.run(command(*argv), input=data, capture_output=True, env=clean_env(env), timeout=60)
    assert (done.returncode, done.stdout) == (65, b""), done.stderr
    assert_error_lines(done.stderr.decode(), *words)
    return err


def opens(data, env, plaintext=PLAINTEXT):
    done = subprocess.run(command("open"), input=data, capture_output=True, env=clean_env(env), timeout=60)
    assert done.returncode == 0 and done.stderr.decode() in ("", V1_WARNING)  # crafted files are version 1
    assert done.stdout == plaintext


def raw_key():
    from encpipe.slots import RawKey

    return RawKey(bytes.fromhex(KEY))


KEY_ENV = {"ENCPIPE_KEY": KEY}
PASS_ENV = {"ENCPIPE_PASSPHRASE": PASSPHRASE}


# --- header_len <= 16384 -----------------------------------------------------------------


def test_header_length_just_over_the_limit():
    data = raw_header([(UNKNOWN_KIND, b"\x00" * (16385 - 84))])
    assert craft.header_len(data) == 16385 and len(data) == 16385
    for argv in (("open",), ("inspect",)):
        rejected(data, KEY_ENV, "header length 16385", "16384", argv=argv)


def test_header_length_at_the_maximum_field_value():
    data = raw_header([(UNKNOWN_KIND, b"")], length=65535) + b"\x00" * 1000
    rejected(data, KEY_ENV, "header length 65535", "16384")


def test_header_length_over_the_limit_is_rejected_without_reading_on():
    """The check needs the first 10 bytes only: an input that never ends does not stall it."""
    prefix = raw_header([(UNKNOWN_KIND, b"")], length=16385)[:10]
    child = subprocess.Popen(
        command("open"), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean_env(KEY_ENV)
    )
    try:
        child.stdin.write(prefix)
        child.stdin.flush()
        started = time.monotonic()
        status = child.wait(timeout=30)
        err = child.stderr.read().decode()
    finally:
        child.kill()
        child.stdin.close()
        child.wait()
    assert status == 65 and child.stdout.read() == b""
    assert_error_lines(err, "16384")
    assert time.monotonic() - started < 30


def test_header_length_too_short():
    data = raw_header([(UNKNOWN_KIND, b"")], length=83)
    rejected(data, KEY_ENV, "header length 83", "too short")


def test_header_of_exactly_16384_bytes_opens():
    filler = 16384 - 84 - 51  # one raw-key slot (3 + 48) and one unknown slot (3 + filler)
    data = craft.seal_with(PLAINTEXT, [raw_key()], extra=[(UNKNOWN_KIND, b"\x00" * filler)])
    assert craft.header_len(data) == 16384
    opens(data, KEY_ENV)


# --- 1 <= slot_count <= 64 ----------------------------------------------------------------


@pytest.mark.parametrize("count", [65, 255])
def test_slot_count_over_the_limit(count):
    data = raw_header([(UNKNOWN_KIND, b"")] * count)
    assert data[craft.OFF_SLOT_COUNT] == count and craft.header_len(data) == 84 + 3 * (count - 1)
    rejected(data, KEY_ENV, f"slot count {count}", "64")


def test_slot_count_zero():
    data = raw_header([(UNKNOWN_KIND, b"")], slot_count=0)  # the length of the smallest valid header
    rejected(data, KEY_ENV, "slot count 0")


def test_sixty_four_slots_open():
    data = craft.seal_with(PLAINTEXT, [raw_key()], extra=[(UNKNOWN_KIND, b"")] * 63)
    assert data[craft.OFF_SLOT_COUNT] == 64
    opens(data, KEY_ENV)


# --- sig_count <= 16 (v2) -----------------------------------------------------------------


def _signed(tmp_path, count):
    """A v2 file sealed with `count` signing keys; (data, their verify keys, the
    --sign-key options of `count + 1` keys: the last one did not sign)."""
    keys, verify = [], []
    for n in range(count + 1):
        path = str(tmp_path / f"sign{n}")
        status, out, err = run_in_process(["keygen", "--sign", "-o", path])  # in process: 17 keys, no start-ups
        assert status == 0, err
        keys += ["--sign-key", path]
        verify.append(out.decode().strip())
    done = subprocess.run(command("seal", *keys[:-2]), input=PLAINTEXT, capture_output=True,
                          env=clean_env(KEY_ENV), timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout, verify, keys


def test_sixteen_signatures_open_and_a_seventeenth_is_refused(tmp_path):
    data, verify, options = _signed(tmp_path, 16)
    assert data[craft.OFF_SLOTS] == 16  # v2: sig_count follows slot_count
    done = subprocess.run(command("open", "--signer", verify[15]), input=data, capture_output=True,
                          env=clean_env(KEY_ENV), timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (0, PLAINTEXT, b"")
    for argv in (["seal", *options], ["rewrap", *options[-2:]]):
        done = subprocess.run(command(*argv), input=PLAINTEXT if argv[0] == "seal" else data, capture_output=True,
                              env=clean_env(KEY_ENV), timeout=60)
        assert (done.returncode, done.stdout) == (64, b""), done.stderr
        assert_error_lines(done.stderr.decode(), "at most 16 signatures")


@pytest.mark.parametrize("count", [17, 255])
def test_signature_count_over_the_limit(tmp_path, count):
    data, _, _ = _signed(tmp_path, 1)
    data = bytearray(data)
    data[craft.OFF_SLOTS] = count
    rejected(craft.fix_crc(bytes(data)), KEY_ENV, f"signature count {count}", "16")


# --- 14 <= chunk_log2 <= 24 ---------------------------------------------------------------


@pytest.mark.parametrize("log2", [0, 13, 25, 64, 255])
def test_chunk_size_outside_the_limit(log2):
    data = raw_header([(UNKNOWN_KIND, b"")], chunk_log2=log2)
    rejected(data, KEY_ENV, f"chunk size 2^{log2}", "2^14..2^24")


@pytest.mark.parametrize("size", ["16K", "16M"])
def test_chunk_size_at_the_limits_opens(size):
    sealed = subprocess.run(
        command("seal", "--chunk-size", size), input=PLAINTEXT, capture_output=True, env=clean_env(KEY_ENV), timeout=60
    )
    assert sealed.returncode == 0, sealed.stderr
    assert sealed.stdout[craft.OFF_CHUNK_LOG2] == {"16K": 14, "16M": 24}[size]
    opens(sealed.stdout, KEY_ENV)


# --- scrypt cost --------------------------------------------------------------------------

# (log2_n, r, p, the limit that is exceeded)
SCRYPT_OVER = [
    (21, 1, 1, "log2(N) at most 20"),
    (9, 8, 1, "log2(N) at least 10"),
    (10, 33, 1, "r at most 32"),
    (10, 0, 1, "r at least 1"),
    (10, 1, 17, "p at most 16"),
    (10, 1, 0, "p at least 1"),
    (20, 9, 1, "memory 128*N*r over 1 GiB"),
    (20, 8, 3, "work N*r*p over 2^24"),
    (255, 255, 255, "everything"),
]


def scrypt_file(log2_n, r, p, extra_slots=()):
    return raw_header([(SLOT_SCRYPT, craft.scrypt_body(log2_n, r, p)), *extra_slots]) + b"\x00" * 16


@pytest.mark.parametrize("log2_n, r, p, limit", SCRYPT_OVER, ids=[c[3] for c in SCRYPT_OVER])
def test_scrypt_parameters_over_a_limit(log2_n, r, p, limit):
    rejected(scrypt_file(log2_n, r, p), PASS_ENV, "scrypt", f"r={r}", f"p={p}")


def test_scrypt_limit_applies_to_every_passphrase_source(tmp_path):
    path = tmp_path / "pass"
    path.write_text(PASSPHRASE)
    path.chmod(0o600)
    rejected(scrypt_file(21, 8, 1), {}, "scrypt", argv=("open", "--passphrase-file", str(path)))


def test_a_slot_over_the_limit_does_not_hide_a_good_one():
    """The costly slot is refused, the next passphrase slot is still tried."""
    from encpipe.slots import Passphrase

    data = craft.seal_with(
        PLAINTEXT, [Passphrase(PASSPHRASE, log2_n=10)], extra=[(SLOT_SCRYPT, craft.scrypt_body(21, 8, 1))]
    )
    opens(data, PASS_ENV)


def test_raw_key_opens_a_file_with_a_costly_passphrase_slot_without_running_scrypt():
    data = craft.seal_with(PLAINTEXT, [raw_key()], extra=[(SLOT_SCRYPT, craft.scrypt_body(255, 255, 255))])
    started = time.monotonic()
    status, out, err = run_in_process(["open"], data, KEY_ENV)
    assert (status, out, err) == (0, PLAINTEXT, V1_WARNING)
    assert time.monotonic() - started < CHECK_SECONDS


@pytest.mark.parametrize(
    "log2_n, r, p",
    [(10, 1, 1), (20, 8, 1), (17, 8, 16), (10, 32, 16), (20, 1, 16), (14, 32, 16)],
    ids=["minimum", "memory exactly 1 GiB", "work exactly 2^24", "r and p at most", "N at most", "r, p at most"],
)
def test_scrypt_parameters_at_the_limits_pass_the_check(log2_n, r, p):
    from encpipe.slots import ScryptSlot

    ScryptSlot(b"\x00" * 16, log2_n, r, p, b"\x00" * 40).check_cost()  # does not raise


@pytest.mark.parametrize("log2_n, r, p", [(10, 32, 16), (20, 1, 1)], ids=["r and p at most", "N at most"])
def test_passphrase_slot_at_the_limits_opens(log2_n, r, p):
    from encpipe.slots import Passphrase

    data = craft.seal_with(PLAINTEXT, [Passphrase(PASSPHRASE, log2_n=log2_n, r=r, p=p)])
    opens(data, PASS_ENV)


# --- messages and reading no further than needed ---------------------------------------------

# The one limit each message must name; the others must not be blamed.
LIMIT_WORDS = {"log2": "10..20", "r": "1..32", "p": "1..16", "memory": "1 GiB", "work": "2^24"}
SCRYPT_BLAME = {
    (21, 1, 1): "log2",
    (9, 8, 1): "log2",
    (10, 33, 1): "r",
    (10, 0, 1): "r",
    (10, 1, 17): "p",
    (10, 1, 0): "p",
    (20, 9, 1): "memory",
    (20, 8, 3): "work",
    (255, 255, 255): "log2",
}


@pytest.mark.parametrize("params", sorted(SCRYPT_BLAME), ids=lambda p: "log2_n=%d r=%d p=%d" % p)
def test_scrypt_limit_message_names_the_limit(params):
    err = rejected(scrypt_file(*params), PASS_ENV, "scrypt")
    blamed = SCRYPT_BLAME[params]
    assert LIMIT_WORDS[blamed] in err, err
    assert not [w for k, w in LIMIT_WORDS.items() if k != blamed and w in err], err


@pytest.mark.parametrize("argv", [["open"], ["inspect"], ["inspect", "--json"]])
def test_endless_garbage_is_rejected_without_reading_it_all(argv):
    """No header check needs more than the header: a non-encpipe stream that never ends
    is refused at once, hint or not."""
    child = subprocess.Popen(
        command(*argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean_env()
    )
    started = time.monotonic()
    try:
        while child.poll() is None and time.monotonic() - started < 10:
            try:
                child.stdin.write(b"\x00" * 65536)
            except BrokenPipeError:
                break
        status = child.wait(timeout=30)
    finally:
        child.kill()
        child.wait()
    assert time.monotonic() - started < 10, "still reading"
    assert status == 65 and child.stdout.read() == b""
    assert_error_lines(child.stderr.read().decode(), "not an encpipe file")


def test_the_chunk_counter_stops_at_eleven_bytes():
    """Pins stream.chunk_nonce: the last counter an 11-byte nonce field holds is
    used as is; the next one is a typed error (65), never a wrapped nonce."""
    from encpipe.errors import InvalidStream
    from encpipe.stream import chunk_nonce

    top = (1 << 88) - 1
    assert chunk_nonce(top, True) == b"\xff" * 11 + b"\x01"
    assert chunk_nonce(0, False) == bytes(12)
    with pytest.raises(InvalidStream, match="^stream too long: the chunk counter would overflow$"):
        chunk_nonce(top + 1, False)
