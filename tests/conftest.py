"""Fixtures shared by more than one test file.

A test file that needs its own variant of one of these defines a fixture of the
same name, which takes precedence in that file.
"""
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading

import pytest

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

import dating  # noqa: E402
from cliutil import secret_file  # noqa: E402
from emptycluster import EmptyClusters  # noqa: E402
from fuzz.craft import clean_env, command  # noqa: E402
from notroot import operating  # noqa: E402
from pgcluster import PgCluster  # noqa: E402
from s3server import S3Server  # noqa: E402
from test_backup_restore import make_key  # noqa: E402
from test_fail_closed_audit import KEY as AUDIT_KEY, REPO  # noqa: E402
from test_migrate import HEX_KEY, NEW_KEY, PASSPHRASE  # noqa: E402
from test_provenance import World as ProvenanceWorld  # noqa: E402
from test_restore_attacks import ATTACKER  # noqa: E402

# Go's garbage collector is a quarter of each rclone start's CPU (49 ms against 37 here), and
# the suite starts about 1,500 of them (and age): collected only once a process's heap nears
# 128 MiB, which no test's reaches. Only the collector's pace changes, not what they do.
os.environ.setdefault("GOGC", "off")
os.environ.setdefault("GOMEMLIMIT", "128MiB")

# A suite started as a background job by a shell without job control (`scripts/test &`
# in a script) inherits SIGINT and SIGQUIT ignored, and every child with them: the
# tests that interrupt a child, or make one dump core, would fail for that alone.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
if signal.getsignal(signal.SIGQUIT) == signal.SIG_IGN:
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)
# Under nohup, SIGHUP: the suite still shrugs a hangup off (a handler that does nothing),
# and its children start with it as by default (a handled signal is reset by exec).
if signal.getsignal(signal.SIGHUP) == signal.SIG_IGN:
    signal.signal(signal.SIGHUP, lambda *_: None)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: a long-running test, run first (pytest_collection_modifyitems)")


def pytest_collection_modifyitems(items):
    """The test files that hold a long-running test first, each whole (its module-scoped
    fixtures made once) and in the order collected: the other workers meanwhile share
    the short tests, instead of one worker finishing the run alone with a long test
    drawn last."""
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow)


_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGALRM, signal.SIGPIPE)


@pytest.fixture(autouse=True)
def _no_mode_warned_mark(monkeypatch):
    """No test starts with ENCPIPE_MODE_WARNED set: an in-process restore, rotate or migrate
    (keys.warn_secret_modes) sets it in the worker's environment for its children, and a
    later test of the same worker then saw no warning of a secret file others can read."""
    monkeypatch.delenv("ENCPIPE_MODE_WARNED", raising=False)


