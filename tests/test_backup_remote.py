"""Backups in object storage through real rclone: `rclone serve s3` on 127.0.0.1.

Backup --to, list, verify, prune and restore against the S3 server give the same
results as against a local directory; no plaintext reaches the objects; a backup
killed mid-upload leaves no object under a final name. Also: encpipe-backup
--keep prunes only its own database. The backups here are made with
--no-globals: these tests are about storage (tests/test_disaster_recovery.py
covers the globals files).
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import pytest

from cliutil import a_new_second
from encpipe.backup.names import MARKER
from pgcluster import MARKERS
from s3server import rclone_binary, rclone_word
from spies import python_head
from test_backup_faults import _fake_pg_dump, _with_path_first
from test_rclone_timeouts import QUICK, remote_env
from test_backup_restore import (
    BACKUP,
    BACKUP_NAME,
    REPO,
    backup,
    dir_entries,
    dump,
    ensure_small,
    restore,
    run,
    script_env,
)


def tool(name, *argv, env):
    return run([sys.executable, REPO / "scripts" / name, *argv], env)


def without_paths(report):
    """A JSON report with the location-specific fields taken out."""
    if isinstance(report, dict):
        return {k: without_paths(v) for k, v in report.items() if k not in ("path", "location")}
    if isinstance(report, list):
        return [without_paths(v) for v in report]
    return report


@pytest.mark.slow
def test_remote_backups_behave_like_local_ones(pg, tools, key_file, s3, tmp_path):
    db = ensure_small(pg, "bk_remote")
    local, remote = str(tmp_path / "b"), f"{s3.location}/same"
    env = script_env(pg, tools, **s3.env)
    made = []
    sign_key = str(tmp_path / "backup.sign")
    verify_key = subprocess.run([sys.executable, "-m", "encpipe", "keygen", "--sign", "-o", sign_key], check=True,
                                capture_output=True, env=env).stdout.decode().strip()
    for fmt, signing in (("plain", ()), ("custom", ("--sign-key", sign_key)), ("plain", ())):
        _, report = backup(pg, tools, local, db, "--no-globals", "--to", remote, "--format", fmt, "--key-file", key_file,
                           *signing, env_extra=s3.env)
        assert report["remote"] == f"{remote}/{report['filename']}"
        made.append(report["filename"])
        a_new_second()  # a new second, a new name
    assert s3.objects("same") == dir_entries(local) == sorted([*made, MARKER])
    for name in made:  # the stored objects are byte for byte the local files, and sealed
        data = open(os.path.join(s3.bucket_dir, "same", name), "rb").read()
        assert data == open(os.path.join(local, name), "rb").read()
        assert data.startswith(b"ENCPIPE") and not any(m.encode() in data for m in MARKERS)

    listings = [tool("encpipe-list", "--stats", where, env=env) for where in (local, remote)]
    assert [p.returncode for p in listings] == [0, 0]
    assert without_paths(json.loads(listings[0].stdout)) == without_paths(json.loads(listings[1].stdout))
    signer = subprocess.run([sys.executable, "-m", "encpipe", "keyid", "--signer", verify_key], check=True,
                            capture_output=True, env=env).stdout.decode().split()
    assert [e["signers"] for e in json.loads(listings[1].stdout)["backups"]] == [None, [], signer, []]  # the marker

    verified = [tool("encpipe-verify", "--key-file", key_file, where, env=env) for where in (local, remote)]
    assert [p.returncode for p in verified] == [0, 0]
    assert without_paths(json.loads(verified[0].stdout)) == without_paths(json.loads(verified[1].stdout))
    checked = [tool("encpipe-check", "--max-age", "1", where, env=env) for where in (local, remote)]
    assert [p.returncode for p in checked] == [0, 0]
    # the same, but for the age in seconds of the performance data: the two ran a moment apart
    assert [re.sub(rb"_age'=[0-9]+s;", b"_age'=Ns;", p.stdout) for p in checked] == \
        [re.sub(rb"_age'=[0-9]+s;", b"_age'=Ns;", checked[0].stdout)] * 2 and b"_age'=" in checked[0].stdout
    one = tool("encpipe-verify", "--key-file", key_file, f"{remote}/{made[0]}", env=env)
    assert one.returncode == 0 and json.loads(one.stdout)["verified"] == 1

    pruned = [tool("encpipe-prune", "--keep-last", "1", "--key-file", key_file, where, env=env)
              for where in (local, remote)]
    assert [p.returncode for p in pruned] == [0, 0]
    assert without_paths(json.loads(pruned[0].stdout)) == without_paths(json.loads(pruned[1].stdout))
    assert [r["filename"] for r in json.loads(pruned[1].stdout)["removed"]] == [made[0]]
    assert s3.objects("same") == dir_entries(local) == sorted([*made[1:], MARKER])

    for where in (os.path.join(local, made[2]), f"{remote}/{made[2]}"):
        pg.dropdb("bk_remote_copy")
        proc = restore(pg, tools, where, "bk_remote_copy", "--no-globals", "--key-file", key_file, env_extra=s3.env)
        assert proc.returncode == 0, proc.stderr.decode()
        assert dump(pg, "bk_remote_copy") == dump(pg, db)
    pg.dropdb("bk_remote_copy")
    proc = restore(pg, tools, f"{remote}/{db}_20000101T000000Z.sql.enc", "bk_remote_copy", "--key-file", key_file,
                   env_extra=s3.env)
    assert (proc.returncode, proc.stdout) == (66, b"")


def test_a_remote_only_backup_and_a_damaged_object(pg, tools, key_file, s3):
    db = ensure_small(pg, "bk_remote")
    remote = f"{s3.location}/only"
    env = script_env(pg, tools, **s3.env)
    proc = run([BACKUP, "--no-globals", "--to", remote, "--key-file", key_file, db], env)
    assert proc.returncode == 0, proc.stderr.decode()
    name = json.loads(proc.stdout)["filename"]
    assert s3.objects("only") == [MARKER, name]
    path = os.path.join(s3.bucket_dir, "only", name)
    data = bytearray(open(path, "rb").read())
    data[-40] ^= 1
    open(path, "wb").write(bytes(data))
    proc = tool("encpipe-verify", "--key-file", key_file, remote, env=env)
    assert proc.returncode == 65 and f"{remote}/{name}" in proc.stderr.decode()


@pytest.mark.parametrize("after", [0.3, 0.8, 1.5, 2.5])
def test_backup_killed_mid_upload_leaves_no_final_object(pg, tools, key_file, s3, tmp_path, after):
    body = "for i in $(seq 1 40); do head -c 30000 /dev/urandom | base64; sleep 0.1; done\n"
    env = _with_path_first(script_env(pg, tools, **s3.env), _fake_pg_dump(tmp_path, body))
    prefix = f"kill{int(after * 10)}"
    proc = subprocess.Popen([BACKUP, "--no-globals", "--to", f"{s3.location}/{prefix}", "--key-file", key_file, "anydb"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    time.sleep(after)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(0.5)  # let the server notice the dropped connection
    assert not [n for n in s3.objects(prefix) if BACKUP_NAME.match(n)]
    # A temporary object of a run killed two days ago goes with the next backup; today's stay.
    recent = [n for n in s3.objects(prefix) if n.startswith(".encpipe-tmp.")]
    stale = f".encpipe-tmp.{(datetime.now(timezone.utc) - timedelta(days=2)).strftime('%Y%m%dT%H%M%SZ')}_1_2"
    # put through rclone: the server caches its directories (its own rclone, not in the
    # run's process group, may have ended the upload since), a file written beside it may not be seen
    subprocess.run([rclone_binary(), "rcat", f"{s3.location}/{prefix}/{stale}"], input=b"ENCPIPE partial",
                   env={**os.environ, **s3.env}, check=True, capture_output=True)
    _fake_pg_dump(tmp_path, "head -c 30000 /dev/urandom | base64\n")  # the next run need not be slow
    later = run([BACKUP, "--no-globals", "--to", f"{s3.location}/{prefix}", "--key-file", key_file, "anydb"], env)
    assert later.returncode == 0, later.stderr.decode()
    assert json.loads(later.stdout)["filename"] in s3.objects(prefix)
    assert stale not in s3.objects(prefix) and set(recent) <= set(s3.objects(prefix))


def test_a_dump_that_fails_mid_stream_leaves_no_final_object(pg, tools, key_file, s3, tmp_path):
    """pg_dump fails after 300 KB: encpipe seal ends its stream, rclone completes
    an upload, and that object must still never get a backup's name."""
    body = "head -c 300000 /dev/urandom | base64; exit 1\n"
    env = _with_path_first(script_env(pg, tools, **s3.env), _fake_pg_dump(tmp_path, body))
    done = run([BACKUP, "--no-globals", "--to", f"{s3.location}/failed", "--key-file", key_file, "anydb"], env)
    assert done.returncode != 0 and done.stdout == b""
    assert not [n for n in s3.objects("failed") if BACKUP_NAME.match(n)]


