"""Docs are part of done: the README carries the exact usage text and exit codes,
its Quick start opens with the two commands that set everything up, and every
link inside it and every test it cites is there."""

import re
import shutil
import subprocess
from pathlib import Path

import encpipe.cli
from encpipe import errors

REPO = Path(__file__).parent.parent
README = (REPO / "README.md").read_text()


def test_readme_shows_the_exact_usage_text():
    assert "```\n" + encpipe.cli.USAGE.strip() + "\n```" in README


def test_every_exit_code_is_documented():
    codes = {cls.exit_code for cls in vars(errors).values() if isinstance(cls, type) and hasattr(cls, "exit_code")}
    documented = {int(code) for code in re.findall(r"^\| (\d+) \|", README, re.M)}
    assert codes <= documented


def quick_start():
    section = README.split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    return section.strip()


def test_quick_start_opens_with_the_two_commands_each_in_a_code_block():
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```$", quick_start(), re.M | re.S)
    assert blocks[:2] == ["scripts/encpipe-demo\n", "scripts/test\n"]
    assert re.match(r"```sh\nscripts/encpipe-demo\n```\n\n```sh\nscripts/test\n```\n", quick_start())


def test_ci_runs_exactly_the_readme_test_command():
    """.ci/run runs `scripts/test`, no argument added, and README never shows the test
    command otherwise: it once gave `scripts/test -x tests/test_cli.py` as an example,
    a test command that .ci/run does not run."""
    lines = [line for line in (REPO / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert lines == ["set -euo pipefail", 'cd "$(dirname "${BASH_SOURCE[0]}")/.."', "exec scripts/test"]
    assert re.findall(r"scripts/test(?![`\n])", README) == []
    # Nor does a line of Quick start's prose begin as a command would (it once began
    # "pytest-xdist worker per CPU ...", which reads as a test command .ci/run lacks).
    prose = re.sub(r"^```.*?^```$", "", quick_start(), flags=re.M | re.S)
    assert [line for line in prose.splitlines()
            if re.match(r"(pytest|python|pip|scripts/|\.ci/|bash |sudo |apt)", line)] == []


def headings_anchors(text):
    """The anchors GitHub makes of the headings outside code blocks: lower case,
    punctuation but hyphens dropped, each space a hyphen, "-1"... for a repeat."""
    anchors, seen, fenced = set(), {}, False
    for line in text.splitlines():
        fenced ^= line.startswith("```")
        heading = re.match(r"#+ (.*)", line)
        if heading and not fenced:
            slug = re.sub(r"[^\w\- ]", "", heading[1].strip().lower()).replace(" ", "-")
            anchors.add(f"{slug}-{seen[slug]}" if slug in seen else slug)
            seen[slug] = seen.get(slug, 0) + 1
    return anchors


def test_every_internal_link_names_a_heading():
    anchors = headings_anchors(README)
    assert {"exit-status", "monitoring---metrics-file-and-encpipe-check"} <= anchors
    links = re.findall(r"\]\(#([^)]*)\)", README)
    assert links and sorted(set(links) - anchors) == []


def test_every_test_file_and_test_named_exists():
    """Each `tests/...` path README cites is there, and each `::name` after one (or
    after a comma, going on from the last file named) is a test or class in that file."""
    cited, names = set(), set()
    last = None
    for match in re.finditer(r"(tests/[\w/.-]*[\w/])|::(\w+)", README):
        if match[1]:
            last = match[1]
            cited.add(last)
        else:
            names.add((last, match[2]))
    assert len(cited) > 50 and names
    assert sorted(p for p in cited if not (REPO / p).exists()) == []
    missing = [f"{path}::{name}" for path, name in sorted(names)
               if not re.search(rf"^(def|class) {name}\b", (REPO / path).read_text(), re.M)]
    assert missing == []


def code_lines():
    """README's indented code lines, in order, a line ending in a backslash joined to the next."""
    lines, fenced = [], False
    for line in README.splitlines():
        fenced ^= line.startswith("```")
        if not fenced and line.startswith("    "):
            if lines and lines[-1].endswith("\\"):
                lines[-1] = lines[-1][:-1] + " " + line.strip()
            else:
                lines.append(line.strip())
    return lines


