"""Privileges on configuration parameters (GRANT SET / ALTER SYSTEM ON PARAMETER, PostgreSQL
15 and later), which pg_dumpall --globals-only writes among the roles: a restore that creates
their grantee from the globals file gives them too, as it gives its memberships."""

import json
import os
import re

from encpipe.backup import label

from test_backup_restore import BACKUP, RESTORE, encpipe, run, script_env

_ACL = "SELECT parname, paracl FROM pg_catalog.pg_parameter_acl ORDER BY 1"


def test_a_role_the_restore_creates_gets_its_parameter_privileges_back(tools, key_file, tmp_path, empty_cluster):
    """README (Disaster recovery): pg_dumpall of the new server matches the lost one's. Before,
    the globals file's `GRANT SET ON PARAMETER ... TO role` was left out, unsaid: the role came
    back without the right to set what it set before."""
    pg = empty_cluster
    pg.psql("CREATE ROLE tuner LOGIN; GRANT SET, ALTER SYSTEM ON PARAMETER log_statement TO tuner;"
            "CREATE DATABASE tuned OWNER tuner;")
    before = pg.psql(_ACL)
    assert "tuner=sA/" in before
    env = script_env(pg, tools)
    proc = run([BACKUP, "--dir", str(tmp_path / "b"), "--key-file", key_file, "tuned"], env)
    assert proc.returncode == 0, proc.stderr.decode()
    path = os.path.join(str(tmp_path / "b"), json.loads(proc.stdout)["filename"])
    pg.psql("DROP DATABASE tuned; REVOKE ALL ON PARAMETER log_statement FROM tuner; DROP ROLE tuner;")  # lost
    proc = run([RESTORE, "--key-file", key_file, path, "tuned"], env)
    assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
    assert "created roles: tuner" in proc.stderr.decode()
    assert pg.psql(_ACL) == before


def test_only_the_owners_grants_to_created_roles_of_known_parameters_are_kept():
    """pg_dumpall's lines as PostgreSQL 15 writes them: a grant by another role (under SET
    SESSION AUTHORIZATION) and one of a parameter the server does not know (removed by a
    later version: GRANT would fail, and the roles with it) are left out, and named; a
    custom parameter (with a dot) is known to every server; an existing role's are its own."""
    from encpipe import pgglobals
    statements = ["CREATE ROLE tuner;", "CREATE ROLE other;", "GRANT ALL ON PARAMETER log_statement TO tuner;",
                  "GRANT SET ON PARAMETER log_statement TO other WITH GRANT OPTION;",
                  "SET SESSION AUTHORIZATION other;", "GRANT SET ON PARAMETER log_statement TO tuner;",
                  "RESET SESSION AUTHORIZATION;", 'GRANT SET ON PARAMETER "my.custom" TO tuner;',
                  "GRANT SET ON PARAMETER vacuum_defer_cleanup_age TO tuner;",
                  "GRANT SET ON PARAMETER log_statement TO alice;"]
    keep, created, skipped = pgglobals.plan(statements, {"postgres", "alice"}, {"log_statement"})
    assert keep == ["CREATE ROLE tuner;", "CREATE ROLE other;", "GRANT ALL ON PARAMETER log_statement TO tuner;",
                    "GRANT SET ON PARAMETER log_statement TO other WITH GRANT OPTION;",
                    'GRANT SET ON PARAMETER "my.custom" TO tuner;']
    assert pgglobals.parameters_left(skipped, created) == ["tuner on log_statement",
                                                           "tuner on vacuum_defer_cleanup_age"]


def test_a_failed_restore_drops_the_roles_it_created_with_their_parameter_privileges(tools, key_file, tmp_path,
                                                                                       empty_cluster):
    """A role with a privilege on a parameter cannot be dropped until it is revoked: the undo of
    a restore that fails revokes those it granted first, and no role it created stays."""
    pg = empty_cluster
    pg.psql("CREATE ROLE tuner LOGIN; GRANT SET ON PARAMETER log_statement TO tuner; CREATE DATABASE tuned;")
    env = script_env(pg, tools)
    proc = run([BACKUP, "--dir", str(tmp_path / "b"), "--key-file", key_file, "tuned"], env)
    assert proc.returncode == 0, proc.stderr.decode()
    path = os.path.join(str(tmp_path / "b"), json.loads(proc.stdout)["filename"])
    stamp = re.search(r"_([0-9]{8}T[0-9]{6}Z)\.", path)[1]
    with open(path, "wb") as out:  # the run's dump, failing: sealed with the same key, labelled as the run's
        out.write(encpipe(["seal", "--key-file", key_file], input=label.prefix("none", "tuned", stamp) +
                          b"SELECT 1/0;\n", check=True).stdout)
    pg.psql("DROP DATABASE tuned; REVOKE ALL ON PARAMETER log_statement FROM tuner; DROP ROLE tuner;")
    proc = run([RESTORE, "--key-file", key_file, path, "tuned"], env)
    assert (proc.returncode, proc.stdout) == (1, b""), proc.stderr.decode()
    assert "encpipe-restore: dropped the roles this restore had created again\n" in proc.stderr.decode()
    assert pg.psql("SELECT count(*) FROM pg_roles WHERE rolname = 'tuner'") == "0\n"
    assert pg.psql(_ACL) == ""
