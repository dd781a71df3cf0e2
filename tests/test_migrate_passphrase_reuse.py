"""encpipe-migrate sealing the new files under the passphrase the old files were
made with. Its holder (a passphrase slot of the new files, an escrow say) could
make a file of the previous tool that the run converts into one the new raw key
authenticates: a file the key's holder takes for their own, made by another slot's
holder. And a file of the previous tool under it (kept with --keep-originals, or
any copy) lets anyone guess it at the cost of one PBKDF2 (100,000 iterations, a
salt the same for every user of that tool). Where the options show it, migrate
refuses, 64, before any file is read (before, a warning, and it migrated)."""

import io
import json
import os
import subprocess
import sys

import pytest

from encpipe import legacy

HERE = os.path.dirname(os.path.abspath(__file__))
MIGRATE = os.path.join(os.path.dirname(HERE), "scripts", "encpipe-migrate")
OLD = "correct horse battery staple"
NEW_KEY = "5e" * 32
REFUSAL = ("encpipe-migrate: error: the new files would be sealed under a passphrase also tried on the old files "
           "(%s): its holder could make a file of the previous tool that this run converts into one the new key "
           "authenticates, and a file made with it lets it be guessed at the cost of its PBKDF2; nothing was "
           "converted\nencpipe-migrate: hint: seal the new files under a new passphrase or a key\n")


def run(directory, *argv, env=None):
    done = subprocess.run([sys.executable, MIGRATE, "--work-factor", "10", *argv, str(directory)],
                          capture_output=True, text=True, timeout=120,
                          env={"PATH": os.environ["PATH"], "PYTHONPATH": os.path.dirname(HERE), **(env or {})})
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines()], done.stderr


@pytest.fixture
def backups(tmp_path):
    directory = tmp_path / "backups"
    directory.mkdir(mode=0o700)
    with open(directory / "shop_backup_2025-11-17.sql.enc", "wb") as f:
        legacy.seal_legacy(io.BytesIO(b"SELECT 1;\n" * 100), f, legacy.passphrase_key(OLD))
    return directory


def secret(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    path.chmod(0o600)
    return str(path)


def _untouched(backups):
    with open(backups / "shop_backup_2025-11-17.sql.enc", "rb") as f:
        assert not f.read(7) == b"ENCPIPE"
    assert sorted(os.listdir(backups)) == ["shop_backup_2025-11-17.sql.enc"]


def test_the_old_passphrase_from_the_environment_for_the_new_files_too_is_refused(backups):
    status, lines, err = run(backups, env={"ENCPIPE_PASSPHRASE": OLD, "ENCPIPE_KEY": NEW_KEY})
    assert (status, lines) == (64, [])
    assert err == REFUSAL % "ENCPIPE_PASSPHRASE"
    _untouched(backups)


def test_one_passphrase_file_for_both_is_refused(backups, tmp_path):
    path = secret(tmp_path, "pass", OLD + "\n")
    status, lines, err = run(backups, "--legacy-passphrase-file", path, "--passphrase-file", path)
    assert (status, lines) == (64, [])
    assert err == REFUSAL % f"--legacy-passphrase-file and --passphrase-file {path}"
    _untouched(backups)


@pytest.mark.parametrize("case", ["new key", "new passphrase file"])
def test_a_new_key_or_another_passphrase_file_is_not(backups, tmp_path, case):
    if case == "new key":
        argv, env = [], {"BACKUP_ENCRYPTION_KEY": OLD, "ENCPIPE_KEY": NEW_KEY}
    else:
        argv = ["--legacy-passphrase-file", secret(tmp_path, "old", OLD),
                "--passphrase-file", secret(tmp_path, "new", "another passphrase")]
        env = {}
    status, lines, err = run(backups, *argv, env=env)
    assert (status, [line["status"] for line in lines], err) == (0, ["migrated"], "")