def test_backup_keep_prunes_only_its_own_database_and_series(pg, tools, key_file, tmp_path):
    a, b = ensure_small(pg, "bk_keep_a"), ensure_small(pg, "bk_keep_b")
    directory = str(tmp_path / "b")
    first_b, _ = backup(pg, tools, directory, b, "--no-globals", "--key-file", key_file)
    olds = [os.path.join(directory, f"{b}_2000010{d}T000000Z.sql.enc") for d in (1, 2)]
    for old in olds:
        os.link(first_b, old)
    custom, _ = backup(pg, tools, directory, a, "--no-globals", "--format", "custom", "--key-file", key_file)
    for _ in range(3):
        newest, report = backup(pg, tools, directory, a, "--no-globals", "--keep-last", "1", "--key-file", key_file)
        a_new_second()
    assert sorted(dir_entries(directory)) == sorted(
        [MARKER, *(os.path.basename(p) for p in [first_b, *olds, custom, newest])])
    assert len(report["pruned"]) == 1


def test_a_host_that_seals_to_a_public_key_only_backs_up_but_does_not_prune(pg, tools, tmp_path):
    db = ensure_small(pg, "bk_keep_a")
    identity = tmp_path / "identity"
    run([sys.executable, "-m", "encpipe", "keygen", "--x25519", "-o", identity], script_env(pg, tools), check=True)
    pubkey = run([sys.executable, "-m", "encpipe", "pubkey", identity], script_env(pg, tools)).stdout.decode().strip()
    directory = str(tmp_path / "b")
    first, _ = backup(pg, tools, directory, db, "--no-globals", "--recipient", pubkey)
    a_new_second()
    proc = backup(pg, tools, directory, db, "--no-globals", "--recipient", pubkey, "--keep-last", "1", check=False)
    assert proc.returncode == 1
    assert b"backup written, but not pruned: no key configured" in proc.stderr
    assert len(dir_entries(directory)) == 3 and json.loads(proc.stdout)["filename"] in dir_entries(directory)
    # unsigned files sealed to a public key: anyone with it could have made them, so
    # prune elsewhere with the identity alone counts none of them and removes nothing
    pruned = tool("encpipe-prune", "--keep-last", "1", "--identity", identity, directory,
                  env=script_env(pg, tools))
    assert pruned.returncode == 65 and len(dir_entries(directory)) == 3
    assert pruned.stderr.count(b"maker not authenticated") == 2
    # the operator who accepts that risk says so, and prunes as before
    pruned = tool("encpipe-prune", "--keep-last", "1", "--identity", identity, "--count-unauthenticated", directory,
                  env=script_env(pg, tools))
    assert pruned.returncode == 0 and dir_entries(directory) == [MARKER, json.loads(proc.stdout)["filename"]]
    assert os.path.basename(first) not in dir_entries(directory)


