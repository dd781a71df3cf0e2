"""A backup role that may connect to the database it backs up and to no other (CONNECT
revoked from PUBLIC on postgres and template1, or pg_hba.conf's choice), reading with
pg_read_all_data: pg_dump connected, and pg_dumpall, connecting to postgres then
template1, failed every run (`permission denied for database "template1"`), its
globals and the database's properties lost but for --no-globals. pg_dumpall now
connects to DBNAME too (-l)."""

import json

from pgcluster import PgCluster
from test_backup_restore import BACKUP, run, script_env


def test_a_role_that_may_connect_to_dbname_only_backs_it_up_with_its_globals(tools, key_file, tmp_path):
    with PgCluster() as pg:
        pg.psql("CREATE ROLE bkp LOGIN IN ROLE pg_read_all_data, pg_monitor; CREATE DATABASE shop;"
                "REVOKE CONNECT ON DATABASE postgres FROM PUBLIC; REVOKE CONNECT ON DATABASE template1 FROM PUBLIC;")
        pg.psql("CREATE TABLE t (x int); INSERT INTO t VALUES (1);", db="shop")
        env = script_env(pg, tools)
        env["PGUSER"] = "bkp"
        proc = run([BACKUP, "--dir", str(tmp_path / "b"), "--key-file", key_file, "shop"], env)
        assert proc.returncode == 0, proc.stderr.decode()
        report = json.loads(proc.stdout)
        assert report["globals"].endswith(".globals.sql.enc"), report
        assert (tmp_path / "b" / report["globals"]).exists()
