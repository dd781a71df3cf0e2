"""Resources that run out for real: a small tmpfs that fills (ENOSPC), a file
system remounted read-only (EROFS), descriptors (EMFILE) and address space
(MemoryError) capped with prlimit. Each fails closed: one error line, a
documented status, nothing on standard output, no traceback, nothing left
behind, nothing that was there lost."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fuzz.craft import assert_error_lines, clean_env, command

REPO = Path(__file__).resolve().parent.parent
KEY = "3e" * 32
KEY_ENV = {"ENCPIPE_KEY": KEY}
WAIT = 120
PAGE = 4096


def _mount(point, options):
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "encpipe-test", str(point)],
                          capture_output=True, timeout=WAIT).returncode == 0


@pytest.fixture()
def tmpfs(tmp_path):
    """tmpfs(name, pages_free): a tmpfs under tmp_path with exactly that many
    pages left (a filler file takes the rest); unmounted after the test."""
    mounted = []

    def make(name, pages_free, pages=16, mode="700"):
        point = tmp_path / name
        point.mkdir()
        if os.geteuid() != 0 or not _mount(point, f"size={pages * PAGE},mode={mode}"):
            pytest.skip("needs root to mount a tmpfs")
        mounted.append(point)
        (point / ".fill").write_bytes(bytes((pages - pages_free) * PAGE))
        return point

    yield make
    for point in reversed(mounted):
        subprocess.run(["umount", "-l", str(point)], capture_output=True, timeout=WAIT)


def run(args, data=b"", env=None, **kwargs):
    return subprocess.run(command(*args), input=data, capture_output=True, env=clean_env({**KEY_ENV, **(env or {})}),
                          timeout=WAIT, **kwargs)


# --- the witnesses of two passes, in TMPDIR ---------------------------------------------------

RECORDS = 700  # 16 bytes of witness each: more than the spool's buffer and the one page left


@pytest.fixture(scope="module")
def many_records(tmp_path_factory):
    """A signed file of RECORDS 16 KiB chunks, and the verify key of its signer."""
    where = tmp_path_factory.mktemp("records")
    sign_key = where / "sign.key"
    made = run(["keygen", "--sign", "-o", str(sign_key)])
    assert made.returncode == 0, made.stderr
    sealed = run(["seal", "--chunk-size", "16K", "--sign-key", str(sign_key)], os.urandom(RECORDS << 14))
    assert sealed.returncode == 0, sealed.stderr
    path = where / "f.enc"
    path.write_bytes(sealed.stdout)
    return path, made.stdout.decode().split()[-1]


@pytest.mark.parametrize("option", ["--verify-first", "--signer", "--signer of a pipe"])
def test_open_whose_witnesses_fill_tmpdir_says_so(tmpfs, many_records, option):
    """The first pass's witnesses go to an unlinked file in TMPDIR; when TMPDIR
    fills, the error is that file's, not `cannot write output` (standard output
    had room): closing the spool flushed its buffer again, and that second
    ENOSPC, a bare OSError, replaced the first."""
    path, signer = many_records
    tmpdir = tmpfs("tmp", pages_free=1, mode="1777")
    args = ["open", option.split()[0], *([signer] if option.startswith("--signer") else [])]
    if option.endswith("pipe"):  # spooled as ciphertext to TMPDIR too
        with open(path, "rb") as pipe_source:
            feeder = subprocess.Popen(["cat"], stdin=pipe_source, stdout=subprocess.PIPE)
        done = subprocess.run(command(*args), stdin=feeder.stdout, capture_output=True, timeout=WAIT,
                              env=clean_env({**KEY_ENV, "TMPDIR": str(tmpdir)}))
        feeder.stdout.close()
        feeder.wait(timeout=WAIT)
    else:
        done = run([*args, str(path)], env={"TMPDIR": str(tmpdir)})
    assert (done.returncode, done.stdout) == (74, b""), done.stderr
    assert_error_lines(done.stderr.decode(), "temporary file", "No space left on device")
    assert sorted(os.listdir(tmpdir)) == [".fill"]
