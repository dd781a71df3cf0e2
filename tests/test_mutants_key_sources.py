"""Two rules of the key sources no test held (a change to each passed the suite): a
key command that prints one byte over the limit (only endless commands were tried),
and an ENCPIPE_COMMAND_TIMEOUT that is no positive number of seconds. Each is refused
with one error line, 64, nothing on stdout. (A key command killed by a signal:
tests/test_redteam13_key_commands.py; an empty ENCPIPE_SCRYPT_BUDGET:
tests/test_scrypt_budget.py.)"""

import pytest

from cliutil import KEY_A, assert_one_line_error, run

DATA = b"data\n" * 10


def _refused(result, code, line):
    assert (result.code, result.stdout) == (code, b""), result.stderr
    assert_one_line_error(result.stderr)
    assert result.stderr.splitlines()[0] == line, result.stderr


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
