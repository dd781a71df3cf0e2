"""encpipe-restore and encpipe-migrate check what their encpipe children take from
the environment before any work: an ENCPIPE that cannot be run is 66, and an
ENCPIPE_KEY the children would read (no key option given) that is malformed is
64, each once and one line, with nothing on stdout: not once per file
(migrate), nor after the server was reached (restore; PGHOST names no server
here, so reaching it is psql's error and 1). Key commands are not run ahead."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from cliutil import assert_one_line_error
from fuzz.craft import clean_env

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = REPO / "scripts"
LEGACY = REPO / "tests" / "vectors" / "legacy"
KEY = "3e" * 32
SHORT_KEY = KEY[:62]
OLD_KEY = "ab" * 32
WAIT = 60
MISSING = "/nonexistent/encpipe"


def _script(name, *args, env):
    full = clean_env({"PYTHONPATH": str(REPO), "PGHOST": "/nonexistent", **env})
    return subprocess.run([str(SCRIPTS / name), *args], capture_output=True, env=full, timeout=WAIT)


@pytest.fixture()
def key_file(tmp_path):
    path = tmp_path / "k.key"
    path.write_text(KEY + "\n")
    path.chmod(0o600)
    return str(path)


@pytest.mark.parametrize("env, args, status, message", [
    ({"ENCPIPE_KEY": SHORT_KEY}, [], 64, "ENCPIPE_KEY: a key must be 64 hex characters, not 62"),
    ({"ENCPIPE_KEY": "", "ENCPIPE_PASSPHRASE": "words"}, [], 64, "ENCPIPE_KEY: a key must be 64 hex characters, not 0"),
    ({"ENCPIPE_KEY": KEY, "ENCPIPE": MISSING}, [], 66, f"cannot run encpipe: {MISSING}"),
    ({"ENCPIPE_PASSPHRASE": "words", "ENCPIPE": MISSING}, [], 66, f"cannot run encpipe: {MISSING}"),
    ({"ENCPIPE": MISSING}, ["--key-command", "cat KEYFILE"], 66, f"cannot run encpipe: {MISSING}"),
], ids=["ENCPIPE_KEY malformed", "ENCPIPE_KEY empty", "ENCPIPE missing", "passphrase, ENCPIPE missing",
        "key command, ENCPIPE missing"])
def test_restore_checks_the_environment_before_the_server(backup_file, key_file, env, args, status, message):
    args = [key_file if a == "KEYFILE" else a.replace("KEYFILE", key_file) for a in args]
    done = _script("encpipe-restore", *args, backup_file, "shop", env=env)
    assert (done.returncode, done.stdout) == (status, b""), done.stderr
    assert_one_line_error(done.stderr, "encpipe-restore")
    assert done.stderr.decode().startswith(f"encpipe-restore: error: {message}\n"), done.stderr


def test_restore_with_a_key_option_does_not_read_encpipe_key(backup_file, key_file):
    """A key option given, the children never read ENCPIPE_KEY: a malformed one is not refused
    (the run goes on to the server, which is not there: psql's error, 1)."""
    done = _script("encpipe-restore", "--no-globals", "--key-file", key_file, backup_file, "shop",
                   env={"ENCPIPE_KEY": SHORT_KEY})
    assert (done.returncode, done.stdout) == (1, b""), done.stderr
    assert b"ENCPIPE_KEY" not in done.stderr and b"psql" in done.stderr


def test_restore_does_not_run_a_key_command_ahead(tmp_path, backup_file):
    ran = tmp_path / "ran"
    done = _script("encpipe-restore", "--no-globals", "--key-command", f"echo >> {ran}; echo {KEY}", backup_file,
                   "shop", env={})
    assert done.returncode == 1 and b"psql" in done.stderr, done.stderr
    assert not ran.exists()


@pytest.fixture()
def legacy_dir(tmp_path):
    folder = tmp_path / "backups"
    folder.mkdir(mode=0o700)
    for name in ("hex-key.sql.enc", "passphrase.sql.enc", "wrong-key.sql.enc"):
        shutil.copyfile(LEGACY / name, folder / name)
    return folder


def _contents(folder):
    return {name: (folder / name).read_bytes() for name in sorted(os.listdir(folder))}


@pytest.mark.parametrize("env, args, status, message", [
    ({"ENCPIPE_KEY": SHORT_KEY, "BACKUP_ENCRYPTION_KEY": OLD_KEY}, [], 64,
     "ENCPIPE_KEY: a key must be 64 hex characters, not 62"),
    ({"ENCPIPE_KEY": KEY, "BACKUP_ENCRYPTION_KEY": OLD_KEY, "ENCPIPE": MISSING}, [], 66,
     f"cannot run encpipe: {MISSING}"),
    ({"ENCPIPE_PASSPHRASE": "words", "BACKUP_ENCRYPTION_KEY": OLD_KEY, "ENCPIPE": MISSING}, [], 66,
     f"cannot run encpipe: {MISSING}"),
    ({"BACKUP_ENCRYPTION_KEY": OLD_KEY, "ENCPIPE": MISSING}, ["--key-command", f"echo {KEY}"], 66,
     f"cannot run encpipe: {MISSING}"),
    ({"BACKUP_ENCRYPTION_KEY": OLD_KEY, "ENCPIPE": "DIRECTORY"}, ["--key-command", f"echo {KEY}"], 66,
     "cannot run encpipe: DIRECTORY"),
], ids=["ENCPIPE_KEY malformed", "ENCPIPE missing", "passphrase, ENCPIPE missing", "key command, ENCPIPE missing",
        "key command, ENCPIPE a directory"])
def test_migrate_checks_the_environment_before_any_file(tmp_path, legacy_dir, env, args, status, message):
    before = _contents(legacy_dir)
    env = {k: str(tmp_path) if v == "DIRECTORY" else v for k, v in env.items()}
    done = _script("encpipe-migrate", *args, str(legacy_dir), env=env)
    assert (done.returncode, done.stdout) == (status, b""), done.stderr
    assert_one_line_error(done.stderr, "encpipe-migrate")
    assert done.stderr.decode() == f"encpipe-migrate: error: {message.replace('DIRECTORY', str(tmp_path))}\n"
    assert _contents(legacy_dir) == before


def test_migrate_refuses_an_empty_encpipe_key_its_children_would_read_once(legacy_dir, key_file):
    """ENCPIPE_KEY set but empty, no option for the old files: each `open --legacy` reads it
    and refuses it (64). Before, the check ahead took empty for unset, so the run went on
    and every legacy file failed with that same error, one line each."""
    before = _contents(legacy_dir)
    done = _script("encpipe-migrate", "--key-file", key_file, str(legacy_dir),
                   env={"ENCPIPE_KEY": "", "BACKUP_ENCRYPTION_KEY": OLD_KEY})
    assert (done.returncode, done.stdout) == (64, b""), done.stderr
    assert done.stderr.decode() == "encpipe-migrate: error: ENCPIPE_KEY: a key must be 64 hex characters, not 0\n"
    assert _contents(legacy_dir) == before
