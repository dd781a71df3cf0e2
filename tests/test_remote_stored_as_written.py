"""A remote that does not keep what it was given: the run never says it stored a backup.

An `rclone rcat` that reads the whole stream and exits 0 but stores less (a
proxy or gateway that cuts the body short, a backend's bug) left a short object
under the backup's name: exit 0, its JSON line and the metrics file both said
the backup succeeded, and only a later verify found it truncated. An upload now
checks the object's listed size against the bytes it wrote before the object
is renamed: 74, one line, nothing stored, the failed run recorded.

Real rclone against `rclone serve s3`; a fake pg_dump (no cluster needed); the
faults are made by a wrapper around the real rclone.
"""

import json
import re
import subprocess

from s3server import rclone_binary
from test_backup_monitoring import samples
from test_backup_restore import BACKUP
from test_rclone_leftovers import fake_env

DB = "shop"
# incompressible, so that the sealed object is much larger than its header
DUMP = "head -c 300000 /dev/urandom\n"


def wrapped(tmp_path, when, then):
    """An rclone that, for `rclone WHEN ...`, runs the shell lines `then`; the real one otherwise."""
    path = tmp_path / "rclone"
    path.write_text(f'#!/bin/bash\nR={rclone_binary()}\nif [ "$1" = {when} ]; then\n{then}\nfi\nexec "$R" "$@"\n')
    path.chmod(0o755)
    return str(path)


def backup(s3, tmp_path, folder, rclone, key_file):
    prom = tmp_path / "encpipe.prom"
    env = fake_env(tmp_path, DUMP, **s3.env, RCLONE=rclone)
    done = subprocess.run([BACKUP, "--no-globals", "--compress", "none", "--to", f"{s3.location}/{folder}",
                           "--key-file", key_file, "--metrics-file", str(prom), DB],
                          env=env, capture_output=True, stdin=subprocess.DEVNULL, timeout=300)
    return done.returncode, done.stdout, done.stderr.decode(), samples(prom)


def test_an_upload_the_remote_keeps_short_is_not_stored(s3, key_file, tmp_path):
    """Before: exit 0, `bytes` 1000 in the JSON line, a success recorded."""
    rclone = wrapped(tmp_path, "rcat", '{ head -c 1000; cat > /dev/null; } | "$R" rcat "$2"; exit')
    code, out, err, recorded = backup(s3, tmp_path, "short", rclone, key_file)
    assert (code, out) == (74, b""), err
    assert re.fullmatch(rf"encpipe-backup: error: backup of {DB} failed \(status 74\): cannot upload "
                        rf"{re.escape(s3.location)}/short/\.encpipe-tmp\.\S+: the remote holds 1000 bytes of the "
                        r"[0-9]+ written; nothing was stored\n", err), err
    assert s3.objects("short") == []
    assert recorded[("encpipe_backup_last_attempt_success", DB)] == 0
    assert ("encpipe_backup_last_success_timestamp_seconds", DB) not in recorded

