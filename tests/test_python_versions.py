"""Nothing in encpipe or its scripts is newer than the oldest Python setup.cfg admits.

The suite runs on one interpreter; encpipe-backup and encpipe-restore once failed
every run on Python 3.9 and 3.10 (Popen's process_group and locale.getencoding are
3.11's) while it passed. vermin reads the code for what each Python version added
(modules, functions, attributes, keyword arguments, syntax); what it cannot see
(Popen(process_group=)) goes through encpipe/compat.py, whose fallbacks
tests/test_compat.py takes on any interpreter. A use of a newer name that is
guarded (hasattr) is marked `# novermin`."""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VERMIN = [sys.executable, "-c", "import sys, vermin; sys.exit(vermin.main())"]  # its console script's entry


def _oldest():
    with open(os.path.join(ROOT, "setup.cfg"), encoding="utf-8") as f:
        return re.search(r"^python_requires = >=(3\.\d+)$", f.read(), re.M).group(1)


def test_nothing_newer_than_the_oldest_python_admitted():
    oldest = _oldest()
    said = subprocess.run([*VERMIN, f"--target={oldest}-", "--no-tips", "--violations",
                           "--eval-annotations", "--no-make-paths-absolute", "encpipe", "scripts"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert said.returncode == 0, said.stdout + said.stderr
    assert f"Minimum required versions: {oldest}\n" in said.stdout, said.stdout


def test_the_check_finds_a_newer_name(tmp_path):
    """The check above could fail: what it missed before, it finds."""
    (tmp_path / "new.py").write_text("import locale\nprint(locale.getencoding())\n")
    said = subprocess.run([*VERMIN, f"--target={_oldest()}-", "--no-tips", "--violations",
                           str(tmp_path / "new.py")], capture_output=True, text=True, timeout=60)
    assert said.returncode != 0 and "'locale.getencoding' member requires !2, 3.11" in said.stdout, said.stdout
