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


BUGGY = '''
def main(argv):
    raise ValueError("hunter2 " + " ".join(argv))  # a bug whose words hold a secret
'''


def test_a_bug_in_a_scripts_module_is_one_line_and_70_never_its_words(tmp_path):
    """A bug (an exception no code expected) in a script's module printed a
    traceback: several lines, and its message, which may hold what the bug was
    handling (a passphrase, a key). Now one line naming its kind and where it was
    raised, never its words, and exit 70; the clean-up on the way out has run."""
    (tmp_path / "buggy_script.py").write_text(BUGGY)
    env = {"PYTHONPATH": f"{REPO}:{tmp_path}", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "encpipe.launch", "encpipe-probe", "buggy_script", "s3cret"],
                          capture_output=True, env=env, stdin=subprocess.DEVNULL, timeout=60)
    assert (done.returncode, done.stdout) == (70, b"")
    assert done.stderr == (b"encpipe-probe: error: internal error: ValueError at buggy_script.py:3 "
                           b"(a bug of encpipe's: please report it with the command that met it)\n")


def test_a_bug_in_encpipe_itself_is_one_line_and_70_never_its_words():
    code = ("import encpipe.cli as c\n"
            "def main():\n"
            "    raise KeyError('hunter2')\n"
            "c.main = main\n"
            "c.run()\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, stdin=subprocess.DEVNULL, timeout=60,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert (done.returncode, done.stdout) == (70, b"")
    assert done.stderr == (b"encpipe: error: internal error: KeyError at <string>:3 "
                           b"(a bug of encpipe's: please report it with the command that met it)\n")
