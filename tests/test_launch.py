"""`python -m encpipe.launch PROG MODULE [ARG...]`, how encpipe-backup and
encpipe-restore run their module: its arguments are written in encpipe's own
scripts, so a wrong one is encpipe's bug (or a broken installation): one line
and exit 70, nothing on stdout, never a traceback."""

import subprocess
import sys

from pathlib import Path

import pytest

from cliutil import assert_one_line_error

REPO = Path(__file__).resolve().parent.parent


def launch(args):
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "encpipe.launch", *args], capture_output=True, env=env,
                          stdin=subprocess.DEVNULL, timeout=60)


@pytest.mark.parametrize("module", ["encpipe.no_such_module", "no_such_package.sub", "encpipe.errors",
                                    "", "../encpipe", ".pgbackup", "encpipe..pgbackup"])
def test_a_module_that_is_not_a_script_is_one_line_and_70(module):
    """A MODULE that cannot be found (encpipe.no_such_module), or that has no
    main() (encpipe.errors), or that is no module name at all, printed a
    traceback (ModuleNotFoundError, AttributeError, ValueError, TypeError)."""
    done = launch(["encpipe-probe", module, "--dir", "x"])
    assert (done.returncode, done.stdout) == (70, b""), done.stderr.decode()
    assert_one_line_error(done.stderr, prog="encpipe-probe")
    assert repr(module) in done.stderr.decode()


@pytest.mark.parametrize("args", [[], ["encpipe-probe"]])
def test_too_few_arguments_are_one_line_and_70(args):
    """Without PROG or MODULE: an IndexError's traceback."""
    done = launch(args)
    assert (done.returncode, done.stdout) == (70, b""), done.stderr.decode()
    assert_one_line_error(done.stderr, prog="encpipe")
    assert "PROG MODULE" in done.stderr.decode()


def test_a_module_with_a_main_still_runs_it():
    done = launch(["encpipe-list", "encpipe.backup.cli", "list", "--help"])
    assert (done.returncode, done.stderr) == (0, b"") and b"\nUsage:\n" in done.stdout