def test_an_object_rclone_cannot_read_is_listed_unreadable_the_listing_goes_on(key_file, tmp_path):
    """`rclone cat` failing for one object: it is listed as unreadable, with rclone's
    failure, and the others are listed too. Before, the read error became encpipe's
    `cannot read input` (74) on its way out of the header reader, past the listing's
    handler for a file that cannot be read: the whole listing was that one line."""
    from test_backup_restore import python_env

    directory = tmp_path / "d"
    directory.mkdir()
    sealed = subprocess.run([sys.executable, "-m", "encpipe", "seal", "--key-file", key_file], input=b"x",
                            capture_output=True, check=True, env=python_env()).stdout
    (directory / "shop_20260101T000000Z.sql.enc").write_bytes(sealed)
    failing = tmp_path / "rclone"
    failing.write_text(f'#!/bin/sh\n[ "$1" = cat ] && exit 1\nexec {rclone_word()} "$@"\n')
    failing.chmod(0o755)
    (tmp_path / "rclone.conf").write_text("")
    env = {**python_env(), "RCLONE": str(failing), "RCLONE_CONFIG": str(tmp_path / "rclone.conf"),
           "RCLONE_CONFIG_HERE_TYPE": "alias", "RCLONE_CONFIG_HERE_REMOTE": str(directory)}
    proc = tool("encpipe-list", "here:", env=env)
    assert (proc.returncode, proc.stderr) == (0, b""), proc.stderr
    [entry] = json.loads(proc.stdout)
    assert (entry["filename"], entry["status"], entry["error"]) == (
        "shop_20260101T000000Z.sql.enc", "unreadable",
        "cannot read shop_20260101T000000Z.sql.enc: rclone cannot read here:shop_20260101T000000Z.sql.enc")


