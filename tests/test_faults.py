"""Faults around a real encpipe process: signals, failing outputs, odd input timing, key commands.

- SIGTERM / SIGINT during `seal` and `open`: the process dies of the signal,
  quietly; what it wrote never verifies (seal) or is whole authenticated
  chunks of the plaintext (open).
- Output failures: a full disk is exit 74, a read-only or unwritable target
  is exit 74, a reader that goes away kills encpipe with SIGPIPE, quietly.
- Input that arrives a byte at a time or in odd bursts gives the same result
  as a file.
- --key-command / --passphrase-command that hang, fail or print garbage.
"""

import os
import random
import signal
import subprocess
import sys
import time

import pytest

from fuzz.craft import assert_error_lines, clean_env, command

KEY = "3e" * 32
KEY_ENV = {"ENCPIPE_KEY": KEY}
CHUNK = 1 << 14
RECORD = CHUNK + 16
PLAINTEXT = os.urandom(10 * CHUNK + 123)
WAIT = 30  # seconds: generous bounds for a loaded machine; the tests take far less


def _default_signals():
    # A test runner started in the background may hand SIGINT down as ignored;
    # encpipe is meant to be run with the default dispositions.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def spawn(args, env=None, **kwargs):
    kwargs.setdefault("stderr", subprocess.PIPE)
    return subprocess.Popen(command(*args), env=clean_env(env), preexec_fn=_default_signals, **kwargs)


def run(args, data=b"", env=None, **kwargs):
    return subprocess.run(command(*args), input=data, capture_output=True, env=clean_env(env), timeout=WAIT, **kwargs)


@pytest.fixture(scope="module")
def sealed():
    done = run(["seal", "--chunk-size", "16K"], PLAINTEXT, KEY_ENV)
    assert done.returncode == 0, done.stderr
    return done.stdout


def header_size(sealed_bytes):
    return int.from_bytes(sealed_bytes[8:10], "big")


def wait_for_size(path, size):
    deadline = time.monotonic() + WAIT
    while os.path.getsize(path) < size:
        assert time.monotonic() < deadline, f"{path} stayed at {os.path.getsize(path)} bytes"
        time.sleep(0.02)


# --- signals ------------------------------------------------------------------------------


def interrupt(child, data, output, size, sig):
    """Feed `data` to `child` without closing its input, send `sig` once `output`
    holds `size` bytes; (exit status, stderr)."""
    try:
        child.stdin.write(data)
        child.stdin.flush()
        wait_for_size(output, size)
        child.send_signal(sig)
        status = child.wait(timeout=WAIT)
        return status, child.stderr.read()
    finally:
        child.kill()
        child.stdin.close()
        child.wait()


def hidden_temp(directory):
    """The hidden file seal -o writes before it renames it, once it exists."""
    deadline = time.monotonic() + WAIT
    while not (found := sorted(directory.glob(".encpipe-tmp.*"))):
        assert time.monotonic() < deadline, "seal -o created no temporary file"
        time.sleep(0.02)
    return found[0]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("threads", ["1", "2"])
@pytest.mark.parametrize("output", ["stdout", "-o"])
def test_signal_during_seal(tmp_path, sig, threads, output):
    """On stdout, what was written is a truncated stream; with -o FILE, FILE never
    appears and the hidden file is removed."""
    out = tmp_path / "partial.enc"
    args = ["seal", "--chunk-size", "16K", "--threads", threads]
    with open(out if output == "stdout" else os.devnull, "wb") as sink:
        child = spawn(
            args + (["-o", str(out)] if output == "-o" else []),
            KEY_ENV,
            stdin=subprocess.PIPE,
            stdout=sink,
        )
        child.stdin.write(b"")  # the child may not have created its file yet
        written = out if output == "stdout" else hidden_temp(tmp_path)
        # The input stays open, so seal waits for more; up to 2 * threads chunks are in flight.
        status, stderr = interrupt(child, PLAINTEXT[: 8 * CHUNK + 100], written, 2 * RECORD, sig)
    assert status == -sig, stderr
    assert stderr == b""
    if output == "-o":
        assert not out.exists() and not written.exists()
        return
    partial = out.read_bytes()
    verify = run(["inspect", "--verify", str(out)], env=KEY_ENV)
    assert (verify.returncode, verify.stdout) == (65, b""), verify.stderr
    assert_error_lines(verify.stderr.decode(), "truncated")
    opened = run(["open"], partial, KEY_ENV)
    assert opened.returncode == 65
    assert PLAINTEXT.startswith(opened.stdout) and len(opened.stdout) % CHUNK == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("threads", ["1", "2"])
