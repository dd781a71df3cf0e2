"""Acceptance 8: memory stays constant whatever the input size (the benchmark
reports the 1 GiB and 4 GiB figures; here a smaller input in a subprocess)."""

import os
import subprocess
import sys

import pytest

from cliutil import KEY_A

MIB = 1024 * 1024
LIMIT_KIB = 64 * 1024


def peak_rss_kib(args, feed_bytes):
    """Run encpipe with `feed_bytes` of zeros piped in by `head`; its peak RSS in KiB."""
    feeder = subprocess.Popen(["head", "-c", str(feed_bytes), "/dev/zero"], stdout=subprocess.PIPE)
    child = subprocess.Popen(
        [sys.executable, "-m", "encpipe", *args],
        stdin=feeder.stdout,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "ENCPIPE_KEY": KEY_A},
    )
    feeder.stdout.close()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    feeder.wait()
    assert child.returncode == 0
    return usage.ru_maxrss


@pytest.mark.parametrize("threads", ["1", "2"])
def test_seal_from_a_pipe_stays_under_64_mib(threads):
    small = peak_rss_kib(["seal", "--threads", threads], 8 * MIB)
    large = peak_rss_kib(["seal", "--threads", threads], 512 * MIB)
    assert large < LIMIT_KIB
    assert large - small < 8 * 1024  # no growth with input size beyond noise


def test_open_from_a_pipe_stays_under_64_mib(tmp_path):
    sealed = tmp_path / "zeros.enc"
    with open(sealed, "wb") as out:
        subprocess.run(
            f"head -c {256 * MIB} /dev/zero | {sys.executable} -m encpipe seal",
            shell=True, check=True, stdout=out, env={**os.environ, "ENCPIPE_KEY": KEY_A},
        )
    with open(sealed, "rb") as src:
        child = subprocess.Popen(
            [sys.executable, "-m", "encpipe", "open"], stdin=src, stdout=subprocess.DEVNULL,
            env={**os.environ, "ENCPIPE_KEY": KEY_A},
        )
        _, status, usage = os.wait4(child.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert usage.ru_maxrss < LIMIT_KIB
