"""The unit `encpipe-backup --systemd-unit` prints, read as systemd reads it (no
systemd here): ExecStart= as encpipe-backup parses it once %I is the database."""

import os
import re
import shlex
import shutil
import tempfile
from pathlib import Path

import pytest

from encpipe.backup import unit
from encpipe.errors import UsageError
from encpipe.pgbackupargs import parse

SCRIPT = "/usr/local/bin/encpipe-backup"
SYSTEMD = Path(__file__).resolve().parent.parent / "scripts" / "systemd"


CREDENTIALS = "/run/credentials/encpipe-backup@shop.service"


def exec_start(text, instance):
    """ExecStart='s words, %I the (unescaped) instance name: systemd splits the line
    first, then resolves specifiers and ${VAR} ($$ a $) in each word (a name with a
    space stays one word)."""
    (line,) = re.findall(r"^ExecStart=(.*)$", text, flags=re.M)
    words = [re.sub(r"%(.)", lambda m: instance if m[1] == "I" else m[1], word) for word in shlex.split(line)]
    return [re.sub(r"\$\$|\$\{CREDENTIALS_DIRECTORY\}", lambda m: "$" if m[0] == "$$" else CREDENTIALS, word)
            for word in words]


def directives(text, name):
    """The values of each `name=` line."""
    return re.findall(rf"^{name}=(.*)$", text, flags=re.M)


@pytest.mark.parametrize("instance", ["shop", "crm-prod", "my db", "-dash"])
def test_the_instance_is_the_database_with_pg_dump_options_after_it(instance):
    """Options after -- are pg_dump's: before, %I came after them, so encpipe-backup
    took the first pg_dump option for the database and the database for a pg_dump
    argument (64, every night); and a database whose name starts with - was taken
    for an option."""
    text = unit.render(SCRIPT, ["--dir", "/srv/b", "--key-file", "/etc/encpipe/k", "--",
                                "--exclude-table-data=log", "-N", "audit"])
    o = parse(exec_start(text, instance)[1:])
    assert (o["db"], o["dump"], o["dir"]) == (instance, ["--exclude-table-data=log", "-N", "audit"], "/srv/b")
    o = parse(exec_start(unit.render(SCRIPT, []), instance)[1:])
    assert (o["db"], o["dump"], o["dir"]) == (instance, [], unit.DEFAULT_DIR)


def test_a_database_among_the_options_is_refused():
    """The instance names the database: one among the options made every run fail
    (only one DBNAME), or a pg_dump argument."""
    with pytest.raises(UsageError, match="shop: the database is the instance"):
        unit.render(SCRIPT, ["--dir", "/srv/b", "shop"])


def test_a_unit_that_only_uploads_makes_no_directory_writable():
    """With --to alone nothing is written on the machine: before, the unit still had
    ReadWritePaths=/var/backups/encpipe, and systemd fails a unit whose
    ReadWritePaths= is not there (226/NAMESPACE) before encpipe-backup starts."""
    text = unit.render(SCRIPT, ["--to", "offsite:backups", "--key-file", "/etc/encpipe/backup.key"])
    assert directives(text, "ReadWritePaths") == []
    o = parse(exec_start(text, "shop")[1:])
    assert (o["dir"], o["to"]) == ("", "offsite:backups")
    text = unit.render(SCRIPT, ["--to=offsite:backups", "--key-file", "/etc/encpipe/backup.key"])
    assert directives(text, "ReadWritePaths") == [] and parse(exec_start(text, "shop")[1:])["dir"] == ""
    text = unit.render(SCRIPT, ["--to=offsite:backups", "--dir", "/srv/b", "--key-file", "/etc/encpipe/backup.key"])
    assert directives(text, "ReadWritePaths") == ["/srv/b"]


