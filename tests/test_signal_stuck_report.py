"""A signal held for a commit's report, and that report stuck on a reader that does not read.

From a rename (encpipe-rotate) or a removal (encpipe-prune) on, a SIGINT, SIGTERM
or SIGHUP waits for the report of what was done (tests/test_signal_commits.py).
When standard output is a pipe nobody reads, that report never goes out: the
signal waited for ever, and so did every other one after it, so that only
SIGKILL ended the run. A second signal, the first still waiting, now ends it at
once, as a signal did before there was anything to wait for (README "Exit
status"); a single one still waits for the report."""

import contextlib
import json
import os
import signal
import subprocess
import sys

import pytest

from fuzz.craft import clean_env, command
from test_signal_commits import ENCPIPE, IDS, KEY, NEW, ROOT, SIGNALS, WAIT, _defaults, run, signalled, \
    signalled_env


def full_pipe():
    """(read end, write end) of a pipe whose buffer is full: a write to it waits."""
    r, w = os.pipe()
    os.set_blocking(w, False)
    for size in (65536, 1):
        try:
            while True:
                os.write(w, b"x" * size)
        except BlockingIOError:
            pass
    os.set_blocking(w, True)
    return r, w


def stuck_writing(pid):
    """Wait until `pid` waits on a pipe's write (its report, on the full pipe)."""
    for _ in range(WAIT * 100):
        with open(f"/proc/{pid}/wchan") as f:
            if "pipe_write" in f.read():
                return True
        os.sched_yield()
        signal.sigtimedwait([], 0.01)  # a pause, without a timer of the test's own
    return False


@contextlib.contextmanager
def stuck(argv, env, stream):
    """`argv` started with its standard `stream` ("stdout" or "stderr") a full pipe,
    once it waits on that pipe; killed on the way out if it has not ended."""
    r, w = full_pipe()
    other = {"stdout": "stderr", "stderr": "stdout"}[stream]
    try:
        proc = subprocess.Popen(argv, env=env, **{stream: w, other: subprocess.DEVNULL}, stdin=subprocess.DEVNULL,
                                preexec_fn=_defaults)
    finally:
        os.close(w)
    try:
        assert stuck_writing(proc.pid)
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(r)


def ended(proc, seconds=WAIT):
    """Its status, or None if it has not ended within `seconds`."""
    try:
        return proc.wait(seconds)
    except subprocess.TimeoutExpired:
        return None


def signalled_twice(tmp_path, argv, env, sig):
    """Run `argv` with standard output a full pipe; once its first signal (signalled_env)
    came and it waits on that pipe, signal it again; its status, or None if it did
    not end within WAIT seconds (then killed)."""
    with stuck(argv, env, "stdout") as proc:
        assert signalled(tmp_path)
        proc.send_signal(sig)
        return ended(proc)


@pytest.mark.parametrize("sig", SIGNALS, ids=IDS)
def test_rotate_waiting_on_its_report_ends_on_a_second_signal(tmp_path, sig):
    """a.enc renamed, the signal held for its line, the line stuck in a full pipe: a
    second signal ends rotate (it dies of it). Before, it ran on until SIGKILL."""
    keys = tmp_path / "keys"
    keys.mkdir()
    old, new = keys / "old.key", keys / "new.key"
    for path, value in ((old, KEY), (new, NEW)):
        path.write_text(value + "\n")
        path.chmod(0o600)
    work = tmp_path / "work"
    work.mkdir(mode=0o700)
    for name in ("a.enc", "b.enc"):
        made = run(command("seal", "--key-file", str(old), "-o", str(work / name)), clean_env(), b"data")
        assert made.returncode == 0, made.stderr
    env = signalled_env(tmp_path, "rename", "args[1] == 'a.enc'", sig, {"ENCPIPE": ENCPIPE})
    argv = [sys.executable, os.path.join(ROOT, "scripts", "encpipe-rotate"), "--old-key-file", str(old),
            "--new-key-file", str(new), str(work)]
    assert signalled_twice(tmp_path, argv, env, sig) == -sig


@pytest.mark.parametrize("sig", SIGNALS, ids=IDS)
def test_prune_waiting_on_its_report_ends_on_a_second_signal(tmp_path, sig):
    """A backup removed (the run committed), the signal held for the report, the report
    stuck in a full pipe: a second signal ends prune (it dies of it). Before, it ran
    on until SIGKILL."""
    from test_backup_dir import ENV, make_valid
    from test_backup_dir_hostile import hours_ago

    work = tmp_path / "b"
    work.mkdir(mode=0o700)
    oldest, newest = (f"shop_{hours_ago(h)}.sql.enc" for h in (48, 24))
    for name in (oldest, newest):
        make_valid(work, name)
    env = signalled_env(tmp_path, "unlink", f"args[0] == {oldest!r}", sig, ENV)
    argv = [sys.executable, os.path.join(ROOT, "scripts", "encpipe-prune"), "--keep-last", "1", str(work)]
    assert signalled_twice(tmp_path, argv, env, sig) == -sig
    assert os.listdir(work) == [newest]


