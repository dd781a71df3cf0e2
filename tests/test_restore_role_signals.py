"""A restore stopped (SIGTERM, SIGINT, SIGHUP) while, or just after, its psql creates the
globals file's missing roles: the roles it created are dropped again, nothing else is
changed, nothing is written to standard output. A psql stand-in signals the restore once
the real psql committed the CREATE ROLEs."""

import os
import signal
import subprocess

import pytest

from test_backup_restore import RESTORE, backup, databases, dump, ensure_small, script_env

ROLE = "rolesig_owner"
TARGET = "rolesig_target"


@pytest.fixture(scope="module")
def role_backup(pg, tools, key_file, tmp_path_factory):
    db = ensure_small(pg, "rolesig_source", rows=10)
    pg.psql(f"DROP ROLE IF EXISTS {ROLE}; CREATE ROLE {ROLE} NOLOGIN")
    try:
        path, _ = backup(pg, tools, str(tmp_path_factory.mktemp("rolesig") / "b"), db, "--key-file", key_file)
    finally:
        pg.psql(f"DROP ROLE {ROLE}")
    return path


@pytest.mark.parametrize("signum, status, exists", [
    (signal.SIGTERM, 143, True), (signal.SIGTERM, 143, False), (signal.SIGINT, 130, True), (signal.SIGHUP, -1, False),
], ids=["TERM-in-place", "TERM-new", "INT-in-place", "HUP-new"])
def test_a_restore_stopped_as_it_creates_the_roles_drops_them_and_changes_nothing(pg, tools, key_file, role_backup,
                                                                                  tmp_path, signum, status, exists):
    pg.dropdb(TARGET)
    before = None
    if exists:
        pg.createdb(TARGET)
        pg.psql("CREATE TABLE kept (x int); INSERT INTO kept VALUES (7)", db=TARGET)
        before = dump(pg, TARGET)
    roles = pg.psql("SELECT rolname FROM pg_roles ORDER BY 1")
    fake = tmp_path / "fakebin"
    fake.mkdir()
    real = pg.bin("psql")
    (fake / "psql").write_text(f"""#!/bin/sh
case " $* " in *" -0 "*) ;; *) exec {real} "$@" ;; esac
input=$(cat)
printf '%s\\n' "$input" | {real} "$@"
status=$?
case $input in *"CREATE ROLE {ROLE}"*) kill -{int(signum)} $PPID ;; esac
exit $status
""")
    (fake / "psql").chmod(0o755)
    env = script_env(pg, tools)
    env["PATH"] = f"{fake}{os.pathsep}{env['PATH']}"
    try:
        done = subprocess.run([RESTORE, "--key-file", key_file, role_backup, TARGET], env=env,
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
        err = done.stderr.decode()
        assert (done.returncode, done.stdout) == (status, b""), err
        assert "dropped the roles this restore had created again" in err, err
        assert pg.psql("SELECT rolname FROM pg_roles ORDER BY 1") == roles
        assert [d for d in databases(pg) if d.startswith(("encpipe_restore_", TARGET + "_pre"))] == []
        if exists:
            assert dump(pg, TARGET) == before
        else:
            assert TARGET not in databases(pg)
    finally:
        pg.psql(f"DROP ROLE IF EXISTS {ROLE}")
        pg.dropdb(TARGET)
