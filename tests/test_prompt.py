"""-p/--passphrase: prompted on the controlling terminal, twice when sealing."""

import os
import pty
import re
import select
import signal
import subprocess
import sys
import time

from cliutil import run


def run_on_terminal(command, answers, timeout=20.0, env=None):
    """Run `command` (a shell string) with a pseudo-terminal as its controlling
    terminal, typing one answer at each passphrase prompt; (status, screen)."""
    pid, leader = pty.fork()
    if pid == 0:
        os.execvpe("/bin/sh", ["/bin/sh", "-c", command], os.environ if env is None else env)
    screen, answered, deadline = b"", 0, time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.2)
        if not ready:
            continue
        try:
            data = os.read(leader, 1024)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        screen += data
        prompts = len(re.findall(rb"passphrase( again)?: ", screen))
        if prompts > answered and answered < len(answers):
            os.write(leader, answers[answered].encode() + b"\n")
            answered += 1
    else:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    os.close(leader)
    return os.waitstatus_to_exitcode(status), screen.decode(errors="replace")


def encpipe(args):
    return f"{sys.executable} -m encpipe {args}"


def test_seal_prompts_twice_and_open_once(tmp_path):
    plain, sealed = tmp_path / "in", tmp_path / "out.enc"
    plain.write_bytes(b"prompted secret data")
    status, screen = run_on_terminal(encpipe(f"seal -p --work-factor 10 -o {sealed} < {plain}"), ["tty pw", "tty pw"])
    assert status == 0, screen
    assert screen.count("passphrase") == 2
    assert run(["open"], sealed.read_bytes(), {"ENCPIPE_PASSPHRASE": "tty pw"}).stdout == b"prompted secret data"
    status, screen = run_on_terminal(encpipe(f"open -p {sealed} > {tmp_path / 'back'}"), ["tty pw"])
    assert status == 0, screen
    assert (tmp_path / "back").read_bytes() == b"prompted secret data"


def test_mismatched_confirmation_is_refused_and_writes_nothing(tmp_path):
    sealed = tmp_path / "out.enc"
    status, screen = run_on_terminal(encpipe(f"seal -p --work-factor 10 -o {sealed} < /dev/null"), ["one", "two"])
    assert status == 64
    assert "do not match" in screen
    assert not sealed.exists()


def test_prompt_without_a_terminal_fails_closed():
    done = subprocess.run(
        [sys.executable, "-m", "encpipe", "seal", "-p"], input=b"data", capture_output=True, start_new_session=True
    )
    assert (done.returncode, done.stdout) == (78, b"")
    assert b"no terminal" in done.stderr
