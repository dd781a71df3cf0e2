"""Standard streams left in non-blocking mode (O_NONBLOCK) by whatever started encpipe.

A parent can hand down a pipe or a terminal in non-blocking mode (Node.js, an ssh
session, a program that set it on a shared terminal). Before: a read that found no
data yet (EAGAIN: the raw read returns None) was taken for the end of the input,
and a write that would have blocked for what was written: `encpipe seal` sealed
what had come so far as the whole input, a valid file that authenticates, and
exited 0; `encpipe open` and `seal` dropped their output past what the pipe took
at once, exit 0. Now the standard descriptors are made blocking before anything
is read or written (as a descriptor is by default), and every byte goes through.
"""

import os
import subprocess
import sys
import threading
import time

import pytest

from cliutil import KEY_A

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**{k: v for k, v in os.environ.items() if not k.startswith("ENCPIPE_")},
       "PYTHONPATH": ROOT, "ENCPIPE_KEY": KEY_A}
DATA = os.urandom(3 << 20) + b"the end\n"


def _encpipe(args, stdin, stdout, stderr=subprocess.PIPE):
    return subprocess.Popen([sys.executable, "-m", "encpipe", *args], stdin=stdin, stdout=stdout, stderr=stderr,
                            env=ENV)


def _sealed(data):
    done = subprocess.run([sys.executable, "-m", "encpipe", "seal"], input=data, capture_output=True, env=ENV)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _opened(sealed):
    done = subprocess.run([sys.executable, "-m", "encpipe", "open"], input=sealed, capture_output=True, env=ENV)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _feed_slowly(fd, data, pieces=6):
    """Write `data` to the blocking descriptor `fd` in pieces, a pause before each, then close it."""
    def feed():
        try:
            step = -(-len(data) // pieces)
            for start in range(0, len(data), step):
                time.sleep(0.1)
                _write_all(fd, data[start:start + step])
        except BrokenPipeError:
            pass
        finally:
            os.close(fd)

    thread = threading.Thread(target=feed)
    thread.start()
    return thread


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _read_slowly(fd):
    """All of the blocking descriptor `fd`, read in small pieces with pauses."""
    got = bytearray()
    with os.fdopen(fd, "rb", buffering=0) as f:
        while True:
            time.sleep(0.002)
            block = f.read(1 << 16)
            if not block:
                return bytes(got)
            got += block


@pytest.mark.parametrize("command", ["seal", "open"])
def test_a_non_blocking_standard_input_is_read_to_its_end(command):
    """seal: before, the file held only what had come before the first pause
    (exit 0, and it opened: a backup cut short that authenticates)."""
    data = DATA if command == "seal" else _sealed(DATA)
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    proc = _encpipe([command], stdin=read_end, stdout=subprocess.PIPE)
    os.close(read_end)
    feeder = _feed_slowly(write_end, data)
    out, err = proc.communicate(timeout=120)
    feeder.join()
    assert (proc.returncode, err) == (0, b"")
    assert (_opened(out) if command == "seal" else out) == DATA


@pytest.mark.parametrize("command", ["seal", "open"])
def test_a_non_blocking_standard_output_gets_every_byte(command):
    """Before: what did not fit in the pipe at once was dropped, exit 0."""
    data = DATA if command == "seal" else _sealed(DATA)
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    proc = _encpipe([command], stdin=subprocess.PIPE, stdout=write_end)
    os.close(write_end)
    feeder = threading.Thread(target=lambda: (proc.stdin.write(data), proc.stdin.close()))
    feeder.start()
    out = _read_slowly(read_end)
    feeder.join()
    assert (proc.wait(timeout=120), proc.stderr.read()) == (0, b"")
    assert (_opened(out) if command == "seal" else out) == DATA
