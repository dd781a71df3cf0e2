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
    env = open_env(fields)
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


def decoder_secrets(fields):
    """A vector's keys, passphrases, identities, signers and scrypt budget, as
    independent_decoder.decode takes them."""
    return dict(
        keys=[bytes.fromhex(k) for k in fields.get("key", [])],
        passphrases=[p.encode() for p in fields.get("passphrase", [])],
        identities=[independent_decoder.identity_secret(i) for i in fields.get("identity", [])],
        signers=[independent_decoder.verify_key(s) for s in fields.get("signer", [])],
        scrypt_budget=int(fields.get("scrypt budget", [independent_decoder.DEFAULT_SCRYPT_BUDGET])[0]),
    )


def open_env(fields):
    return {"ENCPIPE_SCRYPT_BUDGET": b for b in fields.get("scrypt budget", [])}


@pytest.mark.parametrize("path", ALL, ids=[p.stem for p in ALL])
def test_independent_decoder_agrees(path):
    fields, data = load(path)
    expect = fields["expect"][0]
    secrets = decoder_secrets(fields)
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


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """The vectors generate.py writes, run as a script from another directory and
    without PYTHONPATH (it finds the checkout's encpipe by itself): one run, which
    both tests below read."""
    made = tmp_path_factory.mktemp("generated")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([sys.executable, str(VECTORS / "generate.py"), str(made)], env=env, cwd=made, check=True)
    return made


def test_generator_reproduces_the_committed_vectors(generated):
    made = sorted(p.name for p in generated.glob("*.vec"))
    assert made == [p.name for p in ALL]
    for name in made:
        assert (generated / name).read_bytes() == (VECTORS / name).read_bytes(), name


def test_independent_decoder_opens_fresh_files():
    from cliutil import FAST_SCRYPT, KEY_A, seal

    data = os.urandom(70000)
    sealed = seal(data, {"ENCPIPE_KEY": KEY_A, "ENCPIPE_PASSPHRASE": "x"}, ["--chunk-size", "16K", *FAST_SCRYPT])
    assert independent_decoder.decode(sealed, keys=[bytes.fromhex(KEY_A)]) == data


def _text_forms():
    """(kind, text) pairs: good spellings and bad ones of each text form (README "Edge
    rules"): case, padding, unused bits, checksums, look-alikes, white space, prefixes."""
    from encpipe import textform

    kinds = {
        "public key": ("encpipe1", b"encpipe v1 x25519 public key", False),
        "identity": ("ENCPIPE-SECRET-KEY-1", b"encpipe v1 x25519 secret key", True),
        "verify key": ("encpipesign1", b"encpipe v2 ed25519 public key", False),
        "signing key": ("ENCPIPE-SIGNING-KEY-1", b"encpipe v2 ed25519 secret key", True),
    }
    from encpipe.signing import SigningKey
    from encpipe.x25519 import X25519Identity

    identity = X25519Identity(hashlib.sha256(b"text forms").digest())
    signer = SigningKey(hashlib.sha256(b"text forms signer").digest())
    keys = {
        "public key": [identity.recipient().public, bytes(32), (9).to_bytes(32, "little"),
                       (identity.recipient().public[:31] + bytes([identity.recipient().public[31] | 0x80])),
                       (2**255 - 19 + 9).to_bytes(32, "little")],
        "identity": [hashlib.sha256(b"text forms").digest(), bytes(32)],
        "verify key": [signer.verify_key.public, (1).to_bytes(32, "little"), b"\xff" * 32],
        "signing key": [hashlib.sha256(b"text forms signer").digest()],
    }
    for kind, (prefix, label, upper) in kinds.items():
        for key in keys[kind]:
            good = textform.encode(prefix, label, key, upper)
            body = good[len(prefix):]
            variants = [good, prefix + body.swapcase(), prefix.swapcase() + body, prefix.lower() + body,
                        good + "=", good + "======", good[:-1], good + body[-1], good[:len(prefix) + 5] + " " + body[5:],
                        prefix + "0" + body[1:],
                        prefix + "8" + body[1:], "\u00a0" + good, good + "\u2028", prefix + body[1:] + body[0]]
            variants += [c + good + c for c in " \t\r\n\v\f"]
            lower = body.lower()  # look-alikes whose upper case is the very letter: ı is I, ſ is S
            variants += [prefix + lower.replace(c, alike, 1) for c, alike in (("i", "\u0131"), ("s", "\u017f"))
                         if c in lower]
            variants += [good[:-1] + c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567abcdefghijklmnopqrstuvwxyz"]
            variants += [other + body for other, _, _ in kinds.values() if other != prefix]
            yield from ((kind, text) for text in variants)


def test_independent_decoder_agrees_on_text_forms():
    """Every text form that encpipe takes, the second decoder takes as the same key,
    and every one encpipe refuses (64), it refuses."""
    from encpipe import signing, x25519
    from encpipe.errors import UsageError

    ours = {"public key": lambda t: x25519.parse_recipient(t, "t").public,
            "identity": lambda t: x25519.parse_identity(t, "t")._secret,
            "verify key": lambda t: signing.parse_verify_key(t, "t").public,
            "signing key": lambda t: signing.parse_signing_key(t, "t")._seed}
    theirs = {"public key": independent_decoder.recipient_public, "identity": independent_decoder.identity_secret,
              "verify key": independent_decoder.verify_key, "signing key": independent_decoder.signing_seed}
    outcomes = {True: 0, False: 0}
    for kind, text in _text_forms():
        try:
            mine = ours[kind](text)
        except UsageError:
            mine = None
        try:
            other = theirs[kind](text)
        except ValueError:
            other = None
        assert mine == other, (kind, repr(text))
        outcomes[mine is not None] += 1
    assert outcomes[True] >= 40 and outcomes[False] >= 600, outcomes


def test_importing_the_vector_helpers_leaves_sys_path_alone():
    """vectorkit put the repository first on sys.path whenever it was imported
    (test_differential.py imports it): which encpipe every later import found
    depended on who imported it first. generate.py, run as a script, puts it
    there itself; an import changes nothing."""
    probe = ("import sys\nbefore = list(sys.path)\nimport vectors.vectorkit\n"
             "print(sys.path == before)")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = os.pathsep.join([str(VECTORS.parent), str(VECTORS.parent.parent)])
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert done.stdout == "True\n"


def test_the_generator_runs_as_a_script_without_pythonpath(generated):
    """generate.py finds the checkout's encpipe by itself, run from anywhere."""
    assert sorted(p.name for p in generated.glob("*.vec")) == [p.name for p in ALL]
