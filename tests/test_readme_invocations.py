"""The command lines README shows, checked against the commands: every option a
code block or an inline command gives to `encpipe COMMAND` or to a script is one
that command takes; every status README's "Exit status" table lists is one the
code exits with (test_docs checks the other way round); a line README quotes is
the one printed."""

import io
import re
import signal
from pathlib import Path

import pytest

from encpipe import errors, migrate, pgbackupargs, pgcli, rotate
from encpipe.backup import cli as backups
from encpipe.backup.deadline import CRITICAL
from encpipe.backup.plugin import UNKNOWN
from encpipe.usage import COMMANDS, options_of

REPO = Path(__file__).parent.parent
README = (REPO / "README.md").read_text()
OPTION = re.compile(r"--?[A-Za-z][\w-]*")


def shown_text():
    """(line number, text) of what README shows as typed: each code line (one that
    ends in a backslash joined to the next) and each inline code span (a paragraph's
    lines joined, so that a span may go on to the next line)."""
    found, prose, start, code, fenced = [], [], 0, None, False

    def spans():
        found.extend((start, span) for span in re.findall(r"`([^`]+)`", " ".join(prose)))
        prose.clear()

    for number, line in enumerate(README.splitlines(), 1):
        if line.startswith("```"):
            fenced = not fenced
            spans()
            continue
        if fenced or line.startswith("    "):
            spans()
            code = (code[0], code[1][:-1] + " " + line.strip()) if code else (number, line.strip())
            if not code[1].endswith("\\"):
                found.append(code)
                code = None
            continue
        if not line.strip() or line.startswith(("#", "|")):
            spans()
        if line.strip():
            start = start if prose else number
            prose.append(line.strip())
    spans()
    return found


def invocations():
    """(line number, command, its option names) of each command line README shows:
    `encpipe COMMAND ...` or `encpipe-NAME ...` up to a pipe, a redirection, a
    comment or the end, options only before a `--` (what follows is the dump
    tool's). Brackets and ellipses of a synopsis are read through."""
    found = []
    for number, text in shown_text():
        for match in re.finditer(r"(?<![\w./-])(?:/usr/local/bin/)?(encpipe(?:-[a-z]+)?)(?= |$)", text):
            words = re.split(r" (?:\||&&|\|\||;|#)(?: |$)|\)| \d?[<>]", text[match.end():])[0].split()
            command = match[1]
            if command == "encpipe":
                if not words or words[0] not in COMMANDS:
                    found.append((number, command, [w for w in words[:1] if w.startswith("-")]))
                    continue
                command, words = f"encpipe {words[0]}", words[1:]
            if "--" in words:
                words = words[:words.index("--")]
            names = [word.strip("[](){}.,;:'\"").split("=", 1)[0] for word in words]
            found.append((number, command, [name for name in names if OPTION.fullmatch(name)]))
    return found


class _Parser(Exception):
    pass


def argparse_options(module, parse):
    """The option strings of the parser `parse` builds, caught as it would parse."""
    def caught(parser, argv):
        raise _Parser(set(parser._option_string_actions))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(module, "parse_quietly", caught)
        with pytest.raises(_Parser) as built:
            parse([])
    return built.value.args[0]


def backups_options(name):
    """What `encpipe-NAME` (list, prune, verify, check) takes: its usage patterns' options
    and their other spellings (-t, --timeout), as its parser reads them."""
    taken = set(OPTION.findall(backups._usage_lines(name))) | {"-h", "--help"}
    aliases = re.findall(r"^ +(-\w)(?: [A-Z]+)?, (--[\w-]+)", backups.USAGE, re.M)
    return taken | {spelling for pair in aliases if set(pair) & taken for spelling in pair}


def accepted():
    """{command: the option names it takes}, from each command's own parser."""
    demo = re.search(r"^# Usage: encpipe-demo (.*)$", (REPO / "scripts" / "encpipe-demo").read_text(), re.M)[1]
    taken = {f"encpipe {command}": options_of(command) for command in COMMANDS}
    taken.update({f"encpipe-{name}": backups_options(name) for name in ("list", "prune", "verify", "check")})
    taken.update({
        "encpipe": {"-h", "--help", "--version"},
        "encpipe-backup": pgbackupargs._VALUE | pgbackupargs._FLAGS | {"-h", "--help", "--systemd-unit"},
        "encpipe-restore": pgcli._VALUE | pgcli._FLAGS,
        "encpipe-rotate": argparse_options(rotate, rotate.parse_args),
        "encpipe-migrate": argparse_options(migrate, migrate.parse),
        "encpipe-demo": set(OPTION.findall(demo)) | {"-h", "--help"},
    })
    return taken


def test_every_option_readme_gives_a_command_is_one_it_takes():
    """A newcomer copies README's lines: an option a command does not take is a usage
    error (64) where README promised a run. Checked on every command line README shows,
    its synopses included."""
    taken = accepted()
    shown = [(number, command, names) for number, command, names in invocations() if command in taken]
    assert len(shown) > 200 and {command for _, command, _ in shown} >= set(taken) - {"encpipe help"}
    wrong = [f"README line {number}: {command} {name}" for number, command, names in shown
             for name in names if name not in taken[command]]
    assert wrong == []


def exit_status_rows():
    section = README.split("\n## Exit status\n", 1)[1].split("\n## ", 1)[0]
    codes = re.findall(r"^\| ([0-9N+, ]+) \| .* \|$", section, re.M)
    return [code.strip() for row in codes for code in row.split(",")]


def test_every_status_the_exit_status_table_lists_is_one_the_code_exits_with():
    """The table's statuses of 64 and above are encpipe's errors' (errors.py), each
    once; below, success, a script's partial work and encpipe-check's plugin
    statuses; above 128, the signals encpipe and its scripts die of."""
    rows = exit_status_rows()
    assert len(rows) == len(set(rows)) and "128 + N" in rows
    listed = {int(code) for code in rows if code.isdigit()}
    raised = {cls.exit_code for cls in vars(errors).values() if isinstance(cls, type) and hasattr(cls, "exit_code")}
    assert {code for code in listed if 64 <= code < 128} == raised
    assert {code for code in listed if code < 64} == {0, 1, CRITICAL, UNKNOWN}  # check: ok, warning, ...
    dying = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE)
    assert {code for code in listed if code >= 128} == {128 + signum for signum in dying}


KEY = "3f" * 32


def test_the_line_readme_quotes_for_a_key_given_as_a_database_is_the_one_printed(tmp_path):
    """Where keys come from: a key given as encpipe-backup's or encpipe-restore's
    DBNAME, or as encpipe-prune's or encpipe-check's --database, is refused without
    being shown. README quoted `DBNAME: ...` for all four; prune and check name
    their option, `--database: ...`."""
    with pytest.raises(pgcli.Failure) as dbname:
        pgcli.utf8_name(KEY)  # encpipe-backup's and encpipe-restore's DBNAME
    said = [str(dbname.value)]
    for argv, status in ((["prune", "--keep-last", "1"], 64), (["check", "--max-age", "1"], UNKNOWN)):
        err = io.StringIO()
        assert backups.main([*argv, "--database", KEY, str(tmp_path)], stdout=io.BytesIO(), stderr=err,
                            env={}) == status
        said.append(err.getvalue().splitlines()[0].split(": error: ", 1)[1])
    assert said[0].startswith("DBNAME: ") and said[1] == said[2] == said[0].replace("DBNAME", "--database", 1)
    text = " ".join(README.split())
    assert [line for line in said if f"`{line}`" not in text] == []
