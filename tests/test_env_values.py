"""Environment variables the scripts read, set to something that is not what
they expect: one error line and 64, never a traceback."""

import subprocess
from pathlib import Path

import pytest

from cliutil import KEY_A, seal
from fuzz.craft import clean_env

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("script, args", [
    ("encpipe-rotate", ["--old-key-file", "KEY", "--new-key-file", "KEY", "DIR"]),
    ("encpipe-migrate", ["--key-file", "KEY", "DIR"]),
    ("encpipe-restore", ["--key-file", "KEY", "FILE", "db"]),
])
def test_an_encpipe_command_with_an_unbalanced_quote_is_64(tmp_path, script, args):
    folder = tmp_path / "backups"
    folder.mkdir(mode=0o700)
    key = tmp_path / "key"
    key.write_text(KEY_A + "\n")
    key.chmod(0o600)
    sealed = folder / "db_20200101T000000Z.sql.enc"
    sealed.write_bytes(seal(b"SELECT 1;\n"))
    names = {"DIR": str(folder), "KEY": str(key), "FILE": str(sealed)}
    env = clean_env({"PYTHONPATH": str(REPO), "ENCPIPE": 'python3 -m "encpipe', "PGHOST": str(tmp_path)})
    done = subprocess.run([str(REPO / "scripts" / script), *[names.get(a, a) for a in args]], capture_output=True,
                          env=env, timeout=60, stdin=subprocess.DEVNULL)
    assert (done.returncode, done.stdout) == (64, b""), done.stderr
    assert done.stderr.decode().splitlines() == [f"{script}: error: ENCPIPE: cannot split it into a command: "
                                                 "No closing quotation"]
    assert sorted(p.name for p in folder.iterdir()) == [sealed.name]
