"""A globals file's kept statements touch no role the server has.

pgglobals.plan keeps a statement about a role (ALTER ROLE, a membership GRANT)
when the name it reads there is one the file creates, the server lacking it.
It read names as text, not as PostgreSQL does: an unquoted name is folded to
lower case by the server (`CREATE ROLE "Mallory"` made a new role, then `ALTER
ROLE Mallory SUPERUSER` was kept, and the server gave SUPERUSER to the
existing `mallory`); `ALL`, `CURRENT_USER` and `SESSION_USER` unquoted are
keywords, not the new roles `"ALL"` or `"CURRENT_USER"` (`ALTER ROLE ALL SET
...` set a parameter for every role of the server); and a GRANT was kept by its
first grantee (`GRANT pg_execute_server_program TO new , mallory`, and mallory
could run programs as the server's OS user). pg_dumpall writes none of these
(it quotes every name that needs it and grants to one role a statement). Each
ran as the restoring superuser, exit 0: roles that exist are to be left
exactly as they are (README, "Restoring", step 2).
"""

import pytest

from encpipe.pgfetch import globals_name
from test_backup_restore import backup, encpipe, ensure_small, restore

CASES = {
    "case folded": ('CREATE ROLE "Mallory";\nALTER ROLE Mallory SUPERUSER;\n', '"Mallory"'),
    "second grantee": ("CREATE ROLE smug_new;\nGRANT pg_execute_server_program TO smug_new , mallory;\n",
                       "smug_new"),
    "all roles": ('CREATE ROLE "ALL";\nALTER ROLE ALL SET work_mem = \'64kB\';\n', '"ALL"'),
    "current user": ('CREATE ROLE "CURRENT_USER";\nALTER ROLE CURRENT_USER SET work_mem = \'64kB\';\n',
                     '"CURRENT_USER"'),
}

# every role the server had, with what a kept statement could change
STATE = ("SELECT r.rolname, r.rolsuper, r.rolconfig, ARRAY(SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g "
         "ON g.oid = m.roleid WHERE m.member = r.oid ORDER BY 1) FROM pg_roles r WHERE r.oid::int8 < %s ORDER BY 1;\n"
         "SELECT setdatabase, setrole, setconfig FROM pg_db_role_setting ORDER BY 1, 2;")


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_a_kept_statement_never_reaches_a_role_the_server_has(pg, tools, key_file, tmp_path, mallory, case):
    added, created = CASES[case]
    source = ensure_small(pg, "mal_source")
    path, _ = backup(pg, tools, str(tmp_path / "b"), source, "--key-file", key_file, "--format", "custom")
    genuine = encpipe(["open", "--key-file", key_file, globals_name(path)], check=True).stdout
    planted = tmp_path / "crafted.globals.sql.enc"
    planted.write_bytes(encpipe(["seal", "--key-file", key_file], input=genuine + added.encode(),
                                check=True).stdout)
    pg.psql("DROP ROLE IF EXISTS %s;" % created)
    pg.dropdb("mal_target")
    first_new = pg.psql("SELECT max(oid::int8) + 1 FROM pg_roles").strip()
    before = pg.psql(STATE % first_new)
    try:
        proc = restore(pg, tools, path, "mal_target", "--key-file", key_file, "--globals", str(planted))
        assert pg.psql(STATE % first_new) == before, proc.stderr.decode()
        assert proc.returncode in (0, 65), proc.stderr.decode()
    finally:
        pg.dropdb("mal_target")
        pg.psql("ALTER ROLE ALL RESET work_mem; ALTER ROLE CURRENT_USER RESET work_mem;")
        pg.psql("DROP ROLE IF EXISTS %s;" % created)
