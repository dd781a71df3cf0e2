"""README's "Restoring: encpipe-restore" example, run as written on the server that made
the backup: a role dropped since the backup (a revoked login) stays dropped. Its globals
file holds the roles as they were at its run, and a restore without --no-create-roles
creates each one the server lacks: the revoked login came back, its password with it,
exit 0."""

import json
import os
import shlex
from pathlib import Path

from test_backup_restore import BACKUP, RESTORE, run, script_env

README = Path(__file__).resolve().parent.parent / "README.md"
KEY_IN_README, DIR_IN_README = "/etc/encpipe/backup.key", "/var/backups/encpipe"
LOGIN = "SELECT rolcanlogin, rolpassword IS NOT NULL FROM pg_authid WHERE rolname = 'contractor'"


def restore_example():
    """The first encpipe-restore of the section's example, as a list of words."""
    text = README.read_text()
    section = text[text.index("### Restoring: `encpipe-restore`"):]
    section = section[:section.index("\n### ", 1)]
    block = "\n".join(line[4:] for line in section.splitlines() if line.startswith("    "))
    return next(shlex.split(command)[4:] for command in block.replace("\\\n", " ").splitlines()
                if command.startswith("runuser -u postgres -- encpipe-restore "))


def test_readmes_restore_example_brings_back_no_role_dropped_since(empty_cluster, tools, key_file, tmp_path):
    pg, env, directory = empty_cluster, script_env(empty_cluster, tools), str(tmp_path / "b")
    pg.psql("CREATE ROLE grp NOLOGIN; CREATE ROLE contractor LOGIN PASSWORD 'c' IN ROLE grp; CREATE DATABASE shop")
    pg.psql("CREATE TABLE t (x int); INSERT INTO t VALUES (1)", db="shop")
    proc = run([BACKUP, "--dir", directory, "--key-file", key_file, "shop"], env)
    assert proc.returncode == 0, proc.stderr.decode()
    path = os.path.join(directory, json.loads(proc.stdout)["filename"])
    pg.psql("DROP ROLE contractor")  # a revoked login
    words = restore_example()
    assert words[0] == "encpipe-restore" and words[-1] == "shop"
    words = [key_file if w == KEY_IN_README else path if w.startswith(DIR_IN_README + "/") else w for w in words]
    proc = run([RESTORE, *words[1:]], env)
    assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
    lines = proc.stderr.decode().splitlines()
    assert lines[0] == ("encpipe-restore: roles of the globals file this server lacks are not created "
                        "(--no-create-roles): contractor")
    assert pg.psql(LOGIN) == ""  # still dropped
    assert pg.psql("SELECT x FROM t", db="shop") == "1\n"
    # what the option is for: without it, the run's globals file creates the login again
    proc = run([RESTORE, "--key-file", key_file, path, "shop"], env)
    assert proc.returncode == 0, proc.stderr.decode()
    assert "encpipe-restore: created roles: contractor" in proc.stderr.decode().splitlines()
    assert pg.psql(LOGIN) == "t|t\n"
