"""encpipe-restore run by a role that is no superuser (CREATEDB, owning its databases).

The swap writes a database's recorded privileges (its ACL) and settings into the
catalog (pg_database, pg_db_role_setting), which only a superuser may; the roles of
the globals file are created with pg_dumpall's `ALTER ROLE ... NOSUPERUSER ...`,
which only a superuser may run; renaming DBNAME (a restore in place) needs its
owner, with CREATEDB. Before, such a restore loaded the whole dump into its
scratch database and only then failed at the swap (`permission denied for table
pg_database`), with a hint asking whether DBNAME was in use. It now finds out
before anything is created: one line naming what it needs, 1, nothing on
standard output, no psql connected to a scratch database, no CREATE DATABASE
sent. A restore the role can make (no ACL, no settings, no role to create, a new
database or one it owns) works as before."""

import json
import os
import subprocess
import sys
import time

import pytest

from encpipe import pgprops, pgrights
from encpipe.pgclient import PgError, conninfo
from spies import python_head
from test_backup_restore import RESTORE, backup, databases, drop_matching, leftover_databases, run, script_env

DBA = "nsu_dba"  # LOGIN CREATEDB, no superuser
GRP = "nsu_grp"  # a role granted privileges on the database
SOURCE, TARGET = "nsu_source", "nsu_target"
GONE = "nsu_gone"  # a role in the backup's globals file that the server no longer has

LOGGING_PSQL = '''{head}
import os, subprocess, sys
real = {real!r}
with open({log!r}, "a") as log:
    if "-0" not in sys.argv:  # the dump's psql, the lock's session, --version
        log.write("ARGV %r\\n" % (sys.argv[1:],))
        log.close()
        os.execv(real, [real] + sys.argv[1:])
    data = sys.stdin.buffer.read()
    log.write("SQL %r\\n" % (data,))
sys.exit(subprocess.run([real] + sys.argv[1:], input=data).returncode)
'''


@pytest.fixture
def dba(pg):
    pg.psql("CREATE ROLE %s LOGIN CREATEDB; CREATE ROLE %s LOGIN;" % (DBA, GRP))
    yield DBA
    drop_matching(pg, lambda d: d in (SOURCE, TARGET) or d.startswith(("encpipe_restore_", TARGET + "_pre_")))
    pg.psql("DROP ROLE %s; DROP ROLE %s; DROP ROLE IF EXISTS %s;" % (GRP, DBA, GONE))


def _source(pg, *sql):
    pg.psql("CREATE DATABASE %s OWNER %s" % (SOURCE, DBA))
    pg.psql("CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2);", db=SOURCE, user=DBA)
    for statement in sql:
        pg.psql(statement)


def _logged(pg, tools, tmp_path):
    """script_env as DBA, its psql one that logs what it runs (in `tmp_path`/psql.log)."""
    bindir = tmp_path / "logging"
    bindir.mkdir()
    log = str(tmp_path / "psql.log")
    (bindir / "psql").write_text(LOGGING_PSQL.format(head=python_head("-S"), real=pg.bin("psql"), log=log))
    os.chmod(bindir / "psql", 0o755)
    env = script_env(pg, tools, PGUSER=DBA)
    env["PATH"] = "%s:%s" % (bindir, env["PATH"])
    return env, log


def _refused_before_anything(pg, tools, key_file, tmp_path, expected, *options, target=TARGET, path=None):
    path = path or backup(pg, tools, str(tmp_path / "b"), SOURCE, "--key-file", key_file)[0]
    before = databases(pg)
    env, log = _logged(pg, tools, tmp_path)
    proc = run([RESTORE, *options, "--key-file", key_file, path, target], env)
    err = proc.stderr.decode()
    assert (proc.returncode, proc.stdout) == (1, b""), err
    lines = err.splitlines()
    assert lines[0] == "encpipe-restore: error: " + expected, err
    assert lines[1:] == ["encpipe-restore: hint: restore as a superuser; see README, \"Restoring: encpipe-restore\" "
                         "(which role a restore needs)"], err
    assert databases(pg) == before and leftover_databases(pg) == set()
    with open(log) as f:
        said = f.read().splitlines()
    assert not [line for line in said if "CREATE DATABASE" in line or "CREATE ROLE" in line], said
    assert not [line for line in said if line.startswith("ARGV") and "encpipe_restore_" in line], said  # no load
    assert [line for line in said if line.startswith("SQL")], said  # the log is psql's


