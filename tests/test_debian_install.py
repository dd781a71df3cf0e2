"""scripts/lib/debian.bash: the setting that keeps PostgreSQL's packages from making a
default cluster while they install is removed again however the install ends.

debian_install writes /etc/postgresql-common/createcluster.d/no-main-cluster.conf
before `apt-get install postgresql` and removes it afterwards, unless it was there
before. A signal to the script while apt-get ran (Ctrl-C, timeout's or systemd's
SIGTERM, a closed terminal's SIGHUP) ended it with the setting left: every later
install of PostgreSQL on the machine made no main cluster, and every later
debian_install took the setting for one of the machine's own and left it too.

Each test runs the library in a mount namespace of its own whose
/etc/postgresql-common is an empty tmpfs holding an empty createcluster.d: the
machine's own setting is never touched, and a machine whose postgresql-common has
no createcluster.d (nothing installs one; Debian's createcluster.conf only names
it) runs the tests too, and is left without one."""

import os
import shlex
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from encpipe import childenv
from spies import install, records

REPO = Path(__file__).resolve().parent.parent
COMMON = "/etc/postgresql-common"
SETTINGS = f"{COMMON}/createcluster.d"
# a tmpfs over COMMON with an empty createcluster.d (mkdir by its path: the tests' PATH has spies)
HIDDEN = f"mount -t tmpfs none {COMMON} && {shutil.which('mkdir')} {SETTINGS}"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.isdir(COMMON) or not shutil.which("unshare"),
    reason="a tmpfs mounted over PostgreSQL's createcluster.d in a mount namespace of its own: root, Debian's "
           "postgresql-common")

DRIVER = f"""set -euo pipefail
PROG=probe
source {shlex.quote(str(REPO))}/scripts/lib/venv.bash
source {shlex.quote(str(REPO))}/scripts/lib/debian.bash
debian_install postgresql
echo "went on after the signal"
"""


def _run(tmp_path, apt_get):
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    (stubs / "apt-get").write_text(f"#!/bin/sh\n{apt_get}\n")
    (stubs / "apt-get").chmod(0o755)
    (tmp_path / "driver.bash").write_text(DRIVER)
    # the status of the driver, then what createcluster.d holds, as the driver left it
    inside = f'{HIDDEN} && bash "$0"; echo "status $?"; ls -A {SETTINGS}'
    env = dict(os.environ, PATH=f"{stubs}:{os.environ['PATH']}")
    return subprocess.run(["unshare", "-m", "sh", "-c", inside, str(tmp_path / "driver.bash")], env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signal_while_apt_get_installs_leaves_no_setting(tmp_path, signum):
    """The signal comes to the script (its parent) while apt-get installs: the script
    removes the setting once apt-get has ended, then dies of the signal."""
    done = _run(tmp_path, f'[ "$1" = install ] && kill -{signum.name[3:]} "$PPID"\nexit 0')
    assert done.stdout == f"status {128 + signum}\n", done.stdout + done.stderr
    # then sh's word for a child killed by SIGTERM or SIGHUP ("Terminated", "Hangup")
    assert done.stderr.startswith("probe: installing Debian packages: postgresql\n"), done.stderr


def test_an_install_that_ends_leaves_no_setting_and_a_setting_there_before_stays(tmp_path):
    done = _run(tmp_path, "exit 0")
    assert (done.stdout, done.stderr) == ("went on after the signal\nstatus 0\n",
                                          "probe: installing Debian packages: postgresql\n")
    inside = (f'{HIDDEN} && echo mine >{SETTINGS}/no-main-cluster.conf && bash "$0"; '
              f'echo "status $?"; cat {SETTINGS}/no-main-cluster.conf')
    env = dict(os.environ, PATH=f"{tmp_path / 'stubs'}:{os.environ['PATH']}")
    kept = subprocess.run(["unshare", "-m", "sh", "-c", inside, str(tmp_path / "driver.bash")], env=env,
                          capture_output=True, text=True, timeout=60)
    assert kept.stdout == "went on after the signal\nstatus 0\nmine\n", kept.stdout + kept.stderr


@pytest.mark.parametrize("apt_get, said", [
    ("exit 0", "went on after the signal\nstatus 0\n"),
    ('[ "$1" = install ] && kill -TERM "$PPID"\nexit 0', f"status {128 + signal.SIGTERM}\n"),
], ids=["ended", "signalled"])
def test_the_files_commands_of_the_install_get_no_secret_nor_descriptor(tmp_path, apt_get, said):
    """mkdir and rm, which make and remove the setting, get none of the secret
    variables of the script's environment (encpipe/childenv.py's names) nor a
    descriptor above 2, as apt-get does (venv.bash's no_secrets): before, both had
    them all. The rm of a signalled install (debian_signalled) too."""
    stubs, log = tmp_path / "stubs", tmp_path / "log"
    stubs.mkdir()
    (stubs / "apt-get").write_text(f"#!/bin/sh\n{apt_get}\n")
    (stubs / "apt-get").chmod(0o755)
    install(stubs, {tool: shutil.which(tool) for tool in ("mkdir", "rm")}, log)
    (tmp_path / "driver.bash").write_text(DRIVER.replace("debian_install postgresql",
                                                         "exec 7</dev/null; debian_install postgresql"))
    secrets = {name: f"secret-{i}" for i, name in enumerate(
        (*childenv.SECRET_VARIABLES, *childenv.LIBPQ_VARIABLES, *childenv.CLOUD_VARIABLES,
         childenv.RCLONE_PREFIX + "CONFIG_PASS", *childenv.STORE_VARIABLES))}
    inside = f'{HIDDEN} && bash "$0"; echo "status $?"; ls -A {SETTINGS}'
    env = dict(os.environ, **secrets, PATH=f"{stubs}:{os.environ['PATH']}")
    done = subprocess.run(["unshare", "-m", "sh", "-c", inside, str(tmp_path / "driver.bash")], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.stdout == said, done.stdout + done.stderr
    seen = records(log)
    assert [r["tool"] for r in seen] == ["mkdir", "rm"], seen
    for record in seen:
        held = sorted({entry.partition("=")[0] for entry in record["env"]} & set(secrets))
        assert held == [], (record["tool"], held)
        assert sorted(record["fds"]) == ["0", "1", "2"], (record["tool"], record["fds"])


def test_scripts_test_says_it_when_apt_get_fails(tmp_path):
    """scripts/test, as root, ended with apt-get's status (100) and no word of its own;
    now as the demo says it (debian_install_or_say), an error and a hint, then stops.
    python3-venv is missing here (ENCPIPE_VENV_PYTHON=false cannot make a venv)."""
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    (stubs / "apt-get").write_text("#!/bin/sh\nexit 100\n")
    (stubs / "apt-get").chmod(0o755)
    env = dict(os.environ, PATH=f"{stubs}:{os.environ['PATH']}", ENCPIPE_VENV_PYTHON="false")
    done = subprocess.run(["unshare", "-m", "sh", "-c", f'{HIDDEN} && exec "$0"', str(REPO / "scripts" / "test")],
                          env=env, capture_output=True, text=True, timeout=60)
    said = done.stderr.splitlines()
    assert done.returncode == 1 and len(said) == 3, done.stderr
    assert said[0].startswith("test: installing Debian packages: ") and said[0].endswith(" python3-venv")
    assert said[1].startswith("test: error: apt-get could not install ") and "(status 100)" in said[1]
    assert said[2].startswith("test: hint: apt-get's messages above say why")
