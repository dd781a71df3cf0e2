"""Acceptance 1 and 2: a fresh clone sets itself up with README's two commands.

The clone gets a private .venv/ (pip reuses its usual wheel cache); the Python
on PATH is a fresh virtual environment without pycryptodome or docopt, and the
system site-packages must not change.
"""

import hashlib
import os
import shlex
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # three fresh installs

REPO = Path(__file__).resolve().parent.parent
# As root, in a mount namespace of its own (unshare -m): every PostgreSQL installation
# hidden, and /etc/postgresql-common, under whose createcluster.d the demo's apt-get step
# writes its no-main-cluster setting, a tmpfs, so that the machine's own is never written
# (a test killed meanwhile left it there: tests/test_debian_install.py), nor a
# createcluster.d made where the machine has none (before, the step's mkdir -p made one).
HIDDEN_POSTGRESQL = ('mount -t tmpfs none /usr/lib/postgresql && mount -t tmpfs none /etc/postgresql-common '
                     '&& exec "$0"')


SETTINGS = "/etc/postgresql-common/createcluster.d"


@pytest.fixture(autouse=True)
def _no_createcluster_d_made():
    """No test here makes the machine's createcluster.d, nor removes it: before, on a
    machine without one, the demo's apt-get step under HIDDEN_POSTGRESQL made it."""
    before = os.path.isdir(SETTINGS)
    yield
    assert os.path.isdir(SETTINGS) == before


def system_site_packages():
    """The site-packages of the Python under any virtual environment, and of /usr/bin/python3."""
    directories = set(site.getsitepackages([sys.base_prefix])) | {site.getusersitepackages()}
    if os.path.exists("/usr/bin/python3"):
        listed = subprocess.run(["/usr/bin/python3", "-c", "import site; print(*site.getsitepackages(), sep=chr(10))"],
                                capture_output=True, text=True).stdout
        directories |= set(listed.split())
    return sorted(d for d in directories if os.path.isdir(d))


def _tree(directories):
    """The entries of the site-packages directories (an install adds or replaces
    top-level packages and .dist-info directories), with their mtimes."""
    found = {}
    for directory in directories:
        found[directory] = os.stat(directory).st_mtime_ns
        for entry in os.scandir(directory):
            found[entry.path] = entry.stat(follow_symlinks=False).st_mtime_ns
    return found


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    """A clone of this repository, with the working tree's uncommitted files on top."""
    assert shutil.which("git"), "git is needed (scripts/test installs it)"
    base = tmp_path_factory.mktemp("setup")
    target = base / "encpipe"
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(REPO), str(target)], check=True)
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, capture_output=True, check=True).stdout.split(b"\0")
    for name in filter(None, (n.decode() for n in listed)):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    bare = base / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    return target, bare


