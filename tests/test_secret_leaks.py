"""Secrets of the other tools: each child gets only the ones it needs.

encpipe-backup and encpipe-restore run libpq clients (pg_dump, pg_dumpall, psql,
pg_restore), compressors (zstd, gzip) and rclone (in a restore, through a fetch
helper) in one environment that may hold libpq's PGPASSWORD and rclone's
credentials (RCLONE_CONFIG_<REMOTE>_SECRET_ACCESS_KEY, RCLONE_CONFIG_PASS...).
The environment may hold the cloud providers' credentials too (AWS_SECRET_ACCESS_KEY,
GOOGLE_APPLICATION_CREDENTIALS..., which rclone's env_auth reads), and the tokens of
the secret stores a key command reads (VAULT_TOKEN, OP_SESSION_..., which no other
child needs).
A libpq client needs the first and none of rclone's nor the cloud's; rclone and
its helper need rclone's and the cloud's, not PGPASSWORD; a compressor needs
none; the `encpipe open` of a restore the cloud's (for its key commands), not
PGPASSWORD nor rclone's. Each real tool is wrapped by a spy that records the
environment it was given, then runs it.
(encpipe's own secrets, ENCPIPE_KEY and the like, are tests/test_restore_children.py's
and tests/test_scripts_hygiene.py's.)

No core dump: a process that holds keys and plaintext (encpipe, and the Python
scripts) writes no core file when it dies of a signal that dumps one, whatever
the core size limit it was given (plaintext never goes to disk).

A key or passphrase command gets no descriptor but its standard ones (a
--passphrase-fd secret stays with encpipe).

A libpq connection string refused after `--` (encpipe-backup, encpipe-restore)
is named in the error line, which goes to the journal or cron's mail, with its
password masked.

A key or passphrase typed where a backup directory belongs, naming nothing, is
not echoed in the error line (as encpipe does not echo such a FILE).

A failed restore's errors, on standard error, name the SQLSTATE and the line,
not the failing statement's values (plaintext of the dump): psql runs a plain
dump's SQL, and a custom archive's as `pg_restore -f -` writes it, with
VERBOSITY=sqlstate.
"""

import json
import os
import resource
import shutil
import signal
import stat
import subprocess
import sys
import time

import pytest

from encpipe.pgrestore import QUIET_ARCHIVE, QUIET_PSQL

from fuzz.craft import clean_env, command, run_in_process
from s3server import rclone_binary
from spies import install, python_head, write
from test_backup_restore import (
    BACKUP,
    RESTORE,
    dump,
    ensure_small,
    leftover_databases,
    SCRIPTS,
    run,
    script_env,
)

PGPASSWORD = "libpq-password-5b2e-for-pg-clients-only"
CONFIG_PASS = "rclone-config-pass-91d4-for-rclone-only"
LIBPQ_CLIENTS = {"pg_dump", "pg_dumpall", "psql", "pg_restore"}
# AWS_SECRET_KEY: the AWS SDK's other name for AWS_SECRET_ACCESS_KEY, which rclone's env_auth takes as well
CLOUD = {"AWS_SECRET_ACCESS_KEY": "aws-secret-7e21-for-rclone-and-key-commands",
         "AWS_SECRET_KEY": "aws-secret-alias-3f60-for-rclone-and-key-commands",
         "ST_KEY": "swift-v1-key-a41c-for-rclone-and-key-commands",  # Swift's, which rclone's env_auth reads
         "GOOGLE_APPLICATION_CREDENTIALS": "/nonexistent/gcs-creds-5b90.json"}
# The tokens of the secret stores a key command reads the key from (Vault, 1Password, SOPS...):
# a key command needs them, and so an encpipe that runs one; no other child does.
STORE = {"VAULT_TOKEN": "vault-token-3c8e-for-key-commands", "OP_SESSION_my": "op-session-0d4a-for-key-commands"}
# restore's encpipe: given its key by --key-file, and no key command, it needs no secret of ours
NEEDS = {"zstd": set(), "rclone": {"rclone", "cloud"}, "encpipe": set()}

def _spies(tmp_path, pg):
    spies, log = tmp_path / "spies", tmp_path / "children.log"
    reals = {tool: pg.bin(tool) for tool in LIBPQ_CLIENTS}
    reals.update(zstd=shutil.which("zstd"), rclone=rclone_binary())
    install(spies, reals, log, parents=set(reals))
    write(spies / "encpipe", "encpipe", [sys.executable, "-m", "encpipe"], log)  # as ENCPIPE names it
    return spies, log


def _names(env):
    return {entry.partition("=")[0] for entry in env}


def _leaks(who, env, needs, rclone_secrets):
    """What `env` holds that `who` does not need: PGPASSWORD unless it needs libpq's
    secret, an RCLONE_ variable or rclone's secret values unless it needs rclone's,
    the cloud's credentials and the secret stores' tokens unless it needs them."""
    names, found = _names(env), []
    if "store" not in needs:
        found += [(who, n) for n in sorted(names & set(STORE))]
        found += [(who, "a secret store's token") for e in env for s in STORE.values() if s in e][:1]
    if "cloud" not in needs:
        found += [(who, n) for n in sorted(names & set(CLOUD))]
        found += [(who, "a cloud credential's value") for e in env for s in CLOUD.values() if s in e][:1]
    if "libpq" not in needs and ("PGPASSWORD" in names or any(PGPASSWORD in e for e in env)):
        found.append((who, "PGPASSWORD"))
    if "rclone" not in needs:
        found += [(who, n) for n in sorted(names) if n.startswith("RCLONE_")]
        found += [(who, "an rclone secret's value") for e in env for s in rclone_secrets if s in e][:1]
    return found


