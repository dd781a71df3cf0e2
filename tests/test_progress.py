"""--progress: bytes done, rate and elapsed time on standard error.

On a terminal the line is redrawn in place every 0.25 s; otherwise one plain
line every 5 s, and a final one. The commands that stream (seal, open, rewrap,
inspect --verify) report the exact byte count at the end and give the same
output as without it; encpipe-backup and encpipe-restore pass it through.
"""

import io
import json
import re
import subprocess
import sys

import pytest

from cliutil import key_env, ok, run, seal, secret_file
from encpipe.progress import ProgressReporter, human_bytes
from test_backup_restore import BACKUP, ensure_small, restore, script_env
from test_backup_restore import run as run_script

LINE = re.compile(
    r"^encpipe: (?P<label>[a-z]+): (?:(?P<percent>[0-9]+)% )?(?P<done>[0-9.]+ [KMGT]?i?B)(?: of [0-9.]+ [KMGT]?i?B)?"
    r" in [0-9]+\.[0-9] s \([0-9.]+ [KMGT]?i?B/s\)(?:, ETA [0-9:]+)?$"
)


class _Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def _feed(reporter, clock, seconds, step):
    """Report one more MiB every `step` seconds for `seconds` seconds."""
    for i in range(1, int(seconds / step) + 1):
        clock.now += step
        reporter(i << 20)


def test_a_log_gets_one_plain_line_every_five_seconds_and_a_final_one():
    clock, log = _Clock(), io.StringIO()
    reporter = ProgressReporter(log, "seal", clock)
    _feed(reporter, clock, 12, 0.5)
    reporter.finish()
    lines = log.getvalue().splitlines()
    assert lines == [
        "encpipe: seal: 10.0 MiB in 5.0 s (2.0 MiB/s)",
        "encpipe: seal: 20.0 MiB in 10.0 s (2.0 MiB/s)",
        "encpipe: seal: 24.0 MiB in 12.0 s (2.0 MiB/s)",
    ]
    assert "\r" not in log.getvalue()


def test_a_terminal_line_is_redrawn_in_place():
    clock, tty = _Clock(), _Terminal()
    reporter = ProgressReporter(tty, "open", clock)
    _feed(reporter, clock, 1, 0.125)
    reporter.finish()
    text = tty.getvalue()
    redraws = text.split("\r\033[K")[1:]
    assert len(redraws) == 5  # every 0.25 s over 1 s, and the final one
    assert all(not r.endswith("\n") for r in redraws[:-1]) and redraws[-1].endswith("\n")
    assert redraws[-1] == "encpipe: open: 8.0 MiB in 1.0 s (8.0 MiB/s)\n"


DATA = bytes(range(256)) * 4096 * 3  # 3 MiB


@pytest.fixture(scope="module")
def sealed():
    return seal(DATA, args=["--chunk-size", "64K"])


def _final_line(stderr, label):
    lines = stderr.splitlines()
    assert lines, "no progress line"
    match = LINE.match(lines[-1])
    assert match and match["label"] == label, lines
    assert all(LINE.match(line) for line in lines), lines
    return match["done"]


def test_seal_reports_progress_and_seals_the_same_plaintext():
    result = run(["seal", "--progress", "--chunk-size", "64K"], DATA, key_env())
    assert result.code == 0
    assert _final_line(result.stderr, "seal") == "3.0 MiB"
    assert ok(run(["open"], result.stdout, key_env())) == DATA


def test_open_reports_progress_and_writes_the_same_plaintext(sealed):
    result = run(["open", "--progress"], sealed, key_env())
    assert (result.code, result.stdout) == (0, DATA)
    assert _final_line(result.stderr, "open") == "3.0 MiB"


def test_inspect_verify_reports_progress(sealed):
    result = run(["inspect", "--verify", "--progress"], sealed, key_env())
    assert result.code == 0
    assert _final_line(result.stderr, "verify") == "3.0 MiB"


def test_rewrap_reports_progress_and_copies_the_payload(sealed, tmp_path):
    other = str(secret_file(tmp_path, "b.key", "5e" * 32))
    result = run(["rewrap", "--progress", "--add-key-file", other], sealed, key_env())
    assert result.code == 0
    records = sealed[:-64][-(len(DATA) + 48 * 16) :]  # before the trailer: 1 authenticator, 1 MAC
    assert result.stdout[:-96].endswith(records)  # the same payload records; 2 authenticators now
    assert _final_line(result.stderr, "rewrap").endswith("MiB")
    assert ok(run(["open", "--key-file", other], result.stdout)) == DATA


def test_no_progress_without_the_option(sealed):
    result = run(["open"], sealed, key_env())
    assert (result.code, result.stderr) == (0, "")


def _has_progress_line(stderr, label):
    return any(LINE.match(line) and f": {label}: " in line for line in stderr.decode().splitlines())


def test_backup_and_restore_pass_progress_through(pg, tools, key_file, tmp_path):
    db = ensure_small(pg, "bk_progress")
    made = run_script([BACKUP, "--dir", tmp_path / "b", "--progress", "--key-file", key_file, db], script_env(pg, tools))
    assert made.returncode == 0, made.stderr.decode()
    assert _has_progress_line(made.stderr, "seal")
    path = json.loads(made.stdout)["path"]
    done = restore(pg, tools, path, "bk_progress_restored", "--progress", "--key-file", key_file)
    assert done.returncode == 0, done.stderr.decode()
    assert _has_progress_line(done.stderr, "open")
    assert _has_progress_line(done.stderr, "verifying")  # open --verify-first's first pass
    pg.dropdb("bk_progress_restored")