def test_options_given_with_an_equals_sign_are_read_as_encpipe_backup_reads_them():
    """--dir=DIR and --metrics-file=FILE: before, the unit added --dir
    /var/backups/encpipe to a --dir=DIR (every run: --dir given more than once, 64),
    and left the metrics file's directory read-only (every run: metrics not written,
    1), or let a --metrics-file=/tmp/... through, which PrivateTmp= hides."""
    text = unit.render(SCRIPT, ["--dir=/srv/b", "--metrics-file=/var/lib/encpipe/encpipe.prom",
                                "--key-file", "/etc/encpipe/backup.key"])
    assert directives(text, "ReadWritePaths") == ["/srv/b /var/lib/encpipe"]
    o = parse(exec_start(text, "shop")[1:])
    assert (o["dir"], o["metrics"]) == ("/srv/b", ["--metrics-file=/var/lib/encpipe/encpipe.prom"])
    with pytest.raises(UsageError, match="PrivateTmp"):
        unit.render(SCRIPT, ["--metrics-file=/tmp/encpipe.prom", "--key-file", "/etc/encpipe/backup.key"])


@pytest.mark.parametrize("option, value", [("--dir", "backups"), ("--metrics-file", "encpipe.prom"),
                                           ("--metrics-file", "lib/encpipe.prom"), ("--metrics-file", "/encpipe.prom")])
def test_a_relative_path_or_one_in_the_root_is_refused(option, value):
    """A unit runs in /, not where it was printed, and ReadWritePaths= takes absolute
    paths only: before, --metrics-file encpipe.prom made the whole file system
    writable (ReadWritePaths=/), and --dir backups was ignored there (the run
    failing, read-only) and written in /backups."""
    with pytest.raises(UsageError, match=f"{option} {value}: "):
        unit.render(SCRIPT, [option, value, "--key-file", "/etc/encpipe/backup.key"])


def test_a_path_with_a_space_or_a_percent_sign_is_one_writable_path():
    """ReadWritePaths= is a list split at spaces, unless quoted, with specifiers: before,
    --dir "/srv/db backups" made /srv/db and backups (ignored) writable, not DIR, and
    a % was taken for a specifier."""
    text = unit.render(SCRIPT, ["--dir", "/srv/db backups", "--metrics-file", "/srv/100% \"x\"\\/encpipe.prom",
                                "--key-file", "/etc/encpipe/backup.key"])
    (line,) = directives(text, "ReadWritePaths")
    assert [re.sub(r"%(.)", r"\1", word) for word in shlex.split(line)] == ["/srv/db backups", "/srv/100% \"x\"\\"]
    o = parse(exec_start(text, "shop")[1:])
    assert (o["dir"], o["metrics"]) == ("/srv/db backups", ["--metrics-file=/srv/100% \"x\"\\/encpipe.prom"])


@pytest.mark.parametrize("arg", ["/srv/b\nExecStartPre=/bin/sh -c id", "/srv/b\r", "/srv/\x1bb"])
def test_an_option_with_a_control_character_is_refused(arg):
    """A newline in an option began a line of its own in the unit: a directive."""
    for args in (["--dir", arg], ["--dir", "/srv/b", "--", f"--exclude-table={arg}"]):
        with pytest.raises(UsageError, match="control character"):
            unit.render(SCRIPT, [*args, "--key-file", "/etc/encpipe/backup.key"])


def test_an_encpipe_backup_whose_path_holds_a_control_character_is_refused():
    """ExecStart= and the unit's comment name the encpipe-backup that printed it, as
    its real path: one with a newline began a directive of its own there, twice
    (ExecStartPre=+... runs as root), where the options' were refused."""
    script = "/opt/x\nExecStartPre=+/bin/sh -c id\n#/bin/encpipe-backup"
    with pytest.raises(UsageError, match="control character"):
        unit.render(script, [])