def test_a_failed_upload_is_74_one_line_and_nothing_stored(pg, tools, key_file, tmp_path, silent):
    """The upload's own error is the run's status (the seal and the upload are the
    pipeline's last step), not 1: a remote that never answers, with small bounds."""
    hung = {k: v for k, v in remote_env(silent, **QUICK).items() if k.startswith("RCLONE_")}
    env = _with_path_first(script_env(pg, tools, **hung), _fake_pg_dump(tmp_path, "echo 'SELECT 1;'\n"))
    done = run([BACKUP, "--no-globals", "--dir", str(tmp_path / "b"), "--to", "hung:bucket/backups",
                "--key-file", key_file, "anydb"], env)
    assert (done.returncode, done.stdout) == (74, b""), done.stderr.decode()
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("encpipe-backup: error: backup of anydb failed (status 74): "), lines
    assert not (tmp_path / "b").exists()  # the DIR this run made goes with it


FAKE_RCAT = """%s
import os, sys
if sys.argv[1] == "rcat":  # as rclone rcat: the object stored once its input has ended
    data = sys.stdin.buffer.read()
    open(os.path.join(os.environ["FAKE_BUCKET"], sys.argv[2].split("/")[-1]), "wb").write(data)
elif sys.argv[1] == "deletefile":
    try:
        os.unlink(os.path.join(os.environ["FAKE_BUCKET"], sys.argv[2].split("/")[-1]))
    except FileNotFoundError:
        pass
"""


def test_a_store_that_fails_ends_the_other_stores_uploads_unfinished(tmp_path, monkeypatch):
    """A backup written to a directory and a remote at once, the directory's write
    failing (a full disk): the first failure is the run's, the remote's `rclone rcat`
    is stopped (SIGTERM: rclone then aborts its own upload) and reaped before its
    input ends, and stores nothing. Before, it was
    left running, its input open: once that closed (the process exiting), it stored
    the part it had been given."""
    from encpipe.backup import localstore, storage
    from encpipe.backup.rclonestore import Rclone
    from encpipe.errors import IOFailure

    fake, bucket = tmp_path / "rclone", tmp_path / "bucket"
    fake.write_text(FAKE_RCAT % python_head())
    fake.chmod(0o755)
    bucket.mkdir()
    (tmp_path / "rclone.conf").write_text("")
    env = {"PATH": os.environ["PATH"], "RCLONE": str(fake), "RCLONE_CONFIG": str(tmp_path / "rclone.conf"),
           "RCLONE_CONFIG_HERE_TYPE": "alias", "RCLONE_CONFIG_HERE_REMOTE": str(bucket),
           "FAKE_BUCKET": str(bucket)}

    def full(self, block):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(localstore._LocalWriter, "write", full)
    uploads, writer = [], Rclone.writer
    monkeypatch.setattr(Rclone, "writer", lambda self, *a: uploads.append(writer(self, *a)) or uploads[-1])
    local = storage.Local(str(tmp_path / "dir"))
    with pytest.raises(IOFailure) as failed:
        storage.write_new([local, Rclone("here:up", env)], ".encpipe-tmp.x", lambda out: out.write(b"x" * 1000),
                          "x")
    assert str(failed.value) == "cannot store .encpipe-tmp.x: No space left on device"
    [upload] = uploads
    assert upload.proc.returncode == -signal.SIGTERM  # asked to stop, ended and reaped, not left running
    upload.proc.stdin.close()  # as the process's exit would
    upload.proc.wait()
    assert os.listdir(bucket) == [] and os.listdir(tmp_path / "dir") == []