def test_restore_reports_the_open_of_file_not_of_its_globals_file(pg, tools, key_file, tmp_path):
    """encpipe-restore --progress is FILE's open alone: the globals file (pg_dumpall
    --globals-only, some KiB; a restore reads no more than 64 MiB of its SQL) is
    opened without it. Its lines, unlabelled among FILE's, would only be noise:
    two final lines a few KiB long that look like FILE's (README, usage text)."""
    db = ensure_small(pg, "bk_progress_globals")
    made = run_script([BACKUP, "--dir", tmp_path / "b", "--key-file", key_file, db], script_env(pg, tools))
    assert made.returncode == 0, made.stderr.decode()
    path = json.loads(made.stdout)["path"]
    with open(path, "rb") as sealed:
        plaintext = json.loads(ok(run(["inspect", "--json", "--key-file", key_file], sealed.read())))
    done = restore(pg, tools, path, "bk_progress_globals_restored", "--progress", "--key-file", key_file)
    assert done.returncode == 0, done.stderr.decode()
    finals = [line for line in done.stderr.decode().splitlines() if LINE.match(line) and " 100% " in line]
    total = human_bytes(plaintext["plaintext_bytes"])
    assert [line.split(" in ")[0] for line in finals] == [f"encpipe: verifying: 100% {total} of {total}",
                                                           f"encpipe: open: 100% {total} of {total}"], finals
    pg.dropdb("bk_progress_globals_restored")


# --- a known total: percentage and ETA (acceptance 8) -----------------------------


def test_with_a_total_the_log_shows_percentage_and_eta():
    clock, log = _Clock(), io.StringIO()
    reporter = ProgressReporter(log, "seal", clock, total=20 << 20)
    _feed(reporter, clock, 12, 0.5)
    reporter.finish()
    assert log.getvalue().splitlines() == [
        "encpipe: seal: 50% 10.0 MiB of 20.0 MiB in 5.0 s (2.0 MiB/s), ETA 0:05",
        "encpipe: seal: 100% 20.0 MiB of 20.0 MiB in 10.0 s (2.0 MiB/s)",
        "encpipe: seal: 100% 24.0 MiB of 20.0 MiB in 12.0 s (2.0 MiB/s)",
    ]


def test_seal_size_gives_a_pipe_a_total():
    result = run(["seal", "--progress", "--size", str(len(DATA))], DATA, key_env())
    assert result.code == 0 and result.stderr.splitlines()[-1].startswith("encpipe: seal: 100% 3.0 MiB of 3.0 MiB in ")
    assert run(["seal", "--size", "lots", "--progress"], DATA, key_env()).code == 64


def _lines(argv, stdin_path, tmp_path):
    with open(stdin_path, "rb") as stdin:
        done = subprocess.run([sys.executable, "-m", "encpipe", *argv], stdin=stdin, capture_output=True,
                              env={"ENCPIPE_KEY": "a" * 64, "PYTHONPATH": ":".join(sys.path), "PATH": "/usr/bin:/bin"},
                              cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.decode().splitlines()
    assert lines and all(LINE.match(line) for line in lines), lines
    return lines


def _process(argv, stdin_path, tmp_path):
    return _lines(argv, stdin_path, tmp_path)[-1]


def _passes(argv, stdin_path, tmp_path):
    """The final line of each pass, the first pass's (verifying) and the last's."""
    lines = _lines(argv, stdin_path, tmp_path)
    first = [line for line in lines if line.startswith("encpipe: verifying: ")]
    assert first and lines.index(first[-1]) == len(first) - 1, lines  # the first pass's lines come first
    return [line.split(" in ")[0] for line in (first[-1], lines[-1])]


def test_progress_on_regular_files_reaches_100_percent(tmp_path, sealed):
    plain, enc = tmp_path / "plain", tmp_path / "f.enc"
    plain.write_bytes(DATA)
    enc.write_bytes(sealed)
    assert _process(["seal", "--progress", "-o", "out.enc"], plain, tmp_path).startswith(
        "encpipe: seal: 100% 3.0 MiB of 3.0 MiB in ")
    assert _process(["open", "--progress", str(enc)], "/dev/null", tmp_path).startswith(
        "encpipe: open: 100% 3.0 MiB of 3.0 MiB in ")
    assert _process(["open", "--progress"], enc, tmp_path).startswith("encpipe: open: 100% 3.0 MiB of 3.0 MiB")
    assert _process(["inspect", "--verify", "--progress", str(enc)], "/dev/null", tmp_path).startswith(
        "encpipe: verify: 100% 3.0 MiB of 3.0 MiB in ")
    size = len(sealed) / 2**20
    assert _passes(["open", "--verify-first", "--progress", str(enc)], "/dev/null", tmp_path) == [
        "encpipe: verifying: 100% 3.0 MiB of 3.0 MiB", "encpipe: open: 100% 3.0 MiB of 3.0 MiB"]
    whole = f"100% {size:.1f} MiB of {size:.1f} MiB"
    assert _passes(["rewrap", "--progress"], enc, tmp_path) == [  # standard input: checked whole first
        f"encpipe: verifying: {whole}", f"encpipe: rewrap: {whole}"]
    in_place = _lines(["rewrap", "--progress", "--in-place", str(enc)], "/dev/null", tmp_path)  # one pass
    assert in_place[-1].startswith(f"encpipe: rewrap: {whole} in ") and ": verifying: " not in "".join(in_place)
