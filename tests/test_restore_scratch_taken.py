"""A failed restore drops only what it created: when its CREATE DATABASE of the
scratch database fails because a database of that name is there already (made by
someone else just before: here a psql stand-in on PATH runs the same CREATE
first), the restore fails in one line and leaves that database alone.
pgrestore.create gives its undo the scratch database to drop only once its
CREATE succeeded: else that undo ran DROP DATABASE ... WITH (FORCE) on the
other one."""

import re
import subprocess
import sys

import pytest

from spies import python_head
from test_backup_restore import RESTORE, databases, python_env, script_env

STAND_IN = '''{head}
import subprocess, sys
real = {real!r}
data = sys.stdin.buffer.read() if "-0" in sys.argv else None  # a statement of run_sql's, on standard input
if data is not None and b"CREATE DATABASE" in data and b"encpipe_restore_" in data and b"DROP" not in data:
    subprocess.run([real] + sys.argv[1:], input=data, capture_output=True)  # someone else's, made first
if data is None:
    import os
    os.execv(real, [real] + sys.argv[1:])
sys.exit(subprocess.run([real] + sys.argv[1:], input=data).returncode)
'''

pytestmark = pytest.mark.usefixtures("swap_leftovers_dropped")


def test_a_scratch_database_another_made_first_is_not_dropped(pg, tools, key_file, tmp_path):
    folder = tmp_path / "standin"
    folder.mkdir()
    (folder / "psql").write_text(STAND_IN.format(head=python_head("-S"), real=pg.bin("psql")))
    (folder / "psql").chmod(0o755)
    sealed = subprocess.run([sys.executable, "-m", "encpipe", "seal", "--key-file", key_file],
                            input=b"CREATE TABLE t (x int);\n", capture_output=True, check=True,
                            env=python_env()).stdout
    path = tmp_path / "dump.sql.enc"
    path.write_bytes(sealed)
    before = databases(pg)
    env = script_env(pg, tools)
    env["PATH"] = f"{folder}:{env['PATH']}"
    proc = subprocess.run([RESTORE, "--no-globals", "--key-file", key_file, str(path), "scratch_taken"], env=env,
                          capture_output=True, timeout=120)
    stderr = proc.stderr.decode()
    assert (proc.returncode, proc.stdout) == (1, b""), stderr
    errors = [line for line in stderr.splitlines() if ": error: " in line]  # the --no-globals warning besides
    assert len(errors) == 1 and re.fullmatch(
        r'encpipe-restore: error: cannot create the scratch database (encpipe_restore_\w+) \(ERROR:  database '
        r'"\1" already exists\); database scratch_taken was not created', errors[0]), stderr
    made = databases(pg) - before
    assert len(made) == 1 and next(iter(made)).startswith("encpipe_restore_")  # the other's, still there