@pytest.mark.slow
def test_each_child_of_a_backup_and_a_remote_restore_gets_only_the_secrets_it_needs(pg, tools, key_file, tmp_path,
                                                                                       s3):
    db = ensure_small(pg, "leaks_source")
    spies, log = _spies(tmp_path, pg)
    env = script_env(pg, tools, PGPASSWORD=PGPASSWORD, RCLONE_CONFIG_PASS=CONFIG_PASS, **s3.env, **CLOUD, **STORE)
    env.update(PATH="%s:%s" % (spies, env["PATH"]), RCLONE=str(spies / "rclone"), ENCPIPE=str(spies / "encpipe"))
    rclone_secrets = [v for k, v in s3.env.items() if k.endswith(("_SECRET_ACCESS_KEY", "_ACCESS_KEY_ID"))]
    rclone_secrets.append(CONFIG_PASS)
    remote = f"{s3.location}/leaks"
    proc = run([BACKUP, "--dir", tmp_path / "b", "--to", remote, "--compress", "zstd", "--key-file", key_file, db],
               env)
    assert proc.returncode == 0, proc.stderr.decode()
    name = json.loads(proc.stdout)["filename"]
    backup_records = [json.loads(line) for line in log.read_text().splitlines()]
    pg.dropdb("leaks_copy")
    proc = run([RESTORE, "--key-file", key_file, f"{remote}/{name}", "leaks_copy"], env)
    assert proc.returncode == 0, proc.stderr.decode()
    assert dump(pg, "leaks_copy") == dump(pg, db)
    pg.dropdb("leaks_copy")
    records = [json.loads(line) for line in log.read_text().splitlines()]
    restore_records = records[len(backup_records):]

    assert {r["tool"] for r in backup_records} == {"pg_dump", "pg_dumpall", "psql", "zstd", "rclone"}
    assert {r["tool"] for r in restore_records} == {"psql", "zstd", "rclone", "encpipe"}
    leaks = []
    for record in records:
        tool = record["tool"]
        needs = {"libpq"} if tool in LIBPQ_CLIENTS else NEEDS[tool]
        if record["argv"] == ["--version"]:  # psql asked its version reaches no server
            needs = set()
        # each is seen to get the secret it needs: the spy reads what was given
        assert "libpq" not in needs or "PGPASSWORD" in _names(record["env"]), tool
        assert "rclone" not in needs or set(rclone_secrets) <= {e.partition("=")[2] for e in record["env"]}, tool
        assert "cloud" not in needs or set(CLOUD) <= _names(record["env"]), tool
        assert "store" not in needs or set(STORE) <= _names(record["env"]), tool
        leaks += _leaks(tool, record["env"], needs, rclone_secrets)
    helpers = [r for r in restore_records if r["tool"] == "rclone"]
    assert helpers and all("fetch" in r["parent"] for r in helpers), [r["parent"] for r in helpers]
    for record in helpers:  # the fetch helper that runs rclone
        leaks += _leaks("the fetch helper", record["parent_env"], NEEDS["rclone"], rclone_secrets)
    assert sorted(set(leaks)) == [], sorted(set(leaks))


KEY = "c0ffee15" * 8


@pytest.mark.parametrize("program", ["encpipe", "encpipe-verify", "python -m encpipe.backup verify",
                                     "python -m encpipe.backup prune"])
def test_a_process_that_holds_a_key_dumps_no_core(tmp_path, program):
    """The key command kills its parent with SIGQUIT, whose default action (the
    parent is given it) is a core dump; the parent's core size limit is raised as
    far as it goes, and its environment holds ENCPIPE_KEY. The parent's soft core
    limit is 0 by then, and no file appears in its working directory (where this
    machine's core_pattern, when it is a plain name, would put one)."""
    cwd, backups = tmp_path / "cwd", tmp_path / "backups"
    cwd.mkdir()
    backups.mkdir()
    limits = tmp_path / "limits"
    kill = f"grep '^Max core file size' /proc/$PPID/limits > {limits}; kill -QUIT $PPID; sleep 1"
    sealed = tmp_path / "sealed"
    status, data, err = run_in_process(["seal"], b"plaintext", {"ENCPIPE_KEY": KEY})
    assert status == 0, err  # else open would fail on the header, before its key command runs
    sealed.write_bytes(data)
    argv = {"encpipe": command("open", "--key-command", kill, str(sealed)),
            "encpipe-verify": [str(SCRIPTS / "encpipe-verify"), "--key-command", kill, str(backups)],
            # the package's own commands, which README names for scripts: they hold keys too
            "python -m encpipe.backup verify": [sys.executable, "-m", "encpipe.backup", "verify", "--key-command",
                                                kill, str(backups)],
            "python -m encpipe.backup prune": [sys.executable, "-m", "encpipe.backup", "prune", "--keep-last", "1",
                                               "--key-command", kill, str(backups)]}[program]

    def unlimited_core():
        hard = resource.getrlimit(resource.RLIMIT_CORE)[1]
        resource.setrlimit(resource.RLIMIT_CORE, (hard, hard))
        # SIGQUIT's default action, whatever this run inherited: a suite started in the
        # background by a shell without job control ignores it (and an ignored signal
        # stays ignored in encpipe, as nohup's SIGHUP does), and the kill would be lost.
        signal.signal(signal.SIGQUIT, signal.SIG_DFL)

    env = clean_env({"ENCPIPE_KEY": KEY, "PYTHONPATH": str(SCRIPTS.parent)})
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, env=env, cwd=cwd,
                          preexec_fn=unlimited_core, timeout=60)
    assert (done.returncode, done.stdout) == (-signal.SIGQUIT, b""), done.stderr
    assert limits.read_text().split()[4] == "0", limits.read_text()  # Max core file size SOFT HARD bytes
    assert os.listdir(cwd) == []


