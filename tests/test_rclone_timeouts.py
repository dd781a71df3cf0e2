"""Every rclone encpipe starts has bounded time (README, "Off-site copies").

A remote that accepts the connection and then never answers (a hung proxy, a
firewall that eats replies) must fail the call, not hang encpipe-backup,
-verify or the fetch of encpipe-restore for ever. encpipe gives rclone its own
bounds, RCLONE_CONTIMEOUT, RCLONE_TIMEOUT and RCLONE_LOW_LEVEL_RETRIES (its
--contimeout, --timeout, --low-level-retries), when the caller has not set
them. A real rclone against a local TCP server that accepts and never replies,
as an s3 endpoint; small bounds, and a subprocess timeout that is far above
them only so that a hang fails the test instead of blocking it."""

import os
import signal
import subprocess
import sys
import time

import pytest

from s3server import rclone_binary

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK = {"RCLONE_CONTIMEOUT": "250ms", "RCLONE_TIMEOUT": "250ms", "RCLONE_LOW_LEVEL_RETRIES": "1", "RCLONE_RETRIES": "1"}
HANG = 300  # seconds: far above what the bounds allow (a few seconds)


def remote_env(port, **extra):
    prefix = "RCLONE_CONFIG_HUNG_"
    return {"PATH": os.environ["PATH"], "PYTHONPATH": ROOT, "RCLONE": rclone_binary(), "RCLONE_CONFIG": os.devnull,
            prefix + "TYPE": "s3", prefix + "PROVIDER": "Other", prefix + "ENDPOINT": f"http://127.0.0.1:{port}",
            prefix + "ACCESS_KEY_ID": "access", prefix + "SECRET_ACCESS_KEY": "secret",
            "ENCPIPE_KEY": "ab" * 32, **extra}


def run(argv, env, data=b""):
    return subprocess.run(argv, input=data, capture_output=True, env=env, timeout=HANG)


def one_line(done, status, start):
    assert (done.returncode, done.stdout) == (status, b""), done.stderr
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith(start), lines
    assert "timeout" in lines[0].lower(), lines  # rclone's words vary: "i/o timeout", "timeout awaiting ..."


def test_verify_of_a_remote_that_never_answers_fails_with_66(silent):
    done = run([sys.executable, os.path.join(ROOT, "scripts", "encpipe-verify"), "hung:bucket/backups"],
               remote_env(silent, **QUICK))
    one_line(done, 66, "encpipe-verify: error: cannot list hung:bucket/backups: rclone lsjson: ")


def test_fetch_from_a_remote_that_never_answers_fails_with_66(silent):
    done = run([sys.executable, "-m", "encpipe.backup", "fetch", "hung:bucket/backups/db_20240101T000000Z.sql.enc"],
               remote_env(silent, **QUICK))
    one_line(done, 66, "encpipe-backup: error: cannot list hung:bucket/backups: rclone lsjson: ")


def test_an_upload_to_a_remote_that_never_answers_fails_with_74(silent):
    done = run([sys.executable, "-m", "encpipe.backup", "upload", "--to", "hung:bucket/backups", ".encpipe-tmp.x"],
               remote_env(silent, **QUICK), data=b"sealed bytes\n" * 1000)
    one_line(done, 74, "encpipe-backup: error: cannot upload hung:bucket/backups/.encpipe-tmp.x: ")


RECORDING = """#!/bin/sh
env | grep -E '^RCLONE_(CONTIMEOUT|TIMEOUT|LOW_LEVEL_RETRIES)=' | sort > "{out}.part"; mv "{out}.part" "{out}"
exec "{real}" "$@"
"""


@pytest.mark.parametrize("given, expected", [
    ({}, ["RCLONE_CONTIMEOUT=30s", "RCLONE_LOW_LEVEL_RETRIES=3", "RCLONE_TIMEOUT=1m"]),
    ({"RCLONE_TIMEOUT": "10m", "RCLONE_LOW_LEVEL_RETRIES": "10"},
     ["RCLONE_CONTIMEOUT=30s", "RCLONE_LOW_LEVEL_RETRIES=10", "RCLONE_TIMEOUT=10m"]),
], ids=["defaults", "the caller's own"])
def test_every_rclone_gets_the_bounds_unless_the_caller_set_its_own(silent, tmp_path, given, expected):
    """Before: none was given, and rclone's own defaults (5 min idle, 10 low-level
    retries, which the S3 client and rclone's pacer each apply) kept a run against
    such a remote waiting for hours."""
    wrapper, out = tmp_path / "rclone", tmp_path / "seen"
    wrapper.write_text(RECORDING.format(out=out, real=rclone_binary()))
    wrapper.chmod(0o755)
    env = {**remote_env(silent, **given), "RCLONE": str(wrapper)}
    child = subprocess.Popen([sys.executable, "-m", "encpipe.backup", "fetch", "hung:bucket/x/db.sql.enc"], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        for _ in range(600):  # until the wrapper has written what rclone got (at once: 30 s is plenty)
            if out.exists():
                break
            time.sleep(0.05)
    finally:
        os.killpg(child.pid, signal.SIGKILL)  # encpipe and its rclone, still waiting for the silent server
        child.wait()
    assert out.read_text().splitlines() == expected
