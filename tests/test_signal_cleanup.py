"""A signal while `seal -o FILE` or `rewrap --in-place FILE` writes: the hidden
`.encpipe-tmp.*` file is removed, FILE is as it was (or still absent), nothing
goes to stdout or stderr, and encpipe dies of the signal (README "Exit status").
With SIGHUP ignored when encpipe starts (nohup), SIGHUP changes nothing. A signal
while `keygen -o FILE` prints the public key removes FILE."""

import os
import signal
import subprocess
import time

import pytest

from encpipe.compat import set_pipe_size
from fuzz.craft import clean_env, command

KEY = "3e" * 32
KEY_ENV = {"ENCPIPE_KEY": KEY}
CHUNK = 1 << 14
WAIT = 30
SIGNALS = [signal.SIGTERM, signal.SIGINT, signal.SIGHUP]
IDS = ["SIGTERM", "SIGINT", "SIGHUP"]


def _dispositions(ignore_hup=False):
    def preexec():
        for sig in SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        if ignore_hup:
            signal.signal(signal.SIGHUP, signal.SIG_IGN)

    return preexec


def spawn(args, env, ignore_hup=False, **kwargs):
    # faulthandler: a child that outlives the signal is made to print where it is (finish)
    return subprocess.Popen(command(*args), env=clean_env({**env, "PYTHONFAULTHANDLER": "1"}),
                            preexec_fn=_dispositions(ignore_hup), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            **kwargs)


def wait_until(condition, what):
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def temps(directory):
    return sorted(directory.glob(".encpipe-tmp.*"))


def finish(child, sig):
    child.send_signal(sig)
    try:
        status = child.wait(timeout=WAIT)
        return status, child.stdout.read(), child.stderr.read()
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running {WAIT} s after {sig.name}:\n{_where(child)}")
    finally:
        child.kill()
        child.wait()


def _where(child):
    """What the kernel says of a child that outlives a signal (its signal masks, where it
    waits), then the Python stack of each of its threads (SIGABRT: faulthandler)."""
    said = []
    for name in ("status", "wchan", "stack"):
        try:
            with open(f"/proc/{child.pid}/{name}") as f:
                text = f.read()
        except OSError as e:
            text = str(e)
        said.append(f"{name}: " + "; ".join(line for line in text.splitlines()
                                             if name != "status" or line.startswith(("State", "Sig", "Shd", "Threads"))))
    child.send_signal(signal.SIGABRT)
    try:
        child.wait(timeout=WAIT)
    except subprocess.TimeoutExpired:
        pass
    else:
        said.append(child.stderr.read().decode(errors="replace"))
    return "\n".join(said)


@pytest.mark.parametrize("sig", SIGNALS, ids=IDS)
@pytest.mark.parametrize("existing", [True, False], ids=["replacing", "new"])
def test_signal_during_seal_to_a_file(tmp_path, sig, existing):
    out = tmp_path / "out.enc"
    if existing:
        out.write_bytes(b"the old file")
    child = spawn(["seal", "--chunk-size", "16K", "--threads", "1", "-o", str(out)], KEY_ENV,
                  stdin=subprocess.PIPE)
    try:
        child.stdin.write(os.urandom(4 * CHUNK))  # the input stays open: seal waits mid-write
        child.stdin.flush()
        wait_until(lambda: any(t.stat().st_size > CHUNK for t in temps(tmp_path)), "no partial file written")
        status, stdout, stderr = finish(child, sig)
    finally:
        child.stdin.close()
    assert (status, stdout, stderr) == (-sig, b"", b"")
    assert temps(tmp_path) == []
    assert out.read_bytes() == b"the old file" if existing else not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == (["out.enc"] if existing else [])


def _sealed(path):
    done = subprocess.run(command("seal", "-o", str(path)), input=b"plaintext", env=clean_env(KEY_ENV),
                          capture_output=True, timeout=WAIT)
    assert done.returncode == 0, done.stderr
    return path.read_bytes()


