"""`--` ends the options of encpipe open and inspect, and of encpipe-list, -verify,
-prune and -check (the other scripts took it already): a FILE or DIR whose name
starts with `-` follows it. Before, `open --key-file K -- -x.enc` was 64 (invalid
arguments), `open --key-file K --` took `--` for a file (66, cannot open --), and
`encpipe-verify ... -- DIR` said `cannot read --`."""

import json
import os
import subprocess
import sys

import pytest

from cliutil import key_env, ok, run, seal

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = b"a name that starts with a dash\n"


@pytest.fixture
def dashed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "-x.enc").write_bytes(seal(DATA))
    (tmp_path / "-d").mkdir()
    return tmp_path


def test_open_and_inspect_take_a_file_named_after_the_end_of_options(dashed):
    assert ok(run(["open", "--", "-x.enc"], env=key_env())) == DATA
    assert b"version: 2" in ok(run(["inspect", "--", "-x.enc"]))
    assert ok(run(["open", "--"], stdin=(dashed / "-x.enc").read_bytes(), env=key_env())) == DATA


def test_without_the_end_of_options_such_a_name_is_still_an_option(dashed):
    done = run(["open", "-x.enc"], env=key_env())
    assert (done.code, done.stdout) == (64, b"")


@pytest.mark.parametrize("script, args, expected", [
    ("encpipe-list", [], []),
    ("encpipe-verify", ["--allow-empty"], {"ok": True, "files": 0, "verified": 0, "failed": 0, "not_verified": 0,
                                          "results": []}),
])
def test_the_scripts_take_a_directory_named_after_the_end_of_options(dashed, script, args, expected):
    key = dashed / "k.key"
    key.write_text("ab" * 32 + "\n")
    key.chmod(0o600)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("ENCPIPE")}, "PYTHONPATH": ROOT,
           "ENCPIPE_PYTHON": sys.executable}
    argv = [os.path.join(ROOT, "scripts", script), *args, *(["--key-file", str(key)] if script != "encpipe-list"
                                                             else []), "--", "-d"]
    done = subprocess.run(argv, capture_output=True, env=env, timeout=120)
    assert (done.returncode, done.stderr) == (0, b""), done.stderr
    assert json.loads(done.stdout) == expected
