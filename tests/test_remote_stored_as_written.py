"""A remote that does not keep what it was given: the run never says it stored a backup.

An `rclone rcat` that reads the whole stream and exits 0 but stores less (a
proxy or gateway that cuts the body short, a backend's bug) left a short object
under the backup's name: exit 0, its JSON line and the metrics file both said
the backup succeeded, and only a later verify found it truncated. An upload now
asks the remote for the object's size (`rclone lsjson --stat`; the listing
with an rclone that has no --stat) and checks it against the bytes it wrote
before the object is renamed: 74, one line, nothing stored, the failed run
recorded.

An object that, once renamed, is gone or reads back as something else (another
writer of the bucket, a remote that loses it) was read back and its damage
never looked at: exit 0, recorded a success. The read-back now fails on it:
exit 1, `backup written, but it does not read back as stored: ...`, and the run
recorded as a failed attempt (the backup is not there as written); a read-back
that cannot run at all (the remote does not answer just then) stays what
README says (exit 1, recorded a success without a size).

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


REPLACED = {
    "gone": ('"$R" deletefile "$3"', "cannot read {name}: no such object"),
    "foreign": ('echo not a backup | "$R" rcat "$3"', "{name}: not an encpipe file"),
    "truncated": ('"$R" cat --count 1000 "$3" | "$R" rcat "$3"', "{name} is 1000 bytes, {size} were stored"),
}


def test_a_backup_that_does_not_read_back_as_stored_fails_and_is_recorded_failed(s3, key_file, tmp_path):
    """The object replaced right after its rename (moveto). Before: exit 0 and a
    success recorded for each; `bytes` 1000 for the truncated one."""
    for folder, (then, said) in REPLACED.items():
        rclone = wrapped(tmp_path, "moveto", f'"$R" moveto "$2" "$3" || exit; {then}; exit')
        code, out, err, recorded = backup(s3, tmp_path, folder, rclone, key_file)
        assert code == 1, (folder, err)
        line = json.loads(out)
        assert (line["bytes"], line["key_ids"], line["slots"]) == (None, None, None)
        lines = err.splitlines()
        assert len(lines) == 1, lines
        size = re.search(r"([0-9]+) were stored", lines[0])
        expected = said.format(name=re.escape(line["filename"]), size=size and size[1])
        assert re.fullmatch(r"encpipe-backup: error: backup written, but it does not read back as stored: "
                            + expected, lines[0]), (folder, lines)
        assert recorded[("encpipe_backup_last_attempt_success", DB)] == 0, folder
        assert ("encpipe_backup_last_success_timestamp_seconds", DB) not in recorded, folder


def test_an_rclone_without_lsjson_stat_still_stores_and_reads_back(s3, key_file, tmp_path):
    """An older rclone has no `lsjson --stat` (Ubuntu 22.04 ships 1.53): the object's
    size is then read from the listing, and the backup is stored as before."""
    rclone = wrapped(tmp_path, "lsjson", 'for a; do [ "$a" = --stat ] && { echo "2026/01/01 00:00:00 NOTICE: Fatal '
                                         'error: unknown flag: --stat" >&2; exit 1; }; done')
    code, out, err, recorded = backup(s3, tmp_path, "old", rclone, key_file)
    assert (code, err) == (0, ""), err
    line = json.loads(out)
    assert s3.objects("old") == [".encpipe-cluster", line["filename"]] and line["bytes"] > 300000 and line["key_ids"]
    assert recorded[("encpipe_backup_last_attempt_success", DB)] == 1


def test_an_object_size_that_is_not_json_fails_the_upload_in_one_line(s3, key_file, tmp_path):
    rclone = wrapped(tmp_path, "lsjson", 'for a; do [ "$a" = --stat ] && { echo "{not json"; exit 0; }; done')
    code, out, err, recorded = backup(s3, tmp_path, "garbled", rclone, key_file)
    assert (code, out) == (74, b""), err
    assert re.fullmatch(rf"encpipe-backup: error: backup of {DB} failed \(status 74\): cannot upload "
                        rf"(\S+): rclone lsjson \1: its output is not JSON; nothing was stored\n", err), err
    assert s3.objects("garbled") == []
    assert recorded[("encpipe_backup_last_attempt_success", DB)] == 0
