"""encpipe-backup loads the cipher library once pg_dump runs (it connects and reads the
catalog meanwhile); an ENCPIPE_CIPHER that names no library, or one not installed, is
still refused before pg_dump runs. A library that is installed but cannot be imported
fails the run there: 64, its one error line and hint, nothing on standard output,
nothing left in DIR (the dump's and the globals file's temporary files removed), and
pg_dump, cut off, says nothing."""

import os

import pytest

from test_backup_restore import REPO, backup, ensure_small

PREFIX = b"encpipe-backup: "


@pytest.mark.parametrize("options", [[], ["--no-globals"]], ids=["globals", "no-globals"])
def test_a_cipher_library_that_cannot_be_imported_fails_the_run_and_leaves_nothing(pg, tools, key_file, tmp_path,
                                                                                     options):
    db = ensure_small(pg, "late_cipher")
    fake = tmp_path / "fake" / "cryptography"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('raise ImportError("broken on purpose")\n')
    directory = tmp_path / "b"
    directory.mkdir(mode=0o700)
    proc = backup(pg, tools, str(directory), db, "--key-file", key_file, *options, check=False,
                  env_extra={"PYTHONPATH": f"{fake.parent}{os.pathsep}{REPO}", "ENCPIPE_CIPHER": "cryptography"})
    assert (proc.returncode, proc.stdout) == (64, b""), proc.stderr.decode()
    assert proc.stderr == (PREFIX + b"error: backup of late_cipher failed (status 64): ENCPIPE_CIPHER=cryptography, "
                           b"but it cannot be imported: broken on purpose; nothing was stored\n" + PREFIX +
                           b"hint: pip install 'encpipe[fast]' for cryptography, or unset ENCPIPE_CIPHER\n")
    assert sorted(os.listdir(directory)) == []


def test_a_cipher_that_names_no_library_is_refused_before_pg_dump_runs(pg, tools, key_file, tmp_path):
    fake_pg_dump = tmp_path / "bin" / "pg_dump"  # a pg_dump that says it ran
    fake_pg_dump.parent.mkdir()
    fake_pg_dump.write_text(f"#!/bin/sh\ntouch {tmp_path / 'ran'}\n")
    fake_pg_dump.chmod(0o755)
    env = {"ENCPIPE_CIPHER": "openssl", "PATH": f"{fake_pg_dump.parent}{os.pathsep}{os.environ['PATH']}"}
    proc = backup(pg, tools, str(tmp_path / "b"), "late_cipher", "--key-file", key_file, "--no-globals", check=False,
                  env_extra=env)
    assert (proc.returncode, proc.stdout) == (64, b""), proc.stderr.decode()
    assert proc.stderr == (PREFIX + b"error: backup of late_cipher failed (status 64): ENCPIPE_CIPHER must be "
                           b"cryptography or pycryptodome, not 'openssl'; nothing was stored\n")
    assert not (tmp_path / "ran").exists()
