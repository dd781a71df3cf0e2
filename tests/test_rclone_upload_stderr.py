"""An rclone that writes much on its standard error while it uploads does not
hang the upload. Before, `rclone rcat`'s standard error was read only once its
input was closed: an rclone that wrote more than a pipe's buffer meanwhile
(`RCLONE_DUMP=bodies`, rclone's own debugging switch, writes the body it sends)
blocked on that write and stopped reading its input, and the upload (the
backup) waited for ever. Now it is read while the upload runs; of it, as
before, only the end is kept for the error line. Real rclone against the
`rclone serve s3` of the tests; a subprocess timeout only so that a hang fails
the test instead of blocking it. And an rclone whose status says it failed
fails the upload with its last line, whatever it stored (removed again). So
for a download (`rclone cat`), whose standard error is now read, to say
rclone's reason when it fails."""

import hashlib
import os
import shlex
import signal
import subprocess
import sys

import pytest

from encpipe.backup.rclonestore import rclone_binary
from spies import python_head
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


def test_a_download_whose_rclone_logs_the_body_it_receives_completes(s3):
    """`rclone cat` with RCLONE_DUMP=bodies writes the object's body on its standard
    error too: read while it downloads, only its end kept, it never blocks the
    download (a pipe not read would fill and hang the fetch)."""
    data = hashlib.shake_256(b"download").digest(4 * 1024 * 1024)
    subprocess.run([sys.executable, "-m", "encpipe.backup", "upload", "--to", f"{s3.location}/dumped",
                    ".encpipe-tmp.dumped"], env={**python_env(), **s3.env}, input=data, check=True, timeout=HANG)
    env = {**python_env(), **s3.env, "RCLONE_DUMP": "bodies"}
    child = subprocess.Popen([sys.executable, "-m", "encpipe.backup", "fetch",
                              f"{s3.location}/dumped/.encpipe-tmp.dumped"], env=env, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = child.communicate(timeout=HANG)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)  # encpipe and its rclone
        child.communicate()
        raise AssertionError("the download hung") from None
    assert (child.returncode, err) == (0, b""), err[-2000:]
    assert out == data


def test_an_rclone_that_stops_reading_and_exits_0_fails_the_upload_with_74(tmp_path):
    """An `rclone rcat` that reads a little of the upload and exits with status 0:
    the write that meets its closed pipe fails the upload, one line and 74, the
    status of a failed remote write. Before, that write closed the upload, found
    status 0 and said nothing; the next write was to the closed pipe, a ValueError:
    a traceback and status 1."""
    fake = tmp_path / "rclone"
    fake.write_text("#!/bin/sh\n[ \"$1\" = rcat ] || exit 0\nhead -c 10 >/dev/null\nexit 0\n")
    fake.chmod(0o755)
    (tmp_path / "rclone.conf").write_text("")
    env = {**python_env(), "RCLONE": str(fake), "RCLONE_CONFIG": str(tmp_path / "rclone.conf"),
           "RCLONE_CONFIG_HERE_TYPE": "alias", "RCLONE_CONFIG_HERE_REMOTE": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "encpipe.backup", "upload", "--to", "here:up", ".encpipe-tmp.up"],
                          env=env, input=bytes(4 * 1024 * 1024), capture_output=True)  # more than a pipe holds
    assert (done.returncode, done.stdout, done.stderr.decode()) == (
        74, b"", "encpipe-backup: error: cannot upload here:up/.encpipe-tmp.up: "
                 "rclone rcat ended (status 0) before all the data was written to it\n")


