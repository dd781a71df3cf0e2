"""Rules of the key sources, each in one place: a key command that dies by a signal,
one that prints one byte over the limit (a limit doubled passed the whole suite
before: only endless commands were tried), a bad ENCPIPE_COMMAND_TIMEOUT, an empty
ENCPIPE_SCRYPT_BUDGET. Each is refused with one error line, its exit status,
nothing on stdout."""

import pytest

from cliutil import FAST_SCRYPT, KEY_A, assert_one_line_error, run, run_process

DATA = b"data\n" * 10


def _refused(result, code, line):
    assert (result.code, result.stdout) == (code, b""), result.stderr
    assert_one_line_error(result.stderr)
    assert result.stderr.splitlines()[0] == line, result.stderr


def test_a_key_command_killed_by_a_signal_after_printing_a_key_is_refused():
    """What it printed before it died is no key: a status -9 is no success."""
    command = f"echo {KEY_A}; kill -9 $$"
    done = run_process(["seal", "--key-command", command], DATA)
    assert (done.returncode, done.stdout) == (66, b""), done.stderr
    assert done.stderr.decode() == f"encpipe: error: key command killed by signal 9: {command}\n"


def test_a_key_command_that_prints_one_byte_over_the_limit_is_refused():
    command = "head -c 1048577 /dev/zero | tr -c a a"
    _refused(run(["seal", "--key-command", command], DATA), 64,
             f"encpipe: error: key command printed more than 1048576 bytes: {command}")


@pytest.mark.parametrize("value", ["0", "-1", "abc", "", "1e3", "86401"])
def test_a_command_timeout_that_is_no_positive_number_of_seconds_is_refused(value):
    result = run(["seal", "--key-command", f"echo {KEY_A}"], DATA, env={"ENCPIPE_COMMAND_TIMEOUT": value})
    assert (result.code, result.stdout) == (64, b""), result.stderr
    assert_one_line_error(result.stderr)
    assert result.stderr.startswith("encpipe: error: ENCPIPE_COMMAND_TIMEOUT must be a positive number of seconds")


def test_an_empty_scrypt_budget_is_refused_not_the_default(tmp_path):
    (tmp_path / "pass").write_text("correct horse\n")
    (tmp_path / "pass").chmod(0o600)
    sealed = run(["seal", "--passphrase-file", str(tmp_path / "pass"), *FAST_SCRYPT], DATA)
    assert sealed.code == 0, sealed.stderr
    result = run(["open", "--passphrase-file", str(tmp_path / "pass")], sealed.stdout,
                 env={"ENCPIPE_SCRYPT_BUDGET": ""})
    assert (result.code, result.stdout) == (64, b""), result.stderr
    assert_one_line_error(result.stderr)
    assert result.stderr.startswith("encpipe: error: ENCPIPE_SCRYPT_BUDGET "), result.stderr
