"""Issue 14, acceptance 1 with a real PostgreSQL 15: a dump forged by the escrow
holder (who can open the backup, so knows its file key) is refused by
encpipe-restore --key-file K, and the live database is left exactly as it was."""

import subprocess
import sys
from pathlib import Path

from test_backup_restore import (backup, databases, dump, ensure_small, leftover_databases, make_legacy_file,
                                 python_env, read_key, restore)
from test_provenance import forge, identity


def test_restore_refuses_a_dump_forged_by_the_escrow_holder(pg, tools, key_file, tmp_path):
    escrow = tmp_path / "escrow.id"
    public = subprocess.run([sys.executable, "-m", "encpipe", "keygen", "--x25519", "-o", str(escrow)],
                            check=True, capture_output=True, env=python_env()).stdout.decode().strip()
    db = ensure_small(pg, "prov_live")
    path, _ = backup(pg, tools, str(tmp_path / "b"), db, "--key-file", key_file, "--recipient", public)
    before = dump(pg, db)
    marker = tmp_path / "pwned"
    evil = f"\\! touch {marker}\nDROP SCHEMA public CASCADE;\nCREATE TABLE forged (x int);\n".encode()
    Path(path).write_bytes(forge(Path(path).read_bytes(), identity(str(escrow)), payload=evil))
    # the escrow identity opens its forgery (it made it); the operations key refuses it
    proc = restore(pg, tools, path, db, "--key-file", key_file)
    assert proc.returncode == 65, proc.stderr.decode()
    assert b"slot authenticator failed" in proc.stderr and proc.stdout == b""
    assert not marker.exists()
    assert dump(pg, db) == before
    assert leftover_databases(pg) == set()


def test_restore_with_encpipe_signer_refuses_an_unsigned_backup(pg, tools, key_file, tmp_path):
    signing = tmp_path / "s.key"
    verify = subprocess.run([sys.executable, "-m", "encpipe", "keygen", "--sign", "-o", str(signing)],
                            check=True, capture_output=True, env=python_env()).stdout.decode().strip()
    db = ensure_small(pg, "prov_signed")
    path, _ = backup(pg, tools, str(tmp_path / "b"), db, "--key-file", key_file)
    before = dump(pg, db)
    proc = restore(pg, tools, path, db, "--key-file", key_file, env_extra={"ENCPIPE_SIGNER": verify})
    assert proc.returncode == 67 and proc.stdout == b"", proc.stderr.decode()
    assert dump(pg, db) == before and leftover_databases(pg) == set()
    # the same run's files signed (as rewrap --sign-key does: the dump and its globals) restore
    for sealed in Path(path).parent.glob("*.enc"):  # not the cluster marker
        signed = subprocess.run([sys.executable, "-m", "encpipe", "rewrap", "--key-file", key_file, "--sign-key",
                                 str(signing)], input=sealed.read_bytes(), check=True, capture_output=True,
                                env=python_env()).stdout
        sealed.write_bytes(signed)
    proc = restore(pg, tools, path, db, "--drop-old", "--key-file", key_file, env_extra={"ENCPIPE_SIGNER": verify})
    assert proc.returncode == 0, proc.stderr.decode()
    assert dump(pg, db) == before


def _signing_key(path):
    return subprocess.run([sys.executable, "-m", "encpipe", "keygen", "--sign", "-o", str(path)],
                          check=True, capture_output=True, env=python_env()).stdout.decode().strip()


def test_backup_sign_key_then_restore_signer_options(pg, tools, key_file, tmp_path):
    """encpipe-backup --sign-key signs the dump and its globals file; encpipe-restore
    --signer / --signer-file (which replace ENCPIPE_SIGNER, as for encpipe) restores
    them, and refuses them (67, before any database is touched) for another signer."""
    pub1, pub2 = _signing_key(tmp_path / "s1.sign"), _signing_key(tmp_path / "s2.sign")
    db = ensure_small(pg, "prov_signopt")
    path, _ = backup(pg, tools, str(tmp_path / "b"), db, "--key-file", key_file, "--sign-key", tmp_path / "s1.sign")
    key_id = subprocess.run([sys.executable, "-m", "encpipe", "keyid", "--signer", pub1], check=True,
                            capture_output=True, env=python_env()).stdout.decode().strip()
    for sealed in sorted(Path(path).parent.glob("*.enc")):  # the dump and the globals file
        report = subprocess.run([sys.executable, "-m", "encpipe", "inspect", "--json", str(sealed)], check=True,
                                capture_output=True, env=python_env()).stdout.decode()
        assert f'"signers": [\n    "{key_id}"\n  ]' in report, sealed
    before = dump(pg, db)
    pg.psql("INSERT INTO t VALUES (100000, 'after the backup')", db=db)
    changed = dump(pg, db)
    signers = tmp_path / "signers"
    signers.write_text(f"# the backup host\n{pub2}\n")
    empty = tmp_path / "empty"
    empty.write_text("# nobody\n")
    for options, env, code in [
        (["--signer", pub2], {}, 67),
        (["--signer-file", signers], {}, 67),
        (["--signer", pub2], {"ENCPIPE_SIGNER": pub1}, 67),  # the option, not the environment
        (["--signer-file", empty], {}, 64),
        (["--signer", ""], {}, 64),
    ]:
        proc = restore(pg, tools, path, db, "--key-file", key_file, *options, env_extra=env)
        assert (proc.returncode, proc.stdout) == (code, b""), (options, proc.stderr.decode())
        assert dump(pg, db) == changed and leftover_databases(pg) == set()
    signers.write_text(f"# the backup host\n{pub1}\n")
    proc = restore(pg, tools, path, db, "--drop-old", "--key-file", key_file, "--signer-file", signers,
                   env_extra={"ENCPIPE_SIGNER": pub2})
    assert proc.returncode == 0, proc.stderr.decode()
    assert dump(pg, db) == before and leftover_databases(pg) == set()


def test_restore_with_a_signer_refuses_a_file_of_the_previous_tool(pg, tools, key_file, tmp_path):
    """Such a file carries no signature: with --signer it is refused (67) before any
    database is created, though the key authenticates it."""
    pub = _signing_key(tmp_path / "s.sign")
    db = ensure_small(pg, "prov_legacy")
    path = make_legacy_file(tmp_path / "prov_legacy_backup_2024-01-02_03-04-05-678Z.sql.enc", read_key(key_file),
                            dump(pg, db))
    before = databases(pg)
    proc = restore(pg, tools, path, "prov_legacy_copy", "--key-file", key_file, "--signer", pub)
    assert (proc.returncode, proc.stdout) == (67, b""), proc.stderr.decode()
    assert b"not signed by a trusted signer" in proc.stderr
    assert databases(pg) == before and leftover_databases(pg) == set()
