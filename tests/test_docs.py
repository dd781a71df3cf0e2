"""Docs are part of done: the README carries the exact usage text and exit codes,
and its Quick start opens with the two commands that set everything up."""

import re
from pathlib import Path

import encpipe.cli
from encpipe import errors

REPO = Path(__file__).parent.parent
README = (REPO / "README.md").read_text()


def test_readme_shows_the_exact_usage_text():
    assert "```\n" + encpipe.cli.USAGE.strip() + "\n```" in README


def test_every_exit_code_is_documented():
    codes = {cls.exit_code for cls in vars(errors).values() if isinstance(cls, type) and hasattr(cls, "exit_code")}
    documented = {int(code) for code in re.findall(r"^\| (\d+) \|", README, re.M)}
    assert codes <= documented


def quick_start():
    section = README.split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    return section.strip()


def test_quick_start_opens_with_the_two_commands_each_in_a_code_block():
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```$", quick_start(), re.M | re.S)
    assert blocks[:2] == ["scripts/encpipe-demo\n", "scripts/test\n"]
    assert re.match(r"```sh\nscripts/encpipe-demo\n```\n\n```sh\nscripts/test\n```\n", quick_start())


def test_ci_runs_exactly_the_readme_test_command():
    lines = [line for line in (REPO / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert lines == ["set -euo pipefail", 'cd "$(dirname "${BASH_SOURCE[0]}")/.."', "exec scripts/test"]
