"""The repository's top level is the project's fixed layout: setup.cfg,
pyproject.toml, README.md, LICENSE, encpipe/, tests/, scripts/ and dotfiles.
What the package installs beside its modules (man pages, the bash completion,
the systemd units) lives under scripts/."""

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LAYOUT = {"setup.cfg", "pyproject.toml", "README.md", "LICENSE", "encpipe", "tests", "scripts"}


def test_the_top_level_holds_only_the_fixed_layout():
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    top = {name.split("/", 1)[0] for name in listed.decode().split("\0") if name}
    assert sorted(name for name in top - LAYOUT if not name.startswith(".")) == []
    assert LAYOUT <= top
