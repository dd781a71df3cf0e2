"""README claims of "Restoring: encpipe-restore" and "Disaster recovery" that the code did
not keep (a claims review): `--no-create-roles` refused to a role that is no superuser
for a role it would not create; the way out README and the hint gave for an EUC_JP
globals file was refused again; and a restore whose DBNAME was left out was taken for
`--drop-pre-restore-older-than DAYS DBNAME`, exit 0, nothing restored."""

import os
import subprocess

from pgcluster import PgCluster
from test_backup_restore import RESTORE, backup, databases, ensure_small, restore, run, script_env


def test_no_create_roles_lets_a_role_that_is_no_superuser_restore_past_a_role_dropped_since(pg, tools, key_file,
                                                                                              tmp_path):
    """README: `--no-create-roles` ... "a restore creates none and names those it leaves out".
    A role that is no superuser was refused "to create role(s) c57_gone from the globals file",
    though with --no-create-roles nothing is created (and nothing of the globals file's role
    SQL runs); without the dropped role the same restore succeeds."""
    pg.psql("DROP ROLE IF EXISTS c57_gone; CREATE ROLE c57_gone; DROP ROLE IF EXISTS c57_dba; "
            "CREATE ROLE c57_dba LOGIN CREATEDB; DROP ROLE IF EXISTS c57_own2; CREATE ROLE c57_own2; "
            "GRANT c57_own2 TO c57_dba;")
    pg.dropdb("c57_src2")
    pg.psql("CREATE DATABASE c57_src2 OWNER c57_own2")
    try:
        path, _ = backup(pg, tools, str(tmp_path / "b"), "c57_src2", "--key-file", key_file)
        pg.psql("DROP ROLE c57_gone")  # dropped since the backup, on the server that made it
        proc = restore(pg, tools, path, "c57_new2", "--no-create-roles", "--key-file", key_file,
                       env_extra={"PGUSER": "c57_dba"})
        assert proc.returncode == 0, proc.stderr.decode()
        assert (b"roles of the globals file this server lacks are not created (--no-create-roles): c57_gone"
                in proc.stderr)
        assert b"to create role(s)" not in proc.stderr
        assert pg.psql("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'c57_new2'") == "c57_own2\n"
        assert pg.psql("SELECT count(*) FROM pg_roles WHERE rolname = 'c57_gone'") == "0\n"
    finally:
        for db in ("c57_src2", "c57_new2"):
            pg.dropdb(db)
        pg.psql("DROP ROLE IF EXISTS c57_gone; DROP ROLE c57_dba; DROP ROLE c57_own2;")


def test_the_way_out_for_a_euc_jp_globals_file_restores(tools, key_file, tmp_path):
    """README ("Disaster recovery"): a globals file in EUC_JP with text that is not ASCII is
    refused (65), and the way out is to create its roles with `encpipe open FILE | psql`,
    then restore with --no-globals. Before, README and the hint said --no-create-roles,
    which reads the globals file all the same: refused again, 65, the same hint."""
    with PgCluster(encoding="EUC_JP") as cluster:
        subprocess.run([cluster.bin("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", "postgres"], check=True,
                       input='CREATE ROLE "c57_\u3042"; CREATE DATABASE c57_jp OWNER "c57_\u3042";'.encode(),
                       env={**cluster.env, "PGCLIENTENCODING": "UTF8"})
        cluster.psql("CREATE TABLE t (x int); INSERT INTO t VALUES (7);", db="c57_jp")
        path, _ = backup(cluster, tools, str(tmp_path / "b"), "c57_jp", "--key-file", key_file)
        proc = restore(cluster, tools, path, "c57_jp_new", "--key-file", key_file)
        assert (proc.returncode, proc.stdout) == (65, b""), proc.stderr.decode()
        assert b"which encpipe-restore does not convert" in proc.stderr
        assert b"then restore with --no-globals" in proc.stderr.splitlines()[-1]
        # its roles are there (the cluster that made it): the advice followed
        proc = restore(cluster, tools, path, "c57_jp_new", "--no-globals", "--key-file", key_file)
        assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
        assert cluster.psql("SELECT x FROM t", db="c57_jp_new") == "7\n"


def test_the_drop_form_refuses_options_of_a_restore(pg, tools, key_file, tmp_path):
    """README's synopsis: `encpipe-restore --drop-pre-restore-older-than DAYS [--maintenance-db DB]
    [DBNAME]`, and a restore `... FILE DBNAME`. A restore whose DBNAME was left out
    (`--drop-pre-restore-older-than 7 --key-file K FILE`) was taken for the drop form, FILE
    for a DBNAME: exit 0, nothing said, nothing restored; its --key-file, --drop-old,
    --no-globals, --role ignored, as --list-pre-restore's were before
    (tests/test_restore_form_mixups.py)."""
    copy = "c57_src_pre_restore_20200101T000000Z"
    pg.psql('CREATE DATABASE "%s"' % copy)
    try:
        for extra in (["--key-file", key_file, str(tmp_path / "shop_20250101T000000Z.sql.zst.enc")],
                      ["--key-file", key_file, "--drop-old", "c57_src"],
                      ["--no-globals", "--role", "x", "c57_src"]):
            proc = run([RESTORE, "--drop-pre-restore-older-than", "7", *extra], script_env(pg, tools))
            assert (proc.returncode, proc.stdout) == (64, b""), (extra, proc.returncode, proc.stderr.decode())
            assert b"is a restore's option: --drop-pre-restore-older-than DAYS [DBNAME] alone only drops" \
                in proc.stderr.splitlines()[0]
            assert copy in databases(pg)
        for alone in ([], ["--maintenance-db", "template1"], ["--allow-shared-dir"]):  # its own options
            proc = run([RESTORE, "--drop-pre-restore-older-than", "0", *alone, "c57_src"], script_env(pg, tools))
            assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
            assert copy not in databases(pg)
            pg.psql('CREATE DATABASE "%s"' % copy)
    finally:
        pg.dropdb(copy)


def test_the_drop_form_with_a_file_and_the_key_in_the_environment_is_refused(pg, tools, key_file, tmp_path):
    """The key in ENCPIPE_KEY, no option of a restore's to tell: `--drop-pre-restore-older-than 7
    FILE` (DBNAME left out) restored nothing, said nothing, 0. A DBNAME named as a backup is
    (`.enc`), or a path to a file, is refused."""
    path, _ = backup(pg, tools, str(tmp_path / "b"), ensure_small(pg, "c57_src"), "--key-file", key_file)
    with open(key_file) as f:
        env = script_env(pg, tools, ENCPIPE_KEY=f.read().strip())
    plain = str(tmp_path / "b" / "plain")
    open(plain, "w").close()
    for name in (path, os.path.basename(path), plain):
        proc = run([RESTORE, "--drop-pre-restore-older-than", "7", name], env)
        assert (proc.returncode, proc.stdout) == (64, b""), proc.stderr.decode()
        assert b"is a backup file, not a DBNAME" in proc.stderr.splitlines()[0]
    proc = run([RESTORE, "--drop-pre-restore-older-than", "7", "c57_src"], env)  # a database's name
    assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