def fresh_env(bare, **extra):
    """PATH led by a Python that cannot import the project's dependencies."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENCPIPE", "PYTHON", "VIRTUAL_ENV", "PG"))}
    path = [p for p in env.get("PATH", "").split(":") if ".venv" not in p and ".pyenv" not in p]
    env["PATH"] = ":".join([str(bare / "bin"), *path])
    env.update(extra)
    return env


def test_the_bare_python_lacks_the_dependencies(clone):
    _, bare = clone
    done = subprocess.run(["python3", "-c", "import Crypto"], env=fresh_env(bare), capture_output=True)
    assert done.returncode == 1 and b"No module named 'Crypto'" in done.stderr


def test_demo_in_a_fresh_clone_installs_once_and_leaves_the_system_alone(clone, tmp_path):
    target, bare = clone
    system = _tree(system_site_packages())
    demo = [str(target / "scripts" / "encpipe-demo")]
    first = subprocess.run(demo, cwd=tmp_path, env=fresh_env(bare), capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "installing encpipe[fast] and its dependencies" in first.stderr  # the fast cipher too
    assert _venv_home(target) == _expected_home()
    version = subprocess.run([str(target / ".venv" / "bin" / "python"), "-m", "encpipe", "--version"],
                             env=fresh_env(bare), capture_output=True, text=True)
    assert version.stdout.endswith("(cipher: cryptography)\n"), version.stdout + version.stderr
    assert "==> Comparing pg_dump of shop and shop_restored\nidentical\n" in first.stdout
    assert first.stdout.splitlines()[-1].startswith("==> Done; removing ")
    stamp = (target / ".venv" / ".encpipe-installed").stat().st_mtime_ns
    # The second run only has to find the installation: the tour without PostgreSQL will do.
    again = subprocess.run([*demo, "--offline"], cwd="/", env=fresh_env(bare), capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stderr
    assert "installing" not in again.stderr and again.stdout.splitlines()[-1].startswith("==> Done; removing ")
    assert (target / ".venv" / ".encpipe-installed").stat().st_mtime_ns == stamp
    assert _tree(system_site_packages()) == system


def test_demo_without_postgresql_runs_offline_and_says_how_to_get_the_rest(clone, tmp_path):
    """With this suite's Python first on PATH (it has encpipe's dependencies and the fast
    cipher): the demo installs nothing, whichever test ran before in the clone (installing
    is test_demo_in_a_fresh_clone_installs_once_and_leaves_the_system_alone's)."""
    target, bare = clone
    demo = str(target / "scripts" / "encpipe-demo")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "python3").write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} \"$@\"\n")
    (bindir / "python3").chmod(0o755)
    if os.geteuid() == 0 and shutil.which("unshare"):
        # Hide every PostgreSQL installation, whatever finds it; as root the demo
        # asks apt-get for the server, and this one fails.
        argv = ["unshare", "-m", "sh", "-c", HIDDEN_POSTGRESQL, demo]
        env = fresh_env(bare)
        (bindir / "apt-get").write_text("#!/bin/sh\nexit 100\n")
        (bindir / "apt-get").chmod(0o755)
    else:
        argv, env = [demo], fresh_env(bare, PG_BINDIR=str(tmp_path))
    env["PATH"] = f"{bindir}:{env['PATH']}"
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    for step in ("| encpipe seal", "$ encpipe inspect shop.sql.enc", "$ encpipe open --key-file demo.key",
                 "$ encpipe rewrap --in-place", "$ encpipe inspect --verify"):
        assert step in done.stdout
    assert "bytes written: 0" in done.stdout and "shop.sql.enc: 0 times" in done.stdout
    # a signed file opens with --signer; a forgery sealed to the same public key is refused
    assert "--sign-key demo.sign -o signed.enc\n$ encpipe open --identity demo.id --signer-file demo.verify " \
           "signed.enc\nsigned by demo.sign, identical to the sample" in done.stdout
    assert "$ encpipe open --identity demo.id --signer-file demo.verify forged.enc\n" \
           "(exit status 67, as expected)\nbytes written: 0\n" in done.stdout
    assert done.stdout.splitlines()[-1].startswith("==> Done; removing ")
    hint = [line for line in done.stderr.splitlines() if line.startswith("encpipe-demo:")]  # no encpipe install
    if argv[0] == "unshare":
        assert hint[:2] == ["encpipe-demo: installing Debian packages: postgresql",
                            "encpipe-demo: warning: apt-get could not install postgresql (status 100); going on without"]
        assert hint[2].startswith("encpipe-demo: hint: apt-get's messages above say why")
        hint = hint[3:]
    says = "install the PostgreSQL server" if argv[0] == "unshare" else f"PG_BINDIR ({tmp_path}) holds no initdb"
    assert hint == [line for line in hint if says in line] and len(hint) == 1