def _granted_by_another(pg):
    """The source's ACL holds an item that another role than its owner granted."""
    pg.psql("REVOKE ALL ON DATABASE %s FROM PUBLIC; GRANT CONNECT ON DATABASE %s TO %s WITH GRANT OPTION;"
            % (SOURCE, SOURCE, GRP))
    pg.psql("GRANT CONNECT ON DATABASE %s TO PUBLIC;" % SOURCE, user=GRP)


def test_a_recorded_acl_granted_by_another_role_is_refused_before_the_load(pg, tools, key_file, tmp_path, dba):
    _source(pg)
    _granted_by_another(pg)
    _refused_before_anything(pg, tools, key_file, tmp_path,
                             "role %s is no superuser, and restoring %s needs one: to give it its recorded "
                             "privileges (ACL), some granted by another role than its owner; database %s was not "
                             "created" % (DBA, TARGET, TARGET))
    assert TARGET not in databases(pg)


def _acl(pg, db):
    return sorted(pg.psql("SELECT unnest(datacl) FROM pg_database WHERE datname = '%s'" % db).split())


def test_a_recorded_acl_its_owner_granted_is_given_by_grants(pg, tools, key_file, tmp_path, dba):
    """The owner's own rights less one, a grant with its grant option, PUBLIC's CONNECT only:
    restored as they were, into a new database and in place, by GRANT and REVOKE."""
    _source(pg)
    pg.psql("REVOKE ALL ON DATABASE {0} FROM PUBLIC; GRANT CONNECT ON DATABASE {0} TO PUBLIC; "
            "GRANT CONNECT ON DATABASE {0} TO {1}; GRANT CREATE ON DATABASE {0} TO {1} WITH GRANT OPTION; "
            "REVOKE TEMPORARY ON DATABASE {0} FROM {2};".format(SOURCE, GRP, DBA), user=DBA)
    recorded = _acl(pg, SOURCE)
    assert recorded == sorted(["=c/%s" % DBA, "%s=C*c/%s" % (GRP, DBA), "%s=Cc/%s" % (DBA, DBA)])
    path, _ = backup(pg, tools, str(tmp_path / "b"), SOURCE, "--key-file", key_file)
    for options in ([], ["--drop-old"]):
        proc = run([RESTORE, *options, "--key-file", key_file, path, TARGET], script_env(pg, tools, PGUSER=DBA))
        assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
        assert _acl(pg, TARGET) == recorded
    assert leftover_databases(pg) == set()


def test_a_recorded_setting_is_refused_before_the_load(pg, tools, key_file, tmp_path, dba):
    _source(pg, "ALTER DATABASE %s SET work_mem = '7MB';" % SOURCE)
    _refused_before_anything(pg, tools, key_file, tmp_path,
                             "role %s is no superuser, and restoring %s needs one: to give it its recorded "
                             "settings; database %s was not created" % (DBA, TARGET, TARGET))


def test_both_are_named(pg, tools, key_file, tmp_path, dba):
    _source(pg, "ALTER DATABASE %s SET work_mem = '7MB';" % SOURCE)
    _granted_by_another(pg)
    _refused_before_anything(pg, tools, key_file, tmp_path,
                             "role %s is no superuser, and restoring %s needs one: to give it its recorded "
                             "privileges (ACL), some granted by another role than its owner, to give it its "
                             "recorded settings; database %s was not created" % (DBA, TARGET, TARGET))


