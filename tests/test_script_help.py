"""Every script in scripts/ answers -h and --help with its own usage, under its
own name, exits 0, and does nothing else: no file in its directory or in TMPDIR,
no other program's name passed off as its own."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = sorted(p for p in (REPO / "scripts").iterdir() if p.is_file() and os.access(p, os.X_OK))


def test_the_scripts_are_found():
    assert {"encpipe-demo", "encpipe-backup", "encpipe-list", "test"} <= {p.name for p in SCRIPTS}


@pytest.mark.parametrize("flag", ["-h", "--help"])
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_help_is_its_own_usage_and_does_nothing_else(script, flag, tmp_path):
    cwd, tmp = tmp_path / "cwd", tmp_path / "tmp"
    cwd.mkdir()
    tmp.mkdir()
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "PYTHONPATH": str(REPO), "TMPDIR": str(tmp),
           "HOME": str(tmp_path), "PG_BINDIR": str(tmp_path / "no-postgres")}
    done = subprocess.run([str(script), flag], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    text = done.stdout
    assert script.name in text and "usage" in text.lower(), text
    assert "encpipe-backups" not in text
    assert "==>" not in text  # the demo's steps
    assert list(cwd.iterdir()) == [] and list(tmp.iterdir()) == []


UNKNOWN = [
    ("encpipe-list", ["--bogus"], "unknown option --bogus"),
    ("encpipe-prune", ["--keep-lats", "3"], "unknown option --keep-lats; did you mean --keep-last?"),
    ("encpipe-verify", ["--threads=2", "--signer-fle=x"], "unknown option --signer-fle; did you mean --signer-file?"),
    ("encpipe-check", ["--max-age", "24", "-q"], "unknown option -q"),
    ("encpipe-prune", ["--key-file=secret-looking-value", "--bogus=also-secret"], "unknown option --bogus"),
    ("encpipe-check", ["--warn-age", "12"], "check needs --max-age HOURS"),
    # the value of an option, given apart, is its value, even one that starts with - (docopt takes
    # it so): never named as an unknown option (a --key-file's may be a passphrase typed there)
    ("encpipe-check", ["--key-file", "--hunter2-passphrase", "--verify"], "check needs --max-age HOURS"),
    ("encpipe-verify", ["--key-file", "--hunter2-passphrase", "--bogus"], "unknown option --bogus"),
    ("encpipe-prune", ["--passphrase-file", "-xhunter2", "--keep-lats", "3"],
     "unknown option --keep-lats; did you mean --keep-last?"),
]


@pytest.mark.parametrize("script, args, message", UNKNOWN, ids=[" ".join([u[0], *u[1]]) for u in UNKNOWN])
def test_an_unknown_option_is_named_with_the_scripts_own_hint(script, args, message, tmp_path):
    """encpipe-list, -prune, -verify and -check named no option ("invalid arguments for
    list") and hinted "see --help" without saying whose: as encpipe and the other
    scripts do, the option is named (never the value it carries), with a guess when
    one is close, and the hint names the script."""
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "PYTHONPATH": str(REPO), "HOME": str(tmp_path)}
    done = subprocess.run([str(REPO / "scripts" / script), *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    # encpipe-check's is the plugin's UNKNOWN, its message on standard output too (test_check_plugin.py)
    said = (3, f"UNKNOWN: {message}\n") if script == "encpipe-check" else (64, "")
    assert (done.returncode, done.stdout) == said
    assert done.stderr == f"{script}: error: {message}\n{script}: hint: see {script} --help\n"


@pytest.mark.parametrize("name", ["list", "prune", "verify", "check"])
def test_a_listing_scripts_help_lists_only_its_own_options_and_command(name):
    """`encpipe-list --help` listed every option of the four commands (--keep-last,
    --key-file, --verify...) and every command's paragraph: a newcomer took list for
    a command that prunes and takes keys. Each script's help now lists the options
    its usage lines take, and its own command's paragraph only."""
    from encpipe.backup.cli import script_help

    text = script_help(name)
    usage = text.split("Usage:\n", 1)[1].split("\n\n", 1)[0]
    options = text.split("\nOptions:\n", 1)[1].split("\n\n", 1)[0]
    entries = [line.strip() for line in options.splitlines() if line.startswith("  -")]
    assert entries, text
    for entry in entries:
        names = re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", re.split(r"\s{2,}", entry, maxsplit=1)[0])
        assert any(re.search(rf"(?<![\w-]){re.escape(n)}(?![\w-])", usage) for n in names), (name, entry)
    for flag in set(re.findall(r"(?<![\w-])(--[a-z][\w-]*)", usage)):  # and each has its line
        assert re.search(rf"^  (-\w, )?{re.escape(flag)}(?![\w-])", options, flags=re.M), (name, flag)
    commands = text.split("\nCommands:\n", 1)[1].split("\n\n", 1)[0]
    assert re.findall(r"^  (\w+) ", commands, flags=re.M) == [name]


MODULE = "python3 -I -m encpipe.backup"


@pytest.mark.parametrize("argv", [["--help"], ["-h"], ["upload", "--help"], ["fetch", "-h"]])
def test_the_modules_help_says_how_it_is_run(argv, tmp_path):
    """`python3 -I -m encpipe.backup --help` called the program encpipe-backups, and
    `... upload --help` called it job: names nothing installs. Its usage lines now
    say how it is run."""
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "PYTHONPATH": str(REPO), "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "encpipe.backup", *argv], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    usage = done.stdout.split("Usage:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    patterns = [line for line in usage if not line.startswith("   ")]
    assert patterns and all(line.startswith(f"  {MODULE} ") for line in patterns), usage
    assert "encpipe-backups" not in done.stdout and "  job " not in done.stdout


@pytest.mark.parametrize("argv, message", [([], "no command given"), (["bogus"], "unknown command 'bogus'"),
                                           (["--bogus"], "unknown command '--bogus'")])
def test_the_modules_usage_errors_name_it_as_it_is_run(argv, message, tmp_path):
    """Its usage errors said `encpipe-backups: error: ...`, `hint: see --help`: they
    name it by its package and say how to run its help."""
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "PYTHONPATH": str(REPO), "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "encpipe.backup", *argv], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (64, "")
    assert done.stderr == f"encpipe.backup: error: {message}\nencpipe.backup: hint: see {MODULE} --help\n"


@pytest.mark.parametrize("argv, message", [(["upload", "--bogus"], "invalid arguments for upload"),
                                           (["abort"], "invalid arguments for abort"),
                                           (["commit", "--started", "nan", "--dir", "d", "--database", "db", "--kind", "sql", "T", "N"],
                                            "--started must be Unix time in seconds, not 'nan'")])
def test_the_steps_usage_errors_say_whose_help_to_see(argv, message, tmp_path):
    """encpipe-backup's steps (python3 -I -m encpipe.backup upload|commit|abort) are
    encpipe-backup's, and say so; their hint said `see --help`, naming no program."""
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "PYTHONPATH": str(REPO), "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "encpipe.backup", *argv], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (64, "")
    assert done.stderr == f"encpipe-backup: error: {message}\nencpipe-backup: hint: see {MODULE} --help\n"


@pytest.mark.parametrize("argv, prog, status", [
    ([sys.executable, "-m", "encpipe.backup", "--help"], "encpipe.backup", 74),
    ([sys.executable, "-m", "encpipe.backup", "upload", "--help"], "encpipe-backup", 74),
    ([str(REPO / "scripts" / "encpipe-list"), "--help"], "encpipe-list", 74),
    ([str(REPO / "scripts" / "encpipe-check"), "-h"], "encpipe-check", 3),
], ids=["module", "module-step", "encpipe-list", "encpipe-check"])
def test_help_into_an_output_that_cannot_be_written_is_one_line(argv, prog, status, tmp_path):
    """A full standard output (/dev/full): `python3 -I -m encpipe.backup --help` ended in a
    traceback, exit 1, and encpipe-list --help (and -prune, -verify, -check) said
    `internal error: OSError ... (a bug of encpipe's)`, 70. As encpipe's own --help:
    `cannot write output: ...`, 74 (check: the plugin's UNKNOWN, 3)."""
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "PYTHONPATH": str(REPO), "HOME": str(tmp_path)}
    with open("/dev/full", "wb") as full:
        done = subprocess.run(argv, stdout=full, stderr=subprocess.PIPE, env=env, cwd=tmp_path, text=True,
                              timeout=60)
    assert (done.returncode, done.stderr) == (status, f"{prog}: error: cannot write output: No space left on device\n")


