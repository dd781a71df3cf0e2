"""The encpipe that the scripts run (without ENCPIPE: this Python's encpipe) is encpipe,
whatever directory they are run from; so are their own modules.

Before, it was `python -m encpipe`, and `-m` puts the working directory first on
the child's module path: a local user who could write the directory the operator
ran rotate or migrate from (/tmp, /var/tmp, where the README copies a remote's
backups to rotate them, a shared directory) put an `encpipe.py` there, and every
child ran it as the operator (root), given the key files' paths and the secrets
lent as /dev/fd/N; such a child may print a verified report for an empty file,
which the run renames over each backup. A module of the standard library's name
(`json.py`) was taken the same way; so were encpipe-backup's and encpipe-restore's own
modules (`python -m encpipe.launch`) and a remote restore's fetch (`-m encpipe.backup`).
Now each such module path starts without the working directory (encpipe/cli.py's
RUN_MODULE; encpipe-sh-setup's ENCPIPE_RUN_MODULE, the same line)."""

import json
import os
import subprocess
import sys

from encpipe.cli import RUN_MODULE
from test_backup_restore import BACKUP, RESTORE, SCRIPTS, python_env, run
from test_backup_restore import script_env as pg_env
from test_migrate import FEW, MIGRATE, make_backups
from test_remote_listing import upload
from test_remote_restore_names import GLOBALS
import test_remote_size_cap
from test_remote_size_cap import NAME
from test_rotate import SCRIPT, World, lines

sealed = test_remote_size_cap.sealed  # a fixture
SH_SETUP = SCRIPTS / "encpipe-sh-setup"

PLANTED = """import os, sys
with open(os.environ["PLANTED_RAN"], "a") as f:
    f.write(" ".join(sys.argv) + "\\n")
sys.exit(0)
"""


def planted(tmp_path):
    """A directory another user could write, holding an encpipe.py and a json.py of theirs;
    the file each writes to once run."""
    where = tmp_path / "cwd"
    where.mkdir()
    (where / "encpipe.py").write_text(PLANTED)
    (where / "json.py").write_text(PLANTED)
    return where, tmp_path / "planted-ran"


def script_env(ran):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCPIPE") and k != "PYTHONSAFEPATH"}
    env["PLANTED_RAN"] = str(ran)
    env["PYTHONPATH"] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # encpipe from this checkout
    return env


def test_rotate_run_from_a_directory_holding_an_encpipe_py_runs_encpipe(tmp_path):
    w = World(tmp_path)
    w.small()
    cwd, ran = planted(tmp_path)
    done = subprocess.run([sys.executable, SCRIPT, *w.args()], capture_output=True, cwd=cwd, env=script_env(ran),
                          timeout=300)
    assert not ran.exists(), ran.read_text()
    assert done.returncode == 0, done.stderr
    got = lines(done)
    assert {got[n]["status"] for n in ("a-old.enc", "b-old.enc")} == {"rotated"}


def test_migrate_run_from_a_directory_holding_an_encpipe_py_runs_encpipe(tmp_path, keys):
    backups = tmp_path / "backups"
    make_backups(backups, FEW, python_made=False)
    cwd, ran = planted(tmp_path)
    done = subprocess.run([sys.executable, MIGRATE, "--legacy-key-file", keys["old_key"], "--legacy-passphrase-file",
                           keys["old_pass"], "--key-file", keys["new_key"], str(backups)],
                          capture_output=True, text=True, cwd=cwd, env=script_env(ran), timeout=300)
    assert not ran.exists(), ran.read_text()
    assert done.returncode == 0, done.stderr
    assert "migrated" in done.stdout


def planted_package(tmp_path):
    """A directory another user could write, holding an encpipe/ package, a json.py and a
    runpy.py of theirs (runpy: what `python -c RUN_MODULE` imports once the directory is off
    the path); the file each writes to once run."""
    where = tmp_path / "cwd"
    (where / "encpipe").mkdir(parents=True)
    for name in ("encpipe/__init__.py", "json.py", "runpy.py"):
        (where / name).write_text(PLANTED)
    return where, tmp_path / "planted-ran"


def test_the_shell_scripts_run_modules_with_cli_s_very_line():
    """encpipe-sh-setup's ENCPIPE_RUN_MODULE is encpipe/cli.py's RUN_MODULE, byte for byte."""
    done = subprocess.run(["bash", "-c", '. "$1"; printf %s "${ENCPIPE_RUN_MODULE}"', "bash", str(SH_SETUP)],
                          capture_output=True, text=True, env={"PATH": os.environ["PATH"]})
    assert (done.returncode, done.stdout) == (0, RUN_MODULE), done.stderr


