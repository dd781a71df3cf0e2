"""Rules of the secret-handling code that a hand-made mutation of it showed no test held
(each change passed the suite): the ends of the ranges README gives (ENCPIPE_COMMAND_TIMEOUT
at most 86400, a secret source up to 1 MiB), a key command's standard input from
/dev/null, and which secret variables and descriptor modes an encpipe that a script runs
is given (fdsecrets.FdSecrets.spawn, holding)."""

import contextlib
import os
import signal
import stat
import subprocess
import sys

import pytest

from cliutil import FAST_SCRYPT, KEY_A, assert_one_line_error, ok, run, secret_file
from encpipe import fdsecrets, keys

DATA = b"data\n" * 10
LIMIT = keys.MAX_SECRET_BYTES  # README: "read up to 1 MiB"


def test_a_command_timeout_of_86400_seconds_is_accepted():
    """ENCPIPE_COMMAND_TIMEOUT may be 86400 (README: "at most 86400"), not only less."""
    sealed = ok(run(["seal", "--key-command", f"echo {KEY_A}"], DATA, env={"ENCPIPE_COMMAND_TIMEOUT": "86400"}))
    assert ok(run(["open"], sealed, env={"ENCPIPE_KEY": KEY_A})) == DATA


def test_a_passphrase_file_of_exactly_one_mib_is_read_and_one_byte_more_is_refused(tmp_path):
    """A passphrase file of 1 MiB is a passphrase; 1 MiB and one byte is 64, one line, nothing on stdout."""
    whole = secret_file(tmp_path, "whole", b"p" * LIMIT)
    sealed = ok(run(["seal", *FAST_SCRYPT, "--passphrase-file", whole], DATA))
    assert ok(run(["open", "--passphrase-file", whole], sealed)) == DATA
    over = secret_file(tmp_path, "over", b"p" * (LIMIT + 1))
    result = run(["seal", *FAST_SCRYPT, "--passphrase-file", over], DATA)
    assert (result.code, result.stdout) == (64, b""), result.stderr
    assert_one_line_error(result.stderr)
    assert result.stderr.splitlines()[0] == (
        f"encpipe: error: {over}: more than {LIMIT} bytes; not a key or passphrase source")


def test_a_key_command_reads_dev_null_not_the_data_on_standard_input():
    """A key command's standard input is /dev/null: what it reads there never takes the data sealed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCPIPE_")}
    done = subprocess.run([sys.executable, "-m", "encpipe", "seal", "--key-command", f"cat >/dev/null; echo {KEY_A}"],
                          input=DATA, capture_output=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert ok(run(["open"], done.stdout, env={"ENCPIPE_KEY": KEY_A})) == DATA


def test_a_key_command_that_closes_its_output_and_runs_on_is_ended_at_its_timeout():
    """A command that closes its output and runs on is still ended at ENCPIPE_COMMAND_TIMEOUT: 66, one line."""
    command = "exec >/dev/null; sleep 3600"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCPIPE_")}
    proc = subprocess.Popen([sys.executable, "-m", "encpipe", "seal", "--key-command", command],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**env, "ENCPIPE_COMMAND_TIMEOUT": "1"}, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the mutant's leftover shell and sleep (its own session)
        proc.wait()
    assert (proc.returncode, out) == (66, b""), err
    assert err.decode() == f"encpipe: error: key command timed out after 1 s: {command}\n"


def _child_env(argv, env):
    """The environment FdSecrets.spawn gives the encpipe `argv`, from `env`."""
    seen = {}

    def start(argv, pass_fds, env):
        seen.update(env)

    secrets = fdsecrets.FdSecrets({}, ())
    try:
        secrets.spawn(argv, start=start, env=env)
    finally:
        os.close(secrets.null)
    return seen


SECRETS = {"ENCPIPE_KEY": KEY_A, "ENCPIPE_PASSPHRASE": "a passphrase", "BACKUP_ENCRYPTION_KEY": "the old key"}


def test_the_previous_tools_key_goes_to_an_encpipe_with_legacy_alone():
    """BACKUP_ENCRYPTION_KEY reaches an encpipe a script runs only when its argv has --legacy."""
    plain = _child_env(["encpipe", "open", "FILE"], {**SECRETS, "HOME": "/h"})
    assert (plain.get("BACKUP_ENCRYPTION_KEY"), plain["ENCPIPE_KEY"], plain["HOME"]) == (None, KEY_A, "/h")
    legacy = _child_env(["encpipe", "open", "--legacy", "FILE"], SECRETS)
    assert legacy["BACKUP_ENCRYPTION_KEY"] == "the old key"


@pytest.mark.parametrize("words", [["--passphrase-fd=3"], ["--passphrase-fd", "3"], ["--key-file=/k"],
                                   ["--passphrase-command=cmd"], ["-p"]])
def test_an_encpipe_given_a_key_option_gets_no_secret_variable(words):
    """An encpipe a script runs with a key option (a --passphrase-fd too) gets none of encpipe's secret variables."""
    env = _child_env(["encpipe", "open", *words, "FILE"], {**SECRETS, "HOME": "/h"})
    assert {name: env.get(name) for name in SECRETS} == dict.fromkeys(SECRETS), env
    assert env["HOME"] == "/h"


@pytest.mark.parametrize("mode", [0o640, 0o604])
def test_a_secret_lent_on_a_descriptor_keeps_the_group_and_other_bits_of_its_file(tmp_path, mode):
    """The copy of a secret file given as /dev/fd/N has that file's group and other bits: encpipe warns of it."""
    path = secret_file(tmp_path, "key", KEY_A + "\n", mode=mode)
    fd = os.open(path, os.O_RDONLY)
    secrets = fdsecrets.FdSecrets({"--key-file": [f"/dev/fd/{fd}"]}, ["--key-file"])
    try:
        secrets.keep_lent()  # as encpipe-backup keeps it, and reads it in its own process
        assert stat.S_IMODE(os.fstat(fd).st_mode) & 0o077 == mode & 0o077
        warnings = []
        assert keys.read_secret_file(f"/dev/fd/{fd}", warnings.append) == (KEY_A + "\n").encode()
        assert warnings == [f"/dev/fd/{fd} is readable by group or others: chmod 600 /dev/fd/{fd}"]
    finally:
        os.close(fd)
        os.close(secrets.null)
