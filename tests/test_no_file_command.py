"""No process encpipe starts inherits its secrets unasked: pycryptodome's ctypes
backend (the one encpipe chooses, and the only one without cffi) asked
platform.architecture() before it loaded a library, which ran the `file` command
PATH finds with the whole environment: ENCPIPE_PASSPHRASE, ENCPIPE_KEY, the
previous tool's key, PGPASSWORD, a vault token. Here a `file` first on PATH
records that it ran; it never does (processguard.no_file_command)."""

import os
import subprocess
import sys

import pytest

from test_backup_restore import REPO, python_env

KEY = "11" * 32


@pytest.fixture
def watched(tmp_path):
    """(an environment whose PATH starts with a `file` that records its run, the record's path)."""
    bin_dir, record = tmp_path / "bin", tmp_path / "file-ran"
    bin_dir.mkdir()
    (bin_dir / "file").write_text(f"#!/bin/sh\nenv > {record}\necho 'ELF 64-bit LSB executable'\n")
    (bin_dir / "file").chmod(0o755)
    no_cffi = tmp_path / "no_cffi"  # as on an installation without it: pycryptodome takes ctypes whoever runs
    no_cffi.mkdir()
    (no_cffi / "cffi.py").write_text("raise ImportError('not installed here')\n")
    env = python_env()
    env.update(PATH=f"{bin_dir}{os.pathsep}{env['PATH']}", PGPASSWORD="pg-secret", VAULT_TOKEN="vault-secret",
               PYTHONPATH=f"{no_cffi}{os.pathsep}{REPO}")
    return env, record


def encpipe(env, *argv, data=b"", **extra):
    return subprocess.run([sys.executable, "-m", "encpipe", *argv], input=data, capture_output=True,
                          env={**env, **extra}, timeout=120)


@pytest.mark.parametrize("cipher", ["pycryptodome", "cryptography"])
def test_seal_and_open_run_no_file_command(watched, cipher):
    env, record = watched
    env = {**env, "ENCPIPE_CIPHER": cipher}
    sealed = encpipe(env, "seal", "--work-factor", "10", data=b"x\n", ENCPIPE_PASSPHRASE="a passphrase")
    assert sealed.returncode == 0, sealed.stderr
    opened = encpipe(env, "open", data=sealed.stdout, ENCPIPE_PASSPHRASE="a passphrase")
    assert (opened.returncode, opened.stdout) == (0, b"x\n"), opened.stderr
    raw = encpipe(env, "seal", data=b"y\n", ENCPIPE_KEY=KEY)
    assert raw.returncode == 0, raw.stderr
    legacy = encpipe(env, "open", "--legacy", data=b"\0" * 64, BACKUP_ENCRYPTION_KEY="the old tool's key")
    assert legacy.returncode == 77, legacy.stderr  # no key authenticates zeros
    assert not record.exists(), record.read_text()


def test_the_scripts_run_no_file_command(watched, tmp_path):
    env, record = watched
    d = tmp_path / "backups"
    d.mkdir(mode=0o700)
    sealed = encpipe(env, "seal", "-o", str(d / "shop_20260101T000000Z.sql.enc"), data=b"select 1;\n",
                     ENCPIPE_KEY=KEY, ENCPIPE_CIPHER="pycryptodome")
    assert sealed.returncode == 0, sealed.stderr
    for argv in ([str(REPO / "scripts" / "encpipe-verify"), str(d)],
                 [sys.executable, "-m", "encpipe.backup", "verify", "--dir", str(d)],
                 [sys.executable, "-m", "encpipe.launch", "encpipe-verify", "encpipe.backup.cli", "verify", str(d)]):
        done = subprocess.run(argv, env={**env, "ENCPIPE_KEY": KEY, "ENCPIPE_CIPHER": "pycryptodome"},
                              capture_output=True, stdin=subprocess.DEVNULL, timeout=120)
        assert done.returncode == 0, done.stderr
    assert not record.exists(), record.read_text()


def test_other_questions_to_platform_architecture_get_pythons_answers():
    """Only pycryptodome's question (the interpreter's, no defaults given) is answered
    without `file`; another executable, or defaults given, go to Python's own."""
    code = ("import platform\n"
            "before = [platform.architecture(), platform.architecture('/bin/ls'), platform.architecture(bits='32bit')]\n"
            "from encpipe import processguard\n"
            "processguard.no_file_command()\n"
            "import Crypto.Cipher.AES\n"
            "after = [platform.architecture(), platform.architecture('/bin/ls'), platform.architecture(bits='32bit')]\n"
            "print(before == after, platform.architecture.func.__module__)\n")
    done = subprocess.run([sys.executable, "-c", code], env=python_env(), capture_output=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (0, b"True encpipe.processguard\n", b"")
