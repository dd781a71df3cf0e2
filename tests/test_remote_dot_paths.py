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

import json
import os
import subprocess
import sys

import pytest

from test_child_env import COMMANDS, run_given_remote
from test_rclone_leftovers import fake_env
from test_backup_restore import BACKUP

PATHS = ["encs3:bucket/../other", "encs3:bucket/./sub", "encs3:..", ":s3,region=eu:bucket/a/..",
         "encs3:/srv/../etc",
         # a remote made of one whose path has one (alias's `remote`): before, rclone stored into it and listed
         # from elsewhere alike; a backup failed, its temporary object left where no listing finds it
         ":alias,remote='encs3:bucket/x/../y':"]


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


def test_a_remote_s_root_path_stays_its_root(tmp_path):
    """`REMOTE:/` is the remote's root, `REMOTE:` its home (sftp's) or, for the local
    backend, the current directory: the trailing `/` taken off a remote's path kept
    that one. Before, `:local:/` was read as `:local:`, so encpipe-list listed the
    current directory (a backup `--to box:/` went to box's home directory, and a
    restore of `box:/NAME` fetched box:NAME)."""
    from encpipe.backup.rclonestore import Rclone
    from encpipe.backup.remotes import split_file
    from test_backup_restore import REPO, python_env

    (tmp_path / "in_the_current_directory").write_bytes(b"x")
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "encpipe-list"), ":local:/"], cwd=tmp_path,
                          env={**python_env(), "RCLONE_CONFIG": "/dev/null"}, capture_output=True,
                          stdin=subprocess.DEVNULL, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "in_the_current_directory" not in [e["filename"] for e in json.loads(done.stdout)]
    env = {**python_env(), "RCLONE_CONFIG": "/dev/null"}
    assert [Rclone(where, env).where("x") for where in (":local:/", "box:/", "box://", "box:/a/", "box:", "box:a//")] \
        == [":local:/x", "box:/x", "box:/x", "box:/a/x", "box:x", "box:a/x"]
    assert [split_file(f) for f in ("box:/x.enc", "box:x.enc", "box:/a/x.enc", "box:a/x.enc")] == [
        ("box:/", "x.enc"), ("box:", "x.enc"), ("box:/a", "x.enc"), ("box:a", "x.enc")]  # a restore's FILE
