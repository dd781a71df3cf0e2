"""-p/--passphrase: prompted on the controlling terminal, twice when sealing."""

import os
import pty
import re
import select
import shlex
import signal
import subprocess
import sys
import time

from cliutil import assert_one_line_error, run


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
            answer = answers[answered]
            os.write(leader, (answer if isinstance(answer, bytes) else answer.encode()) + b"\n")
            answered += 1
    else:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    os.close(leader)
    return os.waitstatus_to_exitcode(status), screen.decode(errors="replace")


def utf8_terminal():
    """The environment of a terminal whose encoding is UTF-8, whatever the test's locale."""
    return {**os.environ, "LC_ALL": "C.UTF-8", "PYTHONUTF8": "1"}


def encpipe(args):
    return f"{shlex.quote(sys.executable)} -m encpipe {args}"


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


def test_a_line_typed_that_is_not_text_of_the_terminal_is_64_and_writes_nothing(tmp_path):
    """A passphrase typed in another encoding than the terminal's (Latin-1's été on
    a UTF-8 terminal): one line and 64, nothing written, for seal and open alike.
    Before, getpass's UnicodeDecodeError was `internal error` and 70."""
    sealed, plain, back = tmp_path / "out.enc", tmp_path / "in", tmp_path / "back"
    plain.write_bytes(b"data")
    latin1 = "été".encode("latin-1")
    status, screen = run_on_terminal(encpipe(f"seal -p --work-factor 10 -o {sealed} < {plain}"), [latin1, latin1],
                                     env=utf8_terminal())
    assert status == 64, screen
    assert not sealed.exists()
    sealed.write_bytes(run(["seal", "--work-factor", "10"], b"data", {"ENCPIPE_PASSPHRASE": "x"}).stdout)
    status, screen = run_on_terminal(encpipe(f"open -p {sealed} > {back}"), [latin1], env=utf8_terminal())
    assert status == 64, screen
    assert back.read_bytes() == b""
    said = screen.replace("\r", "").split("encpipe: passphrase: ")[-1]
    assert_one_line_error(said)
    assert said.startswith("encpipe: error: the passphrase typed is not text in the terminal's encoding"), screen


def test_a_typed_passphrase_is_its_utf8_not_normalized(tmp_path):
    """The line typed, in UTF-8, as a file holding the same text in UTF-8 gives it;
    no Unicode normalization: é as one code point (NFC) and as e and a combining
    accent (NFD, as some systems write it) are two passphrases."""
    sealed = tmp_path / "out.enc"
    nfc, nfd = "\u00e9t\u00e9", "e\u0301te\u0301"
    sealed.write_bytes(run(["seal", "--work-factor", "10"], b"data", {"ENCPIPE_PASSPHRASE": nfc}).stdout)
    status, screen = run_on_terminal(encpipe(f"open -p {sealed}"), [nfc], env=utf8_terminal())
    assert status == 0 and screen.endswith("data"), screen
    status, screen = run_on_terminal(encpipe(f"open -p {sealed}"), [nfd], env=utf8_terminal())
    assert status == 77, screen


def test_the_end_of_input_at_a_prompt_is_64_and_writes_nothing(tmp_path):
    """Ctrl-D at the prompt (seal's first or second, open's): getpass's EOFError was
    `internal error` and 70; it is one line and 64, nothing written."""
    sealed, plain, back = tmp_path / "out.enc", tmp_path / "in", tmp_path / "back"
    plain.write_bytes(b"data")
    for answers in ([b"\x04"], [b"pw", b"\x04"]):
        status, screen = run_on_terminal(encpipe(f"seal -p --work-factor 10 -o {sealed} < {plain}"), answers)
        assert status == 64, screen
        assert "encpipe: error: no passphrase typed: the terminal's input ended at the prompt" in screen, screen
        assert "internal error" not in screen and not sealed.exists()
    sealed.write_bytes(run(["seal", "--work-factor", "10"], b"data", {"ENCPIPE_PASSPHRASE": "x"}).stdout)
    status, screen = run_on_terminal(encpipe(f"open -p {sealed} > {back}"), [b"\x04"])
    assert status == 64, screen
    assert back.read_bytes() == b""
    said = screen.replace("\r", "").split("encpipe: passphrase: ")[-1].lstrip("^D\n")
    assert_one_line_error(said)
