"""--progress when a file is read twice: `open --verify-first`, `open --signer`
(a pipe spooled meanwhile), `open --refuse-unauthenticated`, a v2 file opened by
a raw key from a seekable input, and `rewrap` of standard input. The first pass,
which writes nothing, reports as "verifying"; the pass that writes, under the
command's label, its clock started when it starts. Each pass has its final line.
Before, the first pass said nothing: minutes of silence over a big file.

The clock is frozen in the command tests, so that no line every 5 s comes
between: the lines are exact but for the time and the rate."""

import io
import re
from types import SimpleNamespace

import pytest

from cliutil import KEY_A, ok, run, seal, secret_file
from encpipe import progress
from encpipe.cli import main
from encpipe.progress import TwoPassReporter
from test_progress import _Clock, _Terminal

TIME = re.compile(r" in [0-9]+\.[0-9] s \([0-9.]+ [KMGT]?i?B/s\)$")
DATA = bytes(range(256)) * 4096 * 3  # 3 MiB
SMALL = bytes(range(200)) * 5  # 1000 bytes: one chunk, a 1016-byte record


class _Pipe(io.BytesIO):
    def seekable(self):
        return False


def _feed(report, clock, seconds, step):
    """Report one more MiB every `step` seconds for `seconds` seconds."""
    for i in range(1, int(seconds / step) + 1):
        clock.now += step
        report(i << 20)


@pytest.fixture
def frozen(monkeypatch):
    monkeypatch.setattr(progress, "time", SimpleNamespace(monotonic=lambda: 100.0))


def _said(stderr):
    return [TIME.sub(" in T", line) for line in stderr.splitlines()]


def _open(args, stdin, env):
    out, err = io.BytesIO(), io.StringIO()
    code = main(["open", *args], stdin=stdin, stdout=out, stderr=err, env=env)
    return code, out.getvalue(), err.getvalue()


def test_each_pass_has_its_lines_its_final_line_and_its_own_clock():
    clock, log = _Clock(), io.StringIO()
    reporter = TwoPassReporter(log, "open", clock, total=12 << 20)
    _feed(reporter.check, clock, 6, 0.5)  # 12 MiB in 6 s
    reporter(0)  # the pass that writes begins
    _feed(reporter, clock, 3, 0.25)  # 12 MiB in 3 s
    reporter.finish()
    assert log.getvalue().splitlines() == [
        "encpipe: verifying: 83% 10.0 MiB of 12.0 MiB in 5.0 s (2.0 MiB/s), ETA 0:01",
        "encpipe: verifying: 100% 12.0 MiB of 12.0 MiB in 6.0 s (2.0 MiB/s)",
        "encpipe: open: 100% 12.0 MiB of 12.0 MiB in 3.0 s (4.0 MiB/s)",
    ]


def test_one_pass_reports_as_before():
    clock, log = _Clock(), io.StringIO()
    reporter = TwoPassReporter(log, "open", clock)
    _feed(reporter, clock, 12, 0.5)
    reporter.finish()
    assert log.getvalue().splitlines() == [
        "encpipe: open: 10.0 MiB in 5.0 s (2.0 MiB/s)",
        "encpipe: open: 20.0 MiB in 10.0 s (2.0 MiB/s)",
        "encpipe: open: 24.0 MiB in 12.0 s (2.0 MiB/s)",
    ]


def test_on_a_terminal_the_first_pass_keeps_its_final_line():
    clock, tty = _Clock(), _Terminal()
    reporter = TwoPassReporter(tty, "open", clock)
    _feed(reporter.check, clock, 1, 0.125)
    reporter(0)
    _feed(reporter, clock, 0.5, 0.125)
    reporter.finish()
    text = tty.getvalue()
    first, second, rest = text.split("\n")
    assert first.split("\r\033[K")[-1] == "encpipe: verifying: 8.0 MiB in 1.0 s (8.0 MiB/s)"
    assert second.split("\r\033[K")[-1] == "encpipe: open: 4.0 MiB in 0.5 s (8.0 MiB/s)"
    assert len(second.split("\r\033[K")) == 4 and rest == ""  # two redraws, the final one


@pytest.mark.parametrize("option", ["--verify-first", "--refuse-unauthenticated"])
def test_open_reports_its_first_pass_as_verifying(frozen, option):
    sealed = seal(DATA, args=["--chunk-size", "64K"])
    result = run(["open", option, "--progress"], sealed, {"ENCPIPE_KEY": KEY_A})
    assert (result.code, result.stdout) == (0, DATA)
    assert _said(result.stderr) == ["encpipe: verifying: 3.0 MiB in T", "encpipe: open: 3.0 MiB in T"]


def test_the_check_of_a_raw_key_file_counts_plaintext_as_open_does(frozen):
    # A seekable input: a first pass reads every record and checks the trailer.
    result = run(["open", "--progress"], seal(SMALL), {"ENCPIPE_KEY": KEY_A})
    assert (result.code, result.stdout) == (0, SMALL)
    assert _said(result.stderr) == ["encpipe: verifying: 1000 B in T", "encpipe: open: 1000 B in T"]


def test_one_pass_from_a_pipe_says_open_only(frozen):
    code, out, err = _open(["--progress"], _Pipe(seal(SMALL)), {"ENCPIPE_KEY": KEY_A})
    assert (code, out, _said(err)) == (0, SMALL, ["encpipe: open: 1000 B in T"])


def test_signer_through_a_pipe_reports_the_pass_that_spools(frozen, tmp_path):
    s = str(tmp_path / "s.key")
    verify = ok(run(["keygen", "--sign", "-o", s])).decode().strip()
    sealed = seal(DATA, args=["--chunk-size", "64K", "--sign-key", s])
    code, out, err = _open(["--signer", verify, "--progress"], _Pipe(sealed), {"ENCPIPE_KEY": KEY_A})
    assert (code, out) == (0, DATA)
    assert _said(err) == ["encpipe: verifying: 3.0 MiB in T", "encpipe: open: 3.0 MiB in T"]


def test_a_first_pass_that_fails_leaves_the_error_only(frozen):
    forged = bytearray(seal(DATA, args=["--chunk-size", "64K"]))
    forged[-1] ^= 1  # the trailer
    result = run(["open", "--progress"], bytes(forged), {"ENCPIPE_KEY": KEY_A})
    assert (result.code, result.stdout) == (65, b"")
    assert result.stderr.startswith("encpipe: error: ") and ": verifying: " not in result.stderr


def test_rewrap_of_standard_input_reports_both_passes(frozen, tmp_path):
    sealed = seal(SMALL)
    other = str(secret_file(tmp_path, "b.key", "5e" * 32))
    result = run(["rewrap", "--progress", "--add-key-file", other], sealed, {"ENCPIPE_KEY": KEY_A})
    assert result.code == 0 and ok(run(["open", "--key-file", other], result.stdout)) == SMALL
    assert _said(result.stderr) == ["encpipe: verifying: 1016 B in T", "encpipe: rewrap: 1016 B in T"]