def test_only_the_credentials_the_options_name_are_loaded():
    """systemd fails a unit whose LoadCredential= file is not there (243/CREDENTIALS):
    before, every unit loaded /etc/encpipe/backup.key, so one that seals to a public
    key (no secret on the machine) never ran; and --key-file=${CREDENTIALS_DIRECTORY}/...
    was neither loaded nor expanded ($$)."""
    text = unit.render(SCRIPT, ["--dir", "/srv/b", "--recipient-file", "/etc/encpipe/backup.pub",
                                "--sign-key", "${CREDENTIALS_DIRECTORY}/encpipe-backup.sign"])
    assert directives(text, "LoadCredential") == ["encpipe-backup.sign:/etc/encpipe/backup.sign"]
    assert directives(unit.render(SCRIPT, ["--dir", "/srv/b", "--recipient-file", "/etc/encpipe/backup.pub"]),
                      "LoadCredential") == []
    text = unit.render(SCRIPT, ["--dir", "/srv/b", "--key-file=${CREDENTIALS_DIRECTORY}/encpipe-backup.key",
                                "--sign-key=${CREDENTIALS_DIRECTORY}/encpipe-backup.sign"])
    assert directives(text, "LoadCredential") == ["encpipe-backup.key:/etc/encpipe/backup.key",
                                                  "encpipe-backup.sign:/etc/encpipe/backup.sign"]
    o = parse(exec_start(text, "shop")[1:])
    assert o["seal"]["--key-file"] == [f"{CREDENTIALS}/encpipe-backup.key"]
    assert o["seal"]["--sign-key"] == [f"{CREDENTIALS}/encpipe-backup.sign"]
    with pytest.raises(UsageError, match="credential name"):  # LoadCredential= is not quoted
        unit.render(SCRIPT, ["--dir", "/srv/b", "--key-file", "${CREDENTIALS_DIRECTORY}/my key"])
    assert directives(unit.render(SCRIPT, []), "LoadCredential") == ["encpipe-backup.key:/etc/encpipe/backup.key"]


@pytest.mark.parametrize("option, path, hidden_by", [
    ("--dir", "/home/pg/backups", "ProtectHome="), ("--dir", "/tmp/backups", "PrivateTmp="),
    ("--metrics-file", "/root/encpipe.prom", "ProtectHome="), ("--key-file", "/root/backup.key", "ProtectHome="),
    ("--sign-key", "/home/pg/backup.sign", "ProtectHome="), ("--signer-file", "/run/user/0/signer.pub", "ProtectHome="),
    ("--identity", "/var/tmp/backup.id", "PrivateTmp="), ("--recipient-file", "/tmp/backup.pub", "PrivateTmp=")])
def test_a_path_the_sandbox_hides_is_refused(option, path, hidden_by):
    """ProtectHome=yes makes /home, /root and /run/user inaccessible, and systemd drops
    a ReadWritePaths= below them; PrivateTmp= gives the service a /tmp of its own,
    removed when it stops: before, a key there failed every run, and a --dir there
    was written in a /tmp no one else sees."""
    args = ["--dir", "/srv/b", "--key-file", "/etc/encpipe/backup.key"]
    args = [*args[2:], option, path] if option == "--dir" else [*args, f"{option}={path}"]
    with pytest.raises(UsageError, match=f"^{option} {path}: the unit's {hidden_by} "):
        unit.render(SCRIPT, args)


def test_the_failure_hook_names_a_command_that_can_be_pasted():
    """The hook's line says which journalctl to run: a unit name with an escaped
    character (crm\\x2dprod) pasted unquoted into a shell lost its backslash, and
    journalctl showed a unit that does not exist."""
    failed = r"encpipe-backup@crm\x2dprod.service"
    with open(SYSTEMD / "encpipe-failed@.service") as f:
        (line,) = directives(f.read(), "ExecStart")
    argv = [word.replace("%i", r"crm\x2dprod") for word in shlex.split(line)]  # specifiers after the split
    assert argv[:4] == ["/usr/bin/logger", "--priority", "daemon.err", "--tag"]
    message = argv[-1]
    assert message.startswith(f"{failed} failed: see ")
    assert shlex.split(message.partition(" see ")[2]) == ["journalctl", "-u", failed]


@pytest.mark.parametrize("option, secret", [
    ("--recipient", "ENCPIPE-SECRET-KEY-1" + "Q" * 52), ("--signer", "ENCPIPE-SIGNING-KEY-1" + "Q" * 52),
    ("--recipient", "ab" * 32), ("--signer=", "ab" * 32)])