@pytest.mark.parametrize("name, others", [("list", ("prune", "verify", "check")), ("prune", ("verify", "check")),
                                          ("verify", ("prune", "check")), ("check", ("prune", "verify"))])
def test_a_listing_scripts_help_says_its_own_job_and_its_own_exit_statuses(name, others):
    """`encpipe-list --help` began `list, prune, verify and check stored encrypted
    backups` and gave every command's exit statuses: list's told of key files (73)
    and no key (78), which list never reads. Each script's help now has a first line
    of its own and, of the exit statuses, those for all and its own."""
    from encpipe.backup.cli import USAGE, script_help

    text = script_help(name)
    first = text.splitlines()[0]
    assert first.startswith(f"encpipe-{name}: ") and "list, prune, verify and check" not in first
    statuses = text.split("\nExit status:\n", 1)[1]
    assert statuses.startswith("  0 success; 64 usage error")
    for other in others:
        assert f"\n  {other}: " not in statuses and f"\n  {other} exits " not in statuses, (name, other)
    assert ("\n  verify, prune: 73 " in statuses) == (name in ("verify", "prune"))
    assert (f"\n  {name}: " in statuses or f"\n  {name} exits " in statuses) == (name != "list")
    assert all(f"\n  {n}" in USAGE.split("\nExit status:\n", 1)[1] for n in ("prune: ", "verify exits ", "check exits "))
