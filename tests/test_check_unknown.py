"""encpipe-check exits as a Nagios plugin whatever stops it: 0 to 3, and a first
line on standard output.

Its own statuses are 0, 1, 2 (each with its lines) and 3 for a usage error
(tests/test_check_plugin.py). The exits every encpipe script shares were not
a plugin's: 69 (a missing package), 70 (a bug), 74 (out of memory, a standard
output that cannot be written) and 141 (its reader gone), each with nothing on
standard output, which Nagios shows as `(No output on stdout)` and `return code
of 69 is out of bounds`. Each is now UNKNOWN (3), its one error line (on standard
error as before) the status line too: `UNKNOWN: <it>`.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cliutil import assert_one_line_error

REPO = Path(__file__).resolve().parent.parent
CHECK = REPO / "scripts" / "encpipe-check"
MISSING = 'raise ModuleNotFoundError("No module named {0!r}", name={0!r})\n'
# a docopt whose parse raises `error`: a bug met before check's own run (70), memory that ran out there (74)
RAISING = "class DocoptExit(SystemExit):\n    pass\n\n\ndef docopt(*args, **kwargs):\n    raise {0}\n"


def _check(tmp_path, docopt=None, **kwargs):
    """encpipe-check of tmp_path; with `docopt`, the text of a docopt module in its place."""
    shim = tmp_path / "shim" / "docopt"
    shim.mkdir(parents=True)
    if docopt is not None:
        (shim / "__init__.py").write_text(docopt)
    else:
        shim.rmdir()
    env = {"PYTHONPATH": str(tmp_path / "shim"), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, str(CHECK), "--max-age", "24", str(tmp_path)], env=env,
                          stdin=subprocess.DEVNULL, timeout=60, **kwargs)


@pytest.mark.parametrize("docopt, was, said", [
    (MISSING.format("docopt"), 69, "cannot import the Python module docopt"),
    (RAISING.format('RuntimeError("a bug")'), 70, "internal error: RuntimeError at "),
    (RAISING.format("MemoryError"), 74, "out of memory"),
], ids=["missing package", "internal error", "out of memory"])
def test_a_failure_of_the_script_itself_is_unknown_with_its_error_as_the_status_line(tmp_path, docopt, was, said):
    done = _check(tmp_path, docopt, capture_output=True)
    err = done.stderr.decode()
    assert_one_line_error(err, prog="encpipe-check")
    error = err.splitlines()[0].removeprefix("encpipe-check: error: ")
    assert error.startswith(said), err
    assert (done.returncode, done.stdout) == (3, f"UNKNOWN: {error}\n".encode()), (was, err)


def test_a_standard_output_whose_reader_is_gone_is_unknown_too(tmp_path):
    """141 before (nothing can reach that reader, not even the UNKNOWN line): 3."""
    (tmp_path / "shop_20250101T000000Z.sql.enc").write_bytes(b"not sealed")
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = _check(tmp_path, stdout=write_end, stderr=subprocess.PIPE)
    finally:
        os.close(write_end)
    assert (done.returncode, done.stderr) == (3, b"")
