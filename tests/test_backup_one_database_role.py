"""A backup role that may connect to the database it backs up and to no other (CONNECT
revoked from PUBLIC on postgres and template1, or pg_hba.conf's choice): pg_dump
connects, pg_dumpall (which connects to postgres, else template1, where the roles'
names are read in the encoding most were written in) cannot. The run fails, nothing
stored, and its hint says where pg_dumpall connects (before, only that it reads
pg_authid as a superuser: the role was one of pg_read_all_data, which may)."""

from pgcluster import PgCluster
from test_backup_restore import BACKUP, run, script_env


def test_a_role_that_may_connect_to_dbname_only_is_told_where_pg_dumpall_connects(tools, key_file, tmp_path):
    with PgCluster() as pg:
        pg.psql("CREATE ROLE bkp LOGIN IN ROLE pg_read_all_data, pg_monitor; CREATE DATABASE shop;"
                "REVOKE CONNECT ON DATABASE postgres FROM PUBLIC; REVOKE CONNECT ON DATABASE template1 FROM PUBLIC;")
        env = script_env(pg, tools)
        env["PGUSER"] = "bkp"
        proc = run([BACKUP, "--dir", str(tmp_path / "b"), "--key-file", key_file, "shop"], env)
        assert (proc.returncode, proc.stdout) == (1, b""), proc.stderr.decode()
        said = proc.stderr.decode().splitlines()
        assert 'pg_dumpall: error: connection to server on socket "%s/.s.PGSQL.%d" failed: FATAL:  permission denied ' \
            'for database "template1"' % (pg.socket_dir, pg.port) in said, said
        assert said[-1].startswith("encpipe-backup: hint: pg_dumpall connects to the postgres database (else "
                                   "template1)"), said
        assert not (tmp_path / "b").exists()
        pg.psql("GRANT CONNECT ON DATABASE postgres TO bkp;")
        proc = run([BACKUP, "--dir", str(tmp_path / "b"), "--key-file", key_file, "shop"], env)
        assert (proc.returncode, proc.stderr) == (0, b""), proc.stderr.decode()