def test_a_secret_given_for_a_public_key_never_reaches_the_unit(option, secret, capsys):
    """A unit file is world-readable (and `systemctl show` prints ExecStart= to any
    user): before, a secret key pasted as --recipient or --signer was written into
    it, the run refusing it only later (64). It is refused when the unit is printed,
    the value not shown, nothing on standard output."""
    from encpipe.backup.job import main

    argv = ["systemd-unit", SCRIPT, "--dir", "/srv/b", "--key-file", "/etc/encpipe/backup.key",
            *([option + secret] if option.endswith("=") else [option, secret])]
    assert main(argv) == 64
    out, err = capsys.readouterr()
    assert out == "" and secret not in err and err.startswith(f"encpipe-backup: error: {option.rstrip('=')}: a ")


@pytest.mark.parametrize("option, secret", [
    ("--key-command", "ab" * 32), ("--passphrase-command=", "ENCPIPE-SECRET-KEY-1" + "Q" * 52),
    ("--key-command=", "ENCPIPE-SIGNING-KEY-1" + "Q" * 52)])
def test_a_key_given_for_a_key_command_never_reaches_the_unit(option, secret, capsys):
    """A key pasted where a key command belongs: before, the unit printed it in
    ExecStart= (readable by every user), each run then failing on it. It is refused
    when the unit is printed, the value not shown, nothing on standard output."""
    from encpipe.backup.job import main

    argv = ["systemd-unit", SCRIPT, "--dir", "/srv/b", "--key-file", "/etc/encpipe/backup.key",
            *([option + secret] if option.endswith("=") else [option, secret])]
    assert main(argv) == 64
    out, err = capsys.readouterr()
    assert out == "" and secret not in err and err.startswith(f"encpipe-backup: error: {option.rstrip('=')}: a")
    assert "(a secret, not shown), not a command" in err


@pytest.mark.parametrize("option, secret, what", [
    ("--dir", "ab" * 32, "directory"), ("--metrics-file=", "ENCPIPE-SECRET-KEY-1" + "Q" * 52, "file name"),
    ("--metrics-file", "ENCPIPE-SIGNING-KEY-1" + "Q" * 52, "file name")])
def test_a_key_given_for_a_path_the_run_writes_never_reaches_the_unit(option, secret, what, capsys):
    """A key pasted as DIR or the metrics file: before, the unit printed it in ExecStart=
    and ReadWritePaths= (readable by every user), each run then refusing it or making a
    file of that name. Refused when the unit is printed, as the run refuses it."""
    from encpipe.backup.job import main

    argv = ["systemd-unit", SCRIPT, "--key-file", "/etc/encpipe/backup.key",
            *([option + secret] if option.endswith("=") else [option, secret])]
    assert main(argv) == 64
    out, err = capsys.readouterr()
    assert out == "" and secret not in err, err
    assert err.startswith(f"encpipe-backup: error: {option.rstrip('=')}: a") and f"(a secret, not shown), not a {what}\n" \
        in err, err


@pytest.mark.parametrize("option, secret", [
    ("--key-file", "ab" * 32), ("--identity=", "ENCPIPE-SECRET-KEY-1" + "Q" * 52),
    ("--passphrase-file", "correct horse battery staple"), ("--sign-key", "ENCPIPE-SIGNING-KEY-1" + "Q" * 52),
    ("--signer-file=", "cd" * 32), ("--recipient-file", "ef" * 32)])
def test_a_secret_given_for_a_key_file_never_reaches_the_unit(option, secret, capsys):
    """A key or passphrase pasted where its file's path belongs: before, the unit
    printed it in ExecStart= (readable by every user, and by `systemctl show`), each
    run then refusing it unshown (64). Refused when the unit is printed, as the run
    refuses it: the value not shown, nothing on standard output."""
    from encpipe.backup.job import main

    argv = ["systemd-unit", SCRIPT, "--dir", "/srv/b",
            *([option + secret] if option.endswith("=") else [option, secret])]
    assert main(argv) == 64
    out, err = capsys.readouterr()
    assert out == "" and secret not in err, err
    assert err.startswith(f"encpipe-backup: error: {option.rstrip('=')}: no such file, and the value (not shown) "
                          "may be a key or passphrase"), err