@pytest.mark.parametrize("sig", SIGNALS, ids=IDS)
def test_signal_during_rewrap_in_place(tmp_path, sig):
    """The signal comes once the new file is written under its hidden name (the test
    hook holds encpipe there), before it is renamed over FILE."""
    work = tmp_path / "work"
    work.mkdir(mode=0o700)
    target = work / "db.enc"
    before = _sealed(target)
    marker = tmp_path / "written"
    hook = f'[ "$1" = written ] && {{ : > {marker}; exec sleep {WAIT} >/dev/null 2>&1; }}; :'
    added = tmp_path / "added.key"
    added.write_text("4f" * 32 + "\n")
    added.chmod(0o600)
    child = spawn(["rewrap", "--in-place", str(target), "--add-key-file", str(added)],
                  {**KEY_ENV, "ENCPIPE_TEST_HOOK": hook}, stdin=subprocess.DEVNULL)
    wait_until(marker.exists, "rewrap never reached its written step")
    assert len(temps(work)) == 1
    status, stdout, stderr = finish(child, sig)
    assert (status, stdout, stderr) == (-sig, b"", b"")
    assert temps(work) == []
    assert target.read_bytes() == before
    assert [p.name for p in work.iterdir()] == ["db.enc"]


def test_sighup_ignored_by_nohup_is_still_ignored(tmp_path):
    """An encpipe started with SIGHUP ignored keeps it ignored: the seal completes."""
    out = tmp_path / "out.enc"
    child = spawn(["seal", "--chunk-size", "16K", "-o", str(out)], KEY_ENV, ignore_hup=True, stdin=subprocess.PIPE)
    try:
        child.stdin.write(b"x" * (2 * CHUNK))
        child.stdin.flush()
        wait_until(lambda: any(t.stat().st_size > CHUNK for t in temps(tmp_path)), "no partial file written")
        child.send_signal(signal.SIGHUP)
        time.sleep(0.3)
        child.stdin.write(b"y" * CHUNK)
        child.stdin.close()
        status = child.wait(timeout=WAIT)
    finally:
        child.kill()
        child.wait()
    assert (status, child.stdout.read(), child.stderr.read()) == (0, b"", b"")
    opened = subprocess.run(command("open", str(out)), env=clean_env(KEY_ENV), capture_output=True, timeout=WAIT)
    assert (opened.returncode, opened.stdout) == (0, b"x" * (2 * CHUNK) + b"y" * CHUNK)


@pytest.mark.parametrize("kind", ["--x25519", "--sign"])
@pytest.mark.parametrize("sig", SIGNALS, ids=IDS)
def test_signal_while_keygen_prints_the_public_key_removes_the_key_file(tmp_path, kind, sig):
    """keygen -o writes the secret key file, then prints its public half: a signal
    while that print waits (its reader does not read: a full pipe) leaves no key
    file whose public half nobody saw, and keygen dies of the signal (143 for SIGTERM)."""
    read_end, write_end = os.pipe()
    set_pipe_size(write_end, 1 << 20)  # as large as encpipe makes its stdout pipe
    os.set_blocking(write_end, False)
    for size in (65536, 1):
        try:
            while True:
                os.write(write_end, b"\0" * size)
        except BlockingIOError:  # full: keygen's print will wait
            pass
    os.set_blocking(write_end, True)
    key_file = tmp_path / "new.key"
    try:
        child = subprocess.Popen(command("keygen", kind, "-o", str(key_file)), env=clean_env(),
                                 preexec_fn=_dispositions(), stdout=write_end, stderr=subprocess.PIPE)
        os.close(write_end)
        write_end = None
        wait_until(lambda: key_file.exists() and key_file.stat().st_size > 0, "no key file written")
        wait_until(lambda: _waits_writing(child.pid), "keygen does not wait on its output")
        child.send_signal(sig)
        status = child.wait(timeout=WAIT)
        stderr = child.stderr.read()
    finally:
        child.kill()
        child.wait()
        os.close(read_end)
        if write_end is not None:
            os.close(write_end)
    assert (status, stderr) == (-sig, b"")
    assert not key_file.exists()
    assert list(tmp_path.iterdir()) == []


def _waits_writing(pid):
    """Whether `pid` sleeps in a write to a pipe (/proc/PID/wchan; 'S' where it is not shown)."""
    try:
        with open(f"/proc/{pid}/wchan") as f:
            wchan = f.read()
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state == "S" and ("pipe_write" in wchan or wchan in ("0", ""))
