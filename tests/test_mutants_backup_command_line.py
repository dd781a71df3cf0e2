"""encpipe-backup's command line (pgbackupargs), and the listing scripts' (encpipe.backup's
cli, checkcmd, verifycmd): each case either refuses, with its exit status and its first
line, before anything runs, or goes on. For encpipe-backup a pg_dump on PATH that records
its arguments stands for the server (no cluster: the marker's identifier is not read, a
warning), and a zstd or gzip that records its own before running the real one. A
hand-made mutant of each decision here passed every earlier test (a mutation review)."""

import io
import json
import os
import subprocess
import sys

import pytest

from test_backup_restore import BACKUP, REPO

KEY = "ab" * 32


@pytest.fixture
def stand_ins(tmp_path):
    """(the scripts' environment, with ENCPIPE_KEY and a pg_dump, zstd and gzip that record
    their arguments in tmp_path/NAME.args, the record's directory)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "pg_dump").write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{tmp_path}/pg_dump.args"\necho "SELECT 1;"\n')
    for tool in ("zstd", "gzip"):
        real = next(os.path.join(d, tool) for d in os.environ["PATH"].split(os.pathsep)
                    if os.access(os.path.join(d, tool), os.X_OK))
        (bindir / tool).write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{tmp_path}/{tool}.args"\nexec {real} "$@"\n')
    for tool in bindir.iterdir():
        tool.chmod(0o755)
    env = {"PATH": os.pathsep.join([str(bindir), os.path.dirname(sys.executable), os.environ["PATH"]]),
           "PYTHONPATH": str(REPO), "PGHOST": str(tmp_path / "no-server"), "ENCPIPE_KEY": KEY}
    return env, tmp_path


def backup(env, cwd, *argv):
    return subprocess.run([BACKUP, *map(str, argv)], env=env, cwd=cwd, capture_output=True, stdin=subprocess.DEVNULL,
                          timeout=60)


def refused(done, tmp_path, first, status=64):
    """Refused before anything ran: `status`, nothing on standard output, `first` the first line, no
    pg_dump run, no directory made (the runs here store into tmp_path/b)."""
    assert (done.returncode, done.stdout) == (status, b""), done.stderr
    lines = done.stderr.decode().splitlines()
    assert lines[0] == "encpipe-backup: error: " + first, lines
    assert all(line.startswith("encpipe-backup: hint: ") for line in lines[1:]), lines
    assert not (tmp_path / "pg_dump.args").exists() and not (tmp_path / "b").exists()


def stored(done, tmp_path):
    """A run that went on and stored a backup: its JSON line, and pg_dump's arguments."""
    assert done.returncode == 0, done.stderr
    lines = done.stdout.decode().splitlines()
    assert len(lines) == 1, lines
    return json.loads(lines[0]), (tmp_path / "pg_dump.args").read_text().splitlines()


def args_of(tmp_path, tool):
    return (tmp_path / f"{tool}.args").read_text().splitlines()


@pytest.mark.parametrize("option", ["--dir", "--compress", "--metrics-file", "--keep-last", "--key-file"])
def test_an_option_last_with_no_value_is_64(stand_ins, option):
    """Mutant: no check that a value follows (then a traceback, status 1)."""
    env, tmp_path = stand_ins
    refused(backup(env, tmp_path, "--dir", "b", "shop", option), tmp_path, f"{option} needs a value")


def signing_key(env, path):
    """A new signing key in `path`; its verify key."""
    done = subprocess.run([sys.executable, "-m", "encpipe", "keygen", "--sign", "-o", str(path)], env=env,
                          capture_output=True, check=True)
    return done.stdout.decode().strip()


def test_sign_key_and_signer_may_be_given_twice(stand_ins):
    """Mutants: --sign-key, or --signer, no longer repeatable ("given more than once", 64)."""
    env, tmp_path = stand_ins
    verify_keys = [signing_key(env, tmp_path / name) for name in ("s1", "s2")]
    report, _ = stored(backup(env, tmp_path, "--dir", "b", "--no-globals", "--sign-key", "s1", "--sign-key", "s2",
                              "--signer", verify_keys[0], "--signer", verify_keys[1], "shop"), tmp_path)
    assert report["database"] == "shop"


