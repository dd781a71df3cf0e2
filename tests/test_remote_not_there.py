"""A backup `--to` a remote rclone cannot open (no such remote, in no config and
no environment variable) fails 74, one line that says nothing was stored, and no
more: its temporary objects were never made, and the line named each as `not
removed` (the removal failing as the upload had: rclone's `Failed to create file
system`), which sent the operator looking for objects that never existed."""

import re
import subprocess

import pytest

from test_backup_restore import BACKUP
from test_rclone_leftovers import fake_env


@pytest.mark.parametrize("globals_", [False, True])
def test_a_backup_to_a_remote_that_does_not_exist_names_no_leftovers(tmp_path, key_file, globals_):
    env = fake_env(tmp_path, "echo 'select 1;'\n", RCLONE_CONFIG="/dev/null")
    done = subprocess.run([BACKUP, *([] if globals_ else ["--no-globals"]), "--to", "nosuch:bucket/shop",
                           "--key-file", key_file, "shop"], env=env, capture_output=True,
                          stdin=subprocess.DEVNULL, timeout=120)
    err = done.stderr.decode()
    assert (done.returncode, done.stdout) == (74, b""), err
    err = err.splitlines(keepends=True)[-1]  # pg_dumpall's own lines first (no cluster here) with the globals
    assert "not removed" not in err and "may be left" not in err, err
    assert re.fullmatch(r"encpipe-backup: error: backup of shop failed \(status 74\): cannot upload "
                        r"nosuch:bucket/shop/\.encpipe-tmp\.[0-9TZ_]+: .*CRITICAL: Failed to create file system "
                        r"for \"nosuch:bucket/shop/\": didn't find section in config file \(\"nosuch\"\); "
                        r"nothing was stored\n", err), err
