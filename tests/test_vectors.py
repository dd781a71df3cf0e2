"""Acceptance 10: the vectors in tests/vectors open as their headers say, in
encpipe and in an independent decoder written from the README."""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

import independent_decoder
from cliutil import assert_one_line_error, run

VECTORS = Path(__file__).parent / "vectors"
EXIT_CODES = {"success": 0, "header failure": 65, "payload failure": 65, "no match": 77, "not signed": 67}


def load(path):
    raw = path.read_bytes()
    head, data = raw.split(b"\n\n", 1)
    fields = {}
    for line in head.decode().splitlines():
        name, value = line.split(": ", 1)
        fields.setdefault(name, []).append(value)
    return fields, data


ALL = sorted(VECTORS.glob("*.vec"))


def key_args(tmp_path, fields):
    ring = tmp_path / "ring"
    ring.write_text("\n".join(fields.get("key", []) + fields.get("identity", [])) + "\n")
    ring.chmod(0o600)
    args = ["--key-file", str(ring)] if ring.read_text().strip() else []
    for signer in fields.get("signer", []):
        args += ["--signer", signer]
    for i, phrase in enumerate(fields.get("passphrase", [])):
        path = tmp_path / f"pass{i}"
        path.write_text(phrase)
        path.chmod(0o600)
        args += ["--passphrase-file", str(path)]
    return args


def test_there_are_vectors_of_every_kind():
    kinds = {load(path)[0]["expect"][0] for path in ALL}
    assert kinds == set(EXIT_CODES) and len(ALL) >= 45
    assert sum(1 for path in ALL if path.name.startswith("v2_")) >= 20


@pytest.mark.parametrize("path", ALL, ids=[p.stem for p in ALL])
def test_vector_opens_as_expected(path, tmp_path):
    fields, data = load(path)
    expect = fields["expect"][0]
    env = {"ENCPIPE_SCRYPT_BUDGET": b for b in fields.get("scrypt budget", [])}
    result = run(["open", *key_args(tmp_path, fields)], data, env)
    assert result.code == EXIT_CODES[expect], result.stderr
    if expect == "success":
        assert hashlib.sha256(result.stdout).hexdigest() == fields["plaintext sha256"][0]
        assert len(result.stdout) == int(fields["plaintext length"][0])
    else:
        assert_one_line_error(result.stderr)
        if expect != "payload failure":
            assert result.stdout == b""
    verified = run(["inspect", "--verify", *key_args(tmp_path, fields)], data, env)
    assert verified.code == result.code


@pytest.mark.parametrize("path", ALL, ids=[p.stem for p in ALL])
def test_independent_decoder_agrees(path):
    fields, data = load(path)
    expect = fields["expect"][0]
    secrets = dict(
        keys=[bytes.fromhex(k) for k in fields.get("key", [])],
        passphrases=[p.encode() for p in fields.get("passphrase", [])],
        identities=[independent_decoder.identity_secret(i) for i in fields.get("identity", [])],
        signers=[independent_decoder.verify_key(s) for s in fields.get("signer", [])],
        scrypt_budget=int(fields.get("scrypt budget", [independent_decoder.DEFAULT_SCRYPT_BUDGET])[0]),
    )
    if expect == "success":
        clear = independent_decoder.decode(data, **secrets)
        assert hashlib.sha256(clear).hexdigest() == fields["plaintext sha256"][0]
    else:
        expected_error = {
            "no match": independent_decoder.NoMatch,
            "not signed": independent_decoder.NotSigned,
        }.get(expect, independent_decoder.Rejected)
        with pytest.raises(expected_error):
            independent_decoder.decode(data, **secrets)


def test_generator_reproduces_the_committed_vectors(tmp_path):
    subprocess.run([sys.executable, str(VECTORS / "generate.py"), str(tmp_path)], check=True)
    made = sorted(p.name for p in tmp_path.glob("*.vec"))
    assert made == [p.name for p in ALL]
    for name in made:
        assert (tmp_path / name).read_bytes() == (VECTORS / name).read_bytes(), name


def test_independent_decoder_opens_fresh_files():
    from cliutil import FAST_SCRYPT, KEY_A, seal

    data = os.urandom(70000)
    sealed = seal(data, {"ENCPIPE_KEY": KEY_A, "ENCPIPE_PASSPHRASE": "x"}, ["--chunk-size", "16K", *FAST_SCRYPT])
    assert independent_decoder.decode(sealed, keys=[bytes.fromhex(KEY_A)]) == data
