"""README's "Disaster recovery: a new server", its commands run as written, in their order,
on a server as initdb left it: no role but the bootstrap superuser, `postgres`, which the
restores connect as (on Debian, `runuser -u postgres`).

The lost server's databases were backed up at different times, its `postgres` database
first; a role was dropped between that run and the newest. The procedure restores the
newest run first so that the roles come back as they were at its run, and the others with
--no-create-roles: the `postgres` database too, else its older globals file made the
dropped role (a revoked login, its password with it) come back."""

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from pgcluster import BOOTSTRAP_ROLE, PgCluster
from test_backup_restore import BACKUP, RESTORE, run, script_env

README = Path(__file__).resolve().parent.parent / "README.md"
KEY_IN_README, DIR_IN_README = "/etc/encpipe/backup.key", "/var/backups/encpipe"

_LOST_ROLES = """
CREATE ROLE boss LOGIN PASSWORD 'boss pw';
CREATE ROLE app_owner LOGIN PASSWORD 'owner pw';
CREATE ROLE grp NOLOGIN;
CREATE ROLE reader LOGIN PASSWORD 'reader pw' IN ROLE grp;
GRANT grp TO app_owner WITH ADMIN OPTION;
CREATE ROLE contractor LOGIN PASSWORD 'contractor pw' IN ROLE grp;
ALTER ROLE reader SET work_mem = '5MB';
ALTER DATABASE postgres OWNER TO boss;
REVOKE ALL ON DATABASE postgres FROM PUBLIC;
GRANT CONNECT ON DATABASE postgres TO reader;
ALTER DATABASE postgres SET work_mem = '9MB';
COMMENT ON DATABASE postgres IS 'main';
CREATE DATABASE shop OWNER app_owner;
REVOKE CONNECT, TEMPORARY ON DATABASE shop FROM PUBLIC;
GRANT CONNECT ON DATABASE shop TO reader;
ALTER ROLE reader IN DATABASE shop SET statement_timeout = '5s';
CREATE DATABASE "-crm" OWNER app_owner;
"""
_CONTENT = """
CREATE SCHEMA app AUTHORIZATION app_owner;
CREATE TABLE app.t (id serial PRIMARY KEY, v text);
INSERT INTO app.t (v) SELECT 'row ' || g FROM generate_series(1, 50) g;
ALTER TABLE app.t OWNER TO app_owner;
GRANT SELECT ON app.t TO grp;
"""
# what a DBA compares: the roles, their memberships and settings, each database's properties
_CATALOG = """
SELECT rolname, rolsuper, rolcanlogin, rolpassword FROM pg_authid WHERE rolname !~ '^pg_' ORDER BY 1;
SELECT r.rolname, m.rolname, g.rolname, admin_option FROM pg_auth_members a JOIN pg_roles r ON r.oid = a.roleid
  JOIN pg_roles m ON m.oid = a.member JOIN pg_roles g ON g.oid = a.grantor ORDER BY 1, 2;
SELECT d.datname, r.rolname, s.setconfig FROM pg_db_role_setting s LEFT JOIN pg_database d ON d.oid = s.setdatabase
  LEFT JOIN pg_roles r ON r.oid = s.setrole ORDER BY 1, 2;
SELECT datname, pg_get_userbyid(datdba), datacl, shobj_description(oid, 'pg_database') FROM pg_database
  WHERE datname IN ('postgres', 'shop', '-crm') ORDER BY 1;
"""
FILES = {"shop": "plain", "-crm": "custom", "postgres": "plain"}  # as README's commands name them


def procedure():
    """The commands of README's disaster recovery, in its order, each as a list of words
    (a command continued with `\\` joined), with the `runuser -u postgres --` they start with."""
    text = README.read_text()
    section = text[text.index("### Disaster recovery: a new server"):]
    section = section[:section.index("\n### ", 1)]
    block = "\n".join(line[4:] for line in section.splitlines() if line.startswith("    "))
    return [shlex.split(command) for command in block.replace("\\\n", " ").splitlines()
            if command.startswith("runuser -u postgres -- ")]


def _backup(old, tools, key_file, directory, db):
    proc = run([BACKUP, "--dir", directory, "--format", FILES[db], "--key-file", key_file, "--", db],
               script_env(old, tools, PGUSER=BOOTSTRAP_ROLE))
    assert proc.returncode == 0, proc.stderr.decode()
    return os.path.join(directory, json.loads(proc.stdout)["filename"])