LISTER = '''%(head)s
import os
fds = {}
for fd in os.listdir("/proc/self/fd"):
    try:
        fds[fd] = os.readlink("/proc/self/fd/" + fd)
    except OSError:
        pass  # the directory being listed, closed again
with open(%(seen)r, "w") as f:
    f.write("".join("%%s %%s\\n" %% item for item in fds.items() if not item[1].startswith("/proc/")))
print(%(secret)r)
'''


@pytest.mark.parametrize("option", ["--key-command", "--passphrase-command"])
def test_a_key_command_gets_no_descriptor_but_its_standard_ones(tmp_path, option):
    """A key command of a seal that also reads a --passphrase-fd and writes -o FILE:
    standard input /dev/null, output the pipe encpipe reads, error encpipe's; neither
    the passphrase's descriptor nor any other."""
    seen = tmp_path / "fds"
    read_end, write_end = os.pipe()
    os.write(write_end, b"the passphrase on a descriptor\n")
    os.close(write_end)
    secret = KEY if option == "--key-command" else "a second passphrase"
    lister = tmp_path / "lister"
    lister.write_text(LISTER % {"head": python_head("-S"), "seen": str(seen), "secret": secret})
    lister.chmod(stat.S_IRWXU)
    listing = f"exec {lister}"  # the shell's descriptors, as the command was given them
    try:
        done = subprocess.run(command("seal", "--work-factor", "10", "--passphrase-fd", str(read_end), option, listing,
                                      "-o", str(tmp_path / "out.enc")),
                              stdin=subprocess.DEVNULL, capture_output=True, env=clean_env(), pass_fds=(read_end,),
                              timeout=60)
    finally:
        os.close(read_end)
    assert done.returncode == 0, done.stderr
    fds = dict(line.split(" ", 1) for line in seen.read_text().splitlines())
    assert sorted(fds) == ["0", "1", "2"], fds
    assert fds["0"] == "/dev/null" and fds["1"].startswith("pipe:"), fds


LIBPQ_PASSWORD = "hunter2-in-a-connection-string"
LIBPQ_PASSWORD_KEY = "5ec12e7" + "0" * 57  # a raw key where a pg option belongs
CONNECTION_STRINGS = [  # (script, arguments, how the error line shows the argument)
    ("backup", ["--", "--dbname=postgresql://backup:%s@db.example/shop" % LIBPQ_PASSWORD],
     "option --dbname=postgresql://backup:***@db.example/shop (-d, --dbname)"),
    ("backup", ["--", "-d", "host=db.example password=%s dbname=shop" % LIBPQ_PASSWORD], "option -d (-d, --dbname)"),
    ("backup", ["--", "postgres://backup:%s@db.example/shop" % LIBPQ_PASSWORD],
     "argument postgres://backup:***@db.example/shop is not"),
    ("backup", ["--", "--host=db.example?password=%s" % LIBPQ_PASSWORD],
     "option --host=db.example?password=*** (-h, --host)"),
    ("restore.sql.enc", ["--", "-dhost=db.example password='%s'" % LIBPQ_PASSWORD],
     "option -dhost=db.example password=*** (-d, --dbname)"),
    ("restore.dump.enc", ["--", "postgresql://restore:%s@db.example/shop" % LIBPQ_PASSWORD],
     "argument postgresql://restore:***@db.example/shop is not"),
    # libpq's sslpassword: the passphrase of the client's SSL key (before, shown whole)
    ("backup", ["--", "--dbname=postgresql://db.example/shop?sslpassword=%s" % LIBPQ_PASSWORD],
     "option --dbname=postgresql://db.example/shop?sslpassword=*** (-d, --dbname)"),
    ("backup", ["--", "--host=db.example?sslpassword=%s&x=1" % LIBPQ_PASSWORD],
     "option --host=db.example?sslpassword=***&x=1 (-h, --host)"),
    ("restore.sql.enc", ["--", "postgres://u@db.example/shop?SSLPassword=%s" % LIBPQ_PASSWORD],
     "argument postgres://u@db.example/shop?SSLPassword=*** is not"),
    # a key pasted after -- (before, shown whole)
    ("backup", ["--", LIBPQ_PASSWORD_KEY], "argument (a raw key, not shown) is not"),
    ("restore.dump.enc", ["--", "--file=" + LIBPQ_PASSWORD_KEY], "option --file=(a raw key, not shown) (-f, --file)"),
]