def test_readme_makes_etc_encpipe_before_writing_a_key_there():
    """The first backup began `encpipe keygen -o /etc/encpipe/backup.key`: on a fresh
    machine, `cannot create /etc/encpipe/backup.key: No such file or directory`, 74."""
    lines = code_lines()
    first = next(i for i, line in enumerate(lines) if "-o /etc/encpipe/" in line)
    before = [*lines[:first], lines[first].split("-o /etc/encpipe/")[0]]
    assert any(re.search(r"\binstall -d -m \d+ /etc/encpipe ", line) for line in before), lines[first]


def test_readme_backs_up_and_restores_as_the_owner_of_the_backup_directory():
    """The nightly run is `postgres`'s (the unit's User=, the crontab's user field), in
    a directory `postgres` owns, with a key file it owns. README's first backup and
    restore ran as root: on Debian, root is no PostgreSQL role (peer authentication);
    root's backup is refused in that directory (73), and its files made there before
    stopped every nightly prune (Permission denied, exit 1). /etc/encpipe must let
    `postgres` reach its key: a 0700 there (the systemd lines) shut it out."""
    from encpipe.backup import unit

    runs = [line for line in code_lines() if re.search(r"(^|[ /])encpipe-(backup|restore) ", line)
            and ("/var/backups/encpipe" in line or "/etc/encpipe/backup.key" in line)
            and "--systemd-unit" not in line]
    assert len(runs) >= 4
    for line in runs:
        assert line.startswith(("runuser -u postgres -- encpipe-", "0 2 * * * postgres /usr/local/bin/encpipe-")), line
    modes = [int(mode, 8) for mode in re.findall(r"install -d -m (\d+) /etc/encpipe\b", "\n".join(code_lines()))]
    assert modes and all(mode & 0o001 for mode in modes)
    assert code_lines().count("chown postgres: /etc/encpipe/backup.key") >= 2  # backing up, and systemd's
    shown = [line[4:] for line in unit.TEMPLATE.splitlines() if line.startswith("#   install -d") or "chown" in line]
    assert len(shown) == 3 and all(line in code_lines() for line in shown)


def test_installing_makes_the_virtual_environment_debian_needs():
    """Installing said to use a virtual environment on Debian 12 and showed only
    `python3 -m pip install .`, which Debian's Python refuses
    (externally-managed-environment), nor how to put the commands where the
    systemd unit and the cron line look for them (/usr/local/bin)."""
    section = README.split("\n### Installing\n", 1)[1].split("\n## ", 1)[0]
    lines = [line.strip() for line in section.splitlines() if line.startswith("    ")]
    first_pip = next(i for i, line in enumerate(lines) if "pip install" in line)
    # Debian's python3 by its path: a root whose `python3` is pyenv's made a venv
    # whose python links under /root, which postgres cannot run (126)
    # with the fast extra (a reader of the recipe alone got the slow library, untold)
    assert re.match(r"/usr/bin/python3 -m venv (\S+) && \1/bin/python -m pip install '\.\[fast\]'$", lines[first_pip])
    assert "apt-get install python3-venv" in lines[:first_pip]
    assert re.match(r"ln -s /opt/encpipe/bin/encpipe /opt/encpipe/bin/encpipe-\* /usr/local/bin/$", lines[first_pip + 1])


def test_installing_puts_the_man_pages_and_completion_where_they_are_found(tmp_path):
    """Command line says the package installs man pages (`man encpipe`) and a bash
    completion. Installed into /opt/encpipe and its commands linked into
    /usr/local/bin, they stayed in /opt/encpipe/share, where neither man (its path
    comes from PATH's directories: /usr/local/bin gives /usr/local/share/man) nor
    bash-completion (XDG_DATA_DIRS: /usr/local/share) looks: `No manual entry for
    encpipe`. Installing links them into /usr/local/share; man finds a page there."""
    section = README.split("\n### Installing\n", 1)[1].split("\n## ", 1)[0]
    lines = [line.strip() for line in section.splitlines() if line.startswith("    ")]
    assert "install -d /usr/local/share/man/man1 /usr/local/share/bash-completion/completions" in lines
    assert "ln -s /opt/encpipe/share/man/man1/*.1 /usr/local/share/man/man1/" in lines
    assert ("ln -s /opt/encpipe/share/bash-completion/completions/encpipe /usr/local/share/bash-completion/completions/"
            in lines)
    assert shutil.which("manpath"), "manpath is needed (scripts/test installs man-db)"
    searched = subprocess.run(["manpath"], capture_output=True, text=True, env={"PATH": "/usr/local/bin:/usr/bin:/bin"})
    assert "/usr/local/share/man" in searched.stdout.strip().split(":")
    (tmp_path / "man1").mkdir()  # a link to a page, as the ln -s above makes it, is a page man finds
    (tmp_path / "man1" / "encpipe.1").symlink_to(REPO / "scripts" / "man" / "encpipe.1")
    found = subprocess.run(["man", "-M", str(tmp_path), "-w", "encpipe"], capture_output=True, text=True)
    assert found.returncode == 0, found.stderr  # man names the page the link leads to
    assert Path(found.stdout.strip()).resolve() == (REPO / "scripts" / "man" / "encpipe.1").resolve()


