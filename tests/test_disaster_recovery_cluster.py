"""A lost server restored onto a new one whose `postgres` database exists already."""

import json
import os

from pgcluster import PgCluster
from test_backup_restore import BACKUP, RESTORE, run, script_env


def restore_argv(key_file, path, db, *options):
    """encpipe-restore as README says: a DBNAME that starts with `-` after `--`."""
    return [RESTORE, "--key-file", key_file, *options, "--", path, db]


_DB_SQL = ("SELECT pg_get_userbyid(datdba), datacl, datconnlimit, shobj_description(oid, 'pg_database'), "
           "(SELECT setconfig FROM pg_db_role_setting WHERE setdatabase = d.oid AND setrole = 0) "
           "FROM pg_database d WHERE datname = 'postgres'")


def test_the_postgres_database_a_new_server_has_keeps_its_own_properties_and_says_so(tools, key_file, tmp_path):
    """Every new server has a `postgres` database, so its backup is restored in place there,
    and kept the new server's properties: PUBLIC could connect again where the lost server had
    revoked it, the owner and settings were lost, and nothing said so. Now a warning names the
    recorded properties not applied; renamed first, as README says, it gets them."""
    with PgCluster() as old:
        old.psql("CREATE ROLE boss LOGIN; ALTER DATABASE postgres OWNER TO boss; COMMENT ON DATABASE postgres IS "
                 "'main'; ALTER DATABASE postgres SET work_mem = '9MB'; REVOKE ALL ON DATABASE postgres FROM PUBLIC; "
                 "GRANT CONNECT ON DATABASE postgres TO boss; CREATE TABLE kept (x int); INSERT INTO kept VALUES (7);")
        before = old.psql(_DB_SQL)
        proc = run([BACKUP, "--dir", str(tmp_path / "b"), "--key-file", key_file, "postgres"], script_env(old, tools))
        assert proc.returncode == 0, proc.stderr.decode()
        path = os.path.join(str(tmp_path / "b"), json.loads(proc.stdout)["filename"])
    assert before == "boss|{boss=CTc/boss}|-1|main|{work_mem=9MB}\n"
    with PgCluster() as new:
        fresh = new.psql(_DB_SQL)
        env = script_env(new, tools)
        proc = run(restore_argv(key_file, path, "postgres", "--maintenance-db", "template1"), env)
        assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
        assert [line for line in proc.stderr.decode().splitlines() if "warning" in line] == [
            "encpipe-restore: warning: postgres exists: restored in place, it keeps its own owner, privileges, "
            "settings, comment; the globals file records others, not applied (rename postgres first to have them)"]
        assert new.psql(_DB_SQL, db="template1") == fresh
        assert new.psql("SELECT x FROM kept") == "7\n"

        new.psql("ALTER DATABASE postgres RENAME TO postgres_empty", db="template1")
        proc = run(restore_argv(key_file, path, "postgres", "--maintenance-db", "template1"), env)
        assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
        assert b"warning" not in proc.stderr
        assert new.psql(_DB_SQL, db="template1") == before
        proc = run(restore_argv(key_file, path, "postgres", "--maintenance-db", "template1", "--drop-old"), env)
        assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
        assert b"warning" not in proc.stderr  # in place, the same properties
        assert new.psql(_DB_SQL, db="template1") == before


def test_properties_read_on_two_servers_are_compared_as_sets():
    """A server lists settings by its roles' oids, and may list an ACL's items in another
    order: the same properties read on another server are not taken for others."""
    from encpipe import pgprops
    live = {"owner": "o", "acl": ["o=CTc/o", "=c/o"], "connlimit": -1, "encoding": "UTF8", "collate": "C",
            "ctype": "C", "tablespace": "pg_default", "comment": None,
            "settings": [{"role": "b", "config": ["work_mem=1MB"]}, {"role": None, "config": ["a=1", "b=2"]}]}
    recorded = dict(live, acl=["=c/o", "o=CTc/o"], settings=[{"role": None, "config": ["b=2", "a=1"]},
                                                              {"role": "b", "config": ["work_mem=1MB"]}])
    assert pgprops.unapplied("db", "me", False, live, recorded) == []
    assert pgprops.unapplied("db", "me", False, live, {k: v for k, v in recorded.items() if k != "tablespace"}) == []
    assert pgprops.unapplied("db", "me", False, live, None) == []
    assert pgprops.unapplied("db", "me", False, live, dict(recorded, comment="x", connlimit=3)) == [
        "db exists: restored in place, it keeps its own connection limit, comment; the globals file records "
        "others, not applied (rename db first to have them)"]