@pytest.fixture(autouse=True)
def _signals_as_found():
    """Each test leaves the worker's signal mask as it found it (every child a later test
    starts inherits it: a SIGHUP blocked there, a child would outlive the SIGHUP sent to
    it) and no timer of ITIMER_REAL running (its SIGALRM would come in another test), or
    fails; the handlers an in-process main() set (encpipe-migrate's, a restore's) are put
    back as they were, so that no later test runs them."""
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, ())
    handlers = [(signum, signal.getsignal(signum)) for signum in _SIGNALS]
    timer = signal.getitimer(signal.ITIMER_REAL)
    yield
    left_mask = signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    left_timer = timer == (0.0, 0.0) and signal.setitimer(signal.ITIMER_REAL, 0) != (0.0, 0.0)
    for signum, handler in handlers:
        if handler is not None:  # None: set outside Python, and left so
            signal.signal(signum, handler)
    assert left_mask == mask, f"the test left the signal mask {sorted(left_mask)}, not {sorted(mask)}"
    assert not left_timer, "the test left a timer of ITIMER_REAL running"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """With ENCPIPE_NO_SKIP set (scripts/test sets it as root, so `.ci/run` too), a
    skipped test fails: the suite never skips silently (as root, scripts/test
    installs everything it needs)."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("ENCPIPE_NO_SKIP") and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome, report.longrepr = "failed", f"skipped, and ENCPIPE_NO_SKIP is set: {reason}"


def pytest_make_parametrize_id(config, val, argname):
    """A bytes parameter that is not short printable text (os.urandom's, a sealed
    file's) is named by its length: its bytes would differ from one collection to
    the next, and pytest-xdist refuses workers that collected different ids."""
    if isinstance(val, bytes) and (len(val) > 32 or not all(32 <= b < 127 for b in val)):
        return f"{len(val)}bytes"
    return None


@pytest.fixture(scope="session")
def pg():
    """A started throwaway PostgreSQL cluster, shared by the whole session."""
    with PgCluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def _empty_clusters():
    clusters = EmptyClusters()
    yield clusters
    clusters.close()


@pytest.fixture
def empty_cluster(_empty_clusters):
    """A started cluster as initdb left it (no database but postgres and the templates, no
    role but the bootstrap one and the suite's): the worker's spare, reset after each test
    and handed out again only when it reads back as new (tests/emptycluster.py)."""
    cluster = _empty_clusters.take()
    yield cluster
    _empty_clusters.give(cluster)


@pytest.fixture(scope="session")
def tools(tmp_path_factory):
    """A directory with an `encpipe` that runs this Python's encpipe package."""
    bindir = tmp_path_factory.mktemp("bin")
    wrapper = bindir / "encpipe"
    wrapper.write_text("#!/bin/sh\nexec %s -m encpipe \"$@\"\n" % shlex.quote(sys.executable))
    wrapper.chmod(0o755)
    return bindir


@pytest.fixture(scope="session")
def key_file(tmp_path_factory):
    return make_key(tmp_path_factory.mktemp("keys") / "backup.key")


def _migrate_keys(tmp_path):
    return {
        "old_key": secret_file(tmp_path, "old.key", HEX_KEY + "\n"),
        "old_pass": secret_file(tmp_path, "old.pass", PASSPHRASE + "\n"),
        "new_key": secret_file(tmp_path, "new.key", NEW_KEY + "\n"),
    }


@pytest.fixture
def keys(tmp_path):
    """The old key, old passphrase and new key files encpipe-migrate takes."""
    return _migrate_keys(tmp_path)


@pytest.fixture
def migrate_keys(tmp_path):
    """`keys` under another name, for files whose own `keys` means something else."""
    return _migrate_keys(tmp_path)


@pytest.fixture
def as_operator(monkeypatch):
    """This process as a user who is not root (tests/notroot.py)."""
    yield from operating(monkeypatch)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return ProvenanceWorld(tmp_path_factory.mktemp("provenance"))


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    server = S3Server(str(tmp_path_factory.mktemp("s3")))
    yield server
    server.stop()


@pytest.fixture
def mallory(pg):
    pg.psql("DROP ROLE IF EXISTS mallory; CREATE ROLE mallory LOGIN;")
    yield ATTACKER
    pg.psql("ALTER ROLE mallory NOSUPERUSER;")
    owned = pg.psql("SELECT datname FROM pg_database WHERE datdba = 'mallory'::regrole").split()
    for db in set(owned) | {"mal_shop", "mal_target"}:
        pg.dropdb(db)
    pg.psql("DROP OWNED BY mallory; REVOKE CREATE ON SCHEMA public FROM mallory;")
    pg.psql("DROP ROLE mallory;")


@pytest.fixture(scope="session")
def sealed_backup(tmp_path_factory):
    """A backup-named file `encpipe seal` made, once: backup_file copies it."""
    path = tmp_path_factory.mktemp("sealed") / "shop_20260101T000000Z.sql.enc"
    done = subprocess.run(command("seal", "-o", str(path)), input=b"SELECT 1;\n", capture_output=True,
                          env=clean_env({"PYTHONPATH": str(REPO), "ENCPIPE_KEY": AUDIT_KEY}))
    assert done.returncode == 0, done.stderr
    return path


@pytest.fixture()
def backup_file(tmp_path, sealed_backup):
    """A copy of sealed_backup (its bytes and mode) in this test's own directory."""
    return str(shutil.copy(sealed_backup, tmp_path / sealed_backup.name))


@pytest.fixture
def small_backup(made_small_backup, tmp_path):
    """made_small_backup's directory copied for this test: the backup in it, its database.
    made_small_backup is the test file's own (module-scoped: a backup made once, of a
    database of the file's own, which its tests only read)."""
    path, db = made_small_backup
    shutil.copytree(os.path.dirname(path), tmp_path / "b")
    return str(tmp_path / "b" / os.path.basename(path)), db


@pytest.fixture
def silent():
    """A TCP server on 127.0.0.1 that accepts every connection and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held, stopping = [], threading.Event()

    def accept():
        while not stopping.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stopping.set()
    server.close()
    for conn in held:
        conn.close()


@pytest.fixture
def swap_leftovers_dropped(pg):
    """After a test of the restore's swap (tests/test_restore_swap_*.py): its target
    (swapout_target), that target's pre-restore copies and any scratch database
    dropped, since the worker's later tests assert that no restore left one behind."""
    yield
    for name in pg.psql("SELECT datname FROM pg_database").split():
        if name.startswith(("swapout_target", "encpipe_restore_")):
            pg.dropdb(name)


@pytest.fixture
def dated_from_now():
    """Each test's backups dated from when it starts (tests/dating.py)."""
    dating.start()
