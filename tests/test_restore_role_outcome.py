"""encpipe-restore's role steps (creating the globals file's missing roles; dropping
them again when the restore fails) said and recorded as the server made them.

Their psql ran in the restore's own process group, and a psql that failed was taken
for a step not made: one killed once the server had committed the CREATE ROLEs made
the restore say "cannot create the missing roles ...; nothing was changed" and not
record them (a later failure's undo left them); one killed once the server had
committed the DROP ROLEs said "could not drop the roles this restore created". They
are now steps as the swap is (pgclient.Step): the server is asked which of the roles
it has. A psql stand-in on PATH (test_restore_swap_outcome's) dies just before or
just after the real psql ran a given step."""

import subprocess

import pytest

from test_backup_restore import RESTORE, backup, databases, dump, ensure_small
from test_restore_swap_outcome import SWAP, TARGET, WAIT, _fresh_target, _hits, _scratch, _with_stand_in

ROLE = "roleout_owner"
CREATE = ["CREATE ROLE", ROLE]
DROP = ["DROP ROLE", ROLE]

pytestmark = pytest.mark.usefixtures("swap_leftovers_dropped", "roles_left_dropped")


def _roles(pg):
    return set(pg.psql("SELECT rolname FROM pg_roles").split())


@pytest.fixture
def roles_left_dropped(pg):
    """Any role a test's restore created (ROLE, and the other roles of the globals file
    the cluster has lost since) dropped again after it."""
    before = _roles(pg)
    yield
    for name in sorted(_roles(pg) - before):
        pg.psql(f'DROP ROLE IF EXISTS "{name}"')


@pytest.fixture(scope="module")
def role_backup(pg, tools, key_file, tmp_path_factory):
    """A backup whose globals file has ROLE, which the cluster then lacks."""
    db = ensure_small(pg, "roleout_source", rows=10)
    pg.psql(f"DROP ROLE IF EXISTS {ROLE}; CREATE ROLE {ROLE} NOLOGIN")
    try:
        path, _ = backup(pg, tools, str(tmp_path_factory.mktemp("roleout") / "b"), db, "--key-file", key_file)
    finally:
        pg.psql(f"DROP ROLE {ROLE}")
    return path, db


def _restore(pg, tools, key_file, path, tmp_path, rules):
    done = subprocess.run([RESTORE, "--key-file", key_file, path, TARGET],
                          env=_with_stand_in(pg, tools, tmp_path, rules), capture_output=True, timeout=WAIT)
    assert done.stdout == b"", done.stderr.decode()
    return done.returncode, done.stderr.decode()


def _created_line(err):
    lines = [line for line in err.splitlines() if line.startswith("encpipe-restore: created roles: ")]
    assert len(lines) == 1, err
    return lines[0].split(": ", 2)[2].split(", ")


def test_roles_whose_psql_dies_once_the_server_created_them_are_recorded_and_dropped_on_failure(
        pg, tools, key_file, role_backup, tmp_path):
    """The CREATE ROLEs committed, then their psql died; the swap then failed (its psql
    died before the server saw it). Before: "cannot create the missing roles ...;
    nothing was changed", and ROLE left on the server. Now they are said created, and
    the undo drops them."""
    path, _ = role_backup
    before, roles = _fresh_target(pg), _roles(pg)
    status, err = _restore(pg, tools, key_file, path, tmp_path, [("after", CREATE), ("before", SWAP)])
    assert _hits(tmp_path) == ["hit0", "hit1"], err
    assert status == 1, err
    assert "encpipe-restore: warning: psql failed (psql exited -9) once the server had created the roles\n" in err
    assert ROLE in _created_line(err)
    assert "\nencpipe-restore: dropped the roles this restore had created again\n" in err
    assert f" but could not swap it in (psql exited -9); database {TARGET} is unchanged\n" in err
    assert _roles(pg) == roles and dump(pg, TARGET) == before and _scratch(pg) == []


def test_roles_whose_psql_dies_once_the_server_created_them_let_the_restore_go_on(pg, tools, key_file, role_backup,
                                                                                 tmp_path):
    """The CREATE ROLEs committed, then their psql died: the restore goes on (0), a warning
    said. Before: 1, "nothing was changed", with ROLE created."""
    path, source = role_backup
    _fresh_target(pg)
    status, err = _restore(pg, tools, key_file, path, tmp_path, [("after", CREATE)])
    assert _hits(tmp_path) == ["hit0"], err
    assert status == 0, err
    lines = err.splitlines()
    assert lines[0] == "encpipe-restore: warning: psql failed (psql exited -9) once the server had created the roles"
    assert ROLE in _created_line(err) and ROLE in _roles(pg)
    assert lines[-1].startswith(f"encpipe-restore: restored {path} into {TARGET}; previous database kept as "), err
    assert dump(pg, TARGET) == dump(pg, source)


def test_roles_whose_psql_dies_before_the_server_created_them_are_said_not_created(pg, tools, key_file, role_backup,
                                                                                  tmp_path):
    """The CREATE ROLEs never reached the server: nothing changed, said so (1)."""
    path, _ = role_backup
    before, roles = _fresh_target(pg), _roles(pg)
    status, err = _restore(pg, tools, key_file, path, tmp_path, [("before", CREATE)])
    assert _hits(tmp_path) == ["hit0"], err
    assert status == 1, err
    assert err.startswith("encpipe-restore: error: cannot create the missing roles from "), err
    assert err.endswith(": psql exited -9; nothing was changed\n"), err
    assert _roles(pg) == roles and dump(pg, TARGET) == before and _scratch(pg) == []


def test_roles_whose_drop_s_psql_dies_once_the_server_dropped_them_are_said_dropped(pg, tools, key_file,
                                                                                    role_backup, tmp_path):
    """The restore failed (its swap's psql died first), and its DROP ROLEs committed, then
    their psql died. Before: "could not drop the roles this restore created (...)", the
    roles gone."""
    path, _ = role_backup
    before, roles = _fresh_target(pg), _roles(pg)
    status, err = _restore(pg, tools, key_file, path, tmp_path, [("before", SWAP), ("after", DROP)])
    assert _hits(tmp_path) == ["hit0", "hit1"], err
    assert status == 1, err
    assert ROLE in _created_line(err)
    assert "\nencpipe-restore: dropped the roles this restore had created again\n" in err
    assert "could not drop" not in err
    assert _roles(pg) == roles and dump(pg, TARGET) == before and _scratch(pg) == []


def test_a_swap_into_a_new_name_that_fails_says_the_database_was_not_created(pg, tools, key_file, role_backup,
                                                                              tmp_path):
    """TARGET did not exist: the swap's psql died before the server saw it. Before:
    "... could not swap it in (...); database TARGET is unchanged", of a database there
    never was, and a hint at its connections. Now "was not created", no hint; nothing is
    left, the roles made for it dropped."""
    path, _ = role_backup
    _fresh_target(pg)
    pg.dropdb(TARGET)
    roles = _roles(pg)
    status, err = _restore(pg, tools, key_file, path, tmp_path, [("before", SWAP)])
    assert _hits(tmp_path) == ["hit0"], err
    assert status == 1, err
    errors = [line for line in err.splitlines() if line.startswith("encpipe-restore: error: ")]
    assert len(errors) == 1 and errors[0].endswith(
        f" but could not swap it in (psql exited -9); database {TARGET} was not created"), err
    assert "unchanged" not in err and "in use?" not in err, err  # nor the hint at its connections
    assert TARGET not in databases(pg) and _scratch(pg) == [] and _roles(pg) == roles