def test_roles_to_create_are_refused_before_the_load(pg, tools, key_file, tmp_path, dba):
    pg.psql("CREATE ROLE %s NOLOGIN;" % GONE)
    _source(pg)
    path, _ = backup(pg, tools, str(tmp_path / "b"), SOURCE, "--key-file", key_file)
    pg.psql("DROP ROLE %s;" % GONE)
    env, log = _logged(pg, tools, tmp_path)
    proc = run([RESTORE, "--key-file", key_file, path, TARGET], env)
    assert (proc.returncode, proc.stdout) == (1, b""), proc.stderr.decode()
    assert proc.stderr.decode().splitlines()[0] == (
        "encpipe-restore: error: role %s is no superuser, and restoring %s needs one: to create role(s) %s from the "
        "globals file; database %s was not created" % (DBA, TARGET, GONE, TARGET))
    assert "nsu_gone" not in pg.psql("SELECT rolname FROM pg_roles") and leftover_databases(pg) == set()
    with open(log) as f:
        assert "CREATE DATABASE" not in f.read()


def test_in_place_over_a_database_of_another_owner_is_refused_before_the_load(pg, tools, key_file, tmp_path, dba):
    _source(pg)
    pg.psql("CREATE DATABASE %s" % TARGET)  # the superuser's
    pg.psql("CREATE TABLE kept (x int);", db=TARGET)
    _refused_before_anything(pg, tools, key_file, tmp_path,
                             "role %s cannot restore %s in place: it does not own it (the swap renames it), it is "
                             "no member of role %s (its owner); database %s was not touched"
                             % (DBA, TARGET, pg.user, TARGET))
    assert pg.psql("SELECT count(*) FROM pg_class WHERE relname = 'kept'", db=TARGET).strip() == "1"


