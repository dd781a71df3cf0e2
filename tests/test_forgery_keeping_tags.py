"""Format v2 against the forgery GCM allows a holder of the file key: change a chunk
and keep its tag. GHASH is linear in the ciphertext, so with H = AES(payload key, 0)
known, adding D to ciphertext block a and D*H^(b-a) to block b leaves the tag as it
was. The chunk still authenticates, and so does the trailer MAC (its L covers the
tags only); the raw key's authenticator (GMAC under a key from the raw key) and a
signature (over C, a SHA-256 of every byte) must not."""

import io
import os
import subprocess
import sys
import time

import pytest
from Crypto.Cipher import AES

from cliutil import KEY_A, assert_one_line_error, ok, run, secret_file

from encpipe import envelope
from encpipe.primitives import payload_key

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHUNK = 16 * 1024
DATA = bytes(range(256)) * (2 * CHUNK // 256) + b"tail"


def gf_mult(x, y):
    """Multiplication in GCM's GF(2^128) (NIST SP 800-38D, 6.3), blocks as big-endian ints."""
    z, v = 0, y
    for i in range(128):
        if (x >> (127 - i)) & 1:
            z ^= v
        v = (v >> 1) ^ (0xE1 << 120) if v & 1 else v >> 1
    return z


def keep_the_tag(sealed, identity, a=0, b=5, delta=0x42 << 64):
    """The file with two blocks of chunk 0's ciphertext changed and every tag kept."""
    parsed = envelope.read_header(io.BytesIO(sealed))
    file_key, _ = envelope.unlock(parsed, [identity])
    h = int.from_bytes(AES.new(payload_key(file_key, parsed.header), AES.MODE_ECB).encrypt(bytes(16)), "big")
    other = delta
    for _ in range(b - a):
        other = gf_mult(other, h)
    out = bytearray(sealed)
    for block, change in ((a, delta), (b, other)):
        start = parsed.size + 16 * block
        value = int.from_bytes(out[start : start + 16], "big") ^ change
        out[start : start + 16] = value.to_bytes(16, "big")
    return bytes(out)


def escrow(tmp_path):
    path = str(tmp_path / "x.id")
    public = ok(run(["keygen", "--x25519", "-o", path])).decode().strip()
    from encpipe.keys import parse_keyring

    return path, public, parse_keyring(open(path).read(), path)[0]


def test_the_forgery_is_real_for_its_maker_and_refused_by_the_raw_key(tmp_path):
    k = secret_file(tmp_path, "k.key", KEY_A + "\n")
    x_path, x_public, x = escrow(tmp_path)
    sealed = ok(run(["seal", "--chunk-size", "16K", "--key-file", k, "--recipient", x_public], DATA))
    forged = keep_the_tag(sealed, x)
    opened = ok(run(["open", "--identity", x_path], forged))  # every chunk tag still verifies
    assert opened != DATA and opened[16:80] == DATA[16:80] and opened[CHUNK:] == DATA[CHUNK:]
    for argv in (["open", "--key-file", k], ["open", "--key-file", k, "--verify-first"],
                 ["inspect", "--verify", "--key-file", k]):
        code, out, err = run(argv, forged)
        assert (code, out) == (65, b""), (argv, err)
        assert "slot authenticator failed" in err
        assert_one_line_error(err)
    path = tmp_path / "forged.enc"
    path.write_bytes(forged)
    code, out, err = run(["open", "--key-file", k, str(path)])  # from a file: checked before any output
    assert (code, out) == (65, b"") and "slot authenticator failed" in err


def test_a_signature_does_not_survive_it(tmp_path):
    x_path, x_public, x = escrow(tmp_path)
    s = str(tmp_path / "s.key")
    verify = ok(run(["keygen", "--sign", "-o", s])).decode().strip()
    sealed = ok(run(["seal", "--chunk-size", "16K", "--recipient", x_public, "--sign-key", s], DATA))
    assert ok(run(["open", "--identity", x_path, "--signer", verify], sealed)) == DATA
    forged = keep_the_tag(sealed, x)
    code, out, err = run(["open", "--identity", x_path, "--signer", verify], forged)
    assert (code, out) == (65, b"") and "does not verify" in err
    assert_one_line_error(err)


class _Swapped(io.BytesIO):
    """A seekable input that a writer of the file changes once the first pass has
    read it: every read after the first seek back to the start returns `later`."""

    def __init__(self, first, later):
        super().__init__(first)
        self._later = later

    def seek(self, pos, whence=0):
        if self._later is not None and whence == 0 and pos < self.tell():
            self.__init__(self._later, None)
        return super().seek(pos, whence)


def _open_twice(sealed, later, identity, **options):
    src = _Swapped(sealed, later)
    parsed = envelope.read_header(src)
    out = io.BytesIO()
    try:
        envelope.open_sealed(parsed, src, out, [identity], **options)
    except Exception as e:
        return type(e).__name__, str(e), out.getvalue()
    return None, None, out.getvalue()


CHANGED = "the input changed between the two passes: the output stops before the first record that changed"


def _in_chunk(index, chunk=CHUNK):
    """keep_the_tag's arguments for two blocks of chunk `index`."""
    first = index * (chunk + 16) // 16
    return {"a": first, "b": first + 5}


def test_a_file_swapped_between_the_two_passes_is_refused(tmp_path):
    """The bytes a first pass checked (a signature, the raw key's authenticator, or
    every chunk with --verify-first) are those a second pass decrypts: a holder of
    the escrow identity who can write the file swaps in a forgery that keeps every
    tag and the trailer, after the check. The second pass lets out no record before
    it matched its witness from the first (a MAC under a key the forger lacks: the
    raw key's record MAC, or a GMAC under a key of that run): the output stops
    before the changed chunk, and the run fails. v1 files with --verify-first too."""
    from encpipe.keys import parse_keyring
    from encpipe.signing import parse_verify_key

    from cliutil import seal_v1

    x_path, x_public, x = escrow(tmp_path)
    k = secret_file(tmp_path, "k.key", KEY_A + "\n")
    s = str(tmp_path / "s.key")
    verify = parse_verify_key(ok(run(["keygen", "--sign", "-o", s])).decode().strip(), "test")
    key = parse_keyring(open(k).read(), k)[0]
    signed = ok(run(["seal", "--chunk-size", "16K", "--recipient", x_public, "--sign-key", s], DATA))
    raw = ok(run(["seal", "--chunk-size", "16K", "--key-file", k, "--recipient", x_public], DATA))
    unsigned = ok(run(["seal", "--chunk-size", "16K", "--recipient", x_public], DATA))
    v1 = seal_v1(DATA)
    cases = [(signed, x, {"signers": [verify]}), (signed, x, {"signers": [verify], "verify_first": True}),
             (signed, x, {}), (raw, key, {}), (raw, key, {"verify_first": True}),
             (unsigned, x, {"verify_first": True}), (v1, key, {"verify_first": True})]
    for sealed, opener, options in cases:
        assert _open_twice(sealed, sealed, opener, **options) == (None, None, DATA)
        for chunk, before in ((0, b""), (1, DATA[:CHUNK])):
            forged = keep_the_tag(sealed, key if sealed is v1 else x, **_in_chunk(chunk))
            assert _open_twice(sealed, forged, opener, **options) == ("InvalidStream", CHANGED, before), options
    trailer = raw[:-1] + bytes([raw[-1] ^ 1])
    assert _open_twice(raw, trailer, key) == (
        "InvalidStream", "the input changed between the two passes: its trailer differs", DATA)


def _fd_position(pid, path):
    """How far process `pid` has read `path` (its descriptor's offset), or -1."""
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            if os.readlink(f"/proc/{pid}/fd/{fd}") == path:
                with open(f"/proc/{pid}/fdinfo/{fd}") as info:
                    return int(info.readline().split()[1])
    except OSError:
        pass
    return -1


def _changed_span(a, b, block=1 << 16):
    """The first index where `a` and `b` (of one length) differ, and one past the last:
    blocks compared whole, then bytes only in the first and last blocks that differ."""
    differ = [i for i in range(0, len(a), block) if a[i : i + block] != b[i : i + block]]
    first = next(i for i in range(differ[0], len(a)) if a[i] != b[i])
    last = next(i for i in range(min(differ[-1] + block, len(a)) - 1, -1, -1) if a[i] != b[i])
    return first, last + 1


def test_the_changed_span_is_found_at_any_offset():
    data = bytes(300_000)
    for where in ([0], [299_999], [65_535, 65_536], [10, 200_001], [131_072]):
        changed = bytearray(data)
        for i in where:
            changed[i] = 1
        assert _changed_span(data, bytes(changed)) == (where[0], where[-1] + 1)


@pytest.mark.parametrize("how", ["verify-first", "signer"])
def test_a_file_rewritten_in_place_after_its_check_yields_only_what_was_checked(tmp_path, how):
    """A holder of the escrow identity who can write the backup file rewrites chunk 1
    in place (same inode: the open descriptor sees it) once `open` has read past it.
    With --verify-first or --signer, nothing may leave before all of the file has
    authenticated, so the forged chunk must never reach stdout: the output is chunk
    0, checked and unchanged, then the run fails (65)."""
    x_path, x_public, x = escrow(tmp_path)
    k = secret_file(tmp_path, "k.key", KEY_A + "\n")
    s = str(tmp_path / "s.key")
    verify = ok(run(["keygen", "--sign", "-o", s])).decode().strip()
    big = os.urandom(1 << 20) * 96
    path = str(tmp_path / "big.enc")
    sealed = ok(run(["seal", "--chunk-size", "1M", "--key-file", k, "--recipient", x_public, "--sign-key", s], big))
    with open(path, "wb") as f:
        f.write(sealed)
    forged = keep_the_tag(sealed, x, **_in_chunk(1, 1 << 20))
    first, last = _changed_span(sealed, forged)
    options = ["--verify-first", "--key-file", k] if how == "verify-first" else ["--identity", x_path, "--signer", verify]
    proc = subprocess.Popen([sys.executable, "-m", "encpipe", "open", *options, path], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": ROOT})
    deadline = time.monotonic() + 60
    while _fd_position(proc.pid, path) < 4 << 20 and time.monotonic() < deadline:
        time.sleep(0.001)
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, forged[first:last], first)
    finally:
        os.close(fd)
    out, err = proc.communicate(timeout=120)
    assert forged[first:last] != sealed[first:last]
    assert b"Traceback" not in err
    assert (proc.returncode, out) == (65, big[: 1 << 20]), (proc.returncode, len(out), err)  # never a forged byte
    assert err.decode() == f"encpipe: error: {CHANGED}\n"


def test_each_run_keys_its_witnesses_afresh():
    """Pins Witnesses' key: 32 random bytes of each run, never a fixed one. A holder
    of the file key who knew it could change a chunk between the passes, seal it
    again under the file key and compute its witness too."""
    from encpipe.provenance import Witnesses

    keys = {Witnesses(io.BytesIO()).key for _ in range(8)}
    assert len(keys) == 8 and all(len(key) == 32 for key in keys) and bytes(32) not in keys
