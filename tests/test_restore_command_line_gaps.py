"""encpipe-restore's command line and its early refusals (a mutation review of pgcli.parse
and the start of Run.main): each case here either refuses, 64 and one line, before any
psql runs, or goes on to the server (a psql that records its arguments stands for it).
A hand-made mutant of the parser or of the form dispatch passed every earlier test."""

import os
import subprocess
import sys

import pytest

from test_backup_restore import RESTORE
from test_restore_maintenance_db import KEY, psql_recorder

FILE = "shop_20250101T000000Z.sql.enc"


@pytest.fixture
def fake_psql(tmp_path):
    """psql_recorder's (environment, record), and a sealed FILE in tmp_path, the working directory."""
    env, log = psql_recorder(tmp_path)
    sealed = subprocess.run([sys.executable, "-m", "encpipe", "seal"], input=b"SELECT 1;\n", env=env,
                            capture_output=True, check=True).stdout
    (tmp_path / FILE).write_bytes(sealed)
    return env, log


def restore(env, cwd, *argv):
    return subprocess.run([RESTORE, *argv], env=env, cwd=cwd, capture_output=True, stdin=subprocess.DEVNULL,
                          timeout=60)


def refused(done, log, first):
    assert (done.returncode, done.stdout) == (64, b""), done.stderr
    lines = done.stderr.decode().splitlines()
    assert lines[0] == "encpipe-restore: error: " + first, lines
    assert len(lines) == 2 and lines[1].startswith("encpipe-restore: hint: "), lines
    assert not log.exists()  # no psql ran


def went_on(done, log):
    """Not refused by the command line: the run reached the server (the stand-in psql)."""
    assert done.returncode not in (0, 64) and done.stdout == b"", done.stderr
    assert log.exists(), done.stderr


PSQL_C = "psql option -c (-c, --command) is not allowed: only the dump is run"


@pytest.mark.parametrize("argv", [
    ["--", FILE, "shop", "-c", "x"],
    ["--", FILE, "shop", "--", "-c", "x"],
    [FILE, "--", "shop", "-c", "x"],
    [FILE, "shop", "--", "-c", "x"],
], ids=["-- FILE DB OPT", "-- FILE DB -- OPT", "FILE -- DB OPT", "FILE DB -- OPT"])
def test_after_the_end_of_options_two_words_are_file_and_dbname_the_rest_the_tools(fake_psql, tmp_path, argv):
    """Mutants: `--` took three positional words (then "too many arguments: '-c'"), or kept
    a second `--` among the tool's options (then "psql argument -- is not allowed")."""
    env, log = fake_psql
    refused(restore(env, tmp_path, *argv), log, PSQL_C)


def test_a_second_end_of_options_is_not_a_dbname(fake_psql, tmp_path):
    """`-- FILE --`: DBNAME left out. A mutant read the second `--` as DBNAME and went on to
    restore into a database named `--`."""
    env, log = fake_psql
    refused(restore(env, tmp_path, "--", FILE, "--"), log, "need FILE and DBNAME")


@pytest.mark.parametrize("flag", ["--drop-old", "--terminate-connections", "--no-globals", "--no-create-roles",
                                  "--allow-unrestricted-psql", "--progress", "-p", "--allow-unauthenticated"])
def test_the_drop_form_refuses_a_restores_flag(fake_psql, tmp_path, flag):
    """tests/test_restore_option_claims.py gave each flag beside an option with a value
    (--key-file, --role), which was refused first: a mutant that recorded no flag's name
    took `--drop-pre-restore-older-than 7 --drop-old shop` for the drop form and dropped."""
    env, log = fake_psql
    refused(restore(env, tmp_path, "--drop-pre-restore-older-than", "7", flag, "shop"), log,
            f"{flag} is a restore's option: --drop-pre-restore-older-than DAYS [DBNAME] alone only drops copies "
            "(a restore takes FILE DBNAME)")


@pytest.mark.parametrize("option", ["--signer", "--globals", "--threads"])
def test_the_drop_form_refuses_a_restores_option_with_a_value(fake_psql, tmp_path, option):
    env, log = fake_psql
    value = {"--globals": "g.enc", "--threads": "2"}.get(option)
    if option == "--signer":
        value = subprocess.run([sys.executable, "-m", "encpipe", "keygen", "--sign", "-o", str(tmp_path / "s")],
                               env=env, capture_output=True, check=True).stdout.decode().strip()
    refused(restore(env, tmp_path, "--drop-pre-restore-older-than", "7", option, value, "shop"), log,
            f"{option} is a restore's option: --drop-pre-restore-older-than DAYS [DBNAME] alone only drops copies "
            "(a restore takes FILE DBNAME)")


