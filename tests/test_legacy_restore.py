"""A backup made by the previous tool from a real PostgreSQL database restores
through scripts/encpipe-restore, with the old BACKUP_ENCRYPTION_KEY setting.

The legacy file is made here in Python, independently of encpipe.legacy,
exactly as the previous tool's encryptBackupFile did: a random salt (unused)
and 16-byte IV, AES-256-GCM over the whole dump, salt | IV | tag | ciphertext.
"""

import hashlib
import os
import shlex
import subprocess
import sys

import pytest
from Crypto.Cipher import AES

from pgcluster import MARKERS, seed_awkward_database

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESTORE = os.path.join(REPO, "scripts", "encpipe-restore")
SOURCE_DB = "legacy_source"
PASSPHRASE = "MyStr0ng!P@ssphrase2025 — old tool"


def old_tool_key(setting):
    """getEncryptionKey() of the previous tool."""
    if len(setting) == 64 and all(c in "0123456789abcdefABCDEF" for c in setting):
        return bytes.fromhex(setting)
    salt = hashlib.sha256(b"ediscovery-backup-salt").digest()
    return hashlib.pbkdf2_hmac("sha256", setting.encode("utf-8"), salt, 100000, 32)


def old_tool_encrypt(plaintext, setting):
    """encryptBackupFile() of the previous tool, on bytes."""
    iv, salt = os.urandom(16), os.urandom(32)
    cipher = AES.new(old_tool_key(setting), AES.MODE_GCM, nonce=iv)
    ciphertext = cipher.encrypt(plaintext)
    return salt + iv + cipher.digest() + ciphertext


def dump(pg, db):
    """pg_dump's plain output, less the per-dump random \\restrict lines."""
    done = subprocess.run([pg.bin("pg_dump"), db], env=pg.env, capture_output=True, check=True)
    lines = done.stdout.split(b"\n")
    return b"\n".join(line for line in lines if not line.startswith((b"\\restrict", b"\\unrestrict")))


def databases(pg):
    return set(pg.psql("SELECT datname FROM pg_database").split())


@pytest.fixture(scope="module")
def legacy_backup(pg, tmp_path_factory):
    """(path of a legacy file of a seeded database, the database's dump)."""
    seed_awkward_database(pg, SOURCE_DB)
    done = subprocess.run([pg.bin("pg_dump"), SOURCE_DB], env=pg.env, capture_output=True, check=True)
    assert all(marker.encode() in done.stdout for marker in MARKERS)
    path = tmp_path_factory.mktemp("legacy") / "ediscovery_backup_2025-11-17_06-25-03-303Z.sql.enc"
    path.write_bytes(old_tool_encrypt(done.stdout, PASSPHRASE))
    path.chmod(0o600)
    assert not any(marker.encode() in path.read_bytes() for marker in MARKERS)
    return str(path), dump(pg, SOURCE_DB)


def restore(pg, *argv, env=None):
    full_env = pg.env
    for name in [n for n in full_env if n.startswith("ENCPIPE") or n == "BACKUP_ENCRYPTION_KEY"]:
        del full_env[name]
    full_env.update(
        ENCPIPE=f"{shlex.quote(sys.executable)} -m encpipe",
        PATH=os.pathsep.join([pg.bindir, full_env["PATH"]]),
        **(env or {}),
    )
    return subprocess.run(["bash", RESTORE, *argv], env=full_env, capture_output=True, text=True, timeout=300)


def test_restore_script_is_there():
    assert os.access(RESTORE, os.X_OK), "scripts/encpipe-restore is missing"


def test_legacy_backup_restores_with_the_old_setting(pg, legacy_backup):
    path, expected = legacy_backup
    done = restore(pg, path, "legacy_restored", env={"BACKUP_ENCRYPTION_KEY": PASSPHRASE})
    assert done.returncode == 0, done.stderr
    assert dump(pg, "legacy_restored") == expected
    pg.dropdb("legacy_restored")


def test_legacy_backup_restores_with_the_derived_key_in_a_key_file(pg, legacy_backup, tmp_path):
    path, expected = legacy_backup
    key_file = tmp_path / "old.key"
    key_file.write_text(old_tool_key(PASSPHRASE).hex() + "\n")
    key_file.chmod(0o600)
    done = restore(pg, "--key-file", str(key_file), path, "legacy_restored_key")
    assert done.returncode == 0, done.stderr
    assert dump(pg, "legacy_restored_key") == expected
    pg.dropdb("legacy_restored_key")


@pytest.mark.parametrize("damage", ["wrong-key", "tampered", "truncated"])
def test_damaged_legacy_backup_touches_no_database(pg, legacy_backup, tmp_path, damage):
    path, expected = legacy_backup
    with open(path, "rb") as f:
        data = bytearray(f.read())
    setting = PASSPHRASE
    if damage == "wrong-key":
        setting = "not the passphrase"
    elif damage == "tampered":
        data[len(data) // 2] ^= 0x20
    else:
        del data[-100:]
    bad = tmp_path / "bad.sql.enc"
    bad.write_bytes(bytes(data))
    before = databases(pg)
    done = restore(pg, str(bad), SOURCE_DB, env={"BACKUP_ENCRYPTION_KEY": setting})
    assert done.returncode in (65, 77), done.stderr
    assert "Traceback" not in done.stderr
    assert databases(pg) == before
    assert dump(pg, SOURCE_DB) == expected