def test_backup_and_restore_run_from_a_directory_holding_an_encpipe_package(pg, tools, key_file, tmp_path):
    """encpipe-backup and encpipe-restore (python -m encpipe.launch, and their encpipe children
    python -m encpipe) run from a directory another user could write: before, its encpipe/
    ran in their place, as the operator."""
    pg.createdb("cwd_src")
    pg.psql("CREATE TABLE t (v text); INSERT INTO t VALUES ('kept')", db="cwd_src")
    cwd, ran = planted_package(tmp_path)
    env = pg_env(pg, tools, PLANTED_RAN=str(ran))
    made = run([BACKUP, "--dir", tmp_path / "backups", "--key-file", key_file, "cwd_src"], env, cwd=cwd)
    assert not ran.exists(), ran.read_text()
    assert made.returncode == 0, made.stderr.decode()
    name = json.loads(made.stdout)["filename"]
    back = run([RESTORE, "--key-file", key_file, tmp_path / "backups" / name, "cwd_dst"], env, cwd=cwd,
               stdin=subprocess.DEVNULL)
    assert not ran.exists(), ran.read_text()
    assert back.returncode == 0, back.stderr.decode()
    assert pg.psql("SELECT v FROM t", db="cwd_dst").strip() == "kept"


def test_a_remote_restore_run_from_a_directory_holding_an_encpipe_package(s3, sealed, tmp_path):
    """A remote FILE's objects are fetched by `python -m encpipe.backup fetch` (pgfetch): before,
    the working directory's encpipe/ ran in its place. The outcome is the one
    test_remote_restore_names.py sees from any directory: the planted globals file refused."""
    key, plain, _ = sealed
    upload(s3, tmp_path, "cwd", {NAME: plain, GLOBALS: b"planted by a writer of the bucket\n"})
    cwd, ran = planted_package(tmp_path)
    done = subprocess.run([RESTORE, "--key-file", key, f"{s3.location}/cwd/{NAME}", "shop"], cwd=cwd,
                          env={**python_env(), **s3.env, "PLANTED_RAN": str(ran),
                               "PGHOST": str(tmp_path / "no-server")},
                          capture_output=True, stdin=subprocess.DEVNULL, timeout=120)
    assert not ran.exists(), ran.read_text()
    assert (done.returncode, done.stdout) == (65, b""), done.stderr
    assert f"cannot decrypt the globals file {s3.location}/cwd/{GLOBALS} " in done.stderr.decode()


# A planted module that says it ran, then hands over to the real one: the set-up's
# probes then answer as without it (no reinstall, no `venv --clear` of the checkout's .venv).
SHIM = """import importlib, os, sys
with open(os.environ["PLANTED_RAN"], "a") as f:
    f.write(__name__ + "\\n")
_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
del sys.modules[__name__]
sys.modules[__name__] = importlib.import_module(__name__)
"""
SET_UP_MODULES = ("Crypto", "docopt", "cryptography", "venv", "ensurepip", "pip", "compileall", "encpipe", "json")


def test_the_demos_set_up_run_from_a_planted_directory_imports_none_of_it(tmp_path):
    """The checkout demo's set-up (is python3's pycryptodome there? does .venv's pip
    run?) probed with `python3 -c` and `-m pip`, which put the working directory first
    on the module path: a Crypto.py another user left in /tmp ran as root, before
    apt-get, when the demo was started from there. Now each Python of the set-up runs
    isolated (-I), and the tour's scripts get no ENCPIPE of `-m encpipe`."""
    where, ran = tmp_path / "cwd", tmp_path / "planted-ran"
    where.mkdir()
    for name in SET_UP_MODULES:
        (where / f"{name}.py").write_text(SHIM)
    env = script_env(ran)
    del env["PYTHONPATH"]
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env["PATH"]])  # python3: this one, with the deps
    done = subprocess.run([str(SCRIPTS / "encpipe-demo"), "--offline"], cwd=where, env=env, capture_output=True,
                          stdin=subprocess.DEVNULL, timeout=300)
    assert done.returncode == 0, done.stderr.decode()
    assert b"installing" not in done.stderr, done.stderr.decode()
    assert not ran.exists(), ran.read_text()


def test_readmes_module_commands_run_isolated_and_so_import_nothing_planted(tmp_path):
    """README gives `python3 -I -m encpipe.backup ...` (the steps of a script of one's own,
    list, prune, verify) for operators to run: -m put the working directory first on
    the module path, an encpipe/ or json.py there ran as the operator, with the key
    files' paths. README now says `python3 -I -m`, which leaves it out."""
    readme = (SCRIPTS.parent / "README.md").read_text()
    given = [line for line in readme.splitlines() if "python3 -m encpipe.backup" in line]
    assert given == [] and "python3 -m encpipe.backup" not in " ".join(readme.split())  # a line broken there too
    assert readme.count("python3 -I -m encpipe.backup") >= 10
    where, ran = planted(tmp_path)
    (where / "encpipe.py").unlink()
    (where / "encpipe").mkdir()
    (where / "encpipe" / "__init__.py").write_text(PLANTED)
    (tmp_path / "backups").mkdir(mode=0o700)
    env = script_env(ran)
    del env["PYTHONPATH"]  # -I leaves it out: this Python's own encpipe (the checkout's, installed editable)
    done = subprocess.run([sys.executable, "-I", "-m", "encpipe.backup", "list", str(tmp_path / "backups")],
                          cwd=where, env=env, capture_output=True, stdin=subprocess.DEVNULL, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (0, b"[]\n", b"")
    assert not ran.exists(), ran.read_text()
