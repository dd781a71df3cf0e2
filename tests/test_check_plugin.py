"""encpipe-check as the Nagios plugin guidelines want one (README, "Monitoring:
--metrics-file and encpipe-check"): a usage error is UNKNOWN (3) with one line
on standard output; each database's age is performance data after a `|`; and
-t/--timeout bounds the run, which then stops every child it started.

Before, a usage error exited 64 with nothing on standard output: Nagios showed
"(No output on stdout)" and "return code of 64 is out of bounds"."""

import io
import os
import subprocess

import pytest

from cliutil import assert_one_line_error
from test_backup_dir import ENV

from encpipe.backup.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECK = os.path.join(ROOT, "scripts", "encpipe-check")


def check(*argv, env=ENV, stdin=None):
    out, err = io.BytesIO(), io.StringIO()
    code = main(["check", *argv], stdout=out, stderr=err, env=dict(env))
    return code, out.getvalue().decode(), err.getvalue()


USAGE_ERRORS = [  # DIR: the test's directory
    (["--max-age", "24", "--bogus", "DIR"], "unknown option --bogus"),
    (["--warn-age", "12", "DIR"], "check needs --max-age HOURS"),
    (["--max-age", "x", "DIR"], "--max-age must be a number from 0 to 1000000, not 'x'"),
    (["--max-age", "24", "--warn-age", "-1", "DIR"], "--warn-age must be a number from 0 to 1000000, not '-1'"),
    (["--max-age", "24", "--key-file", "k.key", "DIR"],
     "--key-file is read only with --verify: without it, check reads names and headers only"),
    (["--max-age", "24", "--metrics-file", "", "DIR"], "--metrics-file needs a value, not an empty one"),
    (["--max-age", "24", "--verify", "--signer", "encpipesign1x", "DIR"], None),  # a malformed --signer
    (["--max-age", "24", "--dir", "offsite,password=hunter2:b"],
     "--dir: the remote's connection string gives password: a credential would be on rclone's command line, where "
     "other users can read it"),
]


@pytest.mark.parametrize("argv, message", USAGE_ERRORS, ids=[" ".join(u[0]) for u in USAGE_ERRORS])
def test_a_usage_error_is_unknown_with_one_line_on_standard_output(tmp_path, argv, message):
    code, out, err = check(*[str(tmp_path) if a == "DIR" else a for a in argv])
    assert code == 3, err
    lines = err.splitlines()
    assert_one_line_error(err, "encpipe-check")  # standard error as before
    said = lines[0].removeprefix("encpipe-check: error: ")
    if message is not None:
        assert said == message
    assert out == f"UNKNOWN: {said}\n"
    assert "hunter2" not in out + err


def test_the_script_s_usage_error_is_unknown_and_its_help_still_0(tmp_path):
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": ROOT, "HOME": str(tmp_path)}
    done = subprocess.run([CHECK, "--bogus"], env=env, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (3, "UNKNOWN: unknown option --bogus\n")
    assert done.stderr == "encpipe-check: error: unknown option --bogus\nencpipe-check: hint: see encpipe-check --help\n"
    done = subprocess.run([CHECK, "--help"], env=env, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.startswith("encpipe-check: ")


def test_a_usage_error_of_another_command_is_still_64(tmp_path):
    out, err = io.BytesIO(), io.StringIO()
    assert main(["list", "--bogus", str(tmp_path)], stdout=out, stderr=err, env={}) == 64
    assert out.getvalue() == b""

