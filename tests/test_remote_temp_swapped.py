"""An object a writer of the bucket puts in place of a run's temporary object, before
the run renames it, is not reported as the backup stored.

encpipe-backup --to uploads to `.encpipe-tmp.*` (`rclone rcat`, its size then asked of
the remote), and renames it later (`rclone moveto`, in commit, after the globals file,
the marker, the other stores). commit's read-back compares the object under the final
name with the size the temporary object had *as it was renamed* (Rclone.rename's own
`head` of it, just before moveto), never with the bytes this run wrote, nor with the
file key it sealed them with. So an object replaced under the temporary name in
between, by any sealed file of any size (yesterday's genuine backup, here), is renamed
to today's name and read back as stored: exit 0, the JSON line, the metrics file's
success, while today's dump is nowhere under a backup's name (with bucket versioning it
survives only as a non-current version of a temporary key, which the README's
lifecycle rule expires). The stand-in rclone replaces the object through the server
just before the rename looks at it, as the writer would."""

import json
import os
import subprocess

from s3server import rclone_word
from test_backup_monitoring import samples
from test_backup_restore import BACKUP
from test_rclone_leftovers import a_new_second, fake_env


def test_a_temporary_object_replaced_before_its_rename_is_not_reported_stored(s3, key_file, tmp_path):
    env = fake_env(tmp_path, "echo 'select 1; -- yesterday held more'\n", **s3.env)
    where = f"{s3.location}/swapped"
    first = subprocess.run([BACKUP, "--no-globals", "--to", where, "--key-file", key_file, "shop"], env=env,
                           capture_output=True, stdin=subprocess.DEVNULL, timeout=300)
    assert first.returncode == 0, first.stderr
    yesterday = json.loads(first.stdout)["filename"]
    old = tmp_path / "yesterday"
    with open(os.path.join(s3.bucket_dir, "swapped", yesterday), "rb") as f:
        old.write_bytes(f.read())
    a_new_second()
    env = fake_env(tmp_path, "echo 'select 1;'\n", **s3.env)  # today's dump: another size
    rclone, seen = tmp_path / "rclone", tmp_path / "seen"
    rclone.write_text(f"""#!/bin/sh
for last; do :; done  # the object asked for
case "$1 $last" in
  "lsjson "*/.encpipe-tmp.*)  # the upload's size check, then the rename's own look at it: before the latter
    echo >> {seen}
    [ "$(wc -l < {seen})" -eq 2 ] && {{ {rclone_word()} copyto {old} "$last" || exit 9; }} ;;
esac
exec {rclone_word()} "$@"
""")
    rclone.chmod(0o755)
    prom = tmp_path / "encpipe.prom"
    done = subprocess.run([BACKUP, "--no-globals", "--to", where, "--key-file", key_file, "--metrics-file",
                           str(prom), "shop"], env={**env, "RCLONE": str(rclone)}, capture_output=True,
                          stdin=subprocess.DEVNULL, timeout=300)
    stored = sorted(set(s3.objects("swapped")) - {yesterday, ".encpipe-cluster"})
    assert len(stored) == 1 and stored[0].startswith("shop_"), stored
    with open(os.path.join(s3.bucket_dir, "swapped", stored[0]), "rb") as f:
        assert f.read() == old.read_bytes()  # what the bucket now holds under today's name: yesterday's bytes
    # the run must not say it stored today's backup
    assert done.returncode != 0, (done.stdout, done.stderr)
    assert "does not read back as stored" in done.stderr.decode(), done.stderr
    assert samples(prom)[("encpipe_backup_last_attempt_success", "shop")] == 0