def test_quick_start_names_the_packages_the_demo_installs_as_root():
    """A fresh Debian or Ubuntu python3 has no ensurepip (package python3-venv).
    The Quick start said the demo did not install it: the first of its two
    commands stopped on a fresh machine. Run as root, both commands now install
    what they lack (tests/test_setup.py runs the demo so); as another user the
    demo says what to install (venv.bash)."""
    said = " ".join(quick_start().split("\n### ", 1)[0].split())
    assert "run as root, these two commands do all the set-up" in said
    assert "the demo `python3-venv`" in said and "unless `--offline`, `postgresql`" in said
    venv_bash = (REPO / "scripts" / "lib" / "venv.bash").read_text()
    assert "hint: on Debian or Ubuntu: apt-get install python3-venv" in venv_bash
    demo = (REPO / "scripts" / "encpipe-demo").read_text()
    assert "missing+=(python3-venv)" in demo and "missing+=(postgresql)" in demo
    assert "if venv_missing; then missing+=(python3-venv); fi" in (REPO / "scripts" / "test").read_text()


def test_the_crontab_line_mails_failures_only():
    """cron mails whatever a job prints: README's line mailed the JSON line of every
    run that worked, every night (mail nobody reads hides the one that matters).
    Standard output goes to /dev/null; standard error, where a failure and a
    warning are said, is left to cron."""
    lines = [line for line in code_lines() if line.startswith("0 2 * * * postgres ")]
    assert lines
    for line in lines:
        assert line.endswith(" >/dev/null") and "2>" not in line and "&>" not in line, line


def section(title):
    """README's text under the heading `title` (any level), up to the next heading."""
    return re.split(r"\n#{2,4} ", README.split(f"\n{title}\n", 1)[1], maxsplit=1)[0]


def test_everyday_use_makes_the_database_it_restores_into():
    """Everyday use ended `encpipe open ... | psql restored_db`, a database it never
    made: `FATAL: database "restored_db" does not exist`, and the plaintext had
    nowhere to go. psql does not create the database it connects to."""
    lines = [line.strip() for line in section("## Everyday use").splitlines() if line.startswith("    ")]
    into = next(i for i, line in enumerate(lines) if re.search(r"\| psql\b.* restored_db$", line))
    assert any(re.match(r"(\S+ )*createdb restored_db\b", line) for line in lines[:into]), lines


def test_the_opening_example_says_where_its_key_comes_from():
    """README's first lines, `pg_dump mydb | encpipe seal > mydb.sql.enc`, copied as
    they are: `error: no key configured`, 78, and an empty mydb.sql.enc. They take
    the key from the environment; the text must say so, and where to read more."""
    intro = README.split("\n## Contents\n", 1)[0]
    block = [line.strip() for line in intro.splitlines() if line.startswith("    ")]
    keyless = [line for line in block if re.search(r"encpipe (seal|open)\b", line) and "--key" not in line]
    assert keyless
    after = " ".join(intro.split(block[-1], 1)[1].split("\n- ", 1)[0].split())
    assert "`ENCPIPE_KEY`" in after and "78" in after and "(#where-keys-come-from)" in after, after


def test_examples_run_the_installed_scripts_not_the_checkouts():
    """Installing puts the scripts on PATH (a venv's, linked into /usr/local/bin);
    every other section runs them by that name. Migrating showed
    `scripts/encpipe-migrate ...`: from the checkout, on Debian's python3, without
    the venv's packages, `cannot import the Python modules Crypto, docopt`, 69."""
    quick = README.split("\n## Quick start\n", 1)[1].split("\n### Installing\n", 1)[0]
    rest = README.replace(quick, "")
    runs = [line for line in code_lines() if re.search(r"(^|[\s=(])scripts/encpipe-[a-z]+\b(?!@)", line)]
    assert runs == []
    assert re.findall(r"`scripts/encpipe-(?:migrate|restore|backup|rotate)[` ]", rest) == []


