"""Every entry point (encpipe and the scripts in scripts/) run with a standard
stream closed (`<&-`, `>&-`), with standard output on a full disk, or
interrupted by SIGINT: one `PROG: error:` line and a documented status (74
for a stream that cannot be read or written), or a quiet death by the signal;
never a Python traceback, never a file opened later written as standard output."""

import os
import signal
import subprocess
from pathlib import Path

import pytest

from fuzz.craft import clean_env, command

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = REPO / "scripts"
KEY = "3e" * 32
WAIT = 60


def _closing(*fds):
    def preexec():
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        for fd in fds:
            os.close(fd)

    return preexec


def _run(argv, close=(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, cwd=None):
    env = clean_env({"PYTHONPATH": str(REPO), "ENCPIPE_KEY": KEY})
    return subprocess.run(argv, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, env=env, cwd=cwd,
                          preexec_fn=_closing(*close), timeout=WAIT)


def _assert_one_error(stderr, prog, *words):
    text = stderr.decode()
    lines = text.splitlines()
    assert "Traceback" not in text and "Exception ignored" not in text, text
    assert len(lines) in (1, 2) and lines[0].startswith(f"{prog}: error: "), text
    assert all(line.startswith(f"{prog}: hint: ") for line in lines[1:]), text
    for word in words:
        assert word in lines[0], text


@pytest.fixture(scope="module")
def sealed():
    """What `encpipe seal` makes of SELECT 1 under KEY: sealed once for the module."""
    done = subprocess.run(command("seal"), input=b"SELECT 1;\n", capture_output=True, env=clean_env({"ENCPIPE_KEY": KEY}))
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture()
def backups(tmp_path, sealed):
    """A backup directory of this test's own with one sealed file, and that file."""
    folder = tmp_path / "backups"
    folder.mkdir(mode=0o700)
    path = folder / "db_20260101T000000Z.sql.enc"
    path.write_bytes(sealed)
    return folder, path


@pytest.mark.parametrize("args", [["inspect", "FILE"], ["open", "FILE"], ["keygen"], ["keyid"], ["--help"]],
                         ids=lambda a: " ".join(a))
def test_encpipe_with_stdout_closed_is_74(backups, args):
    _, path = backups
    done = _run(command(*[str(path) if a == "FILE" else a for a in args]), close=[1])
    assert done.returncode == 74, done.stderr
    _assert_one_error(done.stderr, "encpipe", "cannot write output")


def test_seal_with_stdout_closed_is_74(tmp_path):
    plain = tmp_path / "plain"
    plain.write_bytes(os.urandom(100_000))
    with open(plain, "rb") as src:
        done = _run(command("seal"), close=[1], stdin=src)
    assert done.returncode == 74, done.stderr
    _assert_one_error(done.stderr, "encpipe", "cannot write output")


@pytest.mark.parametrize("args", [["open"], ["inspect"], ["seal", "-o", "OUT"], ["seal"], ["rewrap"]],
                         ids=lambda a: " ".join(a))
def test_encpipe_with_stdin_closed_is_74_and_writes_nothing(tmp_path, args):
    """`seal` to standard output wrote its header (133 bytes) before it read."""
    out = tmp_path / "out"
    done = _run(command(*[str(out) if a == "OUT" else a for a in args]), close=[0], stdout=subprocess.PIPE)
    assert (done.returncode, done.stdout) == (74, b""), done.stderr
    _assert_one_error(done.stderr, "encpipe", "cannot read input")
    assert not out.exists() and os.listdir(tmp_path) == []


def test_seal_with_stdin_open_for_writing_only_writes_nothing(tmp_path):
    with open(tmp_path / "w", "ab") as write_only:
        done = _run(command("seal"), stdin=write_only, stdout=subprocess.PIPE)
    assert (done.returncode, done.stdout) == (74, b""), done.stderr
    _assert_one_error(done.stderr, "encpipe", "cannot read input: Bad file descriptor")


def test_a_closed_stdout_is_never_a_file_opened_later(tmp_path, backups):
    """`seal -o FILE >&-` needs no standard output: it succeeds, and what it
    opens never takes descriptor 1."""
    plain = tmp_path / "plain"
    plain.write_bytes(b"x" * 1000)
    out = tmp_path / "out.enc"
    with open(plain, "rb") as src:
        done = _run(command("seal", "-o", str(out)), close=[1], stdin=src)
    assert (done.returncode, done.stderr) == (0, b"")
    done = _run(command("open", str(out)), stdout=subprocess.PIPE)
    assert done.stdout == b"x" * 1000


def test_stderr_closed_keeps_the_status(backups):
    _, path = backups
    done = _run(command("open", str(path) + ".missing"), close=[2])
    assert done.returncode == 66


@pytest.mark.parametrize("script, args", [
    ("encpipe-list", ["DIR"]),
    ("encpipe-verify", ["DIR"]),
    ("encpipe-prune", ["--keep-last", "1", "--dry-run", "DIR"]),
    ("encpipe-check", ["--max-age", "100000", "DIR"]),
    ("encpipe-backup", ["--help"]),
    ("encpipe-backup", ["--systemd-unit", "--dir", "/var/backups/encpipe", "--key-file", "/etc/encpipe/backup.key"]),  # a database: the instance (%I)
    ("encpipe-restore", ["--help"]),
    ("encpipe-migrate", ["--help"]),
    ("encpipe-rotate", ["--help"]),
    ("encpipe-demo", ["--help"]),
    ("encpipe-demo", ["--offline"]),
], ids=lambda a: a if isinstance(a, str) else " ".join(a))
@pytest.mark.parametrize("fault", ["stdout closed", "disk full"])
def test_script_output_that_cannot_be_written_is_74_or_unknown(backups, script, args, fault):
    folder, _ = backups
    argv = [str(SCRIPTS / script), *[str(folder) if a == "DIR" else a for a in args]]
    if fault == "disk full":
        with open("/dev/full", "wb") as full:
            done = _run(argv, stdout=full)
        why = "No space left on device"
    else:
        done = _run(argv, close=[1])
        why = "Bad file descriptor"
    assert done.returncode == (3 if script == "encpipe-check" else 74), done.stderr  # check: a plugin's UNKNOWN
    _assert_one_error(done.stderr, script, "cannot write output", *([] if args == ["--help"] and
                                                                   script == "encpipe-demo" else [why]))


@pytest.mark.parametrize("script", ["encpipe-verify", "encpipe-prune"])
def test_scripts_die_of_sigint_quietly(backups, script):
    """SIGINT while a script runs (here: while its key command runs) kills it
    with the signal: no traceback, nothing on standard output."""
    folder, _ = backups
    args = ["--keep-last", "1"] if script == "encpipe-prune" else []
    done = _run([str(SCRIPTS / script), *args, "--key-command", "kill -INT $PPID; sleep 1", str(folder)],
                stdout=subprocess.PIPE)
    assert (done.returncode, done.stdout, done.stderr) == (-signal.SIGINT, b"", b"")


def _rotation(tmp_path):
    """A backup directory of three files under KEY, the key files, and encpipe-rotate's argv."""
    folder = tmp_path / "rot"
    folder.mkdir(mode=0o700)
    for day in (1, 2, 3):
        done = subprocess.run(command("seal"), input=b"SELECT 1;\n", capture_output=True,
                              env=clean_env({"ENCPIPE_KEY": KEY}))
        (folder / f"db_2026010{day}T000000Z.sql.enc").write_bytes(done.stdout)
    old, new = tmp_path / "old.key", tmp_path / "new.key"
    old.write_text(KEY + "\n")
    new.write_text("5e" * 32 + "\n")
    old.chmod(0o600)
    new.chmod(0o600)
    return folder, [str(SCRIPTS / "encpipe-rotate"), "--old-key-file", str(old), "--new-key-file", str(new),
                    str(folder)]


def _migration(tmp_path):
    import io

    from encpipe import legacy

    folder = tmp_path / "mig"
    folder.mkdir(mode=0o700)
    with open(folder / "a_backup.sql.enc", "wb") as f:
        legacy.seal_legacy(io.BytesIO(b"SELECT 1;\n"), f, bytes.fromhex(KEY))
    old = tmp_path / "old.key"
    old.write_text(KEY + "\n")
    old.chmod(0o600)
    return folder, [str(SCRIPTS / "encpipe-migrate"), "--legacy-key-file", str(old), "--key-file", str(old),
                    str(folder)]


@pytest.mark.parametrize("make", [_rotation, _migration], ids=["encpipe-rotate", "encpipe-migrate"])
@pytest.mark.parametrize("fault", ["stdout closed", "disk full"])
def test_a_report_that_cannot_be_written_is_74(tmp_path, make, fault):
    folder, argv = make(tmp_path)
    script = Path(argv[0]).name
    if fault == "disk full":
        with open("/dev/full", "wb") as full:
            done = _run(argv, stdout=full)
    else:
        done = _run(argv, close=[1])
    assert done.returncode == (3 if script == "encpipe-check" else 74), done.stderr  # check: a plugin's UNKNOWN
    _assert_one_error(done.stderr, script, "cannot write output")
    again = _run(argv, stdout=subprocess.PIPE)  # and a second run finishes the work
    assert again.returncode == 0, again.stderr
    assert not [p for p in os.listdir(folder) if p.startswith(".")]


@pytest.mark.parametrize("make", [_rotation, _migration], ids=["encpipe-rotate", "encpipe-migrate"])
def test_a_report_whose_reader_left_is_a_quiet_141(tmp_path, make):
    _, argv = make(tmp_path)
    env = clean_env({"PYTHONPATH": str(REPO)})
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                             stdin=subprocess.DEVNULL)
    child.stdout.close()
    assert child.wait(timeout=WAIT) == 141
    assert child.stderr.read() == b""


