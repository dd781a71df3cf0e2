"""The demo runs the scripts beside it, even when the Python it runs is reached
through a shim that puts another directory first on PATH (as pyenv's does), where
an older installed encpipe-backup may be."""

import os
import shutil
import stat
import sys
import tempfile

from test_backup_restore import SCRIPTS, run, script_env


def _executable(path, text):
    path.write_text(text)
    path.chmod(stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)


def test_the_demo_uses_its_own_scripts_whatever_the_python_shim_puts_first(pg, tools, tmp_path):
    decoy, shim = tmp_path / "decoy", tmp_path / "shim"
    decoy.mkdir()
    shim.mkdir()
    for name in ("encpipe-backup", "encpipe-restore", "encpipe-list", "encpipe-verify"):
        _executable(decoy / name, f"#!/bin/sh\necho 'an older {name}' >&2\nexit 99\n")
    _executable(shim / "python3", f'#!/bin/sh\nPATH="{decoy}:$PATH"\nexport PATH\nexec "{sys.executable}" "$@"\n')
    workdir = tempfile.mkdtemp(prefix="encpipe-demo-test-")
    os.chmod(workdir, 0o711)  # the demo's server may run as another user
    try:
        env = script_env(pg, tools, TMPDIR=workdir, PG_BINDIR=pg.bindir)
        for name in ("PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "ENCPIPE_PYTHON"):
            env.pop(name, None)
        env["PATH"] = os.pathsep.join([str(shim), env["PATH"]])
        proc = run([SCRIPTS / "encpipe-demo"], env)
        out, err = proc.stdout.decode(), proc.stderr.decode()
        assert proc.returncode == 0, out[-3000:] + err
        assert "an older" not in out + err
        assert "(exit status 67, as expected)" in out
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def test_offline_by_choice_says_to_run_without_offline_not_to_install_postgresql(tmp_path):
    """encpipe-demo --offline, the server binaries found (PG_BINDIR), ends with one
    line that says how to get the PostgreSQL tour: run it without --offline. Before,
    it said to install the server that was there."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name in ("initdb", "pg_ctl"):  # found, never run: --offline starts no server
        _executable(bindir / name, "#!/bin/sh\necho ran >&2\nexit 99\n")
    env = {"PATH": f"{os.path.dirname(sys.executable)}:/usr/bin:/bin", "PG_BINDIR": str(bindir),
           "TMPDIR": str(tmp_path)}
    proc = run([SCRIPTS / "encpipe-demo", "--offline"], env)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.decode().splitlines()[-1].startswith("==> Done; removing ")
    hints = [line for line in proc.stderr.decode().splitlines() if line.startswith("encpipe-demo:")]
    assert hints == ["encpipe-demo: hint: for the backup, list, verify and restore tour, "
                     "run encpipe-demo without --offline"]


def test_a_pg_bindir_without_the_server_is_named_not_to_be_set(tmp_path):
    """PG_BINDIR set to a directory without initdb and pg_ctl (a client-only bin, a
    typo): the demo runs the offline tour and its hint names PG_BINDIR as the cause.
    Before, the hint said to install PostgreSQL or set PG_BINDIR, which was set."""
    bindir = tmp_path / "client\nonly"
    bindir.mkdir()
    env = {"PATH": f"{os.path.dirname(sys.executable)}:/usr/bin:/bin", "PG_BINDIR": str(bindir),
           "TMPDIR": str(tmp_path)}
    proc = run([SCRIPTS / "encpipe-demo"], env)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.decode().splitlines()[-1].startswith("==> Done; removing ")
    hints = [line for line in proc.stderr.decode().splitlines() if line.startswith("encpipe-demo:")]
    assert hints == [f"encpipe-demo: hint: PG_BINDIR ({tmp_path}/client\\nonly) holds no initdb and pg_ctl: for "
                     "the backup, list, verify and restore tour, set it to the PostgreSQL server's bin directory"]
