"""Acceptance 4: every hint names only options that the command it advises takes.

One row per way to get each hint; the options a hint names are checked against
the usage text of the command that printed it (or of the `encpipe OTHER`
command the hint suggests).
"""

import io
import re

import pytest

from cliutil import KEY_A, key_env, run, seal, secret_file
from encpipe import usage
from encpipe.cli import main
from encpipe.legacy import seal_legacy
from encpipe.signing import SigningKey

SEALED = seal(b"hello " * 100)
SIGNING_KEY = str(SigningKey.generate())


class _Terminal(io.BytesIO):
    def isatty(self):
        return True


def _to_terminal(argv, stdin, env, which="stdout"):
    err = io.StringIO()
    streams = {"stdin": _Terminal(stdin) if which == "stdin" else io.BytesIO(stdin),
               "stdout": _Terminal() if which == "stdout" else io.BytesIO()}
    code = main(argv, **streams, stderr=err, env=env)
    return code, err.getvalue()


def _legacy_file():
    out = io.BytesIO()
    seal_legacy(io.BytesIO(b"old data " * 50), out, bytes.fromhex(KEY_A))
    return out.getvalue()


CASES = [
    # (argv, stdin, env, a terminal: False, True (stdout) or "stdin")
    (["seal"], b"x", {}, False),
    (["open"], SEALED, {}, False),
    (["inspect", "--verify"], SEALED, {}, False),
    (["rewrap"], SEALED, {}, False),
    (["keyid"], b"", {}, False),
    (["seal", "--key-file", "-"], b"x", {}, False),
    (["open", "--key-file", "-"], SEALED, {}, False),
    (["inspect", "--verify", "--passphrase-fd", "0"], SEALED, {}, False),
    (["rewrap", "--key-file", "/dev/stdin"], SEALED, {}, False),
    (["seal"], b"x", key_env(), True),
    (["rewrap"], SEALED, key_env(), True),
    (["open"], _legacy_file(), key_env(), False),
    (["inspect"], _legacy_file(), key_env(), False),
    (["open", "--legacy"], SEALED, key_env(), False),
    (["open", "--legacy"], _legacy_file(), {}, False),
    (["inspect", "--legacy", "--verify"], _legacy_file(), {}, False),
    (["open", "--keyfile", "x"], b"", {}, False),
    (["seal", "extra"], b"", {}, False),
    (["open", "--key-file", "/nonexistent"], SEALED, {}, False),  # no hint: the path is named
    (["seal", "--key-file", "SIGNING"], b"x", {}, False),  # a signing key where a key belongs
    (["open", "--key-file", "SIGNING"], SEALED, {}, False),
    (["inspect", "--verify", "--key-file", "SIGNING"], SEALED, {}, False),
    (["rewrap", "--key-file", "SIGNING"], SEALED, {}, False),
    (["open"], SEALED, key_env(), "stdin"),
    (["inspect"], SEALED, key_env(), "stdin"),
    (["rewrap"], SEALED, key_env(), "stdin"),
]


def _hint(result_stderr):
    lines = [line for line in result_stderr.splitlines() if line.startswith("encpipe: hint: ")]
    return lines[0][len("encpipe: hint: "):] if lines else None


# ids of the arguments only: pytest 7.0 put a sealed input's random bytes in the id, so
# that each xdist worker collected other tests, and the run stopped before its first test
@pytest.mark.parametrize("argv, stdin, env, terminal", CASES,
                         ids=[f"{n}-{'_'.join(case[0])}" for n, case in enumerate(CASES)])
def test_a_hint_names_only_options_its_command_takes(argv, stdin, env, terminal, tmp_path):
    if "SIGNING" in argv:
        argv = [secret_file(tmp_path, "sign.key", SIGNING_KEY + "\n") if a == "SIGNING" else a for a in argv]
    if terminal:
        code, stderr = _to_terminal(argv, stdin, env, "stdin" if terminal == "stdin" else "stdout")
    else:
        result = run(argv, stdin, env)
        code, stderr = result.code, result.stderr
    assert code != 0
    hint = _hint(stderr)
    if argv[-1] == "/nonexistent":
        assert hint is None
        return
    assert hint is not None, (argv, stderr)
    suggested = re.search(r"\bencpipe (\w+)", hint)
    command = suggested.group(1) if suggested and suggested.group(1) in usage.COMMANDS else argv[0]
    named = set(re.findall(r"(?<![\w-])--?[a-z][\w-]*", hint))
    assert named <= usage.options_of(command), (argv, hint)


def test_the_no_key_hint_of_open_names_identity_not_recipient():
    hint = _hint(run(["open"], SEALED, {}).stderr)
    assert "--identity" in hint and "--recipient" not in hint
    assert "--recipient" in _hint(run(["seal"], b"x", {}).stderr)


def test_rewrap_to_a_terminal_suggests_in_place_not_o():
    _, stderr = _to_terminal(["rewrap"], SEALED, key_env())
    assert "--in-place FILE" in stderr and "-o" not in stderr


# --- acceptance 6: a secret given in place of a path is never echoed -------------------

SECRETS = [KEY_A, "0123456789abcdef" * 2, "ENCPIPE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ",
           "correct horse battery staple", "hunter2"]


@pytest.mark.parametrize("secret", SECRETS)
@pytest.mark.parametrize("argv", [["open", "--key-file"], ["open", "--identity"], ["seal", "--passphrase-file"],
                                  ["inspect", "--verify", "--key-file"], ["keyid", "--key-file"],
                                  ["rewrap", "--key-file", "KEY", "--add-key-file"],
                                  ["rewrap", "--key-file", "KEY", "--add-passphrase-file"]])
def test_a_key_given_instead_of_a_path_is_refused_unseen(argv, secret, tmp_path):
    argv = [secret_file(tmp_path, "key", KEY_A) if a == "KEY" else a for a in argv]
    result = run([*argv, secret], SEALED, {})
    assert (result.code, result.stdout) == (64, b"")
    assert secret not in result.stderr and secret[:8] not in result.stderr
    assert "may be a key or passphrase instead of a path" in result.stderr


def test_a_missing_file_with_a_path_is_still_named():
    result = run(["open", "--key-file", "/etc/encpipe/missing.key"], SEALED, {})
    assert result.code == 66 and "/etc/encpipe/missing.key" in result.stderr


# --- acceptance 5: a terminal is not input --------------------------------------------


def _elapsed(argv, stdin):
    import subprocess
    import sys
    import time

    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "encpipe", *argv], stdin=stdin, capture_output=True, timeout=30,
                          env={"PATH": "/usr/bin:/bin", "ENCPIPE_KEY": KEY_A, "PYTHONPATH": ":".join(sys.path)})
    return done, time.monotonic() - start


@pytest.mark.parametrize("argv", [["open"], ["inspect"], ["inspect", "--verify"], ["rewrap"], ["open", "-"]])
def test_a_terminal_on_stdin_is_refused_at_once(argv):
    import os
    import pty

    leader, follower = pty.openpty()
    try:
        _, baseline = _elapsed(["--version"], follower)
        done, elapsed = _elapsed(argv, follower)
    finally:
        os.close(follower)
        os.close(leader)
    assert (done.returncode, done.stdout) == (64, b"")
    stderr = done.stderr.decode()
    assert "encpipe: error: refusing to read encrypted data from a terminal" in stderr
    assert "redirect standard input" in stderr
    assert elapsed < baseline + 1.0
