"""pathsearch.which answers as shutil.which, which the scripts used before (and whose
import cost each of their starts about 2 ms)."""

import shutil

import pytest

from encpipe.pathsearch import which


@pytest.fixture
def places(tmp_path, monkeypatch):
    for name, mode in (("a/tool", 0o755), ("b/tool", 0o755), ("a/plain", 0o644), ("b/plain", 0o755)):
        path = tmp_path / name
        path.parent.mkdir(exist_ok=True)
        path.write_text("#!/bin/sh\n")
        path.chmod(mode)
    (tmp_path / "a" / "dir").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_which_answers_as_shutil_which(places, monkeypatch):
    a, b = places / "a", places / "b"
    for path in ["{a}:{b}", "{b}:{a}", "{a}:{a}:{b}", ":{b}", "", "/nowhere", None]:
        if path is None:
            monkeypatch.delenv("PATH", raising=False)
        else:
            monkeypatch.setenv("PATH", path.format(a=a, b=b))
        for command in ["tool", "plain", "dir", "missing", "a/tool", "a/plain", "a/dir", f"{a}/tool", "./a/tool", "sh"]:
            assert which(command) == shutil.which(command), (path, command)
