"""Acceptance 8: memory stays constant whatever the input size (the benchmark
reports the 1 GiB and 4 GiB figures; here smaller inputs in a subprocess)."""

import os
import shlex
import subprocess
import sys

import pytest

from cliutil import KEY_A, measure_peak_rss

MIB = 1024 * 1024
LIMIT_KIB = 64 * 1024
ENV = {**{k: v for k, v in os.environ.items() if not k.startswith("ENCPIPE_")}, "ENCPIPE_KEY": KEY_A}
ENCPIPE = [sys.executable, "-m", "encpipe"]


def seal_zeros_rss(tmp_path, size, threads):
    """Peak RSS of `encpipe seal` fed `size` zero bytes through a pipe."""
    feeder = subprocess.Popen(["head", "-c", str(size), "/dev/zero"], stdout=subprocess.PIPE)
    code, rss = measure_peak_rss(
        [*ENCPIPE, "seal", "--threads", threads], tmp_path / "rss", stdin=feeder.stdout,
        stdout=subprocess.DEVNULL, env=ENV,
    )
    feeder.stdout.close()
    feeder.wait()
    assert code == 0
    return rss


@pytest.mark.parametrize("threads", ["1", "2"])
def test_seal_from_a_pipe_stays_under_64_mib(tmp_path, threads):
    small = seal_zeros_rss(tmp_path, 8 * MIB, threads)
    large = seal_zeros_rss(tmp_path, 512 * MIB, threads)
    assert large < LIMIT_KIB
    assert large - small < 8 * 1024  # no growth with input size beyond noise


def test_open_stays_under_64_mib(tmp_path):
    sealed = tmp_path / "zeros.enc"
    with open(sealed, "wb") as out:
        subprocess.run(f"head -c {256 * MIB} /dev/zero | {shlex.quote(sys.executable)} -m encpipe seal",
                       shell=True, check=True, stdout=out, env=ENV)
    with open(sealed, "rb") as src:
        code, rss = measure_peak_rss([*ENCPIPE, "open"], tmp_path / "rss", stdin=src,
                                     stdout=subprocess.DEVNULL, env=ENV)
    assert code == 0
    assert rss < LIMIT_KIB


GOAL_KIB = 48 * 1024


def most_auto_threads(monkeypatch, library, chunk):
    """The most threads --threads auto runs with a file at this --chunk-size, on any
    machine: all its cores free, and more of them than auto ever takes. (Auto itself
    counts the cores other processes leave free, fewer on a busy machine, or beside
    other tests running in parallel.)"""
    from encpipe import workers

    monkeypatch.setenv("ENCPIPE_CIPHER", library)
    monkeypatch.setattr(workers.os, "sched_getaffinity", lambda pid: set(range(4 * workers.AUTO_THREADS_MAX)))
    monkeypatch.setattr(workers, "busy_cores", lambda: 0)
    log2 = workers.chunk_log2(chunk)
    return workers.threads({"--threads": "auto"}, None if log2 is None else 1 << log2)


@pytest.mark.parametrize("library, chunk, threads, signed", [
    (library, chunk, threads, False) for library in ("cryptography", "pycryptodome")
    for chunk, threads in (("16K", 1), ("auto", 4), ("8M", 2), ("16M", 1))]
    + [(library, "16M", 1, True) for library in ("cryptography", "pycryptodome")])
def test_every_chunk_size_stays_within_48_mib_at_the_default_thread_count(tmp_path, monkeypatch, library, chunk,
                                                                           threads, signed):
    """At the default 4 MiB chunks auto takes four threads at most, at 8 MiB two; half
    as many where the library writes into a second buffer (`cryptography` 51 and later,
    up to 8 MiB chunks: its largest spare): 16 MiB of buffers either way. The input
    ends with a short chunk (8 MiB at 16 MiB chunks: the largest a spare takes), which
    goes as the run's full chunks go, never into a spare of its own; a signed file
    (checked with --signer) loads the signing code besides."""
    from encpipe import gcmlibs

    auto = most_auto_threads(monkeypatch, library, chunk)  # loads the library: in_place is known
    if library == "cryptography" and chunk in ("auto", "8M") and not gcmlibs.Cryptography.in_place:
        threads //= 2
    assert auto == threads
    plain, sealed = tmp_path / "plain", tmp_path / "sealed"
    with open(plain, "wb") as f:
        f.write(os.urandom(1 << 20) * 56)  # a file: seal's and open's auto threads are at their most
    env = {**ENV, "ENCPIPE_CIPHER": library}
    rss = {}
    pinned = ["--threads", str(threads)]
    sign, check = [], []
    if signed:
        verify_key = subprocess.run([*ENCPIPE, "keygen", "--sign", "-o", str(tmp_path / "sign.key")], env=env,
                                    capture_output=True, check=True).stdout.decode().strip()
        sign, check = ["--sign-key", str(tmp_path / "sign.key")], ["--signer", verify_key]
    for command, src, dst in ((["seal", "--chunk-size", chunk, *pinned, *sign], plain, sealed),
                              (["open", *pinned, *check], sealed, os.devnull)):
        with open(src, "rb") as stdin, open(dst, "wb") as stdout:
            code, rss[command[0]] = measure_peak_rss([*ENCPIPE, *command], tmp_path / "rss", stdin=stdin,
                                                     stdout=stdout, env=env)
        assert code == 0
    assert max(rss.values()) <= GOAL_KIB, rss
