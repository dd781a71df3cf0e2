"""ENCPIPE_SIGNER names the verify keys a file must be signed by: no secret, but
encpipe's alone. A signing key put there by mistake went, with the rest of the
environment, to psql, pg_dump, pg_dumpall, zstd and sh; and encpipe-backup, whose
pruning alone reads it, stored the backup first and refused it after ("backup
written, but not pruned"). Now no child but an encpipe inherits the variable
(childenv.ENCPIPE_ONLY), and encpipe-backup reads it before the dump: 64, nothing
run, nothing stored, the key not shown."""

import json
import subprocess
import sys

from encpipe import childenv
from test_backup_restore import BACKUP
from test_rclone_leftovers import fake_env


def encpipe(env, *argv):
    done = subprocess.run([sys.executable, "-m", "encpipe", *argv], env=env, capture_output=True, check=True)
    return done.stdout.decode().strip()


def test_only_an_encpipe_child_inherits_it():
    env = {"ENCPIPE_SIGNER": "encpipesign1x", "PATH": "/bin"}
    assert childenv.child_env(env, needs=childenv.ENCPIPE_NEEDS) == env
    for needs in ((), ("libpq",), childenv.RCLONE_NEEDS, childenv.KEY_COMMAND_NEEDS):
        assert childenv.child_env(env, needs=needs) == {"PATH": "/bin"}, needs


def test_a_backups_tools_never_see_it(tmp_path, key_file):
    record = tmp_path / "pg_dump-env"
    env = fake_env(tmp_path, f"env > {record}\necho 'select 1;'\n")
    verify_key = encpipe(env, "keygen", "--sign", "-o", str(tmp_path / "sign.key"))
    env["ENCPIPE_SIGNER"] = verify_key
    d = tmp_path / "backups"
    done = subprocess.run([BACKUP, "--no-globals", "--dir", str(d), "--key-file", key_file, "shop"], env=env,
                          capture_output=True, stdin=subprocess.DEVNULL, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["filename"].startswith("shop_")
    assert "ENCPIPE_SIGNER" not in record.read_text() and verify_key not in record.read_text()


def test_a_signing_key_in_it_stops_a_backup_before_the_dump(tmp_path, key_file):
    record = tmp_path / "pg_dump-ran"
    env = fake_env(tmp_path, f"touch {record}\necho 'select 1;'\n")
    encpipe(env, "keygen", "--sign", "-o", str(tmp_path / "sign.key"))
    secret = "".join(line for line in (tmp_path / "sign.key").read_text().splitlines() if not line.startswith("#"))
    d = tmp_path / "backups"
    done = subprocess.run([BACKUP, "--no-globals", "--dir", str(d), "--key-file", key_file, "shop"],
                          env={**env, "ENCPIPE_SIGNER": secret}, capture_output=True, stdin=subprocess.DEVNULL,
                          timeout=120)
    assert (done.returncode, done.stdout) == (64, b""), done.stderr
    assert done.stderr.decode().splitlines()[0] == (
        "encpipe-backup: error: ENCPIPE_SIGNER: a secret key (a signing key, not shown), not a verify key")
    assert secret.encode() not in done.stderr and secret.lower().encode() not in done.stderr.lower()
    assert not record.exists() and not d.exists()
