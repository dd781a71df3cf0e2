"""encpipe-restore's steps that commit (pgcommit) whose psql could not connect.

psql that fails to connect (`psql: error: connection to server ... failed: ...`:
a server restarting, its connections all taken, a password refused) sent
nothing: the step was not made. The look at the server that follows a failed
step, which then most often cannot connect either, made the restore say "cannot
tell whether it was swapped in" of a swap never sent, where it had said
"unchanged" (and "could not drop ..., and the server could not be asked" of a
drop never sent). A step whose psql did not connect is now said not made, as
before, without asking; the server is asked only when psql was connected."""

import subprocess

import pytest

from test_backup_restore import RESTORE, backup, drop_matching, dump, ensure_small
from test_restore_swap_outcome import (DROP_OLD, SWAP, TARGET, WAIT, _copies, _fresh_target, _hits, _scratch,
                                       _with_stand_in)

ASK = ["pg_terminate_backend", "application_name"]  # the look at the server

pytestmark = pytest.mark.usefixtures("swap_leftovers_dropped")


@pytest.fixture(scope="module")
def restorable(pg, tools, key_file, tmp_path_factory):
    db = ensure_small(pg, "swapout_source", rows=100)
    path, _ = backup(pg, tools, str(tmp_path_factory.mktemp("unreached") / "b"), db, "--key-file", key_file)
    return path, db


def test_a_swap_whose_psql_cannot_connect_is_said_not_made(pg, tools, key_file, restorable, tmp_path):
    path, _ = restorable
    before = _fresh_target(pg)
    env = _with_stand_in(pg, tools, tmp_path, [("refuse", SWAP), ("refuse", ASK)])
    done = subprocess.run([RESTORE, "--key-file", key_file, path, TARGET], env=env, capture_output=True, timeout=WAIT)
    err = done.stderr.decode()
    assert _hits(tmp_path) == ["hit0"], err  # the server not asked
    assert (done.returncode, done.stdout) == (1, b""), err
    lines = err.splitlines()
    assert len(lines) == 2, err
    assert lines[0].startswith("encpipe-restore: error: restored into encpipe_restore_"), err
    assert " but could not swap it in (psql: error: connection to server on socket " in lines[0], err
    assert lines[0].endswith(f"); database {TARGET} is unchanged"), err
    assert lines[1].startswith("encpipe-restore: hint: "), err
    assert dump(pg, TARGET) == before
    assert _copies(pg) == [] and _scratch(pg) == []


def test_a_drop_old_whose_psql_cannot_connect_is_said_not_made(pg, tools, key_file, restorable, tmp_path):
    path, source = restorable
    _fresh_target(pg)
    env = _with_stand_in(pg, tools, tmp_path, [("refuse", DROP_OLD), ("refuse", ASK)])
    done = subprocess.run([RESTORE, "--drop-old", "--key-file", key_file, path, TARGET], env=env,
                          capture_output=True, timeout=WAIT)
    err = done.stderr.decode()
    copies = _copies(pg)
    assert _hits(tmp_path) == ["hit0"], err
    assert (done.returncode, done.stdout) == (1, b""), err
    assert len(copies) == 1, (copies, err)
    assert err.startswith(f"encpipe-restore: error: restored {path} into {TARGET}, but could not drop the previous "
                          f"database {copies[0]} (psql: error: connection to server on socket "), err
    assert "could not be asked" not in err and len(err.splitlines()) == 1, err
    assert dump(pg, TARGET) == dump(pg, source)
    drop_matching(pg, lambda d: d.startswith(TARGET))