def test_scripts_test_remakes_a_venv_left_without_pip_installs_once_and_runs_from_anywhere(clone, tmp_path):
    """The test command in a clone whose .venv/ a Ctrl-C left half made: `python3 -m
    venv` interrupted while ensurepip ran leaves .venv/bin/python and no pip. Before,
    each later run took that .venv as made, and failed: `No module named pip`, `pip
    could not install encpipe`, exit 1, until .venv was removed by hand. (A clone
    with no .venv at all is the demo's test above, and CI's own run of this command.)"""
    source, bare = clone
    target = tmp_path / "encpipe"
    shutil.copytree(source, target, symlinks=True,
                    ignore=shutil.ignore_patterns(".venv", "__pycache__", "*.egg-info", "build"))
    subprocess.run([str(bare / "bin" / "python3"), "-m", "venv", "--without-pip", str(target / ".venv")], check=True)
    system = _tree(system_site_packages())
    args = [str(target / "scripts" / "test"), "-p", "no:xdist", "tests/test_docs.py"]  # one process: what is
    # tested is the set-up, not pytest-xdist's workers (three more interpreters, each run)
    count = f"{(target / 'tests' / 'test_docs.py').read_text().count(chr(10) + 'def test_')} passed"
    first = subprocess.run(args, cwd=tmp_path, env=fresh_env(bare), capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "installing encpipe[test,fast]" in first.stderr and count in first.stdout
    pip = subprocess.run([str(target / ".venv" / "bin" / "python"), "-m", "pip", "--version"], capture_output=True)
    assert pip.returncode == 0, pip.stderr
    assert _venv_home(target) == _expected_home()  # made again by /usr/bin/python3, not the half-made one's
    stamp = (target / ".venv" / ".encpipe-installed").stat().st_mtime_ns
    again = subprocess.run(args, cwd="/", env=fresh_env(bare), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "installing" not in again.stderr and count in again.stdout
    assert (target / ".venv" / ".encpipe-installed").stat().st_mtime_ns == stamp
    assert _tree(system_site_packages()) == system
    nothing = subprocess.run([*args, "-k", "no_test_has_this_name"], env=fresh_env(bare), capture_output=True)
    assert nothing.returncode == 5  # pytest's "no tests collected" stays a failure
    ignored = subprocess.run(["git", "-C", str(target), "check-ignore", ".venv/bin/python"], capture_output=True)
    assert ignored.returncode == 0  # the private environment is git-ignored


def _venv_home(target):
    """The directory of the Python that made target's .venv (pyvenv.cfg's home)."""
    cfg = (target / ".venv" / "pyvenv.cfg").read_text().splitlines()
    return next(line.split("=", 1)[1].strip() for line in cfg if line.split("=", 1)[0].strip() == "home")


def _expected_home():
    """The set-up makes .venv with Debian's /usr/bin/python3 where there is one of 3.9 or later
    (venv.bash's venv_python), not with the python3 first on PATH (here a venv, pyenv's under it)."""
    usable = os.access("/usr/bin/python3", os.X_OK) and subprocess.run(
        ["/usr/bin/python3", "-I", "-c", "import sys, ensurepip, venv; sys.exit(sys.version_info < (3, 9))"],
        capture_output=True).returncode == 0
    return "/usr/bin" if usable else os.path.dirname(os.path.realpath(sys.executable))


def _debian_without_venv(tmp_path, bare, apt_status):
    """A PATH on which python3 is, until an `apt-get install` has run, Debian's
    without python3-venv (its ensurepip missing: `python3 -m venv` fails), and
    apt-get records what it is asked and whether a secret reached it."""
    stubs, mark, log = tmp_path / "stubs", tmp_path / "installed", tmp_path / "apt.log"
    stubs.mkdir()
    (stubs / "python3").write_text(
        f"#!/bin/sh\nif [ ! -e {mark} ]; then\n  case \"$*\" in\n"
        "    '-I -c import ensurepip, venv'|'-I -m venv '*)\n"
        "      echo 'The virtual environment was not created successfully because ensurepip is not available.' >&2\n"
        "      exit 1;;\n  esac\nfi\n"
        f"exec {shlex.quote(str(bare / 'bin' / 'python3'))} \"$@\"\n")
    (stubs / "apt-get").write_text(
        f"#!/bin/sh\nprintf '%s\\n' \"$DEBIAN_FRONTEND $*\" >>{log}\n"
        f"if env | grep -q '^AWS_SECRET_ACCESS_KEY='; then echo secret >>{log}; fi\n"
        f"if [ \"$1\" = install ] && [ {apt_status} = 0 ]; then touch {mark}; fi\nexit {apt_status}\n")
    for stub in stubs.iterdir():
        stub.chmod(0o755)
    env = fresh_env(bare, AWS_SECRET_ACCESS_KEY="not-for-apt")
    env["PATH"] = f"{stubs}:{env['PATH']}"
    env["ENCPIPE_VENV_PYTHON"] = str(stubs / "python3")  # in /usr/bin/python3's place (venv.bash's venv_python)
    return env, log


def _without_venv(source, tmp_path):
    target = tmp_path / "encpipe"
    shutil.copytree(source, target, symlinks=True,
                    ignore=shutil.ignore_patterns(".venv", "__pycache__", "*.egg-info", "build"))
    return target


@pytest.mark.skipif(os.geteuid() != 0, reason="only as root does the demo install Debian packages")
def test_demo_as_root_on_a_debian_without_python3_venv_installs_it_and_the_server(clone, tmp_path):
    """The first of README's two commands on a fresh Debian, as root: Python there
    cannot make a virtual environment until python3-venv is installed, nor is there
    a PostgreSQL server. Before, the demo stopped: `cannot create a Python virtual
    environment`, exit 1, and a hint to install python3-venv by hand."""
    source, bare = clone
    demo = str(_without_venv(source, tmp_path) / "scripts" / "encpipe-demo")
    env, log = _debian_without_venv(tmp_path, bare, 0)
    # The stub apt-get installs no server: every PostgreSQL installation stays hidden.
    argv = ["unshare", "-m", "sh", "-c", HIDDEN_POSTGRESQL, demo]
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    assert log.read_text() == ("noninteractive update -q\n"
                               "noninteractive install -y -q --no-install-recommends python3-venv postgresql\n")
    assert done.stderr.startswith("encpipe-demo: installing Debian packages: python3-venv postgresql\n")
    assert "installing encpipe[fast] and its dependencies" in done.stderr
    assert done.stdout.splitlines()[-1].startswith("==> Done; removing ")  # the tour without the server


@pytest.mark.skipif(os.geteuid() != 0, reason="only as root does the demo install Debian packages")
def test_demo_as_root_when_apt_get_fails_says_so_and_what_to_install(clone, tmp_path):
    source, bare = clone
    demo = str(_without_venv(source, tmp_path) / "scripts" / "encpipe-demo")
    env, log = _debian_without_venv(tmp_path, bare, 100)
    done = subprocess.run([demo, "--offline"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert (done.returncode, done.stdout) == (1, "")
    assert log.read_text() == "noninteractive update -q\n"  # --offline: no server asked for
    said = [line for line in done.stderr.splitlines() if line.startswith("encpipe-demo:")]
    assert said == ["encpipe-demo: installing Debian packages: python3-venv",
                    "encpipe-demo: warning: apt-get could not install python3-venv (status 100); going on without",
                    "encpipe-demo: hint: apt-get's messages above say why (no network, or another apt-get running?)",
                    f"encpipe-demo: installing encpipe[fast] and its dependencies into {Path(demo).parents[1]}/.venv (once)",
                    "encpipe-demo: error: cannot create a Python virtual environment",
                    "encpipe-demo: hint: on Debian or Ubuntu: apt-get install python3-venv"]


@pytest.mark.skipif(os.geteuid() != 0, reason="only as root does the demo install Debian packages")
def test_demo_as_root_given_an_argument_it_does_not_take_installs_nothing(clone, tmp_path):
    source, bare = clone
    demo = str(_without_venv(source, tmp_path) / "scripts" / "encpipe-demo")
    env, log = _debian_without_venv(tmp_path, bare, 0)
    done = subprocess.run([demo, "--offlin"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and not log.exists()


def test_the_asserts_of_every_test_module_are_rewritten_once_before_the_run(tmp_path):
    """scripts/test with no arguments (CI's run) first has pytest write its rewritten test
    modules to tests/__pycache__ (venv.bash's warm_test_bytecode), even under
    PYTHONDONTWRITEBYTECODE: before, each pytest-xdist worker of a fresh clone rewrote
    every one as it collected (9.4 CPU s a collection, 2.4 s from the cache)."""
    root = tmp_path / "checkout"
    (root / "tests").mkdir(parents=True)
    (root / ".venv").symlink_to(sys.prefix)  # this suite's environment, with pytest
    for name in ("test_one", "test_two"):
        (root / "tests" / f"{name}.py").write_text("def test_it():\n    assert 1 + 1 == 2\n")
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(["bash", "-c", 'PROG=t; . "$1"; warm_test_bytecode "$2"', "t",
                           str(REPO / "scripts" / "lib" / "venv.bash"), str(root)],
                          env=env, capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    tag = sys.implementation.cache_tag
    written = sorted(p.name.split(".")[0] for p in (root / "tests" / "__pycache__").glob(f"*.{tag}-pytest-*.pyc"))
    assert written == ["test_one", "test_two"]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to mount over Debian's ensurepip")
def test_a_debian_python3_that_cannot_make_a_venv_leaves_it_to_the_python3_on_path(tmp_path):
    """On Debian without python3-venv, /usr/bin/python3 cannot make .venv: run by a user
    who cannot install it, the set-up then takes the python3 on PATH (a pyenv one that
    can), not /usr/bin/python3 and a failure; with python3-venv, /usr/bin/python3."""
    where = subprocess.run(["/usr/bin/python3", "-I", "-c", "import ensurepip, os; print(os.path.dirname("
                            "ensurepip.__file__))"], capture_output=True, text=True, check=True).stdout.strip()
    probe = 'PROG=t; . "$0"; venv_python'
    venv_bash = str(REPO / "scripts" / "lib" / "venv.bash")
    hidden = (f'mount -t tmpfs encpipe-test "$1" && echo "raise ImportError(\'no python3-venv\')" > "$1/__init__.py" '
              f'&& exec bash -c {shlex.quote(probe)} "$0"')
    env = {k: v for k, v in os.environ.items() if k != "ENCPIPE_VENV_PYTHON"}
    without = subprocess.run(["unshare", "-m", "sh", "-c", hidden, venv_bash, where], env=env, capture_output=True,
                             text=True, timeout=60)
    assert (without.returncode, without.stdout, without.stderr) == (0, "python3\n", "")
    present = subprocess.run(["bash", "-c", probe, venv_bash], env=env, capture_output=True, text=True, timeout=60)
    assert (present.returncode, present.stdout) == (0, "/usr/bin/python3\n")


def _venv_that_cannot_be_made(tmp_path):
    """A checkout whose .venv the caller cannot make nor remove (another user's, as
    root's after `sudo scripts/encpipe-demo` in one's own clone): venv says `Permission
    denied`, rm cannot remove it; /usr/bin/python3 can make others (python3-venv there)."""
    root, stubs = tmp_path / "checkout", tmp_path / "stubs"
    (root / ".venv").mkdir(parents=True)
    stubs.mkdir()
    for name in ("setup.cfg", "pyproject.toml"):
        shutil.copy(REPO / name, root / name)
    python = sys.executable if not os.access("/usr/bin/python3", os.X_OK) else "/usr/bin/python3"
    (stubs / "python3").write_text(
        "#!/bin/sh\ncase \"$*\" in '-I -m venv '*)\n"
        f"  echo \"Error: [Errno 13] Permission denied: '{root}/.venv'\"; exit 1;;\nesac\n"
        f"exec {shlex.quote(python)} \"$@\"\n")
    (stubs / "rm").write_text(f"#!/bin/sh\necho \"rm: cannot remove '{root}/.venv': Permission denied\" >&2\nexit 1\n")
    for stub in stubs.iterdir():
        stub.chmod(0o755)
    env = {**os.environ, "PATH": f"{stubs}:{os.environ['PATH']}", "ENCPIPE_VENV_PYTHON": str(stubs / "python3")}
    return root, env


def test_scripts_test_says_it_cannot_make_the_venv_when_it_cannot_remove_it_either(tmp_path):
    """scripts/test calls checkout_venv under `set -e` as a plain statement: the failed
    `rm -rf .venv` ended it there, before its `error: cannot create a Python virtual
    environment` and hint; all a user saw was venv's and rm's own `Permission denied`, 1."""
    root, env = _venv_that_cannot_be_made(tmp_path)
    done = subprocess.run(["bash", "-c", 'set -euo pipefail; PROG=test; . "$1"; checkout_venv "$2" "test,fast"',
                           "t", str(REPO / "scripts" / "lib" / "venv.bash"), str(root)],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "test: error: cannot create a Python virtual environment" in done.stderr, done.stderr


def test_a_venv_that_cannot_be_made_for_want_of_permission_is_not_hinted_as_python3_venv(tmp_path):
    """Where python3-venv is installed, `Permission denied` on .venv (another user's)
    was hinted `on Debian or Ubuntu: apt-get install python3-venv`: nothing to install."""
    root, env = _venv_that_cannot_be_made(tmp_path)
    done = subprocess.run(["bash", "-c", 'PROG=encpipe-demo; . "$1"; checkout_venv "$2" fast',
                           "t", str(REPO / "scripts" / "lib" / "venv.bash"), str(root)],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "Permission denied" in done.stderr and "apt-get install python3-venv" not in done.stderr, done.stderr


def _installed_checkout(tmp_path, encpipe_at, pip_at, stamped="fast"):
    """A checkout whose .venv looks installed (stamp for `stamped`), made in no time:
    the running Python's site-packages (the dependencies) and encpipe_at's encpipe on
    its path through a .pth line, a pip that installs nothing, and pip's command
    starting the python of pip_at/.venv."""
    root, venv = tmp_path / "copy", tmp_path / "copy" / ".venv"
    (root / "encpipe").mkdir(parents=True)
    (root / "encpipe" / "__init__.py").write_text("")
    for name in ("setup.cfg", "pyproject.toml"):
        shutil.copy(REPO / name, root / name)
    base = Path(getattr(sys, "_base_executable", sys.executable)).resolve()
    (venv / "bin").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text(f"home = {base.parent}\ninclude-system-site-packages = false\n")
    (venv / "bin" / "python").symlink_to(base)
    (venv / "bin" / "pip").write_text(f"#!{pip_at}/.venv/bin/python\n")
    packages = venv / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
    packages.mkdir(parents=True)
    (packages / "here.pth").write_text(f"{encpipe_at}\n{sysconfig.get_paths()['purelib']}\n")
    (packages / "pip").mkdir()  # one that runs, and installs nothing
    (packages / "pip" / "__init__.py").write_text("")
    (packages / "pip" / "__main__.py").write_text("import sys\nsys.exit(sys.argv[1:] != ['--version'])\n")
    digest = hashlib.sha256((root / "setup.cfg").read_bytes() + (root / "pyproject.toml").read_bytes()).hexdigest()
    (venv / ".encpipe-installed").write_text(f"{digest} [{stamped}] compat\n")
    env = {**os.environ, "ENCPIPE_VENV_PYTHON": "false"}  # a venv to make: fails at once
    return root, env


def _checkout_venv(root, env, extras):
    return subprocess.run(["bash", "-c", 'PROG=t; . "$1"; checkout_venv "$2" "$3"',
                           "t", str(REPO / "scripts" / "lib" / "venv.bash"), str(root), extras],
                          env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("encpipe_at, pip_at", [("copy", "copy"), ("original", "copy"), ("copy", "original")])
def test_a_copied_checkout_does_not_use_the_venv_of_its_original(tmp_path, encpipe_at, pip_at):
    """`cp -a` of a checkout copies .venv, whose .pth line imports the original's
    encpipe and whose commands start the original's python: checkout_venv took it
    as installed (`import encpipe` passed) and the copy's tests ran the original."""
    at = {"copy": tmp_path / "copy", "original": REPO}
    root, env = _installed_checkout(tmp_path, at[encpipe_at], at[pip_at])
    done = _checkout_venv(root, env, "fast")
    if encpipe_at == pip_at == "copy":
        assert (done.returncode, done.stderr) == (0, "")
    else:
        assert done.returncode == 1 and "t: installing encpipe[fast]" in done.stderr, done.stderr


@pytest.mark.parametrize("stamped, wanted, installs", [("test,fast", "fast", False), ("fast", "test,fast", True)])
def test_extras_installed_before_cover_those_a_later_command_wants(tmp_path, stamped, wanted, installs):
    """scripts/test installs [test,fast]: the demo after it, which wants [fast], installed
    again (its stamp line, [fast], was not there); [fast] alone lacks the test extra."""
    root, env = _installed_checkout(tmp_path, tmp_path / "copy", tmp_path / "copy", stamped)
    done = _checkout_venv(root, env, wanted)
    assert ("t: installing encpipe" in done.stderr) == installs, done.stderr


def test_scripts_test_takes_paths_relative_to_the_callers_directory(tmp_path):
    """`cd tests && ../scripts/test test_cli.py`: pytest, run in the checkout, said
    `file or directory not found: test_cli.py`, though --help says it works from any
    directory. A copy of scripts/test whose .venv's python is a stand-in that passes
    every probe and prints the directory and arguments pytest would get."""
    root, env = _installed_checkout(tmp_path, tmp_path / "copy", tmp_path / "copy", "test,fast")
    (root / "scripts" / "lib").mkdir(parents=True)
    (root / "tests").mkdir()
    (root / "tests" / "test_x.py").write_text("")
    shutil.copy(REPO / "scripts" / "test", root / "scripts")
    for name in ("venv.bash", "debian.bash"):
        shutil.copy(REPO / "scripts" / "lib" / name, root / "scripts" / "lib")
    python = root / ".venv" / "bin" / "python"
    python.unlink()
    python.write_text('#!/bin/sh\n[ "$1 $2" = "-m pytest" ] && printf "%s\\n" "$PWD" "$@"\nexit 0\n')
    python.chmod(0o755)
    (tmp_path / "stubs").mkdir()
    (tmp_path / "stubs" / "apt-get").write_text("#!/bin/sh\nexit 0\n")  # never the machine's
    (tmp_path / "stubs" / "apt-get").chmod(0o755)
    env.update(ENCPIPE_VENV_PYTHON=str(python), PATH=f"{tmp_path / 'stubs'}:{env['PATH']}", TMPDIR=str(tmp_path))
    done = subprocess.run([root / "scripts" / "test", "test_x.py::test_a", "-k", "test_x.py", "nothere.py"],
                          cwd=root / "tests", env=env, capture_output=True, text=True, timeout=60)
    assert done.stdout.splitlines() == [str(root), "-m", "pytest", "-q", "-n", "auto",
                                        f"{root}/tests/test_x.py::test_a", "-k", "test_x.py", "nothere.py"], done.stderr