@pytest.mark.parametrize("script, extra, shown", CONNECTION_STRINGS)
def test_a_connection_string_refused_as_a_pg_option_is_shown_without_its_password(tmp_path, script, extra, shown):
    """A libpq connection string with a password, given after `--` (refused: the
    scripts connect with PGHOST, PGUSER...), is named in the one error line with
    its password masked: the line goes to the journal or cron's mail."""
    env = clean_env({"ENCPIPE_KEY": KEY, "PYTHONPATH": str(SCRIPTS.parent)})
    if script == "backup":
        argv = [BACKUP, "--dir", str(tmp_path / "b"), "shop", *extra]
    else:
        sealed = tmp_path / ("shop_20250101T000000Z." + script.partition(".")[2])
        sealed.write_bytes(run_in_process(["seal"], b"data", {"ENCPIPE_KEY": KEY})[1])
        argv = [RESTORE, str(sealed), "shop_copy", *extra]
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, env=env, timeout=60)
    err = done.stderr.decode()
    assert (done.returncode, done.stdout) == (64, b""), err
    assert err.count("error: ") == 1 and shown in err.splitlines()[0], err  # the argument is still named
    assert LIBPQ_PASSWORD not in err and LIBPQ_PASSWORD_KEY not in err, err


def test_a_failed_restore_shows_no_plaintext_of_the_dump(pg, tools, key_file, tmp_path):
    """A dump whose statement fails on one of its values: the restore fails (1,
    nothing created), and its error lines, which go to the journal or cron's
    mail, hold nothing of the dump's rows: psql names the SQLSTATE and the line.
    `-- -v VERBOSITY=default` asks for psql's whole message, values and all."""
    value = "plaintext-row-value-3e8a"
    sql = b"CREATE TABLE t (x integer);\nINSERT INTO t VALUES ('%s');\n" % value.encode()
    path = tmp_path / "leaks_20250101T000000Z.sql.enc"
    path.write_bytes(run_in_process(["seal", "--key-file", key_file], sql, {})[1])
    pg.dropdb("leaks_failed")
    proc = run([RESTORE, "--key-file", key_file, "--no-globals", path, "leaks_failed"], script_env(pg, tools))
    err = proc.stderr.decode()
    assert (proc.returncode, proc.stdout) == (1, b""), err
    assert "database leaks_failed was not created" in err, err  # a new name: not "unchanged"
    assert value not in err, err
    # invalid_text_representation, on line 3 of what psql read: the \restrict line, then the dump's
    assert "psql:<stdin>:3: ERROR:  22P02\n" in err, err
    assert err.endswith("encpipe-restore: hint: " + QUIET_PSQL + "\n"), err
    pg.dropdb("leaks_failed")
    shown = run([RESTORE, "--key-file", key_file, "--no-globals", path, "leaks_failed", "--", "-v",
                 "VERBOSITY=default"],
                script_env(pg, tools))
    assert shown.returncode == 1 and value in shown.stderr.decode(), shown.stderr
    assert "hint" not in shown.stderr.decode(), shown.stderr


def test_a_failed_restore_of_a_custom_archive_shows_no_plaintext_of_the_dump(pg, tools, key_file, tmp_path):
    """The same for a custom archive: its SQL, written by `pg_restore -f -`, runs in
    the same quiet psql. The table's CHECK holds where it was dumped and fails in the
    restore's scratch database, on the row's COPY, whose whole message quotes the row
    (`Failing row contains (...)`, `CONTEXT: COPY t, line 1: "..."`). The restore fails
    (1), the database it was to replace keeps its contents, and no error line holds the
    value."""
    value = "plaintext-archived-value-91c4"
    pg.dropdb("leaks_archived")
    pg.createdb("leaks_archived")
    pg.psql("CREATE TABLE t (x text CHECK (current_database() NOT LIKE 'encpipe\\_restore\\_%%'));"
            "INSERT INTO t VALUES ('%s');" % value, db="leaks_archived")
    archive = subprocess.run([pg.bin("pg_dump"), "-Fc", "leaks_archived"], env=pg.env, capture_output=True,
                             check=True).stdout
    # named for its database and this time, as its header says (else refused, 65: README, "The backup's label")
    path = tmp_path / f"leaks_archived_{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.dump.enc"
    path.write_bytes(run_in_process(["seal", "--key-file", key_file], archive, {})[1])
    pg.dropdb("leaks_failed")
    pg.createdb("leaks_failed")
    pg.psql("CREATE TABLE kept (v text); INSERT INTO kept VALUES ('kept');", db="leaks_failed")
    before = dump(pg, "leaks_failed")
    proc = run([RESTORE, "--key-file", key_file, "--no-globals", path, "leaks_failed"], script_env(pg, tools))
    err = proc.stderr.decode()
    assert (proc.returncode, proc.stdout) == (1, b""), err
    assert "leaks_failed is unchanged" in err, err
    assert value not in err, err
    assert "ERROR:  23514\n" in err, err  # check_violation, by its SQLSTATE alone
    assert err.endswith("encpipe-restore: hint: " + QUIET_ARCHIVE + "\n"), err
    assert dump(pg, "leaks_failed") == before
    assert not leftover_databases(pg)
    pg.dropdb("leaks_failed")
    pg.dropdb("leaks_archived")


NOT_PATHS = [KEY, "ENCPIPE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ",
             "correct horse battery staple"]