@pytest.mark.parametrize("option", ["--signer-file", "--recipient-file"])
def test_a_secret_given_for_a_key_file_after_a_path_never_reaches_the_unit(option, capsys):
    """Every value of an option given more than once is looked at, not the first only."""
    from encpipe.backup.job import main

    secret = "cd" * 32
    assert main(["systemd-unit", SCRIPT, "--dir", "/srv/b", option, "/etc/encpipe/a.pub", option, secret]) == 64
    out, err = capsys.readouterr()
    assert out == "" and secret not in err, err
    assert err.startswith(f"encpipe-backup: error: {option}: no such file, and the value (not shown) may be a key or "
                          "passphrase"), err


def test_a_key_files_absolute_path_is_a_path_before_the_file_is_made():
    """The unit may be written before its key: an absolute path that names nothing yet
    (with a space too) is a path, not a passphrase."""
    text = unit.render(SCRIPT, ["--dir", "/srv/b", "--passphrase-file", "/etc/encpipe/backup pass-9e1c"])
    assert exec_start(text, "shop")[3:5] == ["--passphrase-file", "/etc/encpipe/backup pass-9e1c"]


@pytest.mark.parametrize("flag", ["-p", "--passphrase"])
def test_a_passphrase_prompt_is_refused(flag):
    """A unit has no terminal: with -p every run failed (78, cannot prompt)."""
    with pytest.raises(UsageError, match=f"^{flag} prompts on a terminal"):
        unit.render(SCRIPT, ["--dir", "/srv/b", flag])


@pytest.mark.parametrize("args, said", [
    (["--passphrase-fd", "3"], "--passphrase-fd 3"), (["--key-file", "/dev/fd/4"], "--key-file /dev/fd/4"),
    (["--passphrase-file", "-"], "--passphrase-file -"), (["--sign-key", "/dev/stdin"], "--sign-key /dev/stdin"),
])
def test_a_secret_on_a_descriptor_is_refused(args, said):
    """systemd opens no descriptor of the caller's: with --passphrase-fd 3 every run
    failed (66, fd 3 not open), as -p's would (78)."""
    with pytest.raises(UsageError, match="^%s reads a descriptor the caller opens" % re.escape(said)):
        unit.render(SCRIPT, ["--dir", "/srv/b", *args])


def test_a_stop_leaves_the_clean_up_of_an_upload_its_time():
    """A stop (systemctl stop, TimeoutStartSec= reached) is a SIGTERM: the run then
    leaves rclone ABORT_WAIT seconds to abort its unfinished upload, and deletes its
    temporary object, one rclone call within rclone's own bounds. systemd's default
    TimeoutStopSec= (90 s) ended that clean-up with a SIGKILL against a slow remote:
    the temporary object left, the failed run not recorded in the metrics file."""
    from encpipe.backup.rclonepipe import ABORT_WAIT, RCLONE_BOUNDS

    (stop,) = directives(unit.render(SCRIPT, []), "TimeoutStopSec")
    seconds = {"s": 1, "min": 60}
    match = re.fullmatch(r"([0-9]+)(s|min)", stop)
    one_call = (int(RCLONE_BOUNDS["RCLONE_CONTIMEOUT"].rstrip("s")) + 60 * int(RCLONE_BOUNDS["RCLONE_TIMEOUT"].rstrip(
        "m"))) * int(RCLONE_BOUNDS["RCLONE_LOW_LEVEL_RETRIES"])
    assert match and int(match[1]) * seconds[match[2]] >= ABORT_WAIT + one_call


def test_the_unit_says_a_secret_goes_in_a_credential_never_in_environment():
    """The unit's comment sends libpq's variables to Environment= of a drop-in, which
    `systemctl show` prints to every user: a password put there (PGPASSWORD,
    RCLONE_CONFIG_PASS, ENCPIPE_PASSPHRASE) would be anyone's. The comment says where
    a secret goes instead, as the shipped unit does."""
    text = unit.render(SCRIPT, [])
    comment = " ".join(line.lstrip("# ") for line in text.splitlines() if line.startswith("#"))
    assert "never a secret in Environment=" in comment
    assert "LoadCredential=pgpass:/etc/encpipe/pgpass Environment=PGPASSFILE=%d/pgpass" in comment
    shipped = Path(__file__).resolve().parent.parent / "scripts" / "systemd" / "encpipe-backup@.service"
    assert shipped.read_text() == unit.render("/usr/local/bin/encpipe-backup", []) + "\n"