@pytest.mark.parametrize("argv", [
    ["open", "--passphrase-fd", "3", "FILE"],
    ["open", "--key-file", "/dev/fd/3", "FILE"],
    ["open", "--identity", "/proc/self/fd/3", "FILE"],
    ["inspect", "--verify", "--passphrase-fd", "3", "FILE"],
    ["SCRIPTS/encpipe-verify", "--passphrase-fd", "3", "FILE"],
    ["SCRIPTS/encpipe-prune", "--keep-last", "1", "--passphrase-fd", "3", "DIR"],
], ids=lambda a: " ".join(a))
def test_a_closed_passphrase_fd_is_never_a_file_opened_since(backups, argv):
    """--passphrase-fd 3 (or --key-file /dev/fd/3) with descriptor 3 closed:
    FILE, opened first, took number 3 and was read as the secret."""
    folder, path = backups
    argv = [str(path) if a == "FILE" else str(folder) if a == "DIR" else a for a in argv]
    argv = [str(SCRIPTS / argv[0][8:]), *argv[1:]] if argv[0].startswith("SCRIPTS/") else command(*argv)
    done = _run(argv, stdout=subprocess.PIPE)
    prog = Path(argv[0]).name if argv[0].startswith(str(SCRIPTS)) else "encpipe"
    assert (done.returncode, done.stdout) == (66, b""), done.stderr
    _assert_one_error(done.stderr, prog, "cannot read file descriptor 3: Bad file descriptor")


