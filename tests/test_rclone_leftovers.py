"""What a failed or interrupted upload leaves, through real rclone (the local
backend, and `rclone serve s3` on 127.0.0.1), and what the commands make of
what only SIGKILL can leave.

rclone 1.75 writes an `rclone rcat` to its local backend in place (under the
run's `.encpipe-tmp.*` name); `rclone copy`, `move` and `sync` to a backend
that takes partial uploads (local, sftp, ftp...) write `NAME.<8 hex>.partial`
first; `rclone serve s3` keeps the parts of an unfinished multipart upload in
`.rclone_temp_multipart_<upload id>` in the directory it serves (invisible to
S3 listings). A streamed upload to S3 is a multipart upload: rclone aborts it
on SIGTERM or SIGINT, not on SIGKILL."""

import json
import os
import shutil
import subprocess
import sys
import time

from cliutil import a_new_second
from s3server import rclone_binary
from test_backup_restore import BACKUP, REPO, python_env

FOREIGN = "notes.txt"


def tool(name, *argv, env):
    return subprocess.run([sys.executable, str(REPO / "scripts" / name), *map(str, argv)], env=env,
                          capture_output=True, stdin=subprocess.DEVNULL, timeout=300)


def fake_env(tmp_path, body, **extra):
    """The scripts' environment with a pg_dump that runs `body` (no cluster needed)."""
    fake = tmp_path / "fakebin"
    fake.mkdir(exist_ok=True)
    (fake / "pg_dump").write_text("#!/bin/sh\n" + body)
    (fake / "pg_dump").chmod(0o755)
    env = python_env()
    env.update(PATH=os.pathsep.join([str(fake), os.path.dirname(sys.executable), env["PATH"]]),
               ENCPIPE_PYTHON=sys.executable, **extra)
    return env


def two_backups(env, key_file, where):
    """Two backups of `shop` into `where` (a directory or REMOTE:PATH), a second apart: their names."""
    names = []
    for _ in range(2):
        done = subprocess.run([BACKUP, "--no-globals", "--to" if ":" in where else "--dir", where,
                               "--key-file", key_file, "shop"], env=env, capture_output=True, timeout=300)
        assert done.returncode == 0, done.stderr.decode()
        names.append(json.loads(done.stdout)["filename"])
        a_new_second()
    return names


def leftovers(directory, backup, served=True):
    """What an interrupted rclone leaves beside `backup` (a file in `directory`), and a
    foreign file; with `served`, the parts `rclone serve s3` keeps there too (which it
    never lists, nor takes as an object)."""
    data = open(os.path.join(directory, backup), "rb").read()
    planted = {
        f"{backup}.118b99b3.partial": data[: len(data) // 3],  # rclone copy/move/sync killed: the start
        f"{backup}.0a1b2c3d.partial": data,  # killed after the last byte, before its rename
        FOREIGN: b"not a backup\n",
    }
    if served:
        planted[".rclone_temp_multipart_8276c92b-622b-4971-be8c-392a3ff0df19"] = data[: len(data) // 2]
    for name, content in planted.items():
        with open(os.path.join(directory, name), "wb") as f:
            f.write(content)
    return planted


def assert_leftovers_change_nothing(where, names, planted, key_file, env):
    """`encpipe-list` lists the leftovers as partial (never sealed, never a backup);
    verify, check and prune go as if they were not there, and leave them."""
    listed = tool("encpipe-list", "--stats", where, env=env)
    assert (listed.returncode, listed.stderr) == (0, b""), listed.stderr
    report = json.loads(listed.stdout)
    statuses = {e["filename"]: e["status"] for e in report["backups"]}
    assert statuses == {**{n: "sealed" for n in names}, FOREIGN: "foreign",
                        **{n: "partial" for n in planted if n != FOREIGN}}
    assert report["stats"]["backups"] == 2
    verified = tool("encpipe-verify", "--key-file", key_file, where, env=env)
    assert verified.returncode == 0, verified.stderr.decode()
    results = {r["filename"]: r for r in json.loads(verified.stdout)["results"]}
    assert all(results[n]["ok"] for n in names)
    assert all(results[n]["ok"] is None and results[n]["note"] for n in planted)
    for keys in ((), ("--verify", "--key-file", key_file)):
        checked = tool("encpipe-check", "--max-age", "1", *keys, where, env=env)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert checked.stdout.startswith(b"OK: shop: newest backup " + names[1].encode()), checked.stdout
    pruned = tool("encpipe-prune", "--keep-last", "1", "--key-file", key_file, where, env=env)
    assert pruned.returncode == 0, pruned.stdout + pruned.stderr
    assert [r["filename"] for r in json.loads(pruned.stdout)["removed"]] == [names[0]]


def test_leftovers_in_a_directory_are_partial_never_backups(key_file, tmp_path):
    """Before, a `.partial` copy of a backup was read as a sealed file: encpipe-verify
    failed (65) on the truncated one, and both were the backup's copies (one payload
    key), so that neither counted: encpipe-check said CRITICAL, no backup, and
    encpipe-prune (65) removed nothing, the series left unprotected."""
    directory = tmp_path / "b"
    env = fake_env(tmp_path, "head -c 600000 /dev/urandom | base64\n")
    names = two_backups(env, key_file, str(directory))
    planted = leftovers(directory, names[1])
    assert_leftovers_change_nothing(str(directory), names, planted, key_file, env)
    assert sorted(os.listdir(directory)) == sorted([names[1], *planted])


def test_leftovers_on_a_remote_are_partial_never_backups(key_file, s3, tmp_path):
    env = fake_env(tmp_path, "head -c 600000 /dev/urandom | base64\n", **s3.env)
    where = f"{s3.location}/planted"
    names = two_backups(env, key_file, where)
    here = tmp_path / "copy"
    here.mkdir()
    subprocess.run([rclone_binary(), "copy", where, str(here)], env=env, check=True, capture_output=True)
    planted = leftovers(here, names[1], served=False)
    for name in names:
        os.unlink(here / name)
    # put through rclone (the server caches its directories); --inplace: no .partial of its own
    subprocess.run([rclone_binary(), "copy", "--inplace", str(here), where], env=env, check=True, capture_output=True)
    assert_leftovers_change_nothing(where, names, planted, key_file, env)
    assert s3.objects("planted") == sorted([names[1], *planted])


def test_rclone_copy_killed_leaves_a_partial_name(tmp_path):
    """What the names above stand for: an `rclone copyto` to the local backend,
    killed, leaves NAME.<8 hex>.partial (rclone 1.75); `rclone rcat` writes in place."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.write_bytes(os.urandom(1 << 20))
    dst.mkdir()
    proc = subprocess.Popen([rclone_binary(), "copyto", "--bwlimit", "64k", str(src), str(dst / "x.enc")],
                            env={**python_env(), "RCLONE_CONFIG": "/dev/null"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not (os.listdir(dst) and os.path.getsize(dst / os.listdir(dst)[0])):  # its first bytes written
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()
    [left] = os.listdir(dst)
    assert left.startswith("x.enc.") and left.endswith(".partial") and len(left) == len("x.enc.") + 8 + 8
    from encpipe.backup.names import is_partial, parse_name

    assert is_partial(left) and parse_name(left).naming is None
    shutil.rmtree(dst)