@pytest.mark.parametrize("script", ["/root/encpipe/scripts/encpipe-backup",
                                    "/root/.local/share/pipx/venvs/encpipe/bin/encpipe-backup",
                                    "/home/admin/venv/bin/encpipe-backup", "/tmp/encpipe/scripts/encpipe-backup"])
def test_an_encpipe_backup_the_sandbox_hides_is_warned_of(script, capsys):
    """ExecStart= is the encpipe-backup that printed the unit. One in /root or /home
    (a checkout cloned there, pipx's default place for root) is hidden from the
    service by ProtectHome=, one in /tmp by PrivateTmp=: every run failed (203/EXEC),
    and nothing said so when the unit was printed. The unit is still printed (a
    test, or a copy installed elsewhere later), with one warning naming the place."""
    from encpipe.backup.job import main

    assert main(["systemd-unit", script]) == 0
    out, err = capsys.readouterr()
    assert f"\nExecStart={script} " in out
    top = "/tmp" if script.startswith("/tmp") else "/root" if script.startswith("/root") else "/home"
    assert err.startswith(f"encpipe-backup: warning: ExecStart={script}: the unit's ")
    assert top in err.splitlines()[0] and err.count("\n") == 2
    assert err.splitlines()[1].startswith("encpipe-backup: hint: ")


def test_an_encpipe_backup_the_service_can_run_is_not_warned_of(capsys):
    from encpipe.backup.job import main

    assert main(["systemd-unit", "/opt/encpipe/bin/encpipe-backup"]) == 0
    assert capsys.readouterr().err == ""


def test_an_encpipe_backup_whose_python_the_sandbox_hides_is_warned_of(tmp_path, capsys):
    """A virtual environment made by a python3 under /root (pyenv's) or /tmp: its
    encpipe-backup, in /opt or elsewhere the service reaches, runs the python3 beside it,
    a link to that one, which ProtectHome= or PrivateTmp= hides: every run failed (the
    script's interpreter cannot be run, 126), and nothing said so. Its real path is
    warned of as ExecStart's own place is. A checkout's script, which runs the python3
    on PATH, and a venv made with /usr/bin/python3 are not."""
    from encpipe.backup.job import main

    base = tmp_path / "python3.11"  # the python3 that made the environment, where the service cannot see it
    base.write_text("#!/bin/sh\n")
    base.chmod(0o755)
    venv = tempfile.mkdtemp(dir="/dev/shm")  # neither hidden nor private to the service
    try:
        os.mkdir(os.path.join(venv, "bin"))
        script = os.path.join(venv, "bin", "encpipe-backup")
        Path(script).write_text("#!/bin/bash\n")
        os.symlink(base, os.path.join(venv, "bin", "python3"))
        assert main(["systemd-unit", script]) == 0
        out, err = capsys.readouterr()
        assert f"\nExecStart={script} " in out
        assert err.splitlines()[0] == (f"encpipe-backup: warning: ExecStart={script} runs the python3 beside it, "
                                       f"{base}: the unit's PrivateTmp= gives the service a /tmp and /var/tmp of its "
                                       "own, which no one else sees: every run would fail")
        assert err.splitlines()[1].startswith("encpipe-backup: hint: ") and "/usr/bin/python3" in err
        assert err.count("\n") == 2
        os.unlink(os.path.join(venv, "bin", "python3"))
        os.symlink("/usr/bin/python3", os.path.join(venv, "bin", "python3"))
        assert main(["systemd-unit", script]) == 0
        assert capsys.readouterr().err == ""
    finally:
        shutil.rmtree(venv)