def test_signal_during_open(tmp_path, sealed, sig, threads):
    out = tmp_path / "plain"
    with open(out, "wb") as sink:
        child = spawn(["open", "--threads", threads], KEY_ENV, stdin=subprocess.PIPE, stdout=sink)
        status, stderr = interrupt(child, sealed[: header_size(sealed) + 8 * RECORD], out, 2 * CHUNK, sig)
    assert status == -sig, stderr
    assert stderr == b""
    written = out.read_bytes()
    assert written == PLAINTEXT[: len(written)] and len(written) % CHUNK == 0 and len(written) < len(PLAINTEXT)


def test_signal_while_a_key_command_runs():
    child = spawn(["seal", "--key-command", "sleep 20"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        time.sleep(0.5)
        child.send_signal(signal.SIGTERM)
        status = child.wait(timeout=WAIT)
    finally:
        child.kill()
        child.wait()
        child.stdin.close()
    assert status == -signal.SIGTERM
    assert child.stdout.read() == b""


# --- output failures -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, data",
    [
        (["seal"], PLAINTEXT),
        (["seal", "-o", "/dev/full"], PLAINTEXT),
        (["seal"], b""),
        (["open"], None),
        (["open", "--verify-first", "FILE"], None),
    ],
    ids=["seal to stdout", "seal -o", "seal of nothing", "open", "open --verify-first"],
)
def test_disk_full_is_74(tmp_path, sealed, args, data):
    path = tmp_path / "f.enc"
    path.write_bytes(sealed)
    args = [str(path) if a == "FILE" else a for a in args]
    stdin = sealed if data is None and "FILE" not in args else (data or b"")
    with open("/dev/full", "wb") as full:
        done = subprocess.run(
            command(*args), input=stdin, stdout=full, stderr=subprocess.PIPE, env=clean_env(KEY_ENV), timeout=WAIT
        )
    assert done.returncode == 74, done.stderr
    assert_error_lines(done.stderr.decode(), "No space left on device")


def _stdout_pipe_closed_early(args, **kwargs):
    child = spawn(args, KEY_ENV, stdout=subprocess.PIPE, **kwargs)
    try:
        assert len(child.stdout.read(10)) == 10
        child.stdout.close()
        status = child.wait(timeout=WAIT)
        stderr = child.stderr.read()
    finally:
        child.kill()
        child.wait()
    return status, stderr


def test_reader_gone_during_open_is_a_quiet_sigpipe(tmp_path):
    # more than the (widened, 1 MiB) pipe holds, so open is still writing when its reader goes
    path = tmp_path / "f.enc"
    path.write_bytes(run(["seal"], os.urandom(4 << 20), KEY_ENV).stdout)
    status, stderr = _stdout_pipe_closed_early(["open", str(path)])
    assert (status, stderr) == (-signal.SIGPIPE, b"")


def test_reader_gone_during_seal_is_a_quiet_sigpipe(tmp_path):
    path = tmp_path / "plain"
    path.write_bytes(os.urandom(4 << 20))
    with open(path, "rb") as src:
        status, stderr = _stdout_pipe_closed_early(["seal"], stdin=src)
    assert (status, stderr) == (-signal.SIGPIPE, b"")


def _can_mount_read_only(directory):
    try:
        probe = subprocess.run(
            ["unshare", "-m", "sh", "-c", 'mount -t tmpfs -o ro encpipe-test "$1" && ! touch "$1/x"', "sh", directory],
            capture_output=True,
            timeout=WAIT,
        )
    except OSError:
        return False
    return probe.returncode == 0


def test_seal_into_a_read_only_file_system_is_74(tmp_path):
    """A read-only tmpfs in a private mount namespace (root ignores directory modes);
    where mount namespaces are not available, a procfs file nobody can write instead."""
    mount = tmp_path / "ro"
    mount.mkdir()
    if _can_mount_read_only(str(mount)):
        target = mount / "backup.enc"
        argv = ["unshare", "-m", "sh", "-c", 'mount -t tmpfs -o ro encpipe-test "$1" && shift && exec "$@"', "sh"]
        argv += [str(mount), *command("seal", "-o", str(target))]
        words = ("cannot create", "Read-only file system")
    else:
        target, words = "/proc/version", ("cannot write output",)
        argv = command("seal", "-o", target)
    done = subprocess.run(argv, input=PLAINTEXT, capture_output=True, env=clean_env(KEY_ENV), timeout=WAIT)
    assert (done.returncode, done.stdout) == (74, b""), done.stderr
    assert_error_lines(done.stderr.decode(), *words)
    assert not os.path.exists(mount / "backup.enc")


@pytest.mark.parametrize(
    "target, words",
    [
        ("/proc/version", ["cannot create a temporary file in /proc"]),
        ("DIR", ["cannot create DIR", "Is a directory"]),
        ("DIR/missing/out.enc", ["cannot create DIR/missing/out.enc", "No such file"]),
    ],
)
def test_seal_into_an_unwritable_target_is_74(tmp_path, target, words):
    target = target.replace("DIR", str(tmp_path))
    done = run(["seal", "-o", target], PLAINTEXT, KEY_ENV)
    assert (done.returncode, done.stdout) == (74, b""), done.stderr
    assert_error_lines(done.stderr.decode(), *[w.replace("DIR", str(tmp_path)) for w in words])


# --- input timing ---------------------------------------------------------------------------

FEEDER = r"""
import os, sys, time
data = open(sys.argv[1], "rb").read()
sizes = [int(s) for s in sys.argv[2].split(",")]
pos = i = 0
while pos < len(data):
    n = sizes[i % len(sizes)]
    os.write(1, data[pos:pos + n])
    pos, i = pos + n, i + 1
    if i % 97 == 0:
        time.sleep(0.002)
"""


def fed(path, sizes, args, env):
    """`args` reading from a process that writes `path` in bursts of `sizes` bytes."""
    feeder = subprocess.Popen([sys.executable, "-c", FEEDER, str(path), ",".join(map(str, sizes))], stdout=subprocess.PIPE)
    try:
        done = subprocess.run(
            command(*args), stdin=feeder.stdout, capture_output=True, env=clean_env(env), timeout=WAIT * 4
        )
    finally:
        feeder.stdout.close()
        assert feeder.wait(timeout=WAIT) == 0
    assert done.returncode == 0 and done.stderr == b"", done.stderr
    return done.stdout


BURSTS = {"one byte at a time": [1], "odd bursts": [1, 7, 16383, 3, 16401, 1, 65537, 13]}
SMALL = PLAINTEXT[: CHUNK + 77]


TIMINGS = [("one byte at a time", "1"), ("odd bursts", "1"), ("odd bursts", "2")]


@pytest.mark.parametrize("bursts, threads", TIMINGS)
def test_seal_of_a_trickling_input_opens_to_the_same_bytes(tmp_path, bursts, threads):
    data = SMALL if bursts == "one byte at a time" else PLAINTEXT
    path = tmp_path / "plain"
    path.write_bytes(data)
    sealed_bytes = fed(path, BURSTS[bursts], ["seal", "--chunk-size", "16K", "--threads", threads], KEY_ENV)
    opened = run(["open"], sealed_bytes, KEY_ENV)
    assert opened.returncode == 0 and opened.stdout == data


@pytest.mark.parametrize("bursts, threads", TIMINGS)
def test_open_of_a_trickling_input_matches_a_file_input(tmp_path, sealed, bursts, threads):
    data = sealed if bursts == "odd bursts" else run(["seal", "--chunk-size", "16K"], SMALL, KEY_ENV).stdout
    path = tmp_path / "f.enc"
    path.write_bytes(data)
    from_file = run(["open", "--threads", threads, str(path)], env=KEY_ENV)
    assert from_file.returncode == 0
    assert fed(path, BURSTS[bursts], ["open", "--threads", threads], KEY_ENV) == from_file.stdout


# --- key and passphrase commands -------------------------------------------------------------

SEAL_ARGS = ["seal", "--work-factor", "10"]


@pytest.mark.parametrize("option", ["--key-command", "--passphrase-command"])
@pytest.mark.parametrize("verb", ["seal", "open"])
def test_hanging_secret_command_times_out(tmp_path, sealed, option, verb):
    """encpipe itself gives up after ENCPIPE_COMMAND_TIMEOUT and exits 66 (its stderr goes to a
    file here, so only encpipe's own exit is timed)."""
    errors = tmp_path / "stderr"
    with open(errors, "wb") as err:
        child = spawn([verb, option, "sleep 30"], {"ENCPIPE_COMMAND_TIMEOUT": "1"}, stdin=subprocess.PIPE,
                      stdout=subprocess.PIPE, stderr=err)
        started = time.monotonic()
        try:
            out, _ = child.communicate(b"x" if verb == "seal" else sealed, timeout=WAIT)
        finally:
            child.kill()
            child.wait()
    elapsed = time.monotonic() - started
    assert (child.returncode, out) == (66, b""), errors.read_text()
    assert_error_lines(encpipe_lines(errors.read_bytes()), "timed out after 1 s", "sleep 30")
    assert elapsed < 10


def encpipe_lines(stderr):
    """encpipe's own stderr lines: a secret command's stderr passes through before them
    (a shell whose child was killed may say "Killed")."""
    return "".join(line for line in stderr.decode().splitlines(keepends=True) if line.startswith("encpipe: "))


def _processes_running(*argv):
    wanted = b"".join(arg.encode() + b"\0" for arg in argv)
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if f.read() == wanted:
                    found.append(int(pid))
        except OSError:
            pass
    return found


@pytest.mark.parametrize("script", ["sleep {0}; echo x", "sleep {1} & sleep {2}; wait; echo x",
                                    "sleep {0} & echo x"])  # left running when the shell exits, holding stdout
def test_timed_out_command_leaves_nothing_behind(script):
    """A caller that reads encpipe's stderr to the end (a pipeline, $(...), a log collector)
    is not kept waiting by what the command started, and nothing is left running: a process
    the command left behind when it exited (no longer its descendant) too, which holds the
    command's output open (before, it ran on)."""
    # Durations no other process runs `sleep` with (another run of this test, in a
    # parallel worker or another checkout, must not pass for a leftover of this one).
    durations = [f"7.{os.getpid()}{random.randrange(10**6):06d}{n}" for n in range(3)]
    started = time.monotonic()
    done = run(["seal", "--key-command", script.format(*durations)], b"x", {"ENCPIPE_COMMAND_TIMEOUT": "1"})
    elapsed = time.monotonic() - started
    assert (done.returncode, done.stdout) == (66, b""), done.stderr
    assert_error_lines(encpipe_lines(done.stderr), "timed out")
    assert elapsed < 6
    assert not [p for seconds in durations for p in _processes_running("sleep", seconds)]


@pytest.mark.parametrize("option", ["--key-command", "--passphrase-command"])
@pytest.mark.parametrize("script", ["exit 3", "echo 3e; exit 1", "no-such-command-for-encpipe-tests"])
def test_failing_secret_command_is_66(option, script):
    done = run([*SEAL_ARGS, option, script], b"x")
    assert (done.returncode, done.stdout) == (66, b""), done.stderr
    assert_error_lines(encpipe_lines(done.stderr), "failed with status")
    assert "Traceback" not in done.stderr.decode()


@pytest.mark.parametrize(
    "output, words",
    [
        ("echo 1234", ["not 4"]),
        ("printf '%063d' 0", ["not 63"]),
        ("printf '%065d' 0", ["not 65"]),
        ("printf 'z%063d' 0", ["hex"]),
        ("echo '# only a comment'", ["no key found"]),
        ("printf '\\377\\376'", ["UTF-8"]),
    ],
)
def test_key_command_printing_a_malformed_key_is_64(output, words):
    done = run([*SEAL_ARGS, "--key-command", output], b"x")
    assert (done.returncode, done.stdout) == (64, b""), done.stderr
    assert_error_lines(done.stderr.decode(), "key command", *words)


def test_passphrase_command_printing_nothing_is_64():
    done = run([*SEAL_ARGS, "--passphrase-command", "printf '\\n'"], b"x")
    assert (done.returncode, done.stdout) == (64, b""), done.stderr
    assert_error_lines(done.stderr.decode(), "empty")


@pytest.mark.parametrize("value", ["0", "-1", "soon", "", "nan", "inf", "1e308", "86401",
                                   "1_0", "\u0661", " 1", "1e1", "0x10", ".5", "1."])
def test_invalid_command_timeout_is_64(value):
    done = run([*SEAL_ARGS, "--key-command", f"echo {KEY}"], b"x", {"ENCPIPE_COMMAND_TIMEOUT": value})
    assert (done.returncode, done.stdout) == (64, b""), done.stderr
    assert_error_lines(done.stderr.decode(), "ENCPIPE_COMMAND_TIMEOUT")


def test_secret_commands_that_work(sealed):
    opened = run(["open", "--key-command", f"echo '# vault'; echo {KEY}"], sealed)
    assert opened.returncode == 0 and opened.stdout == PLAINTEXT
    sealed_pw = run([*SEAL_ARGS, "--passphrase-command", "echo 'a passphrase'"], b"data")
    assert sealed_pw.returncode == 0
    opened = run(["open", "--passphrase-command", "printf 'a passphrase\\r\\n'"], sealed_pw.stdout)
    assert (opened.returncode, opened.stdout) == (0, b"data")


# --- output errors outside the payload ----------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["inspect", "FILE"],
        ["inspect", "--json", "FILE"],
        ["inspect", "--verify", "FILE"],
        ["keygen"],
        ["keygen", "--x25519", "-o", "DIR/id"],
        ["keyid"],
        ["pubkey", "IDENTITY"],
        ["--help"],
        ["--version"],
    ],
    ids=lambda a: " ".join(a),
)
def test_every_command_reports_a_full_disk_as_74(tmp_path, sealed, args):
    path, identity = tmp_path / "f.enc", tmp_path / "identity"
    path.write_bytes(sealed)
    assert run(["keygen", "--x25519", "-o", str(identity)]).returncode == 0
    args = [a.replace("FILE", str(path)).replace("DIR", str(tmp_path)).replace("IDENTITY", str(identity)) for a in args]
    with open("/dev/full", "wb") as full:
        done = subprocess.run(
            command(*args), stdout=full, stderr=subprocess.PIPE, env=clean_env(KEY_ENV), timeout=WAIT
        )
    assert done.returncode == 74, done.stderr
    assert_error_lines(done.stderr.decode(), "No space left on device")
