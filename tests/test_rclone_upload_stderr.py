"""An rclone that writes much on its standard error while it uploads does not
hang the upload. Before, `rclone rcat`'s standard error was read only once its
input was closed: an rclone that wrote more than a pipe's buffer meanwhile
(`RCLONE_DUMP=bodies`, rclone's own debugging switch, writes the body it sends)
blocked on that write and stopped reading its input, and the upload (the
backup) waited for ever. Now it is read while the upload runs; of it, as
before, only the end is kept for the error line. Real rclone against the
`rclone serve s3` of the tests; a subprocess timeout only so that a hang fails
the test instead of blocking it."""

import hashlib
import os
import signal
import subprocess
import sys

from test_backup_restore import python_env

HANG = 60  # seconds: the upload of 40 MiB to a local server takes a few


def test_an_upload_whose_rclone_logs_the_body_it_sends_completes(s3):
    data = hashlib.shake_256(b"upload").digest(40 * 1024 * 1024)  # rclone reads ahead about 21 MiB
    env = {**python_env(), **s3.env, "RCLONE_DUMP": "bodies", "RCLONE_S3_UPLOAD_CONCURRENCY": "1"}
    child = subprocess.Popen([sys.executable, "-m", "encpipe.backup", "upload", "--to", f"{s3.location}/chatty",
                              ".encpipe-tmp.chatty"], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = child.communicate(data, timeout=HANG)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)  # encpipe and its rclone
        child.communicate()
        raise AssertionError("the upload hung") from None
    assert (child.returncode, out, err) == (0, b"", b""), err[-2000:]
    with open(os.path.join(s3.bucket_dir, "chatty", ".encpipe-tmp.chatty"), "rb") as stored:
        assert stored.read() == data
