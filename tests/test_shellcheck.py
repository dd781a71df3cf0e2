"""Every shell script in scripts/ is ShellCheck-clean."""

import shutil
import subprocess
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
SHELL_SHEBANGS = ("#!/bin/sh", "#!/bin/bash", "#!/usr/bin/env bash", "#!/usr/bin/env sh")


def shell_scripts():
    found = []
    for path in sorted(SCRIPTS.rglob("*")):
        if path.is_file():
            with open(path, "rb") as f:
                first = f.readline().decode("utf-8", "replace").strip()
            if first.startswith(SHELL_SHEBANGS):
                found.append(path)
    return found


def test_shell_scripts_are_found():
    names = {p.name for p in shell_scripts()}
    assert {"encpipe-backup", "encpipe-restore", "encpipe-demo"} <= names


def test_shellcheck_passes_on_every_shell_script():
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is needed (.ci/run installs it)"
    scripts = shell_scripts()
    proc = subprocess.run([shellcheck, "--severity=style", "--external-sources", *map(str, scripts)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