def test_after_the_end_of_options_the_words_are_pg_dumps_once_dbname_is_given(stand_ins):
    """Mutant: the first word after `--` taken as DBNAME even when DBNAME came before it
    (then the exclusion was the database dumped, and lost for pg_dump)."""
    env, tmp_path = stand_ins
    report, pg_dump = stored(backup(env, tmp_path, "--dir", "b", "--no-globals", "shop", "--", "--exclude-table=audit"),
                             tmp_path)
    assert report["database"] == "shop" and report["filename"].startswith("shop_")
    assert "--exclude-table=audit" in pg_dump and "--dbname=dbname='shop'" in pg_dump, pg_dump


@pytest.mark.parametrize("argv, first", [
    ([], "no DBNAME given"),
    ([".hidden"], "cannot name a file after database .hidden"),
    (["a/b"], "cannot name a file after database a/b"),
    (["--compress-threads", "x", "shop"], "--compress-level and --compress-threads must be whole numbers"),
    (["--compress", "gzip", "--compress-threads", "2", "shop"], "--compress-threads is for zstd"),
    (["--passphrase-fd", "-1", "shop"], "--passphrase-fd must be a number (the value, not shown, may be a passphrase)"),
], ids=lambda a: " ".join(a) if isinstance(a, list) else None)
def test_a_mistake_in_the_command_line_is_64_before_pg_dump(stand_ins, argv, first):
    """Mutants: each refusal dropped (no DBNAME: pg_dump ran for the default database; a
    name with / or a leading dot; --compress-threads not a number: a traceback, 1;
    --compress-threads taken for gzip and not used), or
    --passphrase-fd taking a sign."""
    env, tmp_path = stand_ins
    refused(backup(env, tmp_path, "--dir", "b", *argv), tmp_path, first)


@pytest.mark.parametrize("argv", [
    ["x" * 63],
    ["--compress", "gzip", "--compress-level", "1", "shop"],
    ["--compress-level", "22", "shop"],
    ["--compress-threads", "200", "shop"],
], ids=["63 bytes", "gzip 1", "zstd 22", "200 threads"])
def test_the_last_value_within_a_bound_goes_on(stand_ins, argv):
    """Mutants: a bound moved by one (a 63-byte name, gzip -1, zstd -22, 200 threads
    refused)."""
    env, tmp_path = stand_ins
    report, _ = stored(backup(env, tmp_path, "--dir", "b", "--no-globals", *argv), tmp_path)
    assert report["database"] == argv[-1]


@pytest.mark.parametrize("argv, tool, expected, kind", [
    ([], "zstd", ["-q", "-c", "-3", "-T1"], "sql.zst"),
    (["--compress-level", "19", "--compress-threads", "2"], "zstd", ["-q", "-c", "-19", "-T2"], "sql.zst"),
    (["--compress-level", "20"], "zstd", ["-q", "-c", "--ultra", "-20", "-T1"], "sql.zst"),
    (["--compress", "gzip"], "gzip", ["-c", "-6"], "sql.gz"),
    (["--compress", "gzip", "--compress-level", "9"], "gzip", ["-c", "-9"], "sql.gz"),
], ids=["zstd default", "zstd 19", "zstd 20", "gzip default", "gzip 9"])
def test_the_compressor_runs_at_the_level_and_threads_given_else_its_defaults(stand_ins, argv, tool, expected, kind):
    """Mutants: zstd's default level or threads (3, 1) or gzip's (6) changed, or --ultra
    only from level 21 (zstd -q takes 20 for 19 without it, silently)."""
    env, tmp_path = stand_ins
    report, _ = stored(backup(env, tmp_path, "--dir", "b", "--no-globals", *argv, "shop"), tmp_path)
    assert args_of(tmp_path, tool) == expected and report["filename"].endswith(f".{kind}.enc")


