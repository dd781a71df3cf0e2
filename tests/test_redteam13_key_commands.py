"""Key and passphrase commands that misbehave: a valid key printed by a command that
then fails, or is killed, or printed with more after it. Each is exit 66 (or 64
for a malformed line), one error line that names the command's fate and never the
key, nothing on standard output."""

import json

import pytest

from cliutil import KEY_A, assert_one_line_error, ok, run, seal, secret_file

DATA = b"secret rows\n"


@pytest.fixture(scope="module")
def sealed():
    return seal(DATA, {"ENCPIPE_KEY": KEY_A})


@pytest.mark.parametrize("option", ["--key-command", "--passphrase-command"])
def test_a_command_killed_by_a_signal_after_printing_a_key_is_66_and_says_so(sealed, option, tmp_path):
    """Before: `key command failed with status -9`, a status no shell shows."""
    key = secret_file(tmp_path, "k", KEY_A + "\n")
    done = run(["open", option, f"cat {key}; kill -9 $$"], sealed)
    assert (done.code, done.stdout) == (66, b""), done.stderr
    assert_one_line_error(done.stderr)
    assert "killed by signal 9" in done.stderr and "status -9" not in done.stderr, done.stderr
    assert KEY_A not in done.stderr


def test_a_valid_key_from_a_command_that_then_fails_is_not_used(sealed, tmp_path):
    key = secret_file(tmp_path, "k", KEY_A + "\n")
    done = run(["open", "--key-command", f"cat {key}; exit 1"], sealed)
    assert (done.code, done.stdout) == (66, b""), done.stderr
    assert_one_line_error(done.stderr)
    assert "status 1" in done.stderr and KEY_A not in done.stderr


def test_a_valid_key_followed_by_junk_is_refused_without_echoing_either(sealed, tmp_path):
    key = secret_file(tmp_path, "k", KEY_A + "\nhunter2-not-a-key\n")
    done = run(["open", "--key-command", f"cat {key}"], sealed)
    assert (done.code, done.stdout) == (64, b""), done.stderr
    assert_one_line_error(done.stderr)
    assert "line 2" in done.stderr and KEY_A not in done.stderr and "hunter2" not in done.stderr


def test_a_signing_key_given_twice_signs_once(tmp_path):
    """seal (and rewrap) --sign-key A --sign-key A, or A and a copy of it: one signature, not
    two identical ones (each takes a place of the 16 a file may hold)."""
    sign = str(tmp_path / "s.sign")
    ok(run(["keygen", "--sign", "-o", sign]))
    copy = secret_file(tmp_path, "copy.sign", open(sign).read())
    sealed = ok(run(["seal", "--sign-key", sign, "--sign-key", copy], DATA, {"ENCPIPE_KEY": KEY_A}))
    assert len(json.loads(ok(run(["inspect", "--json"], sealed)))["signers"]) == 1
    rewrapped = ok(run(["rewrap", "--key-file", secret_file(tmp_path, "k", KEY_A + "\n"), "--sign-key", sign,
                        "--sign-key", sign], seal(DATA, {"ENCPIPE_KEY": KEY_A})))
    assert len(json.loads(ok(run(["inspect", "--json"], rewrapped)))["signers"]) == 1