LOCATIONS = [  # (script, its arguments, the exit status, where its one line goes), SECRET the location
    ("encpipe-list", ["SECRET"], 66, "stderr"),
    ("encpipe-list", ["--dir", "SECRET"], 66, "stderr"),
    ("encpipe-list", [], 66, "stderr"),  # ENCPIPE_BACKUP_DIR
    ("encpipe-prune", ["--keep-last", "1", "SECRET"], 66, "stderr"),
    ("encpipe-verify", ["SECRET"], 66, "stderr"),
    ("encpipe-check", ["--max-age", "3", "--dir", "SECRET"], 2, "stdout"),
    ("encpipe-rotate", ["--old-key-file", "old.key", "--new-key-file", "new.key", "SECRET"], 66, "stderr"),
    ("encpipe-migrate", ["--key-file", "new.key", "SECRET"], 66, "stderr"),
]


SIGNING_KEY = "ENCPIPE-SIGNING-KEY-1" + "Q" * 58


@pytest.mark.parametrize("secret", [*NOT_PATHS, SIGNING_KEY], ids=["key", "identity", "passphrase", "signing key"])
def test_a_file_or_directory_that_names_nothing_and_is_a_signing_key_is_not_shown(tmp_path, monkeypatch, secret):
    """A signing key (ENCPIPE-SIGNING-KEY-1...) typed in place of a FILE, DIR or PATH is
    a secret as a raw key or an identity is: not shown (before, `cannot open KEY`,
    `cannot read backup directory KEY`: only the other two forms were hidden)."""
    import io

    from encpipe.backup.cli import main as backup_main

    monkeypatch.chdir(tmp_path)
    status, out, err = run_in_process(["open", secret], b"", {})
    assert (status, out) == (66, b"") and secret not in err and "its name not shown" in err, err
    out, err = io.BytesIO(), io.StringIO()
    assert backup_main(["list", secret], stdout=out, stderr=err, env={}) == 66, err.getvalue()
    assert out.getvalue() == b"" and secret not in err.getvalue(), err.getvalue()
    assert "its name not shown" in err.getvalue(), err.getvalue()


@pytest.mark.parametrize("secret", NOT_PATHS, ids=["key", "identity", "passphrase"])
@pytest.mark.parametrize("script, args, status, out", LOCATIONS)
def test_a_location_that_names_nothing_and_looks_like_a_secret_is_not_shown(tmp_path, script, args, status, out,
                                                                               secret):
    """A key or passphrase typed where the backup directory belongs (or set as
    ENCPIPE_BACKUP_DIR), naming nothing, is not echoed in the error line, which goes
    to the journal, cron's mail or a monitor: the location is said to be not shown,
    as encpipe says of a FILE (tests/test_key_places.py). The status is as before."""
    for name in ("old.key", "new.key"):
        (tmp_path / name).write_text(("%064x\n" % (len(name) * 7919)))
        (tmp_path / name).chmod(0o600)
    env = clean_env({"ENCPIPE_KEY": KEY, "BACKUP_ENCRYPTION_KEY": "a legacy key", "ENCPIPE_BACKUP_DIR": secret,
                     "PYTHONPATH": str(SCRIPTS.parent)})
    done = subprocess.run([str(SCRIPTS / script), *[secret if a == "SECRET" else a for a in args]],
                          stdin=subprocess.DEVNULL, capture_output=True, env=env, cwd=tmp_path, timeout=60)
    said = {"stdout": done.stdout, "stderr": done.stderr}
    assert done.returncode == status, said
    assert said[out].count(b"\n") == 1 and b"its name not shown" in said[out], said
    assert secret.encode() not in done.stdout + done.stderr, said
    assert (done.stdout if out == "stderr" else done.stderr) == b"", said


SECRET_FORMS = {"raw key": KEY, "identity": "ENCPIPE-SECRET-KEY-1" + "Q" * 58,
                "signing key": "encpipe-signing-key-1" + "q" * 58}


@pytest.mark.parametrize("kind", sorted(SECRET_FORMS))
@pytest.mark.parametrize("argv", [["seal", "--key-command"], ["seal", "--passphrase-command"],
                                  ["seal", "--key-file", "KEYFILE", "--sign-key-command"],
                                  ["encpipe-verify", "--key-command"]])
def test_a_key_given_as_a_key_command_is_refused_and_not_shown(tmp_path, argv, kind):
    """A key pasted where a command belongs is no command: it is refused (64) before
    sh runs it, and shown nowhere (before, sh said `KEY: not found` and encpipe
    `key command failed with status 127: KEY`, both on standard error, bound for
    the journal or cron's mail)."""
    secret = SECRET_FORMS[kind]
    key_file = tmp_path / "k"
    key_file.write_text(KEY + "\n")
    key_file.chmod(0o600)
    (tmp_path / "backups").mkdir()
    words = [str(key_file) if word == "KEYFILE" else word for word in argv] + [secret]
    if words[0] == "encpipe-verify":
        words = [str(SCRIPTS / "encpipe-verify"), *words[1:], str(tmp_path / "backups")]
    else:
        words = command(*words, "-o", str(tmp_path / "out.enc"))
    done = subprocess.run(words, input=b"data", capture_output=True, cwd=tmp_path, timeout=60,
                          env=clean_env({"PYTHONPATH": str(SCRIPTS.parent)}))
    err = done.stderr.decode()
    assert (done.returncode, done.stdout) == (64, b""), err
    assert "not shown" in err.splitlines()[0] and "error: " in err.splitlines()[0], err
    assert secret not in err and secret.lower() not in err.lower(), err
    assert not (tmp_path / "out.enc").exists()


