"""Acceptance 10: man pages for encpipe and every installed script, and a bash
completion, generated from the usage texts, installed with the package, and
working: `man -l` renders each installed page, bash completes commands and options."""

import configparser
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from encpipe import docgen, usage

REPO = Path(__file__).resolve().parent.parent
REGENERATE = "out of date: run python3 -m encpipe.docgen and commit scripts/man/ and scripts/completion/"


def test_generated_files_are_up_to_date():
    for relative, content in docgen.generated().items():
        path = REPO / relative
        assert path.exists() and path.read_text() == content, f"{relative} {REGENERATE}"


def test_setup_cfg_installs_a_page_per_command_and_the_completion():
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    data = config["options.data_files"]
    pages = sorted(data["share/man/man1"].split())
    assert pages == sorted(["scripts/man/encpipe.1", *(f"scripts/man/{name}.1" for name in docgen.installed_scripts())])
    assert data["share/bash-completion/completions"].split() == ["scripts/completion/encpipe"]
    assert config["metadata"]["license"] == "MIT" and (REPO / "LICENSE").read_text().startswith("MIT License")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The data files of the wheel built from this checkout, where an install puts
    them under its prefix (no environment is touched: pip would replace the
    running one's encpipe)."""
    base = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(base), str(REPO)],
                   check=True, capture_output=True, timeout=600,
                   env={"PATH": "/usr/bin:/bin", "HOME": str(base), "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    (wheel,) = base.glob("encpipe-*.whl")
    prefix = base / "prefix"
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            data = re.match(r"^encpipe-[^/]+\.data/data/(.+)$", name)
            if data:
                (prefix / data.group(1)).parent.mkdir(parents=True, exist_ok=True)
                (prefix / data.group(1)).write_bytes(archive.read(name))
    return prefix


def test_man_renders_every_installed_page(installed):
    assert shutil.which("man"), "man is needed (scripts/test installs man-db)"
    pages = sorted((installed / "share" / "man" / "man1").glob("*.1"))
    assert {p.stem for p in pages} == {"encpipe", *docgen.installed_scripts()}
    for page in pages:
        done = subprocess.run(["man", "--warnings", "-l", str(page)], capture_output=True, text=True,
                              env={"PATH": "/usr/bin:/bin", "MANWIDTH": "80", "MAN_KEEP_FORMATTING": ""})
        assert (done.returncode, done.stderr) == (0, ""), (page, done.stderr)
        assert "NAME" in done.stdout and page.stem in done.stdout
    text = subprocess.run(["man", "-l", str(installed / "share/man/man1/encpipe.1")], capture_output=True,
                          text=True, env={"PATH": "/usr/bin:/bin", "MANWIDTH": "200"}).stdout
    for command in usage.COMMANDS:
        assert usage.summary(command).split(";")[0][:40] in " ".join(text.split())
    assert (installed / "share" / "bash-completion" / "completions" / "encpipe").exists()


def test_each_pages_name_line_is_a_whole_short_clause():
    """whatis and apropos show it: encpipe-backup's was cut inside a parenthesis
    (`... (kind sql.zst, sql.gz or sql`), encpipe-migrate's began with a capital."""
    for relative, content in docgen.generated().items():
        if not relative.endswith(".1"):
            continue
        name_line = content.split(".SH NAME\n", 1)[1].split("\n", 1)[0]
        page, _, what = name_line.partition(" \\- ")
        assert what and what.count("(") == what.count(")") and len(what) <= 150, name_line
        assert what[0].islower() or what.split()[0].isupper(), name_line


def test_encpipe_page_names_every_variable_encpipe_reads():
    """ENCPIPE_SIGNER, ENCPIPE_CIPHER and ENCPIPE_SCRYPT_BUDGET were missing."""
    page = docgen.generated()["scripts/man/encpipe.1"]
    environment = page.split(".SH ENVIRONMENT\n", 1)[1].split(".SH ", 1)[0]
    for name in ("ENCPIPE_KEY", "ENCPIPE_PASSPHRASE", "ENCPIPE_SIGNER", "ENCPIPE_CIPHER", "ENCPIPE_SCRYPT_BUDGET",
                 "ENCPIPE_COMMAND_TIMEOUT"):
        assert f".B {name}\n" in environment


def complete(*words):
    """What the completion offers for the command line `words` (the last being completed)."""
    script = (f"source {shlex.quote(str(REPO / 'scripts' / 'completion' / 'encpipe'))}\n"
              "COMP_WORDS=(\"$@\"); COMP_CWORD=$(($# - 1)); _encpipe\n"
              "printf '%s\\n' \"${COMPREPLY[@]}\"; complete -p encpipe >&2\n")
    done = subprocess.run(["bash", "-c", script, "bash", *words], capture_output=True, text=True, check=True)
    assert done.stderr.strip() == "complete -o filenames -F _encpipe encpipe"
    return [line for line in done.stdout.splitlines() if line]


def test_bash_completes_commands_and_each_commands_options(tmp_path):
    assert complete("encpipe", "") == [*usage.COMMANDS, "--help", "--version"]
    assert complete("encpipe", "se") == ["seal"]
    assert complete("encpipe", "open", "--key") == ["--key-command", "--key-file"]
    assert complete("encpipe", "open", "--rec") == []  # open takes no --recipient
    assert complete("encpipe", "seal", "--rec") == ["--recipient", "--recipient-file"]
    assert complete("encpipe", "rewrap", "--add-") == ["--add-key-file", "--add-passphrase-file", "--add-recipient"]
    assert complete("encpipe", "help", "in") == ["inspect"]
    assert complete("encpipe", "seal", "--threads", "") == []
    for command in usage.COMMANDS:
        if command != "help":
            assert set(complete("encpipe", command, "-")) == usage.options_of(command)


def test_completion_is_shellcheck_clean():
    assert shutil.which("shellcheck"), "shellcheck is needed (scripts/test installs it)"
    done = subprocess.run(["shellcheck", "-s", "bash", str(REPO / "scripts" / "completion" / "encpipe")], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stdout
