"""encpipe-restore of a remote FILE names the remote's objects in its error lines,
never the private temporary copies it fetched them into (removed at exit).

The globals file of FILE's run is fetched beside FILE into `TMPDIR/encpipe-restore.*`
(pgfetch.fetch_remote), and the restore then reads that copy. When the object under
the globals file's name is one the restore refuses (a writer of the bucket planted
junk there, another run's globals file, a damaged upload), the one error line said
`cannot decrypt the globals file /tmp/encpipe-restore.k3x9... (status 65): ...`: a
file that no longer exists once the restore has ended, where the operator needs
`REMOTE:PATH/NAME` to know what to look at (the hint then says `--globals FILE`).
Real rclone against `rclone serve s3`."""

import os
import subprocess

from test_backup_restore import RESTORE, python_env
from test_remote_listing import upload
import test_remote_size_cap
from test_remote_size_cap import NAME

sealed = test_remote_size_cap.sealed  # a fixture

GLOBALS = NAME.replace(".sql.enc", ".globals.sql.enc")


def test_a_refused_globals_file_of_a_remote_run_is_named_as_the_remote_object(s3, sealed, tmp_path):
    key, plain, _ = sealed
    upload(s3, tmp_path, "gnames", {NAME: plain, GLOBALS: b"planted by a writer of the bucket\n"})
    spool = tmp_path / "tmp"
    spool.mkdir()
    done = subprocess.run([RESTORE, "--key-file", key, f"{s3.location}/gnames/{NAME}", "shop"],
                          env={**python_env(), **s3.env, "TMPDIR": str(spool), "PGHOST": str(tmp_path / "no-server")},
                          capture_output=True, stdin=subprocess.DEVNULL, timeout=120)
    err = done.stderr.decode()
    assert (done.returncode, done.stdout, os.listdir(spool)) == (65, b"", []), err
    first = err.splitlines()[0]
    assert str(spool) not in first, first  # a temporary copy, gone by now
    assert first.startswith(f"encpipe-restore: error: cannot decrypt the globals file {s3.location}/gnames/{GLOBALS} "
                            "(status 65): "), first