@pytest.mark.parametrize("argv, status", [
    (["open", "--key-file", "/nonexistent/key", "FILE"], 66),
    (["SCRIPTS/encpipe-list", "/nonexistent"], 66),
    (["SCRIPTS/encpipe-backup", "--typo"], 64),
    (["SCRIPTS/encpipe-restore", "--typo"], 64),
    (["SCRIPTS/encpipe-rotate", "--typo"], 64),
    (["SCRIPTS/encpipe-migrate", "--typo"], 64),
], ids=lambda a: " ".join(a) if isinstance(a, list) else str(a))
def test_a_full_stderr_loses_the_message_not_the_status(backups, argv, status):
    _, path = backups
    argv = [str(path) if a == "FILE" else a for a in argv]
    argv = [str(SCRIPTS / argv[0][8:]), *argv[1:]] if argv[0].startswith("SCRIPTS/") else command(*argv)
    env = clean_env({"PYTHONPATH": str(REPO)})
    with open("/dev/full", "wb") as full:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=full, env=env,
                              timeout=WAIT)
    assert (done.returncode, done.stdout) == (status, b"")


def test_progress_to_a_full_stderr_does_not_stop_the_seal(tmp_path):
    plain = tmp_path / "plain"
    plain.write_bytes(os.urandom(3 << 20))
    with open(plain, "rb") as src, open("/dev/full", "wb") as full:
        done = subprocess.run(command("seal", "--progress"), stdin=src, stdout=subprocess.PIPE, stderr=full,
                              env=clean_env({"ENCPIPE_KEY": KEY}), timeout=WAIT)
    assert done.returncode == 0
    opened = subprocess.run(command("open"), input=done.stdout, capture_output=True, env=clean_env({"ENCPIPE_KEY": KEY}))
    assert opened.stdout == plain.read_bytes()