def dumps(cluster):
    env = dict(cluster.env, PGUSER=BOOTSTRAP_ROLE)
    return {db: [line for line in subprocess.run([cluster.bin("pg_dump"), "--", db], env=env, capture_output=True,
                                                 check=True).stdout.decode().splitlines()
                 if not line.startswith(("\\restrict ", "\\unrestrict "))] for db in FILES}


@pytest.mark.slow
def test_readmes_procedure_brings_the_roles_back_as_they_were_at_the_newest_run(tools, key_file, tmp_path):
    directory, paths = str(tmp_path / "b"), {}
    with PgCluster(own_initdb=True) as old:
        old.psql('DROP ROLE "%s"' % old.user.replace('"', '""'), user=BOOTSTRAP_ROLE)  # Debian's: postgres only
        old.psql(_LOST_ROLES, user=BOOTSTRAP_ROLE)
        for db in FILES:
            old.psql(_CONTENT, db=db, user=BOOTSTRAP_ROLE)
        paths["postgres"] = _backup(old, tools, key_file, directory, "postgres")  # the oldest run
        paths["-crm"] = _backup(old, tools, key_file, directory, "-crm")
        old.psql("REVOKE grp FROM contractor; DROP ROLE contractor", user=BOOTSTRAP_ROLE)  # gone since
        paths["shop"] = _backup(old, tools, key_file, directory, "shop")  # the newest run
        lost, lost_dumps = old.psql(_CATALOG, user=BOOTSTRAP_ROLE), dumps(old)
    assert "contractor" not in lost
    with PgCluster(own_initdb=True) as new:
        new.psql('DROP ROLE "%s"' % new.user.replace('"', '""'), user=BOOTSTRAP_ROLE)  # truly empty
        env = script_env(new, tools, PGUSER=BOOTSTRAP_ROLE)
        ran = []
        for words in procedure():
            words = words[4:]
            if words[0] == "psql" and "TABLESPACE" in " ".join(words) or words[0] == "encpipe":
                continue  # step 1: the lost server had no tablespace
            words = [key_file if w == KEY_IN_README else directory if w == DIR_IN_README else w for w in words]
            for i, word in enumerate(words):
                name = os.path.basename(word)
                if word.startswith(DIR_IN_README + "/"):
                    words[i] = paths[re.match(r"(.+)_[0-9]{8}T[0-9]{6}Z\.", name)[1]]
            tool = {"psql": new.bin("psql"), "encpipe-restore": RESTORE, "encpipe-backup": BACKUP}[words[0]]
            proc = run([tool, *words[1:]], env)
            assert proc.returncode == 0, (words, proc.stderr.decode())
            ran.append(words[0])
        assert ran.count("encpipe-restore") == len(FILES) and ran[-1] == "encpipe-backup"
        assert new.psql(_CATALOG, user=BOOTSTRAP_ROLE) == lost  # no contractor: dropped before the newest run
        assert dumps(new) == lost_dumps


_AUDITED = """
CREATE TABLE ddl_log (id serial PRIMARY KEY, tag text);
CREATE FUNCTION log_ddl() RETURNS event_trigger LANGUAGE plpgsql
    AS $$BEGIN INSERT INTO public.ddl_log (tag) VALUES (tg_tag); END$$;
CREATE MATERIALIZED VIEW mv AS SELECT 1 AS x;
CREATE EVENT TRIGGER audit ON ddl_command_end EXECUTE FUNCTION log_ddl();
"""


@pytest.mark.parametrize("fmt", ["plain", "custom"])
def test_an_event_trigger_sees_the_restores_refresh_of_a_materialized_view(tools, key_file, tmp_path, fmt,
                                                                          empty_cluster):
    """As README says (Disaster recovery, what does not come back as it was): pg_dump makes
    event triggers before it refreshes materialized views, so a trigger that logs DDL logs
    the restore's REFRESH MATERIALIZED VIEW, a row (and a sequence's value) the original
    did not have; PostgreSQL 15 has no setting that holds event triggers off for a load."""
    with PgCluster() as old:
        old.createdb("audited")
        old.psql(_AUDITED, db="audited")
        assert old.psql("SELECT count(*) FROM ddl_log", db="audited") == "0\n"
        proc = run([BACKUP, "--dir", str(tmp_path / "b"), "--format", fmt, "--key-file", key_file, "audited"],
                   script_env(old, tools))
        assert proc.returncode == 0, proc.stderr.decode()
        path = os.path.join(str(tmp_path / "b"), json.loads(proc.stdout)["filename"])
    proc = run([RESTORE, "--key-file", key_file, path, "audited"], script_env(empty_cluster, tools))
    assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
    assert empty_cluster.psql("SELECT tag FROM ddl_log", db="audited") == "REFRESH MATERIALIZED VIEW\n"