@pytest.mark.parametrize("option", ["--maintenance-db", "--role", "--globals", "--signer-file"])
def test_an_empty_value_is_refused_not_taken_for_the_default(fake_psql, tmp_path, option):
    """`--maintenance-db ""` (an unset variable) would be postgres, `--role ""` the connecting
    user, `--globals ""` the default globals file: a mutant that dropped the empty-value check
    went on to the server with the default."""
    env, log = fake_psql
    refused(restore(env, tmp_path, option, "", FILE, "shop"), log, f"{option} needs a value, not an empty one")


def test_an_inline_value_as_the_last_argument_is_a_value(fake_psql, tmp_path):
    """`--maintenance-db=DB` last: its value is inline, none is needed after it (a mutant
    said "--maintenance-db needs a value")."""
    env, log = fake_psql
    refused(restore(env, tmp_path, FILE, "postgres", "--maintenance-db=postgres"), log,
            "--maintenance-db must not be postgres, the database restored")


@pytest.mark.parametrize("flag", ["--drop-old=no", "--no-globals=false", "--terminate-connections=0",
                                  "--allow-unauthenticated=no"])
def test_a_flag_given_a_value_is_an_unknown_option(fake_psql, tmp_path, flag):
    """`--drop-old=no` reads as "do not drop": a mutant took it for --drop-old."""
    env, log = fake_psql
    refused(restore(env, tmp_path, flag, FILE, "shop"), log,
            "unknown option %s... (the rest not shown)" % flag.partition("=")[0])


def test_a_single_dash_option_is_unknown_not_a_file(fake_psql, tmp_path):
    env, log = fake_psql
    refused(restore(env, tmp_path, "-x", FILE, "shop"), log, "unknown option -x")


def test_a_lone_dash_is_a_name_not_an_option(fake_psql, tmp_path):
    """`-` is an argument (here DBNAME), as for encpipe: a mutant refused it as an option."""
    env, log = fake_psql
    went_on(restore(env, tmp_path, FILE, "-"), log)


def test_a_signer_of_spaces_is_named_as_no_verify_key(fake_psql, tmp_path):
    env, log = fake_psql
    refused(restore(env, tmp_path, "--signer", " ", FILE, "shop"), log, "--signer needs a verify key (encpipesign1...)")


def test_a_passphrase_fd_that_is_not_a_number_is_not_shown(fake_psql, tmp_path):
    env, log = fake_psql
    done = restore(env, tmp_path, "--passphrase-fd", "hunter2", FILE, "shop")
    refused(done, log, "--passphrase-fd must be a number (the value, not shown, may be a passphrase)")
    assert b"hunter2" not in done.stderr


@pytest.mark.parametrize("argv, first", [
    (["--globals", "g.enc", "--no-globals"], "--no-globals reads no globals file: give --globals FILE or "
                                             "--no-globals, not both"),
    (["--no-create-roles", "--no-globals"], "--no-globals reads no globals file, so it creates no role: give one "
                                            "of them"),
])
def test_no_globals_with_an_option_about_the_globals_file_is_refused_before_the_server(fake_psql, tmp_path, argv,
                                                                                      first):
    env, log = fake_psql
    refused(restore(env, tmp_path, *argv, FILE, "shop"), log, first)


@pytest.mark.parametrize("option", ["--key-file", "--identity", "--passphrase-file", "--signer-file"])
def test_a_key_file_another_user_could_replace_is_73_before_the_server(fake_psql, tmp_path, option):
    """Each of pgcli.KEY_FILES judged before it is read (tests/test_key_places.py shows it
    on a live server only); with --allow-shared-dir the run goes on."""
    env, log = fake_psql
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # any user may replace what is in it
    key = shared / "key"
    key.write_text(KEY + "\n")
    key.chmod(0o600)
    done = restore(env, tmp_path, option, str(key), FILE, "shop")
    assert (done.returncode, done.stdout) == (73, b""), done.stderr
    lines = done.stderr.decode().splitlines()
    assert lines[0].startswith("encpipe-restore: error: ") and str(key) in lines[0], lines
    assert "--allow-shared-dir" in done.stderr.decode()
    assert not log.exists()
    if option == "--key-file":
        went_on(restore(env, tmp_path, option, str(key), "--allow-shared-dir", FILE, "shop"), log)


def test_list_pre_restore_with_tool_options_is_refused(fake_psql, tmp_path):
    """`--list-pre-restore -- -- -O`: options for pg_restore, with no FILE (a mutant listed)."""
    env, log = fake_psql
    refused(restore(env, tmp_path, "--list-pre-restore", "--", "--", "-O"), log,
            "--list-pre-restore lists only: it takes no FILE, DBNAME or --drop-pre-restore-older-than")


