"""A number longer than Python's 4300-digit int() limit, in an option, a
/dev/fd/N name or a variable, is refused in one line with its exit status, as
any number out of range: never a traceback."""

import os
import subprocess
import sys

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

LONG = "9" * 5000


@pytest.mark.parametrize("argv, status", [
    (["seal", "--threads", LONG], 64),
    (["open", "--threads", LONG], 64),
    (["seal", "--chunk-size", LONG], 64),
    (["seal", "--work-factor", LONG, "-p"], 64),
    (["seal", "--key-file", "/dev/fd/" + LONG], 66),
])
def test_a_long_number_is_one_line_and_its_status(tmp_path, argv, status):
    key = tmp_path / "k"
    key.write_text("00" * 32 + "\n")
    key.chmod(0o600)
    extra = [] if "--key-file" in argv else ["--key-file", str(key)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCPIPE_")}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.run([sys.executable, "-m", "encpipe", *argv, *extra], stdin=subprocess.DEVNULL,
                          capture_output=True, env=env, cwd=tmp_path, timeout=60)
    assert (proc.returncode, proc.stdout) == (status, b"")
    assert len(proc.stderr.splitlines()) == 1 and b"Traceback" not in proc.stderr


def test_a_long_number_in_a_scripts_option(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCPIPE_")}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "encpipe-check"), "--max-age", LONG,
                           str(tmp_path)], stdin=subprocess.DEVNULL, capture_output=True, env=env, timeout=60)
    assert proc.returncode == 3 and b"Traceback" not in proc.stderr  # the plugin's UNKNOWN: a usage error
    assert proc.stderr.splitlines()[0].startswith(b"encpipe-check: error: --max-age must be")
    assert proc.stdout.startswith(b"UNKNOWN: --max-age must be")
