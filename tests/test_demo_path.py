"""The demo runs the scripts beside it, even when the Python it runs is reached
through a shim that puts another directory first on PATH (as pyenv's does), where
an older installed encpipe-backup may be."""

import os
import shutil
import stat
import subprocess
import sys
import tempfile

import pytest

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


@pytest.mark.skipif(os.geteuid() != 0, reason="as root only does the demo's server run as another user")
def test_as_root_a_tmpdir_the_server_user_cannot_reach_is_one_line_and_a_hint(pg, tools, tmp_path):
    """Run as root, the demo's server runs as postgres (or nobody), in TMPDIR. A TMPDIR
    that user cannot pass through (under /root, libpam-tmpdir's /tmp/user/0, pytest's
    own tmp_path) failed in initdb with `encpipe-demo: error: Command '['runuser', ...]'
    returned non-zero exit status 1.` and no word of what to change."""
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    env = script_env(pg, tools, TMPDIR=str(private), PG_BINDIR=pg.bindir)
    for name in ("PGHOST", "PGPORT", "PGUSER", "PGDATABASE"):
        del env[name]
    proc = run([SCRIPTS / "encpipe-demo"], env)
    err = proc.stderr.decode()
    assert proc.returncode == 1, err
    lines = [line for line in err.splitlines() if line.startswith("encpipe-demo:")]
    assert lines == [f"encpipe-demo: error: the server would run as user postgres, who cannot reach {private}",
                     "encpipe-demo: hint: set TMPDIR to a directory every user can pass through, "
                     "such as TMPDIR=/tmp"], err
    assert "initdb" not in err and os.listdir(private) == []


def test_the_demo_reached_through_a_symbolic_link_finds_its_checkout(tmp_path):
    """A link on PATH to encpipe-demo (pipx links an install's scripts into
    ~/.local/bin; `ln -s /opt/encpipe/bin/encpipe-* /usr/local/bin/`) is the demo
    beside its target, as every other script is (encpipe-sh-setup's readlink -f).
    Before, it looked for its checkout, or its venv's python3, beside the link:
    `/usr/bin/python3: Error while finding module specification for 'encpipe.demo'`."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "encpipe-demo").symlink_to(SCRIPTS / "encpipe-demo")
    env = {"PATH": f"{bindir}:{os.path.dirname(sys.executable)}:/usr/bin:/bin", "TMPDIR": str(tmp_path)}
    proc = run(["encpipe-demo", "--offline"], env, cwd="/")
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.decode().splitlines()[-1].startswith("==> Done; removing ")


def test_a_script_the_demo_cannot_run_is_not_called_an_output_error(tmp_path):
    """Installed in a virtual environment whose path holds a space, encpipe-list's
    shebang (`#!/opt/my tools/bin/python`) cannot be run: the tour stopped with
    `encpipe-demo: error: cannot write output: No such file or directory`, 74, the
    status README gives for a standard output that cannot be written."""
    broken = tmp_path / "encpipe-list"
    _executable(broken, "#!/no/such/python\n")
    code = ("import sys; from encpipe import demo\n"
            f"demo.offline = lambda base: demo.run([{str(broken)!r}, '--dir', 'backups'])\n"
            "sys.exit(demo.main(['--offline']))\n")
    env = {**os.environ, "TMPDIR": str(tmp_path), "PYTHONPATH": str(SCRIPTS.parent)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, env=env, cwd=tmp_path, timeout=60)
    err = done.stderr.decode()
    assert done.returncode == 1, err
    assert "cannot write output" not in err and "encpipe-list" in err, err
