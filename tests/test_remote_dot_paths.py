"""A remote's path with a `.` or `..` part is refused before rclone runs.

rclone does not read such a path one way: against S3, `rclone rcat
REMOTE:bucket/../b2/NAME` stored the object under the key `bucket/../b2/NAME`
(a `..` folder inside the bucket), while `rclone lsjson REMOTE:bucket/../b2`
listed another place, where it was not. A backup `--to` such a path said it
stored the backup (exit 0, its JSON line with no key ids: the read-back found
nothing and that went unsaid) into a place no listing, prune, verify, check or
restore of that path would ever find. Each option that takes a remote, and a
remote FILE of encpipe-restore, now refuses it: 64 (encpipe-check: UNKNOWN,
3), one line, nothing on stdout, rclone never run."""

import os
import subprocess

import pytest

from test_child_env import COMMANDS, run_given_remote
from test_rclone_leftovers import fake_env
from test_backup_restore import BACKUP

PATHS = ["encs3:bucket/../other", "encs3:bucket/./sub", "encs3:..", ":s3,region=eu:bucket/a/..",
         "encs3:/srv/../etc"]


@pytest.mark.parametrize("script, args, remote", [(*c, PATHS[i % len(PATHS)]) for i, c in enumerate(COMMANDS)])
def test_a_remote_path_with_a_dot_part_is_refused(tmp_path, script, args, remote):
    done, err, first = run_given_remote(tmp_path, script, args, remote)
    assert err.count("error: ") == 1 and "the remote's path has a . or .. part" in first, err
    assert not (tmp_path / "log").exists()  # rclone never ran
    assert os.listdir(tmp_path) == ["rclone"]


def test_a_backup_to_a_dot_dot_path_stores_nothing_anywhere(s3, key_file, tmp_path):
    """Before: exit 0, and the object under a `..` folder of the bucket, which no listing of the path finds."""
    env = fake_env(tmp_path, "echo 'select 1;'\n", **s3.env)
    done = subprocess.run([BACKUP, "--no-globals", "--to", f"{s3.location}/../elsewhere", "--key-file", key_file,
                           "shop"], env=env, capture_output=True, stdin=subprocess.DEVNULL, timeout=120)
    assert (done.returncode, done.stdout) == (64, b""), done.stderr
    assert [files for _, _, files in os.walk(s3.root) if files] == []
