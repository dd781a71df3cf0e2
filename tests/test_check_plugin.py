"""encpipe-check as the Nagios plugin guidelines want one (README, "Monitoring:
--metrics-file and encpipe-check"): a usage error is UNKNOWN (3) with one line
on standard output; each database's age is performance data after a `|`; and
-t/--timeout bounds the run, which then stops every child it started.

Before, a usage error exited 64 with nothing on standard output: Nagios showed
"(No output on stdout)" and "return code of 64 is out of bounds"."""

import io
import os
import re
import shlex
import signal
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

from cliutil import assert_one_line_error
from test_backup_dir import ENV, make_valid, stamp
from test_child_start_gaps import none_left

from encpipe.backup.cli import main
from encpipe.backup.plugin import MAX_LINES, output

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECK = os.path.join(ROOT, "scripts", "encpipe-check")


def check(*argv, env=ENV):
    out, err = io.BytesIO(), io.StringIO()
    code = main(["check", *argv], stdout=out, stderr=err, env=dict(env))
    return code, out.getvalue().decode(), err.getvalue()


USAGE_ERRORS = [  # DIR: the test's directory
    (["--max-age", "24", "--bogus", "DIR"], "unknown option --bogus"),
    # an option's other name is no unknown option, nor its value one (-t, --timeout; -p, --passphrase)
    (["--max-age", "24", "--timeout", "5", "--bogus", "DIR"], "unknown option --bogus"),
    (["--max-age", "24", "-t", "-5", "--bogus", "DIR"], "unknown option --bogus"),
    (["--max-age", "24", "--verify", "--passphrase", "--bogus", "DIR"], "unknown option --bogus"),
    (["--warn-age", "12", "DIR"], "check needs --max-age HOURS"),
    (["--max-age", "x", "DIR"], "--max-age must be a number from 0 to 1000000, not 'x'"),
    (["--max-age", "24", "--warn-age", "-1", "DIR"], "--warn-age must be a number from 0 to 1000000, not '-1'"),
    # a warning that can never come before the critical: refused, not a check that only ever goes critical
    (["--max-age", "24", "--warn-age", "24", "DIR"],
     "--warn-age must be below --max-age (24 hours), not '24': else no warning comes before the critical"),
    (["--max-age", "1.5", "--warn-age", "48", "DIR"],
     "--warn-age must be below --max-age (1.5 hours), not '48': else no warning comes before the critical"),
    (["--max-age", "0", "--warn-age", "0", "DIR"],
     "--warn-age must be below --max-age (0 hours), not '0': else no warning comes before the critical"),
    (["--max-age", "24", "--key-file", "k.key", "DIR"],
     "--key-file is read only with --verify: without it, check reads names and headers only"),
    (["--max-age", "24", "--metrics-file", "", "DIR"], "--metrics-file needs a value, not an empty one"),
    (["--max-age", "24", "--verify", "--signer", "encpipesign1x", "DIR"], None),  # a malformed --signer
    # a key file read, no key in it: its content, as a malformed --signer's (one that cannot be read: CRITICAL)
    (["--max-age", "24", "--verify", "--key-file", "/dev/null", "DIR"], "/dev/null: no key found"),
    (["--max-age", "24", "--dir", "offsite,password=hunter2:b"],
     "--dir: the remote's connection string gives password: a credential would be on rclone's command line, where "
     "other users can read it"),
]


@pytest.mark.parametrize("argv, message", USAGE_ERRORS, ids=[" ".join(u[0]) for u in USAGE_ERRORS])
def test_a_usage_error_is_unknown_with_one_line_on_standard_output(tmp_path, argv, message):
    code, out, err = check(*[str(tmp_path) if a == "DIR" else a for a in argv])
    assert code == 3, err
    lines = err.splitlines()
    assert_one_line_error(err, "encpipe-check")  # standard error as before
    said = lines[0].removeprefix("encpipe-check: error: ")
    if message is not None:
        assert said == message
    assert out == f"UNKNOWN: {said}\n"
    assert "hunter2" not in out + err


