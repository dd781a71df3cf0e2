"""A script installed where the path has a space: encpipe-restore hands its encpipe
command to encpipe.pgrestore in $ENCPIPE, which that splits as a shell does
(cli.child_command). The command it found beside itself (a venv's bin/encpipe, else
its python3 -m encpipe) went joined by spaces, unquoted: "/opt/my tools/bin/encpipe"
ran /opt/my, and every restore from such an install failed, 66 (`cannot run encpipe:
/opt/my`), before it read a key."""

import shlex
import shutil
import subprocess
import sys

import pytest

from test_fail_closed_audit import REPO


@pytest.mark.parametrize("beside", ["encpipe", "python3 only"])
def test_a_restore_from_an_install_whose_path_has_a_space_runs_its_encpipe(tmp_path, beside):
    bindir = tmp_path / "my tools" / "bin"
    bindir.mkdir(parents=True)
    for script in ("encpipe-restore", "encpipe-sh-setup"):
        shutil.copy(REPO / "scripts" / script, bindir / script)
    wrappers = {"python3": f"exec {shlex.quote(sys.executable)} \"$@\"\n"}
    if beside == "encpipe":  # as pip writes an entry point whose interpreter's path has a space
        wrappers["encpipe"] = f"exec {shlex.quote(str(bindir / 'python3'))} -m encpipe \"$@\"\n"
    for name, body in wrappers.items():
        (bindir / name).write_text("#!/bin/sh\n" + body)
        (bindir / name).chmod(0o755)
    key = tmp_path / "bad.key"
    key.write_text("not a key\n")
    key.chmod(0o600)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "PGHOST": str(tmp_path / "no server")}
    done = subprocess.run([str(bindir / "encpipe-restore"), "--no-globals", "--key-file", str(key),
                           str(tmp_path / "shop_20250101T020000Z.sql.enc"), "shop"],
                          capture_output=True, env=env, cwd=tmp_path, timeout=60)
    # the key file read by its encpipe (before: `cannot run encpipe: .../my`, 66)
    assert (done.returncode, done.stdout) == (64, b""), done.stderr
    assert b"--key-file: " in done.stderr and b"a key must be 64 hex characters" in done.stderr, done.stderr