def test_an_rclone_that_exits_0_with_the_stream_unread_in_its_pipe_fails_the_upload_with_74(tmp_path):
    """An `rclone rcat` that reads 10 bytes, then waits, reading no more, until its
    input is closed, and exits with status 0: the rest of the upload was written
    into the pipe (no broken pipe: rclone still held it) and never read. Before,
    that upload succeeded, short; now what rclone left unread fails it, as above."""
    fake = tmp_path / "rclone"
    fake.write_text(f"{python_head()}\nimport os, select, sys\nif sys.argv[1] != 'rcat':\n    sys.exit(0)\n"
                    "os.read(0, 10)\npoller = select.poll()\npoller.register(0, select.POLLHUP)\n"
                    "while not poller.poll()[0][1] & select.POLLHUP:\n    pass\n")
    fake.chmod(0o755)
    (tmp_path / "rclone.conf").write_text("")
    env = {**python_env(), "RCLONE": str(fake), "RCLONE_CONFIG": str(tmp_path / "rclone.conf"),
           "RCLONE_CONFIG_HERE_TYPE": "alias", "RCLONE_CONFIG_HERE_REMOTE": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "encpipe.backup", "upload", "--to", "here:up", ".encpipe-tmp.up"],
                          env=env, input=bytes(1000), capture_output=True, timeout=HANG)  # less than a pipe holds
    assert (done.returncode, done.stdout, done.stderr.decode()) == (
        74, b"", "encpipe-backup: error: cannot upload here:up/.encpipe-tmp.up: "
                 "rclone rcat ended (status 0) before all the data was written to it\n")


def test_an_rclone_that_stores_it_all_but_exits_1_fails_the_upload_and_leaves_nothing(tmp_path):
    """An `rclone rcat` that stores the whole upload, then fails (status 1): the upload
    fails with rclone's last line, 74, and what it stored is removed again. The size
    check after it (the remote holds all that was written) would have passed: the
    status is what says the upload failed."""
    real = shlex.quote(rclone_binary(os.environ))
    fake = tmp_path / "rclone"
    fake.write_text(f"#!/bin/sh\n[ \"$1\" = rcat ] || exec {real} \"$@\"\n{real} \"$@\" || exit\n"
                    "echo 'ERROR : the upload could not be committed' >&2\nexit 1\n")
    fake.chmod(0o755)
    (tmp_path / "rclone.conf").write_text("")
    (tmp_path / "up").mkdir()
    env = {**python_env(), "RCLONE": str(fake), "RCLONE_CONFIG": str(tmp_path / "rclone.conf"),
           "RCLONE_CONFIG_HERE_TYPE": "alias", "RCLONE_CONFIG_HERE_REMOTE": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "encpipe.backup", "upload", "--to", "here:up", ".encpipe-tmp.up"],
                          env=env, input=bytes(100000), capture_output=True, timeout=HANG)
    assert (done.returncode, done.stdout, done.stderr.decode()) == (
        74, b"", "encpipe-backup: error: cannot upload here:up/.encpipe-tmp.up: "
                 "ERROR : the upload could not be committed\n")
    assert os.listdir(tmp_path / "up") == []


def test_a_download_whose_error_reader_cannot_start_is_stopped_its_pipes_closed(tmp_path, monkeypatch):
    """No thread to be had for reading `rclone cat`'s standard error: the read fails
    (a resource run out, errors.ran_out), and the download's end still kills and reaps
    its rclone and closes both its pipes (the standard error's was left open)."""
    from encpipe.backup import rclonepipe
    from encpipe.backup.rclonestore import Rclone
    from encpipe.backup.records import Item

    def no_thread(proc):
        raise RuntimeError("can't start new thread")

    fake = tmp_path / "rclone"
    fake.write_text("#!/bin/sh\nprintf x\n")
    fake.chmod(0o755)
    (tmp_path / "rclone.conf").write_text("")
    monkeypatch.setattr(rclonepipe, "_ErrTail", no_thread)
    env = {**python_env(), "RCLONE": str(fake), "RCLONE_CONFIG": str(tmp_path / "rclone.conf")}
    src = Rclone("here:", env).open(Item("x", 1))
    with pytest.raises(RuntimeError, match="^can't start new thread$"), src:
        src.read(1)
    assert src.proc.returncode is not None and src.proc.stdout.closed and src.proc.stderr.closed