def test_prune_signalled_once_still_reports(tmp_path):
    """One signal, the report's reader slow but there: the report goes out whole, and
    the status is prune's own (0)."""
    from test_backup_dir import ENV, make_valid
    from test_backup_dir_hostile import hours_ago

    work = tmp_path / "b"
    work.mkdir(mode=0o700)
    oldest, newest = (f"shop_{hours_ago(h)}.sql.enc" for h in (48, 24))
    for name in (oldest, newest):
        make_valid(work, name)
    env = signalled_env(tmp_path, "unlink", f"args[0] == {oldest!r}", signal.SIGTERM, ENV)
    r, w = full_pipe()
    try:
        proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "scripts", "encpipe-prune"), "--keep-last",
                                 "1", str(work)], env=env, stdout=w, stderr=subprocess.DEVNULL,
                                preexec_fn=_defaults)
    finally:
        os.close(w)
    try:
        assert stuck_writing(proc.pid)
        with os.fdopen(r, "rb") as reader:
            out = reader.read()
        assert proc.wait(WAIT) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    report = json.loads(out.lstrip(b"x"))
    assert [r["filename"] for r in report["removed"]] == [oldest]


def _error_line_stuck(argv, sig):
    """`argv` failing at once, its standard error a full pipe: once it waits there (its
    error line), a signal, then a second: its status, or None if it did not end within
    WAIT seconds of the second (then killed)."""
    with stuck(argv, clean_env({"PYTHONPATH": ROOT}), "stderr") as proc:
        proc.send_signal(sig)
        status = ended(proc, 0.5)
        if status is None:
            proc.send_signal(sig)
            status = ended(proc)
        return status


@pytest.mark.parametrize("sig", SIGNALS, ids=IDS)
@pytest.mark.parametrize("argv", [[sys.executable, "-m", "encpipe", "open", "/nonexistent/x.enc"],
                                  [sys.executable, os.path.join(ROOT, "scripts", "encpipe-list"), "/nonexistent"],
                                  [sys.executable, "-m", "encpipe.backup", "list", "--dir", "/nonexistent"]],
                         ids=["encpipe", "script", "module"])
def test_an_error_line_stuck_on_a_full_stderr_ends_on_a_second_signal(argv, sig):
    """An error line is said whole before a signal that waited for an import (held
    for one signal: tests/test_signal_startup.py); stuck on a standard error nobody
    reads, a second signal ends the run (it dies of it). A hold of every signal
    there kept it alive until SIGKILL."""
    assert _error_line_stuck(argv, sig) == -sig


@pytest.mark.parametrize("error, printed", [
    (OSError(f"Signal {int(signal.SIGALRM)} ignored due to race condition"), False),
    (MemoryError(), False),
    (OSError(f"Signal {int(signal.SIGUSR1)} ignored due to race condition"), True),
    (OSError("Signal 14 ignored"), True),
    (ValueError("a bug"), True),
])
def test_the_retry_s_alarm_race_is_not_printed(error, printed):
    """Python reports a signal that came as its handler was being changed as an
    unraisable `OSError: Signal 14 ignored due to race condition`: the SIGALRM of a
    held signal's retry, stopped by a second signal as its timer fired. It was two
    lines on standard error ("Exception ignored in: None"...), and, that standard
    error full, it kept the run alive after the second signal (the test above, now
    and then under load). It is dropped; any other unraisable is printed."""
    script = ("import sys\n"
              "from encpipe.processguard import no_unraisable_memory_errors\n"
              "no_unraisable_memory_errors()\n"
              "class Raising:  # its error, raised in __del__, is unraisable: it goes to sys.unraisablehook\n"
              "    def __del__(self):\n"
              "        raise ERROR\n"
              "Raising()\n")
    code = f"import signal\nERROR = {error!r}\n" + script
    done = subprocess.run([sys.executable, "-c", code], env=clean_env({"PYTHONPATH": ROOT}), capture_output=True,
                          timeout=WAIT)
    assert done.returncode == 0 and done.stdout == b""
    assert (done.stderr != b"") == printed, done.stderr
