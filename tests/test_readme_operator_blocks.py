"""README's operator commands, taken as an operator copies them: the nightly cron
line, the unit printed for the escrow key, and the key files the commands of
Keys and rotation read, each made by a command before it."""

import re
import shlex
import shutil
import subprocess
from datetime import datetime, timedelta, timezone

from test_backup_dir import make_valid, run, stamp
from test_docs import README, REPO, code_lines

SYSTEMD = REPO / "scripts" / "systemd"
RETENTION = re.compile(r"--keep(?:-last|-daily|-weekly|-monthly)? \S+|--max-age \S+")


def section(title):
    return README.split(f"\n{title}\n", 1)[1].split("\n#", 1)[0]


def nightly_unit_line():
    (line,) = [line for line in code_lines()
               if line.startswith("encpipe-backup --systemd-unit ") and "/etc/systemd/system/" in line
               and "--recipient-file" not in line]
    return line


def test_the_cron_line_keeps_what_the_nightly_unit_keeps(tmp_path):
    """Without systemd, "one line in /etc/crontab does the same" as the unit; the unit
    kept 14 daily backups and 12 monthly ones, the cron line `--keep-daily 14` alone:
    an operator who moved from the timer to cron lost every monthly backup at the
    next run, nothing said."""
    (cron,) = [line for line in code_lines() if line.startswith("0 2 * * * postgres ")]
    cron_policy, unit_policy = RETENTION.findall(cron), RETENTION.findall(nightly_unit_line())
    assert unit_policy
    d = tmp_path / "backups"
    d.mkdir()
    now = datetime.now(timezone.utc).replace(hour=2, minute=0, second=0, microsecond=0)
    for days in range(0, 400, 3):
        make_valid(d, f"shop_{stamp(now - timedelta(days=days))}.sql.enc")
    kept = {}
    for name, policy in (("cron", cron_policy), ("unit", unit_policy)):
        code, report, err = run("prune", str(d), "--dry-run", *" ".join(policy).split())
        assert (code, err) == (0, ""), (name, err)
        kept[name] = sorted(k["filename"] for k in report["kept"])
    assert len(kept["unit"]) > 14  # the monthly ones too
    assert kept["cron"] == kept["unit"]


def test_the_escrow_key_reaches_the_nightly_unit(tmp_path):
    """Escrow sealed one backup by hand to the escrow key, and never said that the
    unit of Every night names no escrow key: every nightly backup after it lacked
    the slot "every backup is also sealed to". Escrow prints the unit again with
    --recipient-file; run as README gives it, it is the nightly unit's options and
    the escrow key, and systemd-analyze verify takes it."""
    escrow = " ".join(section("### Escrow").split("\n\n    ", 1)[1].split("\n\n", 1)[0].split("\\\n"))
    (line,) = [line for line in escrow.splitlines() if "--systemd-unit" in line]
    argv = shlex.split(line.split(">/etc/systemd/system/", 1)[0])
    nightly = shlex.split(nightly_unit_line().split(">/etc/systemd/system/", 1)[0])
    assert argv == nightly + ["--recipient-file", "/etc/encpipe/escrow.pub"]
    assert line.split(">", 1)[1].split()[0] == "/etc/systemd/system/encpipe-backup@.service"
    proc = subprocess.run([str(REPO / "scripts" / "encpipe-backup"), *argv[1:]], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    (start,) = [u for u in proc.stdout.splitlines() if u.startswith("ExecStart=")]
    assert " --recipient-file /etc/encpipe/escrow.pub -- %I" in start
    assert shutil.which("systemd-analyze"), "systemd-analyze is needed"
    (tmp_path / "encpipe-backup@shop.service").write_text(proc.stdout)
    shutil.copy(SYSTEMD / "encpipe-failed@.service", tmp_path / "encpipe-failed@shop.service")
    done = subprocess.run(["systemd-analyze", "verify", "--man=no", "./encpipe-backup@shop.service"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "encpipe-backup" not in done.stderr, done.stderr


def test_every_key_file_a_command_reads_in_etc_encpipe_is_made_by_one():
    """Changing the signing key rotated with `--signer-file /etc/encpipe/old.verify`,
    which no command made (keygen --sign had printed the verify key and kept
    nothing): `cannot read /etc/encpipe/old.verify: No such file or directory`, 66."""
    made, read = set(), {}
    for line in code_lines():
        line = line.split("  #")[0]
        for m in re.finditer(r"(?:-o |> ?|install [^/]*\S+ |mv \S+ )(/etc/encpipe/[\w.-]+)", line):
            made.add(m[1])
        for m in re.finditer(r"(/etc/encpipe/[\w.-]+)", line):
            read.setdefault(m[1], line)
    assert {"/etc/encpipe/backup.key", "/etc/encpipe/escrow.pub"} <= made
    assert {path: line for path, line in read.items() if path not in made} == {}


def test_changing_the_signing_key_leaves_the_nightly_run_signing_with_the_new_one():
    """It made new.sign and had rotate sign with it, while the unit still loaded
    /etc/encpipe/backup.sign, the old key: every later backup carried the old
    signature alone, which "trust the new key only" (--signer of the new key)
    refuses, 67. The new key takes backup.sign's place before rotate runs."""
    block = README.split("then trust the new key only:\n\n", 1)[1].split("\n\n", 1)[0]
    lines = [line.strip() for line in block.replace("\\\n", " ").splitlines()]
    moved = next(i for i, line in enumerate(lines) if line.startswith("mv /etc/encpipe/new.sign "))
    assert lines[moved].split("#")[0].split() == ["mv", "/etc/encpipe/new.sign", "/etc/encpipe/backup.sign"]
    rotate = next(i for i, line in enumerate(lines) if "encpipe-rotate" in line)
    assert moved < rotate and "--sign-key /etc/encpipe/backup.sign " in lines[rotate]
