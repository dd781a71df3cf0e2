"""Docs are part of done: the README carries the exact usage text and exit codes."""

import re
from pathlib import Path

import encpipe.cli
from encpipe import errors

README = (Path(__file__).parent.parent / "README.md").read_text()


def test_readme_shows_the_exact_usage_text():
    assert "```\n" + encpipe.cli.USAGE.strip() + "\n```" in README


def test_every_exit_code_is_documented():
    codes = {cls.exit_code for cls in vars(errors).values() if isinstance(cls, type) and hasattr(cls, "exit_code")}
    documented = {int(code) for code in re.findall(r"^\| (\d+) \|", README, re.M)}
    assert codes <= documented


def test_readme_test_command_is_what_ci_runs():
    ci = (Path(__file__).parent.parent / ".ci" / "run").read_text()
    command = "\n    python3 -m pytest -q\n"
    assert command in README and command in ci