def test_no_key_is_78_before_anything_and_no_failed_run_recorded(stand_ins):
    """A command line with no key is a mistake, not a failed backup. Mutant: no refusal
    in validate (then the run began: DIR's lock, pg_dump's turn, and "backup of shop
    failed (status 78)" recorded in --metrics-file as a failed run)."""
    env, tmp_path = stand_ins
    del env["ENCPIPE_KEY"]
    done = backup(env, tmp_path, "--dir", "b", "--metrics-file", "m.prom", "shop")
    refused(done, tmp_path, "no key configured: refusing to dump without encryption", status=78)
    assert not (tmp_path / "m.prom").exists()


def test_a_dir_that_starts_with_a_dash_is_a_directory_of_that_name(stand_ins):
    """Mutant: DIR kept as given, so that the JSON line's path, which a caller hands on to
    other commands, starts with a dash (an option to them); ./-b/NAME is a path."""
    env, tmp_path = stand_ins
    report, _ = stored(backup(env, tmp_path, "--dir=-b", "--no-globals", "shop"), tmp_path)
    assert os.listdir(tmp_path / "-b") == [report["filename"]]
    assert report["path"] == "./-b/" + report["filename"]


def test_without_zstd_on_path_a_plain_dump_is_stored_uncompressed(stand_ins):
    """Mutant: zstd the default even when PATH has none (then the run fails once pg_dump
    ran: no zstd to start)."""
    env, tmp_path = stand_ins
    bindir = tmp_path / "no-zstd"  # the script's shell and pg_dump, and this Python's directory (no zstd there)
    bindir.mkdir()
    for tool in ("bash", "readlink"):
        (bindir / tool).symlink_to(next(os.path.join(d, tool) for d in os.environ["PATH"].split(os.pathsep)
                                        if os.access(os.path.join(d, tool), os.X_OK)))
    (bindir / "pg_dump").symlink_to(tmp_path / "bin" / "pg_dump")
    env["PATH"] = os.pathsep.join([str(bindir), os.path.dirname(sys.executable)])
    assert not any(os.access(os.path.join(d, "zstd"), os.X_OK) for d in env["PATH"].split(os.pathsep))
    report, _ = stored(backup(env, tmp_path, "--dir", "b", "--no-globals", "shop"), tmp_path)
    assert report["filename"].endswith(".sql.enc")


# --- encpipe-prune, encpipe-verify, encpipe-check (encpipe.backup's cli, in this process) ---


def listing_command(*argv, env=None):
    """encpipe.backup's main: (status, standard output, standard error)."""
    from test_backup_dir import ENV
    from encpipe.backup.cli import main

    out, err = io.BytesIO(), io.StringIO()
    code = main(list(map(str, argv)), stdout=out, stderr=err, env=dict(ENV if env is None else env))
    return code, out.getvalue().decode(), err.getvalue()


def test_a_policy_count_of_19_digits_is_64_18_are_taken(tmp_path):
    """Mutant: 19 digits taken (the bound that keeps a count a 64-bit integer)."""
    code, out, err = listing_command("prune", "--keep-last", "1" * 19, tmp_path)
    assert (code, out) == (64, "")
    assert err.splitlines()[0] == f"encpipe-prune: error: --keep-last must be a whole number from 0, not '{'1' * 19}'"
    code, out, err = listing_command("prune", "--keep-last", "1" * 18, "--allow-empty", tmp_path)
    assert code == 0 and json.loads(out)["policy"] == {"keep_last": int("1" * 18)}, err


def test_verify_of_an_empty_location_and_a_file_that_fails_reports_the_failure(tmp_path):
    """Mutant: "nothing there" (66, nothing printed) even when a file given failed."""
    from test_backup_dir import make_corrupt

    (tmp_path / "empty").mkdir()
    bad = make_corrupt(tmp_path, "shop_20240101T000000Z.sql.zst.enc")
    code, out, err = listing_command("verify", tmp_path / "empty", bad)
    assert code == 65, err
    assert json.loads(out)["failed"] == 1
    assert err.splitlines()[-1] == f"encpipe-verify: error: {tmp_path / 'empty'}: no backup to verify (--allow-empty " \
                                   "accepts that)"


