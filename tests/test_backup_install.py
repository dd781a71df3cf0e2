"""The schedule works as installed: from a virtual environment, the unit's
ExecStart and README's cron line back up and prune under `env -i` (PATH
/usr/bin:/bin, plus the libpq variables a unit's Environment= would set), and
the generated unit passes `systemd-analyze verify`."""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from test_backup_restore import REPO, dir_entries, ensure_small

SYSTEMD = REPO / "scripts" / "systemd"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """encpipe installed (not editable) into a venv; its dependencies from this Python."""
    root = tmp_path_factory.mktemp("venv")
    source = root / "src"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".git", "__pycache__", "*.egg-info", "build"))
    venv.EnvBuilder(with_pip=False).create(root / "env")
    python = root / "env" / "bin" / "python3"
    # Its dependencies, and pip, are this Python's (a venv made from a venv sees only
    # the base interpreter's packages, which may lack them): a path file names them.
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "suite-packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # The wheel is built by this Python (the test extra has setuptools, which a venv of
    # Python 3.12 or later lacks, and `wheel`), then installed into the venv.
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                            "-w", str(root / "dist"), str(source)], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr
    (wheel,) = (root / "dist").glob("encpipe-*.whl")
    done = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", str(wheel)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    shutil.rmtree(source)  # nothing may come from the checkout
    return root / "env" / "bin"


def bare_env(pg):
    env = {"PATH": "/usr/bin:/bin"}
    env.update({k: pg.env[k] for k in ("PGHOST", "PGPORT", "PGUSER")})
    return env


def run_bare(argv, pg):
    return subprocess.run(["env", "-i", *[f"{k}={v}" for k, v in bare_env(pg).items()], *argv],
                          capture_output=True, timeout=300, cwd="/")


def backs_up_twice_and_prunes(argv, pg, directory):
    reports = []
    for _ in range(2):
        done = run_bare(argv, pg)
        assert done.returncode == 0, done.stderr.decode()
        reports.append(json.loads(done.stdout))
    first, second = (r["filename"] for r in reports)
    assert sorted(reports[1]["pruned"]) == sorted([first, globals_of(first)])  # each run: a dump and its globals
    assert dir_entries(directory) == sorted([second, globals_of(second), ".encpipe-cluster"])


def globals_of(name):
    return re.sub(r"\.(sql\.zst|sql\.gz|sql|dump)\.enc$", ".globals.sql.enc", name)


def test_unit_exec_start_backs_up_and_prunes_from_a_venv(pg, installed, key_file, tmp_path):
    db = ensure_small(pg, "bk_installed")
    directory = tmp_path / "backups"
    # the unit's DIR, which it refuses in /tmp (PrivateTmp=), is the test's once out of the unit
    unit = run_bare([installed / "encpipe-backup", "--systemd-unit", "--dir", "/var/backups/encpipe", "--keep-last",
                     "1", "--key-file", "${CREDENTIALS_DIRECTORY}/encpipe-backup.key"], pg)
    assert unit.returncode == 0, unit.stderr
    text = unit.stdout.decode()
    (exec_start,) = re.findall(r"^ExecStart=(.*)$", text, flags=re.M)
    assert re.search(r"^TimeoutStartSec=\S+$", text, flags=re.M)
    assert "OnFailure=encpipe-failed@%i.service" in text
    assert "ReadWritePaths=/var/backups/encpipe" in text
    argv = shlex.split(exec_start.replace("${CREDENTIALS_DIRECTORY}", str(tmp_path / "creds"))
                       .replace("/var/backups/encpipe", str(directory)))
    assert argv[0] == str(installed / "encpipe-backup") and argv[-1] == "%I"
    os.makedirs(tmp_path / "creds")
    shutil.copy(key_file, tmp_path / "creds" / "encpipe-backup.key")
    argv[-1] = db
    backs_up_twice_and_prunes(argv, pg, directory)

    units = tmp_path / "units"
    units.mkdir()
    (units / "encpipe-backup@bk_installed.service").write_text(text)
    shutil.copy(SYSTEMD / "encpipe-backup@.timer", units / "encpipe-backup@bk_installed.timer")
    shutil.copy(SYSTEMD / "encpipe-failed@.service", units / "encpipe-failed@bk_installed.service")
    proc = subprocess.run(["systemd-analyze", "verify", *sorted(p.name for p in units.iterdir())], cwd=units,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "encpipe-backup" not in proc.stderr, proc.stderr


def test_readme_cron_line_backs_up_and_prunes_from_a_venv(pg, installed, key_file, tmp_path):
    db = ensure_small(pg, "bk_installed")
    readme = (REPO / "README.md").read_text()
    (line,) = [m for m in re.findall(r"^    (0 2 \* \* \* .*)$", readme, flags=re.M)]
    fields = line.split()
    assert fields[5] == "postgres" and fields[6] == "/usr/local/bin/encpipe-backup"
    command = " ".join(fields[6:])
    command = command.replace("/usr/local/bin/", f"{installed}/").replace(
        "/var/backups/encpipe", str(tmp_path / "backups")).replace("/etc/encpipe/backup.key", key_file)
    argv = shlex.split(command)
    assert argv[-2:] == ["shop", ">/dev/null"]  # cron's sh: the JSON line of a run that worked is not mailed
    del argv[-1]
    argv[-1] = db
    backs_up_twice_and_prunes(argv, pg, tmp_path / "backups")  # --keep-daily 14: today's newest stays
    prune = run_bare([installed / "encpipe-prune", "--keep-last", "1", "--key-file", key_file,
                      tmp_path / "backups"], pg)
    assert prune.returncode == 0, prune.stderr.decode()
    assert json.loads(prune.stdout)["removed"] == []


def test_the_shipped_unit_is_the_generated_one_for_usr_local_bin():
    from encpipe.backup import unit

    shipped = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts", "systemd",
                           "encpipe-backup@.service")
    with open(shipped) as f:
        assert f.read() == unit.render("/usr/local/bin/encpipe-backup", []) + "\n"  # as --systemd-unit prints it
