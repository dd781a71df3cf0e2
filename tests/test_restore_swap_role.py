"""encpipe-restore asks the server for the swap's outcome (pgcommit, pgclient.Step)
when the restore's role is not the one its sessions act as.

A login role may act as another from the start of each session: `ALTER ROLE
alice SET role = admins`, or `PGOPTIONS='-c role=admins'`. pg_stat_activity
names a session by its login role (`usename`), while `current_user` is the role
it acts as. The look at the server matched the swap's session by
`usename = current_user`: it found none, ended none, and read the database's
name while the swap's session, its psql killed, still ran its COMMIT (here
waiting for a synchronous standby: committed, not yet seen by others). The
restore said "could not swap it in ...; database ... is unchanged" (1), and the
server then finished the swap. It now matches the session by its login role,
acting as that role (`SET ROLE NONE`), which may end its own sessions.
A restoring role that is no superuser gets the same: it may end its own session
and read what the look needs."""

import pytest

from test_backup_restore import backup, drop_matching, ensure_small, script_env
from test_restore_swap_outcome import SYNCHRONOUS, TARGET, _fresh_target, _killed_while_committing, _said_swapped

ACTING = "swapout_acting"  # a superuser role the restore's sessions act as
DBA, DBA_SOURCE = "swapout_dba", "swapout_dba_source"  # a role that is no superuser, and its database

pytestmark = pytest.mark.usefixtures("swap_leftovers_dropped")


def test_a_swap_whose_psql_dies_while_the_server_commits_it_is_said_as_it_ends_acting_as_another_role(
        pg, tools, key_file, tmp_path):
    db = ensure_small(pg, "swapout_source", rows=100)
    path, _ = backup(pg, tools, str(tmp_path / "b"), db, "--key-file", key_file)
    _fresh_target(pg)
    pg.psql("DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '%s') THEN "
            "CREATE ROLE %s SUPERUSER NOLOGIN; END IF; END $$;" % (ACTING, ACTING))
    env = {**script_env(pg, tools), "PGOPTIONS": SYNCHRONOUS["PGOPTIONS"] + " -c role=" + ACTING}
    try:
        _said_swapped(pg, path, _killed_while_committing(pg, env, key_file, path))
    finally:
        drop_matching(pg, lambda d: d.startswith(TARGET) or d.startswith("encpipe_restore_"))
        pg.psql("DROP ROLE %s;" % ACTING)


def test_a_swap_whose_psql_dies_while_the_server_commits_it_is_said_as_it_ends_for_a_role_not_superuser(
        pg, tools, key_file, tmp_path):
    """The same, restored by a role that may create databases and is no superuser: it
    may end its own session, and reads what it needs of pg_stat_activity and pg_database."""
    pg.psql("DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '%s') THEN "
            "CREATE ROLE %s LOGIN CREATEDB; END IF; END $$;" % (DBA, DBA))
    try:
        drop_matching(pg, lambda d: d.startswith(TARGET) or d in (DBA_SOURCE,))
        for name in (DBA_SOURCE, TARGET):
            pg.psql('CREATE DATABASE %s OWNER %s' % (name, DBA))
        pg.psql("CREATE TABLE t (x int); INSERT INTO t VALUES (1);", db=DBA_SOURCE, user=DBA)
        pg.psql("CREATE TABLE old_stuff (x int);", db=TARGET, user=DBA)
        path, _ = backup(pg, tools, str(tmp_path / "b"), DBA_SOURCE, "--key-file", key_file)
        env = script_env(pg, tools, PGUSER=DBA, **SYNCHRONOUS)
        _said_swapped(pg, path, _killed_while_committing(pg, env, key_file, path))
        assert pg.psql("SELECT count(*) FROM t", db=TARGET).strip() == "1"
    finally:
        drop_matching(pg, lambda d: d.startswith(TARGET) or d.startswith("encpipe_restore_") or d == DBA_SOURCE)
        pg.psql("DROP ROLE %s;" % DBA)