def _session(pg, db, user):
    """A psql session of `user` on `db`, connected (its backend's pid: `pid_on_server`), open until its stdin closes."""
    env = dict(pg.env, PGUSER=user)
    holder = subprocess.Popen([pg.bin("psql"), "-X", "-A", "-t", "-d", db], env=env, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    holder.stdin.write(b"SELECT pg_backend_pid();\n")
    holder.stdin.flush()
    holder.pid_on_server = int(holder.stdout.readline())  # connected
    return holder


def _closed(*holders):
    for holder in holders:
        holder.stdin.close()
        holder.wait()


def test_sessions_it_may_not_end_are_refused_before_the_load(pg, tools, key_file, tmp_path, dba):
    """--terminate-connections by a role that may not signal a session on DBNAME (another
    role's, without its rights or pg_signal_backend; a superuser's): before, the dump was
    loaded, and the swap failed (`permission denied to terminate process`). Refused first now;
    with pg_signal_backend, the other role's session is ended and the restore made."""
    _source(pg)
    pg.psql("CREATE DATABASE %s OWNER %s" % (TARGET, DBA))
    pg.psql("CREATE TABLE kept (x int);", db=TARGET, user=DBA)
    other, superuser = _session(pg, TARGET, GRP), _session(pg, TARGET, pg.user)
    try:
        # without it, both counted (pgprops.free's 75 before anything): before, neither was (their kind,
        # backend_type, is hidden from a role without their rights), and the swap's rename failed after the load
        with pytest.MonkeyPatch.context() as env:
            for name, value in dict(pg.env, PGUSER=DBA).items():
                env.setenv(name, value)
            assert pgprops.state(conninfo(pg.dbname), TARGET)[:4] == (True, 2, (0, 0, 0), False)
        path, _ = backup(pg, tools, str(tmp_path / "b"), SOURCE, "--key-file", key_file)
        _refused_before_anything(pg, tools, key_file, tmp_path,
                                 "role %s cannot restore %s in place: it may not end the sessions of role(s) %s on it "
                                 "(--terminate-connections: the swap ends them); database %s was not touched"
                                 % (DBA, TARGET, ", ".join(sorted((GRP, pg.user))), TARGET), "--terminate-connections",
                                 path=path)
        assert pg.psql("SELECT count(*) FROM pg_class WHERE relname = 'kept'", db=TARGET).strip() == "1"
        assert (other.poll(), superuser.poll()) == (None, None)
        _closed(superuser)
        pg.psql("GRANT pg_signal_backend TO %s;" % DBA)
        proc = run([RESTORE, "--terminate-connections", "--drop-old", "--key-file", key_file, path, TARGET],
                   script_env(pg, tools, PGUSER=DBA))
        assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
        assert pg.psql("SELECT count(*) FROM pg_stat_activity WHERE pid = %d" % other.pid_on_server) == "0\n"
        assert pg.psql("SELECT count(*) FROM t", db=TARGET).strip() == "2"
    finally:
        _closed(other, superuser)
    assert leftover_databases(pg) == set()


def test_a_role_without_createdb_is_refused_before_the_load(pg, tools, key_file, tmp_path, dba):
    _source(pg)
    pg.psql("ALTER ROLE %s NOCREATEDB;" % DBA)
    _refused_before_anything(pg, tools, key_file, tmp_path,
                             "role %s cannot restore %s: it lacks CREATEDB (the scratch database is created, "
                             "then renamed); database %s was not created" % (DBA, TARGET, TARGET))


def test_a_recorded_owner_the_role_is_no_member_of_is_refused_before_the_load(pg, tools, key_file, tmp_path, dba):
    _source(pg, "ALTER DATABASE %s OWNER TO CURRENT_USER;" % SOURCE)  # the superuser's
    _refused_before_anything(pg, tools, key_file, tmp_path,
                             "role %s cannot restore %s: it is no member of role %s (its recorded owner); "
                             "database %s was not created" % (DBA, TARGET, pg.user, TARGET))


def test_a_new_database_without_acl_or_settings_restores(pg, tools, key_file, tmp_path, dba):
    _source(pg)
    path, _ = backup(pg, tools, str(tmp_path / "b"), SOURCE, "--key-file", key_file)
    proc = run([RESTORE, "--key-file", key_file, path, TARGET], script_env(pg, tools, PGUSER=DBA))
    assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
    # the default privileges, as grants (only a superuser may write the catalog's NULL)
    assert pg.psql("SELECT pg_get_userbyid(datdba), datacl FROM pg_database WHERE datname = '%s'"
                   % TARGET).strip() == "%s|{%s=CTc/%s,=Tc/%s}" % ((DBA,) * 4)
    assert pg.psql("SELECT count(*) FROM t", db=TARGET).strip() == "2"
    # and again, in place: the database is the role's own, its privileges those recorded (before,
    # the grants' ACL was taken for others than the recorded NULL: a warning at every restore)
    proc = run([RESTORE, "--drop-old", "--key-file", key_file, path, TARGET], script_env(pg, tools, PGUSER=DBA))
    assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
    assert b"warning" not in proc.stderr, proc.stderr.decode()
    assert leftover_databases(pg) == set()


def test_a_copy_of_another_database_it_may_not_connect_to_stops_nothing(pg, tools, key_file, tmp_path, dba):
    """pg_database_size() needs CONNECT: the swap, which picks a free copy name, sized
    every *_pre_restore_* database of the server, and a copy of another's database that
    the role may not connect to ended its in-place restore after the whole load (1,
    `permission denied for database ...`), and its listing and drops likewise."""
    _source(pg)
    secret = "nsu_secret_pre_restore_20240101T000000Z"
    pg.psql('CREATE DATABASE "%s"' % secret)
    pg.psql('REVOKE CONNECT ON DATABASE "%s" FROM PUBLIC' % secret)
    try:
        path, _ = backup(pg, tools, str(tmp_path / "b"), SOURCE, "--key-file", key_file)
        env = script_env(pg, tools, PGUSER=DBA)
        for _ in range(2):  # a new database, then in place over its own
            proc = run([RESTORE, "--key-file", key_file, path, TARGET], env)
            assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
        listed = run([RESTORE, "--list-pre-restore"], env)
        assert listed.returncode == 0, listed.stderr.decode()
        copies = {copy["name"]: copy for copy in json.loads(listed.stdout)}
        assert copies[secret]["bytes"] is None
        mine, = (name for name in copies if name.startswith(TARGET + "_pre_restore_"))
        assert copies[mine]["bytes"] > 0
        dropped = run([RESTORE, "--drop-pre-restore-older-than", "0", TARGET], env)
        assert (dropped.returncode, dropped.stdout) == (0, b""), dropped.stderr.decode()
        assert dropped.stderr.decode() == "encpipe-restore: dropped previous copies: %s\n" % mine
        assert pg.psql("SELECT count(*) FROM pg_database WHERE datname = '%s'" % secret).strip() == "1"
    finally:
        pg.psql('DROP DATABASE "%s"' % secret)


def test_a_dead_runs_scratch_database_it_may_not_drop_is_said_so(pg, tools, key_file, tmp_path, dba):
    """The sweep of dead runs' scratch databases said `still in use` of one the role
    may not drop (another's): the server's words say why now."""
    _source(pg)
    dead = "encpipe_restore_20240101T000000Z_1"  # a superuser's run, killed: its lock is gone
    pg.psql('CREATE DATABASE "%s"' % dead)
    path, _ = backup(pg, tools, str(tmp_path / "b"), SOURCE, "--key-file", key_file)
    proc = run([RESTORE, "--key-file", key_file, path, TARGET], script_env(pg, tools, PGUSER=DBA))
    assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
    assert ("encpipe-restore: warning: scratch database %s of an earlier run left alone: ERROR:  must be owner of "
            "database %s\n" % (dead, dead)) in proc.stderr.decode(), proc.stderr.decode()
    assert dead in databases(pg)


# the dump waits until the restoring role has lost CREATEDB: the swap then cannot rename
UNTIL_NOCREATEDB = ("DO $$ BEGIN FOR i IN 1..1200 LOOP PERFORM pg_stat_clear_snapshot(); "
                    "EXIT WHEN NOT (SELECT rolcreatedb FROM pg_roles WHERE rolname = current_user); "
                    "PERFORM pg_sleep(0.05); END LOOP; END $$;\n").encode()


def test_a_swap_refused_for_a_privilege_does_not_ask_whether_dbname_is_in_use(pg, tools, key_file, tmp_path, dba):
    _source(pg)
    pg.psql("CREATE DATABASE %s OWNER %s" % (TARGET, DBA))
    dumped = subprocess.run([pg.bin("pg_dump"), SOURCE], env=pg.env, capture_output=True, check=True).stdout
    path = str(tmp_path / "slow.sql.enc")
    opened = dumped.index(b"\n", dumped.index(b"\n\\restrict ") + 1) + 1  # after pg_dump's opening line
    subprocess.run([sys.executable, "-m", "encpipe", "seal", "--key-file", key_file, "-o", path],
                   input=dumped[:opened] + UNTIL_NOCREATEDB + dumped[opened:], check=True, env=script_env(pg, tools))
    proc = subprocess.Popen([RESTORE, "--key-file", key_file, path, TARGET], env=script_env(pg, tools, PGUSER=DBA),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not [d for d in databases(pg) if d.startswith("encpipe_restore_")]:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    pg.psql("ALTER ROLE %s NOCREATEDB;" % DBA)
    out, err = proc.communicate(timeout=120)
    lines = err.decode().splitlines()
    assert (proc.returncode, out) == (1, b""), lines
    assert "could not swap it in (ERROR:  permission denied to rename database)" in lines[-2], lines
    assert lines[-1] == ("encpipe-restore: hint: the server refused role %s a privilege the swap needs: restore as "
                         "a superuser; see README, \"Restoring: encpipe-restore\" (which role a restore needs)" % DBA)
    assert leftover_databases(pg) == set()


def test_an_acl_of_another_owner_the_role_is_a_member_of_is_given_as_that_owner(pg, tools, key_file, tmp_path, dba):
    _source(pg, "ALTER DATABASE %s OWNER TO %s; GRANT %s TO %s;" % (SOURCE, GRP, GRP, DBA))
    pg.psql("REVOKE ALL ON DATABASE {0} FROM PUBLIC; GRANT CONNECT ON DATABASE {0} TO {1};".format(SOURCE, DBA),
            user=GRP)
    recorded = _acl(pg, SOURCE)
    assert recorded == sorted(["%s=CTc/%s" % (GRP, GRP), "%s=c/%s" % (DBA, GRP)])
    path, _ = backup(pg, tools, str(tmp_path / "b"), SOURCE, "--key-file", key_file)
    proc = run([RESTORE, "--key-file", key_file, path, TARGET], script_env(pg, tools, PGUSER=DBA))
    assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
    assert _acl(pg, TARGET) == recorded
    assert pg.psql("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '%s'" % TARGET).strip() == GRP


def test_grant_sql_gives_an_acl_its_owner_granted_and_no_other():
    acl = ['=c/"Own er"', '"Own er"=Cc/"Own er"', '"a=b/c"=C*c/"Own er"', 'app=T/"Own er"']
    assert pgprops.grant_sql("db", acl, "Own er") == [
        'REVOKE TEMPORARY ON DATABASE "db" FROM "Own er";',
        'GRANT CONNECT ON DATABASE "db" TO PUBLIC;',
        'GRANT CONNECT ON DATABASE "db" TO "a=b/c";',
        'GRANT CREATE ON DATABASE "db" TO "a=b/c" WITH GRANT OPTION;',
        'GRANT TEMPORARY ON DATABASE "db" TO "app";']
    assert pgprops.grant_sql("db", ['"Own er"=CTc/"Own er"'], "Own er") == []
    assert pgprops.grant_sql("db", [], "o") == ['REVOKE CREATE, TEMPORARY, CONNECT ON DATABASE "db" FROM "o";']
    assert pgprops.grant_sql("db", ["=c/o", "x=c/grp"], "o") is None  # granted by another role
    assert pgprops.grant_sql("db", ["o=C*Tc/o"], "o") is None  # the owner's own grant option
    assert pgprops.grant_sql("db", ["o=CTcX/o"], "o") is None and pgprops.grant_sql("db", ["garbled"], "o") is None


def test_the_swap_s_hint_names_the_privilege_or_the_sessions():
    hint = pgrights.swap_hint("dba", "shop", True, False)
    assert hint(PgError('ERROR:  database "shop" is being accessed by other users')) == (
        "is shop in use? close its connections, or use --terminate-connections")
    for said in ("ERROR:  permission denied for table pg_database", "ERROR:  must be owner of database shop",
                 "ERROR:  permission denied to terminate process",  # 16 on; 15's (before, no hint but the sessions'):
                 "ERROR:  must be a member of the role whose process is being terminated or member of "
                 "pg_signal_backend", "ERROR:  must be a superuser to terminate superuser process"):
        assert hint(PgError(said)).startswith("the server refused role dba a privilege the swap needs: restore as ")
    assert pgrights.swap_hint("dba", "shop", False, False)(PgError("ERROR:  x")) is None
    assert pgrights.swap_hint("dba", "shop", True, True)(PgError("ERROR:  x")) is None


def test_the_swap_ends_no_autovacuum_worker():
    """A role that is no superuser may not end one, nor tell it from another process of no role
    (its kind is hidden from it): the swap's --terminate-connections failed on one that ran on
    DBNAME at that moment. The rename ends it itself; another process of no role is ended when
    the connecting role sees its kind (a superuser)."""
    sql = pgprops.swap_sql("tmp", "shop", "old", terminate=True).splitlines()[0]
    assert sql.endswith("WHERE datname = 'shop' AND pid <> pg_backend_pid() AND (usesysid IS NOT NULL OR "
                        "backend_type <> 'autovacuum worker');"), sql


def test_a_superusers_session_is_refused_before_the_load_even_with_pg_signal_backend(pg, tools, key_file, tmp_path,
                                                                                   dba):
    """pg_signal_backend lets a role end another role's sessions, never a superuser's
    (pgrights._UNENDED: `coalesce(r.rolsuper, false) OR ...`): a superuser's session on DBNAME
    is still refused first, not found by the swap's pg_terminate_backend after the whole load
    (`permission denied to terminate process`)."""
    _source(pg)
    pg.psql("CREATE DATABASE %s OWNER %s" % (TARGET, DBA))
    pg.psql("GRANT pg_signal_backend TO %s;" % DBA)
    superuser = _session(pg, TARGET, pg.user)
    try:
        _refused_before_anything(pg, tools, key_file, tmp_path,
                                 "role %s cannot restore %s in place: it may not end the sessions of role(s) %s on it "
                                 "(--terminate-connections: the swap ends them); database %s was not touched"
                                 % (DBA, TARGET, pg.user, TARGET), "--terminate-connections")
        assert superuser.poll() is None
    finally:
        _closed(superuser)
    assert leftover_databases(pg) == set()


def test_an_acl_of_an_owner_whose_rights_the_role_does_not_inherit_is_refused_before_the_load(pg, tools, key_file,
                                                                                          tmp_path, dba):
    """A member of the recorded owner that does not inherit its rights (NOINHERIT) may give it
    the database, not grant as it: refused before anything (pgrights.check's USAGE of the
    granter), not at the swap once the whole dump is loaded."""
    _source(pg, "ALTER DATABASE %s OWNER TO %s; GRANT %s TO %s; ALTER ROLE %s NOINHERIT;"
            % (SOURCE, GRP, GRP, DBA, DBA))
    pg.psql("REVOKE ALL ON DATABASE {0} FROM PUBLIC; GRANT CONNECT ON DATABASE {0} TO {1};".format(SOURCE, DBA),
            user=GRP)
    _refused_before_anything(pg, tools, key_file, tmp_path,
                             "role %s cannot restore %s: it lacks the privileges of role %s (a member that does not "
                             "inherit them), as whom the swap grants the database's privileges; database %s was not "
                             "created" % (DBA, TARGET, GRP, TARGET))
    assert TARGET not in databases(pg)


def test_a_recorded_tablespace_the_role_may_not_create_in_is_named(pg, dba, monkeypatch):
    """CREATE on the database's recorded tablespace, asked of the connecting role with the
    rest (pgrights.privilege_needs, on the session's cluster): named when it lacks it, not
    once granted. Before, no test had a tablespace for the role to lack."""
    from test_restore_dba import _tablespace

    for name, value in {**pg.env, "PGUSER": DBA}.items():
        monkeypatch.setenv(name, value)
    _tablespace(pg, "nsu_space")
    try:
        lacks = "it may not create databases in tablespace nsu_space (its recorded one)"
        assert pgrights.privilege_needs("postgres", TARGET, False, [], "nsu_space") == [lacks]
        pg.psql("GRANT CREATE ON TABLESPACE nsu_space TO %s" % DBA)
        assert pgrights.privilege_needs("postgres", TARGET, False, [], "nsu_space") == []
        assert pgrights.privilege_needs("postgres", TARGET, False, [], None) == []
    finally:
        pg.psql("DROP TABLESPACE nsu_space")