def test_rotation_shows_where_the_old_key_comes_from():
    """The rotate example read /etc/encpipe/old.key, which no line made: the key the
    backups were sealed with is /etc/encpipe/backup.key. Retiring it means a new
    key there, `postgres`'s (the nightly run and rotate read it as `postgres`; a
    root-owned 0600 one: cannot read, 66), and the old one as old.key."""
    lines = [line.strip() for line in section("### Rotating a directory: `encpipe-rotate`").splitlines()
             if line.startswith("    ")]
    rotate = next(i for i, line in enumerate(lines) if "encpipe-rotate --old-key-file /etc/encpipe/old.key" in line)
    before = " && ".join(lines[:rotate]).split(" && ")
    made = [i for i, step in enumerate(before) if re.match(r"encpipe keygen -o /etc/encpipe/(\S+)$", step)]
    assert made, lines[:rotate]
    new = re.match(r"encpipe keygen -o (\S+)$", before[made[0]])[1]
    assert f"chown postgres: {new}" in before[made[0]:]
    moves = before[made[0]:]
    assert "mv /etc/encpipe/backup.key /etc/encpipe/old.key" in moves
    if new != "/etc/encpipe/backup.key":
        assert moves.index(f"mv {new} /etc/encpipe/backup.key") > moves.index(
            "mv /etc/encpipe/backup.key /etc/encpipe/old.key")


def test_every_backup_written_but_line_is_in_readme():
    """A backup stored whose prune left files it could not authenticate ends
    `backup written, but pruning DIR/ found problems (status 65)`, exit 1: README
    named only `backup written, but LOCATION not pruned: ...`, the line of a prune
    that could not run at all."""
    text = " ".join(README.split())
    source = (REPO / "encpipe" / "backup" / "job.py").read_text()
    messages = re.findall(r'f"(backup written, but [^"]*)"', source)
    assert len(messages) >= 5
    for message in messages:
        parts = [re.escape(part) for part in re.split(r"\{[^}]*\}", message) if part]
        assert re.search(r"[^`]{0,40}?".join(parts), text), message


def test_key_files_keeps_keys_where_their_readers_can_reach_them():
    """Key files said to keep the keys in `/etc/encpipe` (mode 0700 or 0755), each
    owned by the user who reads it. In a 0700 directory of root's, `postgres`
    cannot reach the key file it owns: its nightly backup failed, `cannot read
    /etc/encpipe/backup.key: Permission denied`, 66."""
    text = " ".join(section("#### Key files").split())
    modes = re.findall(r"such as `/etc/encpipe` \(mode (0\d{3})", text)
    assert modes and all(int(mode, 8) & 0o001 for mode in modes), modes


def test_every_migrate_example_names_the_key_of_the_old_files():
    """Migrating's third example, `encpipe-migrate --key-file backup.key --sign-key
    backup.sign --signer-file signers DIR`, copied as printed: `no key for the old
    files: set BACKUP_ENCRYPTION_KEY or use --legacy-key-file`, 78. Its
    --key-file is the new files' key, not the old tool's."""
    runs = [line for line in code_lines() if re.search(r"(^|\s)encpipe-migrate (?!\[)", line)]
    assert len(runs) >= 3
    for line in runs:
        assert re.search(r"^(BACKUP_ENCRYPTION_KEY|ENCPIPE_KEY|ENCPIPE_PASSPHRASE)=|--legacy-(key|passphrase)-file ",
                         line), line


def test_a_signing_key_in_etc_encpipe_is_its_signers():
    """Signing keys made /etc/encpipe/backup.sign as root (mode 0600, root's) and
    then signed with it in `pg_dump shop | encpipe seal --sign-key ...`: as root,
    pg_dump is refused (no role root: peer authentication) while seal signs an
    empty dump; as postgres, `cannot read /etc/encpipe/backup.sign: Permission
    denied`, 66. The key file is its signer's, as backup.key is the backup's."""
    lines = code_lines()
    uses = [(i, m[1]) for i, line in enumerate(lines)
            for m in re.finditer(r"--sign-key (/etc/encpipe/\S+)", line)]
    assert uses
    for i, path in uses:
        assert f"chown postgres: {path}" in [line.split("  #")[0].strip() for line in lines[:i]], path
