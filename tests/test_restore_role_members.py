"""Roles the server has are left exactly as they are, their memberships too.

A globals file records the memberships of the backed-up cluster: `GRANT grp TO alice`.
Restored on a server that lacks grp but has a role alice of its own (another cluster's
alice, the operator's), the restore created grp and ran that GRANT, because grp was a
role it created: the server's alice gained every right of grp, which the globals file
may have given anything (here pg_read_server_files: any file the server may read).
Now a membership whose member the server had is left out, with a warning naming it;
a role the restore creates still gets its memberships, in new and in existing roles."""

import pytest

from test_backup_restore import backup, databases, dump, ensure_small, restore

SOURCE, TARGET = "rolemembers_source", "rolemembers_target"
GROUP, THEIRS, NEW = "rolemembers_grp", "rolemembers_alice", "rolemembers_bob"
MEMBERS = ("SELECT g.rolname || '>' || m.rolname FROM pg_auth_members a JOIN pg_roles g ON g.oid = a.roleid "
           "JOIN pg_roles m ON m.oid = a.member WHERE m.rolname LIKE 'rolemembers_%' ORDER BY 1")


@pytest.fixture
def members_backup(pg, tools, key_file, tmp_path):
    """A backup whose globals file has GROUP (with pg_read_server_files), THEIRS and NEW
    its members; the server then keeps THEIRS (without GROUP) and lacks GROUP and NEW."""
    db = ensure_small(pg, SOURCE, rows=5)
    pg.psql(f"DROP ROLE IF EXISTS {NEW}, {GROUP}, {THEIRS}; CREATE ROLE {GROUP} NOLOGIN; "
            f"GRANT pg_read_server_files TO {GROUP}; CREATE ROLE {THEIRS} LOGIN; CREATE ROLE {NEW} LOGIN; "
            f"GRANT {GROUP} TO {THEIRS}; GRANT {GROUP} TO {NEW}; GRANT pg_monitor TO {NEW}")
    try:
        path, _ = backup(pg, tools, str(tmp_path / "b"), db, "--key-file", key_file)
    finally:
        pg.psql(f"DROP ROLE {NEW}, {GROUP}")
    pg.dropdb(TARGET)
    yield path
    pg.dropdb(TARGET)
    pg.psql(f"DROP ROLE IF EXISTS {NEW}, {GROUP}, {THEIRS}")


def test_an_existing_role_gains_no_membership_in_a_role_the_restore_creates(pg, tools, key_file, members_backup):
    assert pg.psql(MEMBERS) == ""  # THEIRS is a member of nothing
    done = restore(pg, tools, members_backup, TARGET, "--key-file", key_file)
    err = done.stderr.decode()
    assert (done.returncode, done.stdout) == (0, b""), err
    assert err.splitlines() == [
        f"encpipe-restore: warning: memberships of roles this server has are left out (each would gain the rights of "
        f"a role the restore creates): {THEIRS} in {GROUP}",
        f"encpipe-restore: created roles: {NEW}, {GROUP}",  # in pg_dumpall's order: by name
        f"encpipe-restore: restored {members_backup} into new database {TARGET}",
    ], err
    assert pg.psql(MEMBERS).split() == [f"pg_monitor>{NEW}", f"pg_read_server_files>{GROUP}",
                                        f"{GROUP}>{NEW}"]  # THEIRS's as they were: none
    assert pg.psql(f"SELECT pg_has_role('{THEIRS}', 'pg_read_server_files', 'USAGE')").strip() == "f"
    assert TARGET in databases(pg) and dump(pg, TARGET) == dump(pg, SOURCE)
