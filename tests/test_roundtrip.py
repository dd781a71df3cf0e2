"""Acceptance 1: byte-exact round trips for every edge size and key kind."""

import json
import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cliutil import FAST_SCRYPT, KEY_A, KEY_B, key_env, ok, run, run_process, seal

CHUNK = 16 * 1024
SIZES = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 17]


def data_of(size):
    return os.urandom(size)


@pytest.fixture
def two_key_files(tmp_path):
    paths = []
    for name, key in (("a.key", KEY_A), ("b.key", KEY_B)):
        path = tmp_path / name
        path.write_text(key + "\n")
        path.chmod(0o600)
        paths.append(str(path))
    return paths


@pytest.mark.parametrize("threads", ["1", "2"])
@pytest.mark.parametrize("size", SIZES)
def test_raw_key_round_trip(size, threads):
    data = data_of(size)
    sealed = seal(data, args=["--chunk-size", "16K", "--threads", threads])
    opened = run(["open", "--threads", threads], sealed, key_env())
    assert (opened.code, opened.stdout, opened.stderr) == (0, data, "")


@pytest.mark.parametrize("size", SIZES)
def test_passphrase_round_trip(size):
    data = data_of(size)
    env = {"ENCPIPE_PASSPHRASE": "correct horse battery staple"}
    sealed = seal(data, env, args=["--chunk-size", "16K", *FAST_SCRYPT])
    opened = run(["open"], sealed, env)
    assert (opened.code, opened.stdout) == (0, data)


@pytest.mark.parametrize("size", SIZES)
def test_two_slots_open_with_either_key(size, two_key_files):
    data = data_of(size)
    a, b = two_key_files
    sealed = seal(data, {}, args=["--chunk-size", "16K", "--key-file", a, "--key-file", b])
    for path in (a, b):
        opened = run(["open", "--key-file", path], sealed)
        assert (opened.code, opened.stdout) == (0, data)
    for key in (KEY_A, KEY_B):
        assert run(["open"], sealed, key_env(key)).stdout == data


def test_key_and_passphrase_slots(tmp_path):
    data = data_of(CHUNK * 2)
    phrase = tmp_path / "phrase"
    phrase.write_bytes("pässphrase\n".encode())
    phrase.chmod(0o600)
    sealed = seal(data, {}, args=["--key-file", _key_file(tmp_path), "--passphrase-file", str(phrase), *FAST_SCRYPT])
    assert run(["open", "--passphrase-file", str(phrase)], sealed).stdout == data
    assert run(["open"], sealed, key_env()).stdout == data
    assert run(["open"], sealed, {"ENCPIPE_PASSPHRASE": "pässphrase"}).stdout == data


def _key_file(tmp_path):
    path = tmp_path / "k"
    path.write_text(KEY_A)
    path.chmod(0o600)
    return str(path)


def _chunk_size_of(sealed):
    return json.loads(ok(run(["inspect", "--json"], sealed)))["chunk_size"]


def test_multi_mib_round_trip_default_chunk():
    data = data_of(9 * 1024 * 1024 + 123)
    sealed = seal(data)  # from a seekable input: 4 MiB chunks
    assert run(["open"], sealed, key_env()).stdout == data
    assert len(sealed) - len(data) == 133 + 3 * 16 + 64  # one raw-key slot, three tags, the trailer
    assert _chunk_size_of(sealed) == 4 << 20


def test_default_chunk_size_is_4m_from_a_file_and_512k_from_a_pipe(tmp_path):
    data = data_of(3 * 1024 * 1024 + 5)
    plain = tmp_path / "plain"
    plain.write_bytes(data)
    with open(plain, "rb") as stdin:
        from_file = subprocess.run(
            [sys.executable, "-m", "encpipe", "seal"], stdin=stdin, capture_output=True,
            env={**os.environ, **key_env()}, check=True,
        ).stdout
    from_pipe = run_process(["seal"], data, key_env(), check=True).stdout
    assert _chunk_size_of(from_file) == 4 << 20
    assert _chunk_size_of(from_pipe) == 512 << 10
    assert len(from_pipe) - len(data) == 133 + 7 * 16 + 64
    assert ok(run(["open"], from_pipe, key_env())) == ok(run(["open"], from_file, key_env())) == data


def test_sealing_twice_gives_different_files():
    data = b"same input"
    assert seal(data) != seal(data)


@settings(max_examples=40, deadline=None)
@given(data=st.binary(max_size=5 * CHUNK), threads=st.sampled_from(["1", "2", "3"]))
def test_round_trip_property(data, threads):
    sealed = seal(data, args=["--chunk-size", "16K", "--threads", threads])
    assert len(sealed) == 133 + 64 + len(data) + 16 * max(1, -(-len(data) // CHUNK))
    assert run(["open", "--threads", threads], sealed, key_env()).stdout == data