@pytest.mark.parametrize("dump, named", [
    (["-t", "orders"], "pg_dump option -t (-t, --table) is not allowed"),
    (["--schema-only"], "pg_dump option --schema-only (-s, --schema-only) is not allowed"),
    (["-f", "/tmp/plain.sql"], "pg_dump option -f (-f, --file) is not allowed"),
    (["-Z", "5"], "pg_dump option -Z"),
], ids=["table", "schema-only", "file", "compress"])
def test_pg_dump_options_every_run_would_refuse_are_refused_now(dump, named):
    """The unit's pg_dump options, read as encpipe-backup reads them: before, a unit with
    `-- -t orders` (a dump of part of the database) or `-f FILE` was written, and every
    night's run failed, 64."""
    with pytest.raises(UsageError) as refused:
        unit.render(SCRIPT, ["--dir", "/srv/b", "--key-file", "/etc/encpipe/k", "--", *dump])
    assert str(refused.value).startswith(named), str(refused.value)


def test_a_custom_dumps_compression_is_left_to_pg_dump():
    """-Z is refused for a plain dump (encpipe-backup compresses it), not for a custom one."""
    text = unit.render(SCRIPT, ["--dir", "/srv/b", "--key-file", "/etc/encpipe/k", "--format", "custom", "--", "-Z", "5"])
    assert exec_start(text, "shop")[-2:] == ["-Z", "5"]


def test_an_encpipe_backup_or_a_credential_another_user_could_replace_is_warned_of(monkeypatch, capsys):
    """The unit runs ExecStart= as postgres with the key, and systemd loads each
    credential from /etc/encpipe as root: a user who can write the script's directory
    (or one above, or a link on the way) could make every run execute code of theirs,
    and one who can write the credentials' directory could put a key of theirs there;
    nothing said so. The unit is still printed, with a warning for each."""
    from encpipe.backup.job import main

    place = tempfile.mkdtemp(dir="/dev/shm")  # neither hidden nor private to the service
    try:
        bin_dir, sources = os.path.join(place, "bin"), os.path.join(place, "encpipe")
        os.mkdir(bin_dir)
        os.mkdir(sources)
        script = os.path.join(bin_dir, "encpipe-backup")
        Path(script).write_text("#!/bin/bash\n")
        monkeypatch.setattr(unit, "SOURCES", sources)
        assert main(["systemd-unit", script]) == 0
        out, err = capsys.readouterr()
        assert f"\nLoadCredential=encpipe-backup.key:{sources}/backup.key\n" in out and err == ""
        os.chmod(bin_dir, 0o777)
        os.chmod(sources, 0o777)
        assert main(["systemd-unit", script]) == 0
        out, err = capsys.readouterr()
        assert f"\nExecStart={script} " in out
        assert err.splitlines() == [
            f"encpipe-backup: warning: ExecStart={script}: its directory {bin_dir} can be written by every user "
            "(mode o+w, not sticky), who could make every run execute code of theirs, with the key",
            "encpipe-backup: hint: install it where only root can write, e.g. /opt/encpipe (README: Installing)",
            f"encpipe-backup: warning: LoadCredential=encpipe-backup.key:{sources}/backup.key: {sources} can be "
            "written by every user (mode o+w), who could put a key of theirs there",
            "encpipe-backup: hint: keep the credentials where only root can write (chmod go-w)"]
    finally:
        shutil.rmtree(place)


@pytest.mark.parametrize("option, value", [("--dir", "/srv/${HOSTNAME}/b"), ("--metrics-file", "/srv/${X}/m.prom"),
                                           ("--dir=/srv/${HOSTNAME}/b", None)])
def test_a_variable_in_a_path_the_run_writes_is_refused(option, value):
    """systemd expands ${VAR} in ExecStart= and not in ReadWritePaths=: --dir
    /srv/${HOSTNAME}/b was written to /srv//b (no such variable in a service) while
    /srv/${HOSTNAME}/b, literally, was made writable, and every run failed."""
    with pytest.raises(UsageError, match=r"\$\{"):
        unit.render(SCRIPT, [option, *([value] if value else []), "--dir" if option == "--metrics-file" else "--to",
                             "/srv/b" if option == "--metrics-file" else "r:b", "--key-file", "/etc/encpipe/k"])
    text = unit.render(SCRIPT, ["--dir", "/srv/$b", "--key-file", "/etc/encpipe/k"])  # a $ alone: literal in both
    assert parse(exec_start(text, "shop")[1:])["dir"] == "/srv/$b"
    assert directives(text, "ReadWritePaths") == ['"/srv/$b"']


