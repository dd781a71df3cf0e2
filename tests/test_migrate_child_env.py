"""encpipe-migrate's children get the old files' key only where it is read: the
old setting, BACKUP_ENCRYPTION_KEY, goes to `encpipe open --legacy` alone, never
to the `seal` of the new files nor to the `inspect --verify` of them (nor to a
`keyid`), which never read it. A child given its key by an option (--key-file) gets
neither ENCPIPE_KEY nor ENCPIPE_PASSPHRASE, which it would ignore."""

import io
import json
import os
import subprocess
import sys

from encpipe import legacy
from spies import records, write

HERE = os.path.dirname(os.path.abspath(__file__))
MIGRATE = os.path.join(os.path.dirname(HERE), "scripts", "encpipe-migrate")
OLD = "the old setting 7f3e"
KEY = "6f" * 32
PASSPHRASE = "a passphrase in the environment 91c2"


def test_only_open_legacy_gets_the_old_setting(tmp_path):
    directory = tmp_path / "backups"
    directory.mkdir(mode=0o700)
    with open(directory / "shop_backup_2025-11-17.sql.enc", "wb") as f:
        legacy.seal_legacy(io.BytesIO(b"SELECT 1;\n" * 100), f, legacy.passphrase_key(OLD))
    key = tmp_path / "new.key"
    key.write_text("5e" * 32 + "\n")
    key.chmod(0o600)
    log, spy = tmp_path / "log", tmp_path / "encpipe-spy"
    write(spy, "encpipe", [sys.executable, "-m", "encpipe"], log)
    done = subprocess.run([sys.executable, MIGRATE, "--key-file", str(key), str(directory)],
                          capture_output=True, text=True, timeout=120,
                          env={"PATH": os.environ["PATH"], "PYTHONPATH": os.path.dirname(HERE),
                               "ENCPIPE": str(spy), "BACKUP_ENCRYPTION_KEY": OLD, "ENCPIPE_KEY": KEY,
                               "ENCPIPE_PASSPHRASE": PASSPHRASE})
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["status"] for line in done.stdout.splitlines()] == ["migrated"]
    held = {(r["argv"][0] + (" --legacy" if "--legacy" in r["argv"] else ""), any(OLD in entry for entry in r["env"]))
            for r in records(log)}
    assert {child for child, _ in held} == {"keyid", "open --legacy", "seal", "inspect"}, held
    assert {child for child, has in held if has} == {"open --legacy"}, held
    for record in records(log):
        held = {secret for secret in (OLD, KEY, PASSPHRASE) if any(secret in entry for entry in record["env"])}
        if any(w.startswith("--key-file") for w in record["argv"]):
            assert held == set(), (record["argv"], held)
        elif "--legacy" in record["argv"]:  # no option names the old key: each of the three may be it
            assert held == {OLD, KEY, PASSPHRASE}, (record["argv"], held)
        else:  # the check of ENCPIPE_KEY (keyid)
            assert record["argv"] == ["keyid"] and held == {KEY}, (record["argv"], held)