@pytest.mark.parametrize("secret", [KEY, "correct horse battery staple"], ids=["key", "passphrase"])
@pytest.mark.parametrize("script", ["encpipe-restore", "encpipe-backup"])
def test_a_key_given_as_one_argument_too_many_is_not_shown(tmp_path, script, secret):
    """A key or passphrase typed after the arguments (`encpipe-restore FILE DB KEY`,
    `encpipe-backup DB KEY`) is refused (64) without being shown, as encpipe,
    encpipe-rotate and encpipe-migrate refuse a long extra argument (before: `too many
    arguments: KEY`, `only one DBNAME, not also KEY`)."""
    sealed = tmp_path / "shop_20250101T000000Z.sql.enc"
    sealed.write_bytes(run_in_process(["seal"], b"data", {"ENCPIPE_KEY": KEY})[1])
    argv = {"encpipe-restore": [RESTORE, str(sealed), "shop_copy", secret],
            "encpipe-backup": [BACKUP, "--dir", str(tmp_path / "b"), "shop", secret]}[script]
    env = clean_env({"ENCPIPE_KEY": KEY, "PYTHONPATH": str(SCRIPTS.parent)})
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, env=env, timeout=60)
    err = done.stderr.decode()
    assert (done.returncode, done.stdout) == (64, b""), err
    assert err.count("error: ") == 1 and "(a long argument, not shown)" in err, err
    assert secret not in err, err


@pytest.mark.parametrize("kind", sorted(SECRET_FORMS))
@pytest.mark.parametrize("script", ["encpipe-backup", "encpipe-restore"])
def test_a_key_given_as_the_database_is_refused_and_not_shown(tmp_path, script, kind):
    """A key pasted where DBNAME belongs (`encpipe-backup ... "$KEY"`): before, the run
    was tried, pg_dump failed on it, and the failed run was recorded under it in the
    metrics file, which every user may read (0644, for node_exporter), besides the
    error line. No database has such a name (at most 63 bytes): refused (64), nothing
    run or recorded, the value not shown."""
    secret = SECRET_FORMS[kind]
    sealed = tmp_path / "shop_20250101T000000Z.sql.enc"
    sealed.write_bytes(run_in_process(["seal"], b"data", {"ENCPIPE_KEY": KEY})[1])
    metrics = tmp_path / "m.prom"
    argv = {"encpipe-restore": [RESTORE, "--no-globals", str(sealed), secret],
            "encpipe-backup": [BACKUP, "--dir", str(tmp_path / "b"), "--metrics-file", str(metrics), secret]}[script]
    env = clean_env({"ENCPIPE_KEY": KEY, "PYTHONPATH": str(SCRIPTS.parent), "PGHOST": str(tmp_path / "no-server")})
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, env=env, timeout=60)
    err = done.stderr.decode()
    assert (done.returncode, done.stdout) == (64, b""), err
    assert err.count("error: ") == 1 and "(a secret, not shown), not a database" in err, err
    assert secret not in err and secret.lower() not in err.lower(), err
    assert not metrics.exists() and not (tmp_path / "b").exists()


@pytest.mark.parametrize("how", ["--dir", "ENCPIPE_BACKUP_DIR"])
def test_a_key_given_as_the_backup_directory_is_refused_and_never_made(tmp_path, how):
    """encpipe-backup makes DIR when it is not there: before, a key pasted as --dir
    (or set as ENCPIPE_BACKUP_DIR) became a directory of that name, which any user
    who can list its parent reads, and the JSON line and errors named it."""
    env = clean_env({"ENCPIPE_KEY": KEY, "PYTHONPATH": str(SCRIPTS.parent), "PGHOST": str(tmp_path / "no-server")})
    argv = [BACKUP, "--dir", KEY, "shop"] if how == "--dir" else [BACKUP, "shop"]
    if how == "ENCPIPE_BACKUP_DIR":
        env[how] = KEY
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, env=env, cwd=tmp_path, timeout=60)
    err = done.stderr.decode()
    assert (done.returncode, done.stdout) == (64, b""), err
    assert err.count("error: ") == 1 and "(a secret, not shown), not a directory" in err and KEY not in err, err
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("script, args, status", [
    ("encpipe-check", ["--max-age", "3", "--dir", "BACKUPS"], 3),  # a usage error: the plugin's UNKNOWN
    ("encpipe-prune", ["--keep-last", "1", "BACKUPS"], 64),
    ("encpipe-list", ["--stats", "BACKUPS"], None),  # takes no --database: its usage error, as before
])
def test_a_key_given_as_database_of_a_backup_command_is_not_shown(tmp_path, script, args, status):
    """`encpipe-check --database "$KEY"`: before, the key was the name of a database
    with no backup, `CRITICAL: KEY: no backup` on standard output (the monitor's
    status text), or in prune's error line. Refused (64; check's UNKNOWN, 3, its one
    line on standard output), not shown, as a DBNAME."""
    (tmp_path / "b").mkdir()
    argv = [str(SCRIPTS / script), "--database", KEY, *[str(tmp_path / "b") if a == "BACKUPS" else a for a in args]]
    env = clean_env({"ENCPIPE_KEY": KEY, "PYTHONPATH": str(SCRIPTS.parent)})
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, env=env, timeout=60)
    said = done.stdout + done.stderr
    assert KEY.encode() not in said, said
    refusal = b"--database: a raw key (a secret, not shown), not a database name"
    assert done.stdout == (b"UNKNOWN: " + refusal + b"\n" if status == 3 else b""), said
    if status is not None:
        assert done.returncode == status, said
        assert refusal in done.stderr, said


