"""Two restores of the same database at once: neither loses what the other kept.

Restore A is loading its dump into its scratch database when restore B of the same
DBNAME runs from start to end (a psql stand-in runs B as A's load begins). B must leave
A's scratch database alone (A's run holds its lock: not a killed run's), swap its own
in and keep the live database as a copy; A then swaps its own in and keeps B's as a
copy of its own: every database there was is still there, under a name both said."""

import os
import re
import subprocess

from spies import python_head
from test_backup_restore import RESTORE, backup, databases, dump, ensure_small, script_env

TARGET = "sametarget_db"

STAND_IN = '''{head}
import os, subprocess, sys
real = {real!r}
if "-0" not in sys.argv and "-f" in sys.argv and not os.path.exists({done!r}):  # A's load
    open({done!r}, "w").close()
    other = subprocess.run({other!r}, env={env!r}, stdin=subprocess.DEVNULL, capture_output=True)
    with open({done!r}, "wb") as f:
        f.write(b"%d\\n" % other.returncode + other.stdout + b"\\0" + other.stderr)
os.execv(real, [real] + sys.argv[1:])
'''


def _copies(pg):
    return sorted(d for d in databases(pg) if d.startswith(TARGET + "_pre_restore_"))


def test_a_restore_of_the_same_database_meanwhile_loses_nothing(pg, tools, key_file, tmp_path):
    first = ensure_small(pg, "sametarget_first", rows=3)
    second = ensure_small(pg, "sametarget_second", rows=7)
    path_a, _ = backup(pg, tools, str(tmp_path / "a"), first, "--no-globals", "--key-file", key_file)
    path_b, _ = backup(pg, tools, str(tmp_path / "b"), second, "--no-globals", "--key-file", key_file)
    for name in [TARGET, *_copies(pg)]:
        pg.dropdb(name)
    pg.createdb(TARGET)
    pg.psql("CREATE TABLE live (x int); INSERT INTO live VALUES (42)", db=TARGET)
    live = dump(pg, TARGET)
    env = script_env(pg, tools)
    done = str(tmp_path / "other")
    folder = tmp_path / "standin"
    folder.mkdir()
    (folder / "psql").write_text(STAND_IN.format(
        head=python_head("-S"), real=pg.bin("psql"), done=done, env=env,
        other=[RESTORE, "--no-globals", "--key-file", key_file, path_b, TARGET]))
    (folder / "psql").chmod(0o755)
    try:
        a = subprocess.run([RESTORE, "--no-globals", "--key-file", key_file, path_a, TARGET],
                           env={**env, "PATH": os.pathsep.join([str(folder), env["PATH"]])},
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
        status, rest = open(done, "rb").read().split(b"\n", 1)
        b_out, b_err = rest.split(b"\0", 1)
        copy = r"previous database kept as (%s_pre_restore_[0-9]{8}T[0-9]{6}Z)\n" % TARGET
        assert (int(status), b_out) == (0, b""), b_err.decode()
        b_copy = re.fullmatch(r"encpipe-restore: restored %s into %s; %s" % (re.escape(path_b), TARGET, copy),
                              b_err.decode().splitlines(keepends=True)[-1])
        assert b_copy, b_err.decode()
        assert "dropped scratch" not in b_err.decode()  # A's, alive, left alone
        assert (a.returncode, a.stdout) == (0, b""), a.stderr.decode()
        a_copy = re.fullmatch(r"encpipe-restore: restored %s into %s; %s" % (re.escape(path_a), TARGET, copy),
                              a.stderr.decode().splitlines(keepends=True)[-1])
        assert a_copy, a.stderr.decode()
        assert _copies(pg) == sorted([b_copy[1], a_copy[1]]) and b_copy[1] != a_copy[1]
        assert dump(pg, b_copy[1]) == live  # the live database, kept by B
        assert dump(pg, a_copy[1]) == dump(pg, second)  # B's restore, kept by A
        assert dump(pg, TARGET) == dump(pg, first)
        assert [d for d in databases(pg) if d.startswith("encpipe_restore_")] == []
    finally:
        for name in [TARGET, *_copies(pg)]:
            pg.dropdb(name)
