"""A store that fails part-way through a dump larger than every pipe buffer, while
pg_dump (and zstd) are blocked writing into full pipes: encpipe-backup fails at
once, 74 with one line naming the store's error, nothing on standard output, no
child of it left running, nothing a listing would see. The read end of the last
pipe, closed once the seal failed (pgdump.Children.wait), is what ends them: left
open, the run waited for ever on a pg_dump blocked in a write.

The store's file cannot grow past RLIMIT_FSIZE (SIGXFSZ ignored: a write fails
with EFBIG, as on a full disk); pipes, which pg_dump and zstd write, know no such limit.
"""

import os
import resource
import signal
import subprocess
import time

import pytest

from procs import members
from test_backup_restore import BACKUP, databases, script_env

DB = "bk_large_dump"
STORED_MAX = 256 << 10  # bytes the backup file may take: far less than the dump
TIMEOUT = 60


@pytest.fixture(scope="module")
def large_db(pg):
    """A database whose dump is some 24 MB of hexadecimal text (12 MB or so through zstd):
    more than the pipes (1 MiB each), zstd's and the seal's buffers and STORED_MAX together."""
    if DB not in databases(pg):
        pg.createdb(DB)
        pg.psql("CREATE TABLE t (id int, v text);"
                "INSERT INTO t SELECT g, md5(random()::text) || md5(random()::text) || md5(random()::text) "
                "FROM generate_series(1, 200000) AS g;", db=DB)
    return DB


def _limited():
    resource.setrlimit(resource.RLIMIT_FSIZE, (STORED_MAX, STORED_MAX))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


# rclone's stand-in: an empty remote whose upload takes STORED_MAX bytes, then fails
RCLONE = f"""#!/bin/sh
case "$1" in
lsjson) echo '[]' ;;
rcat) head -c {STORED_MAX} >/dev/null; echo "Failed to rcat: quota exceeded" >&2; exit 1 ;;
deletefile) exit 4 ;;
*) exit 1 ;;
esac
"""


def _backup(tmp_path, store, compress, db):
    """encpipe-backup's argv, the environment's additions and the directory a listing sees."""
    directory = tmp_path / "b"
    directory.mkdir()
    if store == "dir":
        return [BACKUP, "--dir", str(directory), "--compress", compress, db], {}, directory
    rclone = tmp_path / "rclone"
    rclone.write_text(RCLONE)
    rclone.chmod(0o755)
    return [BACKUP, "--to", "offsite:b", "--compress", compress, db], {"RCLONE": str(rclone)}, directory


@pytest.mark.parametrize("store, compress", [("dir", "zstd"), ("dir", "none"), ("remote", "zstd")])
def test_a_store_that_fails_mid_dump_ends_the_run_at_once(pg, tools, key_file, large_db, tmp_path, store, compress):
    argv, env, directory = _backup(tmp_path, store, compress, large_db)
    run = subprocess.Popen([*argv[:1], "--key-file", key_file, "--no-globals", "--format", "plain", *argv[1:]],
                           env=script_env(pg, tools, **env), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, preexec_fn=_limited, start_new_session=True)
    try:
        out, err = run.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        for pid in members("session", run.pid):
            os.kill(pid, signal.SIGKILL)
        run.communicate()
        pytest.fail(f"encpipe-backup still running {TIMEOUT} s after its store failed")
    deadline = time.monotonic() + 5  # a child reaped by the run is gone: none should be left at all
    while (left := members("session", run.pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert left == []
    assert (run.returncode, out) == (74, b"")
    lines = err.decode().splitlines()
    assert len(lines) == 1, lines
    # the file named (seal's `cannot write output` read as standard output's)
    where, why = (f"store {directory}", "File too large") if store == "dir" else ("upload offsite:b", "quota exceeded")
    assert lines[0].startswith(f"encpipe-backup: error: backup of {large_db} failed (status 74): cannot {where}/"
                               ".encpipe-tmp."), lines[0]
    assert why in lines[0] and lines[0].endswith("; nothing was stored"), lines[0]
    assert os.listdir(directory) == []
