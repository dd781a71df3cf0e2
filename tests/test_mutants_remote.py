"""The guards of the off-site storage code (rclonestore, rclonepipe, storage), each
broken by hand once (a comparison flipped, a step dropped) with no test failing:
the tests that now see each."""

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time

import pytest

from s3server import rclone_word
from test_backup_restore import BACKUP, REPO, RESTORE, python_env
from test_child_env import SECRET, run_given_remote
from test_rclone_leftovers import BIG_SLOW_DUMP, INTERRUPTED, fake_env
from test_remote_listing import upload, wrapper
from test_remote_stored_as_written import assert_upload_refused, backup, wrapped

NAME = "shop_20260101T000000Z.sql.enc"


def test_an_upload_the_remote_keeps_longer_is_not_stored(s3, key_file, tmp_path):
    """An object the remote holds with more bytes than were written (a gateway that
    appends to the body) is refused as one it keeps short is: 74, nothing stored."""
    rclone = wrapped(tmp_path, "rcat", '{ cat; printf junk; } | "$R" rcat "$2"; exit')
    result = backup(s3, tmp_path, "longer", rclone, key_file)
    assert_upload_refused(s3, "longer", result, rf"{re.escape(s3.location)}/longer/\.encpipe-tmp\.\S+",
                          r"the remote holds ([0-9]+) bytes of the ([0-9]+) written")
    held, written = map(int, re.search(r"holds ([0-9]+) bytes of the ([0-9]+)", result[2]).groups())
    assert held == written + 4


# an rclone rcat that says which signals it was sent (Python runs the handlers of signals
# that came together in their numbers' order: SIGINT's first): SIGTERM ends it
SIGNALS_SEEN = """import os, signal, sys
log = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
def seen(signum, frame):
    os.write(log, signal.Signals(signum).name.encode() + b"\\n")
    if signum == signal.SIGTERM:
        os._exit(1)
signal.signal(signal.SIGINT, seen)
signal.signal(signal.SIGTERM, seen)
os.write(log, b"started\\n")
while sys.stdin.buffer.read1(1 << 16):
    pass
"""


