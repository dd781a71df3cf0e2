"""Every script in scripts/ answers -h and --help with its own usage, under its
own name, exits 0, and does nothing else: no file in its directory or in TMPDIR,
no other program's name passed off as its own."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = sorted(p for p in (REPO / "scripts").iterdir() if p.is_file() and os.access(p, os.X_OK))


def test_the_scripts_are_found():
    assert {"encpipe-demo", "encpipe-backup", "encpipe-list", "test"} <= {p.name for p in SCRIPTS}


@pytest.mark.parametrize("flag", ["-h", "--help"])
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_help_is_its_own_usage_and_does_nothing_else(script, flag, tmp_path):
    cwd, tmp = tmp_path / "cwd", tmp_path / "tmp"
    cwd.mkdir()
    tmp.mkdir()
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "PYTHONPATH": str(REPO), "TMPDIR": str(tmp),
           "HOME": str(tmp_path), "PG_BINDIR": str(tmp_path / "no-postgres")}
    done = subprocess.run([str(script), flag], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    text = done.stdout
    assert script.name in text and "usage" in text.lower(), text
    assert "encpipe-backups" not in text
    assert "==>" not in text  # the demo's steps
    assert list(cwd.iterdir()) == [] and list(tmp.iterdir()) == []
