"""encpipe-restore signalled at its commit, the swap: the outcome and the status agree.

The swap (one transaction: DBNAME renamed to its _pre_restore_ copy, the scratch
database to DBNAME) runs in psql. A SIGTERM that came just as psql had
committed it ended the restore with 143 and "nothing written, DBNAME as it
was", while DBNAME was the restored database; one that came while psql ran it
killed psql, and whether the server had committed was anybody's guess. Now
psql's answer is waited for: once DBNAME is swapped in, the restore is done,
says so, and its status is 0, whatever signal comes; a swap that failed is
still the failure it was.

The restore is signalled right after psql's communicate() of the swap returns
(a sitecustomize.py on PYTHONPATH, as in tests/test_signal_commits.py)."""

import pytest

from test_backup_restore import RESTORE, backup, databases, drop_matching, dump, ensure_small, script_env
from test_signal_commits import IDS, SIGNALS, run, signalled_env

SWAP = "len(args) > 1 and 'RENAME TO' in args[1] and 'encpipe_restore_' in args[1]"  # psql's input: the swap


@pytest.fixture(scope="module")
def source_backup(pg, tools, key_file, tmp_path_factory):
    db = ensure_small(pg, "commit_source", rows=100)
    path, _ = backup(pg, tools, str(tmp_path_factory.mktemp("commit") / "b"), db, "--key-file", key_file)
    return path, db


@pytest.mark.parametrize("sig", SIGNALS, ids=IDS)
@pytest.mark.parametrize("existing", [True, False], ids=["over-existing", "new"])
def test_restore_signalled_just_after_its_swap_says_it_restored_and_exits_0(pg, tools, key_file, source_backup,
                                                                           tmp_path, sig, existing):
    path, source = source_backup
    target = "commit_target"
    drop_matching(pg, lambda d: d.startswith(target) or d.startswith("encpipe_restore_"))
    if existing:
        pg.createdb(target)
        pg.psql("CREATE TABLE old_stuff (x int); INSERT INTO old_stuff VALUES (1);", db=target)
        before = dump(pg, target)
    env = signalled_env(tmp_path, "communicate", SWAP, sig, script_env(pg, tools), owner="subprocess.Popen")
    done = run([RESTORE, "--key-file", key_file, path, target], env)
    stderr = done.stderr.decode()
    copies = sorted(d for d in databases(pg) if d.startswith(target + "_pre_restore_"))
    assert (done.returncode, done.stdout) == (0, b""), stderr
    if existing:
        assert len(copies) == 1 and stderr == (f"encpipe-restore: restored {path} into {target}; previous database "
                                               f"kept as {copies[0]}\n")
        assert dump(pg, copies[0]) == before
    else:
        assert copies == [] and stderr == f"encpipe-restore: restored {path} into new database {target}\n"
    assert dump(pg, target) == dump(pg, source)
    assert not [d for d in databases(pg) if d.startswith("encpipe_restore_")]
    drop_matching(pg, lambda d: d.startswith(target))
