"""A role the globals file has and the server lacked when the restore began, created by
someone else (the operator, a second restore of the same cluster's backups) before the
restore's own CREATE ROLE: that role is theirs, never the restore's.

The restore's CREATE ROLE transaction then fails (`ERROR: role ... already exists`, rolled
back); the restore asked the server which of the roles it had, found that one, took it for
one it had created itself (`psql failed (...) once the server had created the roles`,
`created roles: ...`), went on, and when it failed later its undo dropped it: the
operator's role, password and all, gone. An ERROR from the server is the transaction
rolled back: nothing was created, said so (1), and nothing of theirs is dropped.
A psql stand-in on PATH (test_restore_swap_outcome's rules) runs the other session's SQL
just before the restore's step, and may die before another."""

import re
import subprocess

import pytest

from test_backup_restore import RESTORE, backup, databases, dump, ensure_small
from test_restore_role_outcome import _roles
from test_restore_swap_outcome import SWAP, TARGET, WAIT, _fresh_target, _scratch, _with_stand_in

pytestmark = pytest.mark.usefixtures("swap_leftovers_dropped")

STAND_IN = '''{head}
import os, signal, subprocess, sys
real = {real!r}
if "-0" not in sys.argv:  # not a statement of run_sql
    os.execv(real, [real] + sys.argv[1:])
data = sys.stdin.buffer.read()
for number, (when, words, sql) in enumerate({rules!r}):
    mark = {done!r} + str(number)
    if all(word.encode() in data for word in words) and not os.path.exists(mark):
        open(mark, "w").close()  # once each
        if when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        subprocess.run([real, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", "postgres", "-c", sql], check=True)
        if when == "other, then dies":  # before the step reached the server
            os.kill(os.getpid(), signal.SIGKILL)
        break
sys.exit(subprocess.run([real] + sys.argv[1:], input=data).returncode)
'''

THEIRS = ("SCRAM-SHA-256$4096:b3BlcmF0b3Itc2FsdC0xNg==$b29vb29vb29vb29vb29vb29vb29vb29vb29vb29vb28=:"
          "cHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHA=")  # the operator's verifier, as stored


ROLE, OTHER = "rolestaken_owner", "rolestaken_other"


@pytest.fixture(scope="module")
def role_backup(pg, tools, key_file, tmp_path_factory):
    """A backup whose globals file has ROLE and OTHER, which the cluster then lacks."""
    db = ensure_small(pg, "rolestaken_source", rows=10)
    pg.psql(f"DROP ROLE IF EXISTS {ROLE}, {OTHER}; CREATE ROLE {ROLE} NOLOGIN; CREATE ROLE {OTHER} NOLOGIN")
    try:
        path, _ = backup(pg, tools, str(tmp_path_factory.mktemp("rolestaken") / "b"), db, "--key-file", key_file)
    finally:
        pg.psql(f"DROP ROLE {ROLE}, {OTHER}")
    return path, db


def _restore(pg, tools, key_file, path, tmp_path, rules):
    return subprocess.run([RESTORE, "--key-file", key_file, path, TARGET], capture_output=True, timeout=WAIT,
                          env=_with_stand_in(pg, tools, tmp_path, rules, STAND_IN))


def _role(pg, name=ROLE):
    return pg.psql("SELECT rolcanlogin, rolpassword FROM pg_authid WHERE rolname = '%s'" % name).strip()


@pytest.fixture
def role_dropped(pg):
    yield
    pg.psql("DROP ROLE IF EXISTS %s, %s" % (ROLE, OTHER))


def _globals_file(path):
    return re.sub(r"\.(sql|sql\.zst|sql\.gz|dump)\.enc$", ".globals.sql.enc", path)


@pytest.mark.parametrize("later", [[], [("before", SWAP, "")]], ids=["restore-ends-there", "swap-fails-later"])
def test_a_role_another_session_created_first_is_not_the_restores_to_drop(pg, tools, key_file, role_backup, tmp_path,
                                                                          role_dropped, later):
    path, _ = role_backup
    before, roles = _fresh_target(pg), _roles(pg)
    assert ROLE not in roles
    operator = "CREATE ROLE %s LOGIN PASSWORD '%s'" % (ROLE, THEIRS)
    done = _restore(pg, tools, key_file, path, tmp_path, [("other", ["CREATE ROLE", ROLE], operator)] + later)
    err = done.stderr.decode()
    assert done.stdout == b"", err
    assert done.returncode == 1, err
    assert err == ('encpipe-restore: error: cannot create the missing roles from %s: ERROR:  role "%s" already '
                   'exists; nothing was changed\n' % (_globals_file(path), ROLE)), err
    assert _role(pg) == "t|" + THEIRS  # theirs, as they made it
    assert _roles(pg) == roles | {ROLE}
    assert dump(pg, TARGET) == before and _scratch(pg) == []
    assert not [d for d in databases(pg) if d.startswith(TARGET + "_pre_restore_")]


def test_roles_of_which_another_session_made_some_while_the_step_s_psql_died_are_not_the_restores(
        pg, tools, key_file, role_backup, tmp_path, role_dropped):
    """Another session created OTHER, then the step's psql died before the server saw it;
    the server has OTHER only. The step's transaction makes all its roles or none: OTHER
    is another's. Before, the restore took it for its own (`psql failed (psql exited -9)
    once the server had created the roles`, `created roles: rolestaken_other`), and its
    undo dropped it when the swap then failed."""
    path, _ = role_backup
    before, roles = _fresh_target(pg), _roles(pg)
    operator = "CREATE ROLE %s LOGIN PASSWORD '%s'" % (OTHER, THEIRS)
    done = _restore(pg, tools, key_file, path, tmp_path,
                    [("other, then dies", ["CREATE ROLE", ROLE], operator), ("before", SWAP, "")])
    err = done.stderr.decode()
    assert (done.returncode, done.stdout) == (1, b""), err
    assert err == ("encpipe-restore: error: cannot create the missing roles from %s: psql exited -9; nothing was "
                   "changed\n" % _globals_file(path)), err
    assert _role(pg, OTHER) == "t|" + THEIRS
    assert _roles(pg) == roles | {OTHER}
    assert dump(pg, TARGET) == before and _scratch(pg) == []


def test_every_missing_role_made_by_another_session_first_is_still_not_the_restores(
        pg, tools, key_file, role_backup, tmp_path, role_dropped):
    """Another session created all the roles the restore lacked just before its step: the
    server refused the step (ERROR, rolled back) yet holds every role of it. Not the
    restore's: nothing was changed, and its undo drops none of them when it fails later."""
    path, _ = role_backup
    before, roles = _fresh_target(pg), _roles(pg)
    operator = "CREATE ROLE %s LOGIN PASSWORD '%s'; CREATE ROLE %s LOGIN PASSWORD '%s'" % (ROLE, THEIRS, OTHER, THEIRS)
    done = _restore(pg, tools, key_file, path, tmp_path, [("other", ["CREATE ROLE", ROLE], operator),
                                                          ("before", SWAP, "")])
    err = done.stderr.decode()
    assert (done.returncode, done.stdout) == (1, b""), err
    assert err == ('encpipe-restore: error: cannot create the missing roles from %s: ERROR:  role "%s" already '
                   'exists; nothing was changed\n' % (_globals_file(path), OTHER)), err
    assert (_role(pg), _role(pg, OTHER)) == ("t|" + THEIRS, "t|" + THEIRS)
    assert _roles(pg) == roles | {ROLE, OTHER}
    assert dump(pg, TARGET) == before and _scratch(pg) == []