@pytest.mark.parametrize("argv, first", [
    (["--drop-pre-restore-older-than", "7", FILE, "postgres"],
     "restoring postgres needs another --maintenance-db (its default, postgres, is the database restored)"),
    (["--drop-pre-restore-older-than", "7", "shop", "--", "--", "-O"], "need FILE and DBNAME"),
])
def test_the_drop_days_with_a_restores_arguments_is_a_restore(fake_psql, tmp_path, argv, first):
    """Two positional words, or pass-through options, make a restore (which drops old copies
    after it): a mutant took `--drop-pre-restore-older-than 7 FILE DB` for the drop form of
    FILE's name, or dropped ignoring the tool's options."""
    env, log = fake_psql
    refused(restore(env, tmp_path, *argv), log, first)


@pytest.mark.parametrize("argv", [[FILE, "ab" * 32], ["--drop-pre-restore-older-than", "7", "ab" * 32]],
                         ids=["restore", "drop"])
def test_a_key_pasted_as_dbname_is_refused_and_not_shown(fake_psql, tmp_path, argv):
    env, log = fake_psql
    done = restore(env, tmp_path, *argv)
    refused(done, log, "DBNAME: a raw key (a secret, not shown), not a database name")
    assert b"abab" not in done.stderr


def test_a_signer_file_that_cannot_be_read_is_66_one_without_a_key_64(fake_psql, tmp_path):
    env, log = fake_psql
    done = restore(env, tmp_path, "--signer-file", str(tmp_path / "missing"), FILE, "shop")
    assert (done.returncode, done.stdout) == (66, b""), done.stderr
    assert done.stderr.decode().splitlines() == [
        f"encpipe-restore: error: signer file cannot read {tmp_path / 'missing'}: No such file or directory"]
    assert not log.exists()
    (tmp_path / "empty").write_text("")
    (tmp_path / "empty").chmod(0o600)
    refused(restore(env, tmp_path, "--signer-file", str(tmp_path / "empty"), FILE, "shop"), log,
            f"signer file {tmp_path / 'empty'}: no verify key found")


def test_drop_days_at_most_a_million(fake_psql, tmp_path):
    """README: DAYS, a number of days; more than 1000000 is 64 (as 'inf' is), 1000000 is one."""
    env, log = fake_psql
    refused(restore(env, tmp_path, "--drop-pre-restore-older-than", "1000000.5", FILE, "shop"), log,
            "--drop-pre-restore-older-than must be a number of days, not '1000000.5'")
    went_on(restore(env, tmp_path, "--drop-pre-restore-older-than", "1000000", FILE, "shop"), log)


def test_a_third_positional_word_is_refused_and_a_key_there_not_shown(fake_psql, tmp_path):
    env, log = fake_psql
    refused(restore(env, tmp_path, FILE, "shop", "extra"), log, "too many arguments: 'extra'")
    done = restore(env, tmp_path, FILE, "shop", "ab" * 32)
    assert (done.returncode, done.stdout) == (64, b"") and not log.exists(), done.stderr
    assert b"too many arguments" in done.stderr and b"abab" not in done.stderr


def test_a_restores_drop_days_are_checked_before_the_server(fake_psql, tmp_path):
    """Before the restore, not after it when its old copies are dropped."""
    env, log = fake_psql
    refused(restore(env, tmp_path, "--drop-pre-restore-older-than", "nan", FILE, "shop"), log,
            "--drop-pre-restore-older-than must be a number of days, not 'nan'")


@pytest.mark.parametrize("name, fits", [("s" * 63, True), ("\u00e9" * 32, False), ("s" * 64, False)],
                         ids=["63 bytes", "32 two-byte characters", "64 bytes"])
def test_a_dbname_is_measured_in_bytes_up_to_63(fake_psql, tmp_path, name, fits):
    env, log = fake_psql
    done = restore(env, tmp_path, FILE, name)
    if fits:
        went_on(done, log)
    else:
        refused(done, log, f"database name {name} is longer than PostgreSQL's 63 bytes; nothing was changed")


def test_a_links_tool_options_are_judged_by_its_targets_name(fake_psql, tmp_path):
    """A link named like a plain dump to a custom archive (.dump.enc): pg_restore's -O is
    judged once it is open, by the target's name; a mutant judged the link's name first
    (psql takes no -O: 64)."""
    env, log = fake_psql
    os.rename(tmp_path / FILE, tmp_path / "shop_20250101T000000Z.dump.enc")
    os.symlink("shop_20250101T000000Z.dump.enc", tmp_path / "latest.sql.enc")
    went_on(restore(env, tmp_path, "latest.sql.enc", "shop", "--", "-O"), log)