def test_a_key_given_as_the_globals_file_is_not_shown(tmp_path):
    """`encpipe-restore --globals KEY FILE DB` (a key typed where the globals file's path
    belongs, naming nothing): before, `cannot read the globals file KEY`. Now named as
    encpipe names such a FILE; the status is as before (66)."""
    sealed = tmp_path / "shop_20250101T000000Z.sql.enc"
    sealed.write_bytes(run_in_process(["seal"], b"data", {"ENCPIPE_KEY": KEY})[1])
    env = clean_env({"ENCPIPE_KEY": KEY, "PYTHONPATH": str(SCRIPTS.parent)})
    done = subprocess.run([RESTORE, "--globals", KEY, str(sealed), "shop_copy"], stdin=subprocess.DEVNULL,
                          capture_output=True, env=env, cwd=tmp_path, timeout=60)
    err = done.stderr.decode()
    assert (done.returncode, done.stdout) == (66, b""), err
    assert err.count("error: ") == 1 and "its name not shown" in err and KEY not in err, err


SIGNING_SECRET = "ENCPIPE-SIGNING-KEY-1" + "Q" * 58


@pytest.mark.parametrize("secret", [KEY, SIGNING_SECRET, "correct horse battery staple"],
                         ids=["key", "signing key", "passphrase"])
@pytest.mark.parametrize("argv", [
    ["encpipe", "pubkey", "SECRET"],
    ["encpipe", "keyid", "--sign-key", "SECRET"],
    ["encpipe", "keyid", "--signer-file=SECRET"],
    ["encpipe", "seal", "--key-file", "KEYFILE", "--sign-key", "SECRET"],
    ["encpipe", "seal", "--recipient-file", "SECRET"],
    ["encpipe", "open", "--key-file", "KEYFILE", "--signer-file", "SECRET", "SEALED"],
    ["encpipe-verify", "--key-file", "KEYFILE", "--signer-file", "SECRET", "BACKUPS"],
    ["encpipe-restore", "--key-file", "KEYFILE", "--signer-file", "SECRET", "SEALED", "shop_copy"],
    ["encpipe-backup", "--dir", "BACKUPS", "--key-file", "KEYFILE", "--signer-file", "SECRET", "shop"],
    ["encpipe-backup", "--dir", "BACKUPS", "--key-file", "KEYFILE", "--sign-key", "SECRET", "shop"],
])
def test_a_secret_given_for_a_signing_signer_or_recipient_file_is_not_shown(tmp_path, argv, secret):
    """A key or passphrase pasted where the path of a signing key, a signer file, a
    recipient file or pubkey's FILE belongs, naming nothing: before, `cannot read KEY:
    No such file or directory`, on standard error, bound for the journal or cron's
    mail. Named now as a --key-file's is (its name not shown); the status is as
    before (66), nothing on standard output, nothing run."""
    key_file, sealed, backups = tmp_path / "k", tmp_path / "shop_20250101T000000Z.sql.enc", tmp_path / "b"
    key_file.write_text(KEY + "\n")
    key_file.chmod(0o600)
    sealed.write_bytes(run_in_process(["seal"], b"data", {"ENCPIPE_KEY": KEY})[1])
    backups.mkdir()
    words = [{"SECRET": secret, "KEYFILE": str(key_file), "SEALED": str(sealed), "BACKUPS": str(backups)}.get(w, w)
             for w in argv]
    words = [w.replace("=SECRET", "=" + secret) for w in words]
    words = command(*words[1:]) if words[0] == "encpipe" else [str(SCRIPTS / words[0]), *words[1:]]
    env = clean_env({"PYTHONPATH": str(SCRIPTS.parent), "PGHOST": str(tmp_path / "no-server")})
    done = subprocess.run(words, input=b"data", capture_output=True, env=env, cwd=tmp_path, timeout=60)
    err = done.stderr.decode()
    assert (done.returncode, done.stdout) == (66, b""), err
    assert err.count("error: ") == 1 and "(its name not shown: it names no file and may be a key or passphrase)" \
        in err, err
    assert secret not in err and secret.lower() not in err.lower(), err


CONNINFO_PASSWORD = "hunter2-9c1e"