def test_the_script_s_usage_error_is_unknown_and_its_help_still_0(tmp_path):
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": ROOT, "HOME": str(tmp_path)}
    done = subprocess.run([CHECK, "--bogus"], env=env, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (3, "UNKNOWN: unknown option --bogus\n")
    assert done.stderr == "encpipe-check: error: unknown option --bogus\nencpipe-check: hint: see encpipe-check --help\n"
    done = subprocess.run([CHECK, "--help"], env=env, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.startswith("encpipe-check: ")


@pytest.mark.parametrize("named", [["--database", "-h"], ["--metrics-file", "--help"]])
def test_a_value_that_reads_as_help_is_a_value_not_a_help_that_says_ok(tmp_path, named):
    """`--database -h` (a database may be named so) or `--metrics-file --help` was
    taken for a request for help: the usage text and 0, which Nagios shows as OK
    whatever the backups, the database's missing one too."""
    code, out, err = check("--max-age", "24", *named, str(tmp_path))
    assert (code, err) == (2, "")
    assert out.startswith("CRITICAL: -h: no backup | " if named[1] == "-h" else "CRITICAL: no backups found\n")


def test_a_usage_error_of_another_command_is_still_64(tmp_path):
    out, err = io.BytesIO(), io.StringIO()
    assert main(["list", "--bogus", str(tmp_path)], stdout=out, stderr=err, env={}) == 64
    assert out.getvalue() == b""


# --- performance data ------------------------------------------------------------------


def perfdata(text):
    """The guidelines' reading of performance data: `'label'=value[UOM];[warn];[crit];[min];[max]`
    items apart by spaces, a label in single quotes holding a quote doubled; {label: fields}.
    Every item must parse, every label once."""
    found, rest = {}, text.strip()
    while rest:
        match = re.match(r"'((?:[^']|'')+)'=(\S*)(?: +|$)", rest)
        assert match, rest
        label = match[1].replace("''", "'")
        assert label not in found, label
        found[label] = match[2].split(";")
        rest = rest[match.end():]
    return found


def split_output(out):
    """(the status lines without performance data, the first line's performance data):
    Nagios' reading, the text before the first `|` and what follows it on its line."""
    lines = out.split("\n")
    assert lines.pop() == "" and all("|" not in line for line in lines[1:]), out
    text, bar, data = lines[0].partition(" | ")
    return [text, *lines[1:]], perfdata(data)


def age(value, low, high):
    assert re.fullmatch(r"[0-9]+s", value), value
    return low <= int(value[:-1]) <= high


def test_each_database_has_the_age_of_its_newest_backup_and_its_count_as_performance_data(tmp_path):
    now = datetime.now(timezone.utc)
    for hours in (50, 26, 2):
        make_valid(tmp_path, f"shop_{stamp(now - timedelta(hours=hours))}.sql.enc")
    make_valid(tmp_path, f"crm_{stamp(now - timedelta(hours=30))}.dump.enc")
    code, out, err = check("--max-age", "24", "--warn-age", "1.5", "--database", "new", str(tmp_path))
    assert (code, err) == (2, "")
    text, data = split_output(out)
    assert text == [f"CRITICAL: crm: newest backup crm_{stamp(now - timedelta(hours=30))}.dump.enc is 30.0 h old,"
                    " over --max-age 24 h",  # the threshold it is over, named (before: the age alone)
                    "CRITICAL: new: no backup",
                    f"WARNING: shop: newest backup shop_{stamp(now - timedelta(hours=2))}.sql.enc is 2.0 h old,"
                    " over --warn-age 1.5 h"]
    assert list(data) == ["crm_age", "crm_backups", "new_age", "new_backups", "shop_age", "shop_backups"]
    assert data["crm_age"][1:] == data["shop_age"][1:] == data["new_age"][1:] == ["5400", "86400", "0"]
    assert age(data["crm_age"][0], 30 * 3600, 30 * 3600 + 60) and age(data["shop_age"][0], 7200, 7200 + 60)
    assert data["new_age"][0] == "U"  # the guidelines' value that could not be determined
    assert (data["crm_backups"], data["new_backups"], data["shop_backups"]) == (["1", "", "", "0"],
                                                                                ["0", "", "", "0"], ["3", "", "", "0"])


def test_without_warn_age_the_warning_threshold_is_empty(tmp_path):
    make_valid(tmp_path, f"shop_{stamp(datetime.now(timezone.utc) - timedelta(hours=1))}.sql.enc")
    code, out, _ = check("--max-age", "0.5", str(tmp_path))
    assert code == 2
    assert split_output(out)[1]["shop_age"][1:] == ["", "1800", "0"]


def test_a_line_that_names_no_database_has_no_performance_data(tmp_path):
    assert check("--max-age", "24", str(tmp_path)) == (2, "CRITICAL: no backups found\n", "")
    said = check("--max-age", "24", str(tmp_path / "none"))
    assert said[0] == 2 and said[1].startswith("CRITICAL: cannot list ") and "|" not in said[1]


HOSTILE = ["b|x", "a=1", "it's", "two words", "q''", "'", "nl\nx", "cr\rx", "back\\slash", "b\\x7cx", "\\x3d",
           "x'=1 'y", "shop_age'=1s 'z", "bad\udcffbyte", "tab\tx", "sp ace=1|2"]


def test_a_database_name_can_neither_break_the_performance_data_nor_forge_an_item(tmp_path):
    """Names are any bytes: each becomes one label, quoted as the guidelines say
    (a quote doubled), printable as check's lines show it, with `|` (Nagios' start
    of performance data), `=` (what Icinga 2 and PNP4Nagios split an item at,
    quoted or not) escaped as \\x7c and \\x3d; no two names give one label."""
    when = stamp(datetime.now(timezone.utc) - timedelta(hours=1))
    for name in HOSTILE:
        os.rename(make_valid(tmp_path, "x"), os.path.join(os.fsencode(tmp_path),
                                                          os.fsencode(name) + f"_{when}.sql.enc".encode()))
    code, out, err = check("--max-age", "24", str(tmp_path))
    assert (code, err) == (0, "")
    text, data = split_output(out)
    assert len(text) == len(HOSTILE) and out.count("|") == 1 and out.isascii()
    labels = sorted(label for label in data if label.endswith("_age"))
    assert len(labels) == len(HOSTILE) and len(data) == 2 * len(HOSTILE)
    assert all("=" not in label and "|" not in label and label.isprintable() for label in data)
    assert "x\\'\\x3d1 \\'y_age" not in data and "shop_age" not in data and "y_age" not in data
    assert "it's_age" in data and "two words_age" in data and "'_age" in data and "a\\x3d1_age" in data
    assert "b\\x7cx_age" in data and "b\\\\x7cx_age" in data and "\\\\x3d_age" in data
    assert "nl\\nx_age" in data and "bad\\xffbyte_age" in data
    # Icinga 2's reading: an item's label up to its first `=`, its value up to the next space
    icinga = re.findall(r"\s*('(?:[^']|'')*'|[^=]*)=(\S*)", out.split("\n")[0].partition(" | ")[2])
    assert sorted(label[1:-1].replace("''", "'") for label, _ in icinga) == sorted(data)


def test_the_line_bound_holds_for_lines_without_performance_data():
    printed = output([(f"CRITICAL: {i}", None) for i in range(300)], 24, None)
    assert printed == [f"CRITICAL: {i}" for i in range(MAX_LINES - 1)] + [f"... and {300 - MAX_LINES + 1} more"]
    data = " | 'db_age'=U;;86400;0 'db_backups'=0;;;0"  # a first line too long: its text cut, its data whole
    room = 4096 - len(data) - len("\n... and 1 more\n") - len(" ...")
    assert output([("CRITICAL: " + "x" * 5000, ("db", None, 0)), ("OK: a", None)], 24, None) == [
        "CRITICAL: " + "x" * (room - len("CRITICAL: ")) + " ..." + data, "... and 1 more"]


# --- -t, --timeout -----------------------------------------------------------------------

HANG = f"{shlex.quote(sys.executable)} -c 'import time; time.sleep(1000)'"  # its arguments name the test's directory


def rclone(tmp_path, body, objects=1):
    """An rclone that lists `objects` backups, doing `body` for anything else (a `cat`)."""
    path = tmp_path / "rclone"
    listing = ",".join(f'{{"Name":"db{i}_20250101T000000Z.sql.enc","Size":100}}' for i in range(objects))
    path.write_text(f'#!/bin/sh\ncase "$1" in lsjson) printf \'[{listing}]\'; exit 0;; esac\n{body}\n')
    path.chmod(0o755)
    return str(path)


def timed_out(tmp_path, argv, env, preexec_fn=None):
    """encpipe-check ARGV, whose run cannot end by itself: its status and standard
    output once -t 1 expired; nothing naming tmp_path (the stand-ins' children)
    is left running."""
    with none_left(tmp_path):
        done = subprocess.run([CHECK, "-t", "1", *argv], env={"PATH": os.environ["PATH"], "PYTHONPATH": ROOT, **env},
                              capture_output=True, text=True, timeout=120, preexec_fn=preexec_fn)
    assert done.stderr == "", done.stderr
    return done.returncode, done.stdout


@pytest.mark.parametrize("body, objects", [(f"exec {HANG} {{tmp}}", 1), (f"{HANG} {{tmp}} & wait", 1),
                                           (f"{HANG} {{tmp}} & wait", 20)],
                         ids=["rclone hangs", "a child of rclone hangs", "the listing's threads' rclones hang"])
def test_a_remote_that_never_answers_is_critical_once_the_timeout_expires(tmp_path, body, objects):
    """A remote through rclone that never answers (past rclone's own bounds, which
    the caller may raise) held check until Nagios killed it, rclone and what it
    started left running; now -t: CRITICAL (the guidelines' state for a timeout, a
    failure outside the plugin, as monitoring-plugins' own say), every child stopped."""
    env = {"RCLONE": rclone(tmp_path, body.format(tmp=tmp_path), objects)}
    assert timed_out(tmp_path, ["--max-age", "24", "offsite:b"], env) == (
        2, "CRITICAL: timed out after 1 s reading offsite:b\n")


def test_a_listing_that_never_ends_is_critical_too(tmp_path):
    env = {"RCLONE": rclone(tmp_path, "")}
    (tmp_path / "rclone").write_text(f"#!/bin/sh\nexec {HANG} {tmp_path}\n")
    assert timed_out(tmp_path, ["--max-age", "24", "offsite:b"], env) == (
        2, "CRITICAL: timed out after 1 s reading offsite:b\n")


def test_a_key_command_that_never_ends_is_stopped_with_what_it_started(tmp_path):
    make_valid(tmp_path, f"shop_{stamp(datetime.now(timezone.utc))}.sql.enc")
    argv = ["--max-age", "24", "--verify", "--key-command", f"{HANG} {tmp_path}; echo never", str(tmp_path)]
    assert timed_out(tmp_path, argv, {}) == (2, "CRITICAL: timed out after 1 s reading the keys\n")


def test_a_run_that_cannot_take_the_timeout_s_signal_still_ends_with_its_line(tmp_path):
    """The main thread may be unable to take the signal that ends it (here blocked
    by the caller, while it waits for a writer of a FIFO given as key file; as in a
    read of a hung NFS mount): a moment later the timer's thread prints the line,
    stops every child and ends the process itself."""
    def blocked():
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})

    os.mkfifo(tmp_path / "key.fifo")
    argv = ["--max-age", "24", "--verify", "--key-file", str(tmp_path / "key.fifo"), str(tmp_path)]
    assert timed_out(tmp_path, argv, {}, preexec_fn=blocked) == (2, "CRITICAL: timed out after 1 s reading the keys\n")
    assert timed_out(tmp_path, argv, {}) == (2, "CRITICAL: timed out after 1 s reading the keys\n")  # the signal's way


@pytest.mark.parametrize("value", ["0", "-1", "x", "1e3", "1000001"])
def test_a_bad_timeout_is_unknown(tmp_path, value):
    code, out, err = check("--max-age", "24", "--timeout", value, str(tmp_path))
    assert code == 3 and out == f"UNKNOWN: --timeout must be a number of seconds above 0, at most 1000000, not '{value}'\n"
    assert_one_line_error(err, "encpipe-check")


def test_the_timeout_is_read_as_t_too_and_a_run_within_it_is_as_before(tmp_path):
    make_valid(tmp_path, f"shop_{stamp(datetime.now(timezone.utc) - timedelta(hours=1))}.sql.enc")
    for option in (["-t", "30"], ["--timeout=30"], ["-t30"], []):
        code, out, err = check("--max-age", "24", *option, str(tmp_path))
        assert (code, err) == (0, "") and out.startswith("OK: shop: newest backup shop_")