def test_a_word_after_the_end_of_options_is_no_help(tmp_path):
    """`encpipe-verify -- -h`: a PATH named -h (not there: 66). Mutant: help_asked looked past
    `--` (the help, 0, for a verification)."""
    code, out, err = listing_command("verify", "--", "-h")
    assert (code, out) == (66, "")
    assert err.splitlines() == ["encpipe-verify: error: cannot read -h: No such file or directory"]


@pytest.mark.parametrize("option, value", [
    ("--key-file", "k"), ("--key-command", "cat k"), ("--identity", "id"), ("--passphrase-file", "p"),
    ("--passphrase-fd", "0"), ("--passphrase-command", "cat p"), ("--passphrase", None), ("-p", None),
    ("--signer", "encpipesign1x"), ("--signer-file", "s"),
])
def test_check_without_verify_refuses_every_key_option(tmp_path, option, value):
    """Mutants: one of them left out of KEY_OPTIONS (then taken and never read: a check the
    operator believes authenticates reads names only)."""
    code, out, err = listing_command("check", "--max-age", "24", option, *([value] if value else []), tmp_path)
    said = f"--{option.lstrip('-')}" if option != "-p" else "--passphrase"
    line = f"{said} is read only with --verify: without it, check reads names and headers only"
    assert (code, out) == (3, f"UNKNOWN: {line}\n"), err
    assert err.splitlines()[0] == f"encpipe-check: error: {line}"


@pytest.mark.parametrize("argv", [["--max-age", "1000000"], ["--max-age", "24", "-t", "1000000"]],
                         ids=["max-age", "timeout"])
def test_check_takes_a_million_as_a_bound(tmp_path, argv):
    """Mutants: --max-age or --timeout refused at their bound (>= rather than >)."""
    code, out, err = listing_command("check", *argv, tmp_path)
    assert (code, out) == (2, "CRITICAL: no backups found\n"), err


@pytest.mark.parametrize("command", ["list", "verify", "check"])
def test_a_dir_given_on_the_command_line_wins_over_encpipe_backup_dir(tmp_path, command):
    """Mutant: $ENCPIPE_BACKUP_DIR before DIR (then the other location was read, and
    reported as if it were DIR)."""
    from test_backup_dir import ENV, make_valid

    given, other = tmp_path / "given", tmp_path / "other"
    given.mkdir()
    other.mkdir()
    make_valid(given, "shop_20240101T000000Z.sql.zst.enc")
    make_valid(other, "else_20240101T000000Z.sql.zst.enc")
    extra = ["--max-age", "1000000"] if command == "check" else []
    code, out, err = listing_command(command, *extra, given, env={**ENV, "ENCPIPE_BACKUP_DIR": str(other)})
    assert code == 0, err
    assert "shop" in out and "else" not in out, out


@pytest.mark.parametrize("argv, first", [
    (["check", "--max-age=24", "--bogus", "DIR"], "unknown option --bogus"),
    (["prune", "--keep-last=1", "--bogus", "DIR"], "unknown option --bogus"),
    (["verify", "-", "--dir", "DIR"], "invalid arguments for verify"),
], ids=["--max-age=24 --bogus", "--keep-last=1 --bogus", "- --dir"])
def test_the_usage_error_names_what_is_wrong(tmp_path, argv, first):
    """Mutants: the word after an option given with =VALUE skipped as its value (--bogus
    not named); a lone - taken for an unknown option; docopt's own first line ("Usage:")
    taken for the message."""
    name = argv[0]
    code, out, err = listing_command(*[tmp_path if a == "DIR" else a for a in argv])
    assert err.splitlines()[0] == f"encpipe-{name}: error: {first}", err
    assert (code, out) == ((3, f"UNKNOWN: {first}\n") if name == "check" else (64, ""))


