"""The server's disk fills while a restore loads: the restore fails (1), its scratch
database is dropped, which frees the space again, and the live database is as it was
and takes writes. The live database's tablespace is a small tmpfs, where the scratch
database of an in-place restore is created too (its default tablespace)."""

import os
import pwd
import subprocess
import tempfile

import pytest

from pgcluster import SERVER_OS_USER_WHEN_ROOT
from test_backup_restore import RESTORE, backup, databases, dump, run, script_env

SOURCE, TARGET, SPACE = "diskfull_source", "diskfull_target", "diskfull_small"


@pytest.fixture
def small_space(pg):
    """Tablespace SPACE on a tmpfs of 24 MiB (the live database and a fresh one take some 15), and TARGET in it; all gone after the test."""
    point = tempfile.mkdtemp(prefix="encpipe-diskfull-", dir="/tmp")
    os.chmod(point, 0o755)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m,mode=700", "encpipe-test", point],
                             capture_output=True)
    assert mounted.returncode == 0, mounted.stderr  # root, as the suite runs
    try:
        if os.geteuid() == 0:
            owner = pwd.getpwnam(SERVER_OS_USER_WHEN_ROOT)
            os.chown(point, owner.pw_uid, owner.pw_gid)
        pg.psql(f"CREATE TABLESPACE {SPACE} LOCATION '{point}'")
        pg.psql(f"CREATE DATABASE {TARGET} TABLESPACE {SPACE}")
        yield point
    finally:
        for name in databases(pg):
            if name == TARGET or name.startswith((TARGET + "_pre_restore_", "encpipe_restore_")):
                pg.dropdb(name)
        pg.psql(f"DROP TABLESPACE IF EXISTS {SPACE}")
        subprocess.run(["umount", "-l", point], capture_output=True)
        os.rmdir(point)


def test_a_server_disk_that_fills_during_the_load_leaves_the_live_database(pg, tools, key_file, tmp_path,
                                                                           small_space):
    if SOURCE not in databases(pg):
        pg.createdb(SOURCE)
        pg.psql("CREATE TABLE t (id int, v text); INSERT INTO t SELECT g, md5(g::text) || md5((-g)::text) "
                "FROM generate_series(1, 250000) AS g", db=SOURCE)  # some 30 MiB: more than is left
    path, _ = backup(pg, tools, str(tmp_path / "b"), SOURCE, "--no-globals", "--key-file", key_file)
    pg.psql("CREATE TABLE live (x int); INSERT INTO live VALUES (42)", db=TARGET)
    before = dump(pg, TARGET)
    done = run([RESTORE, "--no-globals", "--key-file", key_file, path, TARGET], script_env(pg, tools))
    err = done.stderr.decode()
    assert (done.returncode, done.stdout) == (1, b""), err
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert errors == [f"encpipe-restore: error: restoring {path} failed; database {TARGET} is unchanged"], err
    assert "53100" in err, err  # psql's line: disk_full
    assert dump(pg, TARGET) == before
    assert [d for d in databases(pg) if d.startswith(("encpipe_restore_", TARGET + "_pre_restore_"))] == []
    pg.psql("INSERT INTO live SELECT g FROM generate_series(1, 10000) AS g", db=TARGET)  # its space back
    assert pg.psql("SELECT count(*) FROM live", db=TARGET).strip() == "10001"