@pytest.mark.parametrize("conninfo", [
    f"host=db1 user=bk password={CONNINFO_PASSWORD} dbname=shop", f"postgresql://bk:{CONNINFO_PASSWORD}@db1/shop",
    # as libpq reads them: a URI's password runs to its `@`, `?` and `#` in it (before, neither refused nor
    # masked: a restore made a database named after the password); an unquoted value to an unescaped space
    f"postgresql://bk:x?{CONNINFO_PASSWORD}@db1/shop", f"postgresql://bk:x#{CONNINFO_PASSWORD}@db1/shop",
    f"postgresql://bk:x@{CONNINFO_PASSWORD}@db1/shop",  # an @ not %-encoded: masked whole, not cut at it
    f"postgresql://bk:x/{CONNINFO_PASSWORD}@db1/shop",  # a / not %-encoded: libpq's no password, still masked
    f"host=db1 password=x&{CONNINFO_PASSWORD} dbname=shop", f"host=db1 password=x\\ {CONNINFO_PASSWORD} dbname=shop",
], ids=["keywords", "uri", "uri-question-mark", "uri-hash", "uri-at", "uri-slash", "keywords-ampersand", "keywords-escaped-space"])
@pytest.mark.parametrize("script, args, status", [
    ("encpipe-backup", ["--dir", "BACKUPS", "--metrics-file", "METRICS", "--key-file", "KEYFILE", "CONNINFO"], 64),
    ("encpipe-restore", ["--no-globals", "--key-file", "KEYFILE", "SEALED", "CONNINFO"], 64),
    ("encpipe-restore", ["--maintenance-db", "CONNINFO", "--no-globals", "--key-file", "KEYFILE", "SEALED",
                         "shop_copy"], 64),
    ("encpipe-prune", ["--keep-last", "1", "--key-file", "KEYFILE", "--database", "CONNINFO", "BACKUPS"], 64),
    ("encpipe-check", ["--max-age", "3", "--database", "CONNINFO", "--dir", "BACKUPS"], 3),
])
def test_a_connection_string_given_as_the_database_is_refused_with_its_password_masked(tmp_path, script, args,
                                                                                        status, conninfo):
    """A libpq connection string given where the database's name belongs (as one would
    give it to pg_dump or psql): the scripts take a name, never a connection string
    (libpq reads PGDATABASE as a name), so the backup failed, and its line, the backup's
    file name and the metrics file (every user may read it) held the password; a
    restore would have made a database of that name. Refused (64; check's UNKNOWN, 3)
    before anything runs, the password masked, nothing made."""
    key_file, sealed, backups = tmp_path / "k", tmp_path / "shop_20250101T000000Z.sql.enc", tmp_path / "b"
    key_file.write_text(KEY + "\n")
    key_file.chmod(0o600)
    sealed.write_bytes(run_in_process(["seal"], b"data", {"ENCPIPE_KEY": KEY})[1])
    if script != "encpipe-backup":
        backups.mkdir()
    metrics = tmp_path / "m.prom"
    words = [{"CONNINFO": conninfo, "KEYFILE": str(key_file), "SEALED": str(sealed), "BACKUPS": str(backups),
              "METRICS": str(metrics)}.get(w, w) for w in args]
    env = clean_env({"PYTHONPATH": str(SCRIPTS.parent), "PGHOST": str(tmp_path / "no-server")})
    done = subprocess.run([str(SCRIPTS / script), *words], stdin=subprocess.DEVNULL, capture_output=True, env=env,
                          cwd=tmp_path, timeout=60)
    said = done.stdout + done.stderr
    assert done.returncode == status, said
    assert CONNINFO_PASSWORD.encode() not in said, said
    assert b"a connection string with a password" in done.stderr and b"***" in done.stderr, said
    assert done.stdout == (b"" if status != 3 else done.stdout.splitlines(keepends=True)[0]), said
    assert not metrics.exists() and (script != "encpipe-backup" or not backups.exists())


@pytest.mark.parametrize("script, args, status, last", [
    ("encpipe-backup", ["--dir", "BACKUPS", "--key-file", "KEYFILE", "shop=1"], 1,
     "encpipe-backup: error: backup of shop=1 failed (status 1): pg_dump exited with status 1; nothing was stored"),
    ("encpipe-prune", ["--keep-last", "1", "--key-file", "KEYFILE", "--database", "shop=1", "BACKUPS"], 66,
     "encpipe-prune: error: BACKUPS: no backup of shop=1 to prune (--allow-empty accepts that)"),
])
def test_a_database_name_holding_an_equals_sign_and_no_password_is_a_name(tmp_path, script, args, status, last):
    """Only --maintenance-db, which psql's -d gets as it is, refuses any connection string:
    elsewhere a name holding `=` is a database's name (pg_dump gets it as PGDATABASE,
    which libpq never reads as a connection string), as PostgreSQL allows."""
    key_file, backups = tmp_path / "k", tmp_path / "b"
    key_file.write_text(KEY + "\n")
    key_file.chmod(0o600)
    if script != "encpipe-backup":
        backups.mkdir()
    words = [{"KEYFILE": str(key_file), "BACKUPS": str(backups)}.get(w, w) for w in args]
    env = clean_env({"PYTHONPATH": str(SCRIPTS.parent), "PGHOST": str(tmp_path / "no-server")})
    done = subprocess.run([str(SCRIPTS / script), *words], stdin=subprocess.DEVNULL, capture_output=True, env=env,
                          cwd=tmp_path, timeout=60)
    err = done.stderr.decode()
    last = last.replace("BACKUPS", str(backups))
    assert (done.returncode, done.stdout, err.splitlines()[-1]) == (status, b"", last), err


@pytest.mark.parametrize("argv", [["pubkey", "FILE"], ["keyid", "--sign-key", "FILE"],
                                  ["keyid", "--signer-file", "FILE"], ["seal", "--key-file", "FILE"]])
def test_a_key_file_that_exists_is_named_even_when_its_name_looks_like_a_passphrase(tmp_path, argv):
    """Only a name that names nothing may be a secret typed in its place: one that names
    a directory (with a space, as a passphrase has) is said as it is."""
    path = tmp_path / "my backup key"
    path.mkdir()
    env = clean_env({"PYTHONPATH": str(SCRIPTS.parent)})
    done = subprocess.run(command(*[str(path) if w == "FILE" else w for w in argv]), stdin=subprocess.DEVNULL,
                          capture_output=True, env=env, cwd=tmp_path, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (66, b"", f"encpipe: error: cannot read {path}: Is a "
                                                                   "directory\n".encode())
