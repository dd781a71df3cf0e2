"""The output does not depend on --threads (nor on how the input arrives).

With the random sources made deterministic, `seal` must produce the same
bytes whatever the worker count, and `open` must give back the same
plaintext whatever the worker count. The chunk grid is 16 KiB so that a few
hundred KiB cover: empty input, one byte, a chunk minus/plus one, exact
multiples, and many more chunks than threads.
"""

import hashlib
import io
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import encpipe.envelope
import encpipe.slots
from encpipe.cli import main
from encpipe.format import MIN_HEADER_LEN, TAG_LEN

KEY = "5d" * 32
CHUNK = 16 * 1024
THREADS = (1, 2, 3, 8)
SIZES = (0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 5 * CHUNK + 123, 17 * CHUNK, 40 * CHUNK - 1)


class _DeterministicRandom:
    """Stands in for Crypto.Random.get_random_bytes: a SHA-256 counter stream."""

    def __init__(self):
        self.counter = 0

    def __call__(self, n):
        out = b""
        while len(out) < n:
            out += hashlib.sha256(b"encpipe test random %d" % self.counter).digest()
            self.counter += 1
        return out[:n]


class _Trickle(io.RawIOBase):
    """A pipe-like input that returns at most `step` bytes per read."""

    def __init__(self, data, step):
        self._data, self._pos, self._step = data, 0, step

    def readable(self):
        return True

    def readinto(self, buffer):
        n = min(len(buffer), self._step, len(self._data) - self._pos)
        buffer[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        return n


def _plaintext(size):
    # Not all zeros, so a chunk landing in the wrong place would show.
    block = hashlib.sha256(b"plaintext %d" % size).digest() * (CHUNK // 32 + 1)
    return (block * (size // len(block) + 1))[:size]


def _run(argv, stdin):
    out, err = io.BytesIO(), io.StringIO()
    status = main(argv, stdin=stdin, stdout=out, stderr=err, env={"ENCPIPE_KEY": KEY})
    assert status == 0, err.getvalue()
    return out.getvalue()


def _seal(monkeypatch, data, threads, stdin=None):
    # Both modules import get_random_bytes by name; patch where it is looked up.
    random = _DeterministicRandom()
    monkeypatch.setattr(encpipe.envelope, "get_random_bytes", random)
    monkeypatch.setattr(encpipe.slots, "get_random_bytes", random)
    argv = ["seal", "--chunk-size", "16K", "--threads", str(threads)]
    return _run(argv, stdin if stdin is not None else io.BytesIO(data))


def _open(sealed, threads):
    return _run(["open", "--threads", str(threads)], io.BytesIO(sealed))


@pytest.mark.parametrize("size", SIZES)
def test_seal_is_byte_identical_whatever_the_thread_count(monkeypatch, size):
    data = _plaintext(size)
    outputs = {threads: _seal(monkeypatch, data, threads) for threads in THREADS}
    reference = outputs[1]
    chunks = max(1, -(-size // CHUNK))
    assert len(reference) >= MIN_HEADER_LEN + size + chunks * TAG_LEN
    for threads, sealed in outputs.items():
        assert sealed == reference, f"--threads {threads} differs from --threads 1 at size {size}"


@pytest.mark.parametrize("size", (0, CHUNK + 1, 17 * CHUNK))
def test_seal_is_byte_identical_whatever_the_cipher_library_and_thread_count(monkeypatch, size):
    data = _plaintext(size)
    outputs = {}
    for library in ("cryptography", "pycryptodome"):
        monkeypatch.setenv("ENCPIPE_CIPHER", library)
        for threads in THREADS:
            outputs[library, threads] = _seal(monkeypatch, data, threads)
            assert _open(outputs[library, threads], threads) == data
    assert len(set(outputs.values())) == 1, sorted(k for k, v in outputs.items() if v != outputs["pycryptodome", 1])


@pytest.mark.parametrize("size", SIZES)
def test_open_gives_the_same_plaintext_whatever_the_thread_count(monkeypatch, size):
    data = _plaintext(size)
    sealed = _seal(monkeypatch, data, 1)
    for threads in THREADS:
        assert _open(sealed, threads) == data, f"--threads {threads} at size {size}"


def test_deterministic_random_really_is_what_seal_uses(monkeypatch):
    # Guards the test above: if seal drew randomness from somewhere we do not
    # patch, two seals of the same input would differ and the comparison
    # would prove nothing. Without the patch, two seals must differ.
    data = _plaintext(3 * CHUNK)
    assert _seal(monkeypatch, data, 2) == _seal(monkeypatch, data, 2)
    monkeypatch.undo()
    argv = ["seal", "--chunk-size", "16K", "--threads", "2"]
    assert _run(argv, io.BytesIO(data)) != _run(argv, io.BytesIO(data))


@settings(max_examples=25, deadline=None)
@given(
    size=st.integers(min_value=0, max_value=6 * CHUNK + 7),
    threads=st.sampled_from(THREADS[1:]),
    step=st.integers(min_value=1, max_value=3 * CHUNK),
)
def test_seal_ignores_thread_count_and_read_sizes(size, threads, step):
    data = _plaintext(size)
    with pytest.MonkeyPatch.context() as monkeypatch:
        reference = _seal(monkeypatch, data, 1)
        trickled = _seal(monkeypatch, data, threads, stdin=_Trickle(data, step))
        assert trickled == reference
        assert _open(trickled, threads) == data


MiB = 1 << 20


@pytest.fixture
def machine(monkeypatch):
    """Pretend to have `cores` usable cores and `busy` other runnable processes."""
    from encpipe import workers

    def pretend(cores, busy=0, library="pycryptodome"):
        monkeypatch.setattr(workers.os, "sched_getaffinity", lambda pid: set(range(cores)))
        monkeypatch.setattr(workers, "busy_cores", lambda: busy)
        monkeypatch.setenv("ENCPIPE_CIPHER", library)
        return workers.threads

    return pretend


@pytest.mark.parametrize("cores, expected", [(1, 1), (2, 2), (4, 4), (64, 4)])
def test_auto_threads_are_the_free_cores_at_most_four_for_large_chunks(machine, cores, expected):
    assert machine(cores)({"--threads": "auto"}, 4 * MiB) == expected
    assert machine(cores)({"--threads": "auto"}) == expected  # the file default, 4 MiB


@pytest.mark.parametrize("busy, expected", [(0, 4), (1, 3), (2, 2), (3, 1), (9, 1)])
def test_auto_threads_leave_the_busy_cores_alone(machine, busy, expected):
    assert machine(4, busy)({"--threads": "auto"}, 4 * MiB) == expected


def test_busy_cores_count_other_runnable_processes():
    import subprocess
    import sys
    import time

    from encpipe import workers

    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(3)]
    try:
        time.sleep(0.3)
        assert max(workers.busy_cores() for _ in range(20)) >= 2
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


@pytest.mark.parametrize("chunk, expected", [(16 << 10, 1), (64 << 10, 1), (512 << 10, 1), (MiB, 4), (2 * MiB, 4),
                                             (4 * MiB, 4), (8 * MiB, 2), (16 * MiB, 1)])
def test_auto_threads_by_chunk_size_small_chunks_one_thread_and_at_most_16_mib_of_buffers(machine, chunk, expected):
    assert machine(8)({"--threads": "auto"}, chunk) == expected


@pytest.mark.parametrize("version, in_place, expected", [
    ("48.0.0", True, [1, 1, 1, 1, 1]), ("49.0.0", True, [1, 1, 1, 1, 1]), ("50.0.0", True, [1, 4, 4, 2, 1]),
    ("51.1.0", False, [1, 4, 2, 1, 1])])
def test_auto_threads_with_cryptography_only_where_its_calls_release_the_gil(machine, monkeypatch, version, in_place,
                                                                               expected):
    """From 50 on AEAD calls release the GIL; 51 and later refuse to work in place, so
    a thread holds two buffers (16 MiB in all: two threads at 4 MiB, one at 8 MiB) and
    a chunk over 8 MiB goes by update_into's pieces, which hold the GIL: one thread."""
    import cryptography

    from encpipe import aead, gcmlibs

    threads = machine(8, library="cryptography")
    aead.library()
    monkeypatch.setattr(cryptography, "__version__", version)
    monkeypatch.setattr(gcmlibs.Cryptography, "in_place", in_place)
    assert [threads({"--threads": "auto"}, chunk) for chunk in (16 << 10, MiB, 4 * MiB, 8 * MiB, 16 * MiB)] == expected


def test_auto_is_one_thread_beside_a_pipe(machine):
    threads = machine(8)
    assert threads({"--threads": "auto"}, 4 * MiB, pipe_end=True) == 1
    assert threads({"--threads": "3"}, 4 * MiB, pipe_end=True) == 3
    assert threads({"--threads": "3"}, 16 << 10) == 3


def test_pipes_are_told_from_files_and_memory(tmp_path):
    from encpipe.stdio import is_pipe

    read_end, write_end = os.pipe()
    with open(read_end, "rb") as r, open(write_end, "wb") as w, open(tmp_path / "f", "wb") as f:
        assert is_pipe(r) and is_pipe(w)
        assert not is_pipe(f)
    assert not is_pipe(io.BytesIO())


def _wchan(pid, task):
    with open(f"/proc/{pid}/task/{task}/wchan") as f:
        return f.read()


def _threads_while_blocked_on_a_full_pipe(sealed_path, *args):
    """Run open into a pipe nobody reads yet, and count the process's threads once it blocks."""
    import subprocess
    import sys
    import time

    env = {**os.environ, "ENCPIPE_KEY": KEY}
    with open(sealed_path, "rb") as src:
        child = subprocess.Popen([sys.executable, "-m", "encpipe", "open", *args], stdin=src,
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            time.sleep(0.2)
            tasks = os.listdir(f"/proc/{child.pid}/task")
            if any(_wchan(child.pid, task).endswith("pipe_write") for task in tasks):  # anon_pipe_write on 6.x
                return len(tasks)
        raise AssertionError("open never blocked on its output pipe")
    finally:
        child.kill()
        child.communicate()


def test_open_into_a_pipe_runs_one_thread_unless_told(tmp_path):
    sealed_path = tmp_path / "sealed"
    sealed_path.write_bytes(_run(["seal", "--chunk-size", "64K"], io.BytesIO(_plaintext(4 << 20))))
    assert _threads_while_blocked_on_a_full_pipe(sealed_path) == 1
    assert _threads_while_blocked_on_a_full_pipe(sealed_path, "--threads", "2") == 3  # two workers + the waiting caller


@pytest.mark.parametrize("looks, busy, seen", [
    ([0], 0, 1),  # an idle machine: one look, no wait
    ([1, 0], 0, 2),  # a momentary process (a kernel thread) is not a busy core
    ([2, 1, 3], 1, 3),  # the fewest of three looks
    ([1, 1, 1, 0], 1, 3),  # runnable in every look: busy; never more than three looks
])
def test_busy_cores_count_only_processes_runnable_in_every_look(monkeypatch, looks, busy, seen):
    from encpipe import workers

    left = list(looks)
    monkeypatch.setattr(workers, "runnable_others", lambda: left.pop(0))
    monkeypatch.setattr(workers.time, "sleep", lambda seconds: None)
    assert workers.busy_cores() == busy
    assert len(looks) - len(left) == seen