def test_ctrl_c_to_the_runs_group_is_not_the_uploads_rclones(key_file, tmp_path):
    """SIGINT to the run's process group (a terminal's Ctrl-C) never reaches the upload's rclone
    (a process group of its own): the run alone stops it, once (a second signal cut rclone's
    abort of its multipart upload short)."""
    bucket, log, wrapper = tmp_path / "bucket", tmp_path / "signals", tmp_path / "rclone"
    bucket.mkdir()
    (tmp_path / "rclone.conf").write_text("")
    (tmp_path / "rcat.py").write_text(SIGNALS_SEEN)
    wrapper.write_text(f'#!/bin/sh\n[ "$1" = rcat ] && exec {shlex.quote(sys.executable)} {tmp_path / "rcat.py"} {log}\n'
                       f'exec {rclone_word()} "$@"\n')
    wrapper.chmod(0o755)
    env = fake_env(tmp_path, BIG_SLOW_DUMP, RCLONE=str(wrapper), RCLONE_CONFIG=str(tmp_path / "rclone.conf"),
                   RCLONE_CONFIG_HERE_TYPE="alias", RCLONE_CONFIG_HERE_REMOTE=str(bucket))
    proc = subprocess.Popen([BACKUP, "--no-globals", "--compress", "none", "--to", "here:up", "--key-file", key_file,
                             "shop"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not (log.exists() and "started" in log.read_text()):
            assert time.monotonic() < deadline and proc.poll() is None, "rclone rcat never started"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert (proc.returncode, out, err) == (130, b"", INTERRUPTED), err
    assert "SIGINT" not in log.read_text().split(), log.read_text()


def test_a_download_whose_rclone_fails_says_rclones_reason(s3, key_file, tmp_path):
    """An `rclone cat` that stalls once begun and fails (an i/o timeout) fails the fetch with
    rclone's own last line, 74, not as an object shorter than listed (66)."""
    data = subprocess.run([sys.executable, "-m", "encpipe", "seal", "--key-file", key_file], input=b"select 1;\n",
                          capture_output=True, check=True, env=python_env()).stdout
    upload(s3, tmp_path, "stalled", {NAME: data})
    reason = "ERROR : shop: ReadFile: read tcp 127.0.0.1:1->127.0.0.1:2: i/o timeout"
    rclone = wrapper(tmp_path / "rclone", f'{rclone_word()} "$@" | head -c 100; echo "{reason}" >&2; exit 1')
    spool = tmp_path / "tmp"
    spool.mkdir()
    where = f"{s3.location}/stalled/{NAME}"
    done = subprocess.run([RESTORE, "--key-file", key_file, where, "shop"],
                          env={**python_env(), **s3.env, "RCLONE": rclone, "TMPDIR": str(spool)},
                          capture_output=True, stdin=subprocess.DEVNULL, timeout=120)
    assert (done.returncode, done.stdout, done.stderr.decode(), os.listdir(spool)) == (
        74, b"", f"encpipe-restore: error: cannot fetch {where}: cannot read {where}: rclone cannot read {where}: "
                 f"{reason}; nothing was changed\n", [])


def test_an_upload_whose_rclone_fails_at_once_stops_the_dump(key_file, tmp_path):
    """An `rclone rcat` that fails before it reads (the remote refuses it) fails the run at the
    next write, with the last line rclone wrote (its error, not an earlier notice), the dump
    stopped there: never read to its end into a dead pipe first."""
    bucket, done = tmp_path / "bucket", tmp_path / "dump-done"
    bucket.mkdir()
    (tmp_path / "rclone.conf").write_text("")
    refused = "ERROR : Failed to rcat: AccessDenied: access denied"
    rclone = wrapped(tmp_path, "rcat", f'echo "NOTICE: S3 bucket up: retrying" >&2; echo "{refused}" >&2; exit 1')
    env = fake_env(tmp_path, f"head -c 200000000 /dev/zero && touch {done}\n", RCLONE=rclone,
                   RCLONE_CONFIG=str(tmp_path / "rclone.conf"), RCLONE_CONFIG_HERE_TYPE="alias",
                   RCLONE_CONFIG_HERE_REMOTE=str(bucket))
    run = subprocess.run([BACKUP, "--no-globals", "--compress", "none", "--to", "here:up", "--key-file", key_file,
                          "shop"], env=env, capture_output=True, stdin=subprocess.DEVNULL, timeout=300)
    assert (run.returncode, run.stdout) == (74, b""), run.stderr
    assert re.fullmatch(r"encpipe-backup: error: backup of shop failed \(status 74\): cannot upload here:up/"
                        rf"\.encpipe-tmp\.\S+: {refused}; nothing was stored\n", run.stderr.decode()), run.stderr
    assert not done.exists()
    assert not (bucket / "up").exists() or os.listdir(bucket / "up") == []


@pytest.mark.parametrize("remote", [
    f":webdav,url='https://dav.example/',headers='Cookie,session={SECRET}':dir",
    f":alias,remote=\":webdav,headers='Cookie,session={SECRET}':dir\":",
], ids=["cookie-header", "in-a-nested-connection-string"])
def test_a_cookie_header_in_a_connection_string_is_refused(tmp_path, remote):
    """A Cookie header (no parameter's name says it is a secret), alone or in a connection string
    a value holds, is a credential on rclone's argv: 64, the header named, never its value."""
    done, err, first = run_given_remote(tmp_path, "encpipe-list", ["REMOTE"], remote)
    assert "gives headers (Cookie):" in first and err.count("error: ") == 1, err
    assert SECRET not in err and SECRET.encode() not in done.stdout
    assert not (tmp_path / "log").exists()  # rclone never ran


def test_an_rclone_started_while_its_store_is_stopped_is_killed_at_once():
    """Children.stop(): an rclone that a listing's thread starts after it (until resume()) is
    killed as it starts, as those running were; its read fails, never waits for it."""
    from encpipe.backup.rclonepipe import Children

    children = Children()
    children.stop()
    proc = children.start(["sleep", "60"], stdin=subprocess.DEVNULL)
    try:
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        children.done(proc)


def test_rclone_reads_nothing_of_the_scripts_standard_input(s3, tmp_path):
    """Every rclone a listing starts gets /dev/null as its standard input, never the script's
    (a terminal, where rclone would ask for its config's password and wait)."""
    upload(s3, tmp_path, "stdin", {"notes.txt": b"x"})
    rclone = wrapped(tmp_path, "lsjson", 'if read -r line; then echo "read: $line" >&2; exit 1; fi')
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "encpipe-list"), f"{s3.location}/stdin"],
                          env={**python_env(), **s3.env, "RCLONE": rclone}, input=b"typed\n", capture_output=True,
                          timeout=120)
    assert (done.returncode, done.stderr) == (0, b""), done.stderr
    assert [e["filename"] for e in json.loads(done.stdout)] == ["notes.txt"]


@pytest.mark.parametrize("remote, shown", [
    (f":alias,remote=\":alias,remote=':webdav,headers=''Cookie,session={SECRET}'':dir':\":", "headers (Cookie)"),
    (f":combine,upstreams=\"dir=:webdav,headers='Cookie,session={SECRET}':dir\":", "headers (Cookie)"),
    (f":webdav,url='https://dav.example/',headers='X-Api-Key,{SECRET}':dir", "headers (X-Api-Key)"),
], ids=["two-connection-strings-deep", "in-a-combine-upstream", "a-header-named-as-a-secret-parameter"])
def test_a_credential_header_wherever_a_connection_string_gives_it_is_refused(tmp_path, remote, shown):
    """A header credential only the parse of `headers` finds (no `,NAME=` of a secret parameter): 64."""
    done, err, first = run_given_remote(tmp_path, "encpipe-list", ["REMOTE"], remote)
    assert f"gives {shown}:" in first and err.count("error: ") == 1, err
    assert SECRET not in err and SECRET.encode() not in done.stdout
    assert not (tmp_path / "log").exists()  # rclone never ran