@pytest.mark.parametrize("args", [["--dir", "/srv/b", "--keep-daily", "14"],
                                  ["--dir", "/srv/b", "--sign-key", "${CREDENTIALS_DIRECTORY}/encpipe-backup.sign"]])
def test_a_unit_with_no_key_is_refused(args):
    """Options replace the default --key-file: with none of the key options, every run
    failed (no key configured, 78), which is not recorded as a failed attempt (the
    metrics said the last one worked); ENCPIPE_KEY in Environment= is every user's."""
    with pytest.raises(UsageError, match=r"^no key option: every run of the unit would fail, no key configured "
                                         r"\(78\)$") as raised:
        unit.render(SCRIPT, args)
    assert raised.value.hint.startswith("add --key-file '${CREDENTIALS_DIRECTORY}/encpipe-backup.key'")
    for key in (["--key-file", "/etc/encpipe/backup.key"], ["--recipient-file", "/etc/encpipe/backup.pub"],
                ["--passphrase-file", "${CREDENTIALS_DIRECTORY}/pass"]):
        assert parse(exec_start(unit.render(SCRIPT, [*args, *key]), "shop")[1:])["have_key"]


@pytest.mark.parametrize("path, said, hint", [
    ("backup.key", "the unit runs in /, not here", "'${CREDENTIALS_DIRECTORY}/NAME'"),
    ("keys/backup.key", "the unit runs in /, not here", "'${CREDENTIALS_DIRECTORY}/NAME'"),
    ("%d/encpipe-backup.key", "the unit escapes %, so systemd would not read %d as the credentials directory",
     "'${CREDENTIALS_DIRECTORY}/encpipe-backup.key'"),
])
@pytest.mark.parametrize("option", ["--key-file", "--sign-key", "--signer-file"])
def test_a_key_file_that_is_not_an_absolute_path_or_a_credential_is_refused(option, path, said, hint):
    """Every run read it from / (66): README's %d/pgpass is a specifier in
    Environment=, but the unit escapes % in ExecStart=."""
    with pytest.raises(UsageError, match=f"^{re.escape(f'{option} {path}: {said}')}$") as raised:
        unit.render(SCRIPT, ["--dir", "/srv/b", "--key-file", "/etc/encpipe/backup.key", option, path])
    assert raised.value.hint == f"give an absolute path, or a credential as {hint}"


@pytest.mark.parametrize("option", ["--key-file", "--passphrase-file", "--sign-key", "--identity"])
def test_a_credential_the_callers_shell_expanded_to_nothing_is_refused(option):
    """The hints showed ${CREDENTIALS_DIRECTORY}/NAME unquoted: typed as shown, the
    caller's shell (where the variable is empty) made it /NAME, and the unit printed
    held `--key-file /encpipe-backup.key`, no LoadCredential=, every run 66. A key file
    in / itself is refused now, and every hint quotes the credential's path."""
    with pytest.raises(UsageError, match=f"^{option} /encpipe-backup.key: a key file in / itself, ") as raised:
        unit.render(SCRIPT, ["--dir", "/srv/b", "--key-file", "/etc/encpipe/backup.key", option,
                             "/encpipe-backup.key"])
    assert raised.value.hint == "quote it: '${CREDENTIALS_DIRECTORY}/encpipe-backup.key', or give the path of the file"


@pytest.mark.parametrize("args", [["--keep-daily", "3"], ["--keep-daily", "3", "--key-file", "/etc/k", "-p"],
                                  ["--keep-daily", "3", "--key-file", "/etc/k", "--passphrase-fd", "3"]])
def test_every_hint_pasted_into_a_shell_keeps_the_variable_for_systemd(args):
    """Each hint's option, as a shell reads it, is the literal path the unit wants."""
    with pytest.raises(UsageError) as raised:
        unit.render(SCRIPT, ["--dir", "/srv/b", *args])
    hint = raised.value.hint
    typed = re.search(r"(--\S+) ('\$\{CREDENTIALS_DIRECTORY\}/[^']*')", hint)
    assert typed, hint
    assert shlex.split(typed[2]) == [typed[2].strip("'")]  # single quotes: no expansion