CREDENTIAL = "offsite,password=hunter2:b"


@pytest.mark.parametrize("argv, env_dir, first", [
    (["list"], CREDENTIAL, "ENCPIPE_BACKUP_DIR: the remote's connection string gives password: a credential would be "
                           "on rclone's command line, where other users can read it"),
    (["verify", "DIR", CREDENTIAL], None, "PATH: the remote's connection string gives password: a credential would "
                                          "be on rclone's command line, where other users can read it"),
], ids=["ENCPIPE_BACKUP_DIR", "PATH"])
def test_a_credential_in_a_place_is_64_and_not_shown(tmp_path, argv, env_dir, first):
    """Mutants: run()'s refusal of a remote's credential in $ENCPIPE_BACKUP_DIR, or in a
    PATH, dropped (then it went on rclone's command line, where other users read it)."""
    from test_backup_dir import ENV

    env = {**ENV, **({"ENCPIPE_BACKUP_DIR": env_dir} if env_dir else {})}
    code, out, err = listing_command(*[tmp_path if a == "DIR" else a for a in argv], env=env)
    assert (code, out) == (64, ""), err
    assert err.splitlines()[0] == f"encpipe-{argv[0]}: error: {first}"
    assert "hunter2" not in err


def test_with_to_alone_nothing_is_stored_locally(stand_ins):
    """--to without --dir: the remote only, even with ENCPIPE_BACKUP_DIR set (README: the
    default DIR when no --to). Mutant: the local default taken too (then a second copy,
    and a directory, where the operator asked for none)."""
    env, tmp_path = stand_ins
    (tmp_path / "remote").mkdir()
    env.update(RCLONE_CONFIG_X_TYPE="local", HOME=str(tmp_path), ENCPIPE_BACKUP_DIR=str(tmp_path / "local"))
    report, _ = stored(backup(env, tmp_path, "--to", f"x:{tmp_path / 'remote'}", "--no-globals", "shop"), tmp_path)
    assert os.listdir(tmp_path / "remote") == [report["filename"]]
    assert report["path"] == report["remote"] == f"x:{tmp_path / 'remote' / report['filename']}"
    assert not (tmp_path / "local").exists() and not (tmp_path / "backups").exists()


def test_prune_says_a_held_file_it_cannot_put_back_even_with_no_backup_of_the_database_given(tmp_path):
    """A killed prune's held file whose name is another file's by now is an error (74), said
    whatever --database names. Mutant: "errors" not counted, so that a location with no
    backup of that database said "no backup of other to prune" (66, nothing printed)."""
    from test_concurrent_runs import _with_a_hold
    from test_backup_dir import make_valid
    from encpipe.backup.removal import HOLD_PREFIX

    d, newest, old, hold = _with_a_hold(tmp_path)
    make_valid(hold, newest)
    code, out, err = listing_command("prune", "--keep-last", "1", "--database", "other", d)
    held = f"{HOLD_PREFIX}0123456789abcdef/{newest}"
    assert code == 74, err
    report = json.loads(out)
    assert (report["removed"], report["kept"], report["left"]) == ([], [], [])
    assert [e["filename"] for e in report["errors"]] == [held]
    assert err.splitlines()[-1].startswith(f"encpipe-prune: error: {held}: left by a killed prune, cannot be put back")


@pytest.mark.parametrize("argv, first", [([], "no command given"), (["bogus"], "unknown command 'bogus'")],
                         ids=["none", "bogus"])
def test_the_module_names_a_missing_or_unknown_command(argv, first):
    """Mutant: docopt's own first line ("Usage:") taken for the message."""
    code, out, err = listing_command(*argv)
    assert (code, out) == (64, "")
    assert err.splitlines() == [f"encpipe.backup: error: {first}",
                                "encpipe.backup: hint: see python3 -I -m encpipe.backup --help"]
