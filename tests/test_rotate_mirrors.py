"""A directory mirrored off-site is rotated, then mirrored again: the mirror must
come out under the new keys.

A backup directory copied off-site by `rclone sync` (or rsync), as README's "Off-site
copies" has it, is compared by size and modification time: a file whose size and
time did not change is not sent again. Rotating a file rewrites its header only,
and a slot for a removed raw key and one for the added raw key are the same size,
so a rotated file kept its size; rotate gave it the original's times as well. The
next sync then passed every rotated file over, and the off-site copies went on
opening with the retired (perhaps leaked) key, while every local file, and the
sync, said all was done. Now a rotated file's modification time is the
original's and one second: the next sync sends it."""

import json
import os
import subprocess
import sys

from cliutil import ok, run
from s3server import rclone_binary
from test_backup_restore import REPO, python_env
from test_rotate import World, lines, rotate

NAMES = ("shop_20250101T020000Z.sql.enc", "shop_20250102T020000Z.sql.zst.enc",
         "shop_20250103T020000Z.dump.enc", "cluster_20250103T020000Z.globals.sql.enc")


def backups(tmp_path):
    world = World(tmp_path)
    sign = str(tmp_path / "keys" / "backup.sign")
    ok(run(["keygen", "--sign", "-o", sign]))
    world.add(NAMES[0], "--key-file", world.old_a)
    world.add(NAMES[1], "--key-file", world.old_a, "--recipient", world.escrow_pub, "--sign-key", sign)
    world.add(NAMES[2], "--key-file", world.old_a, "--sign-key", sign)
    world.add(NAMES[3], "--key-file", world.old_a)
    for day, name in enumerate(NAMES, 1):  # written when their names say
        when = 1_735_696_800 + day * 86_400
        os.utime(world.dir / name, (when, when))
    return world


def sync(source, target, env):
    subprocess.run([rclone_binary(), "sync", str(source), target], env=env, check=True, capture_output=True,
                   stdin=subprocess.DEVNULL, timeout=120)


def remote_key_ids(where, env):
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "encpipe-list"), where], env=env,
                          capture_output=True, stdin=subprocess.DEVNULL, timeout=120)
    assert done.returncode == 0, done.stderr
    return {entry["filename"]: entry["key_ids"] for entry in json.loads(done.stdout)}


def test_a_mirror_synced_after_the_rotation_holds_no_old_key(s3, tmp_path):
    world = backups(tmp_path)
    env = {**python_env(), **s3.env}
    mirror = f"{s3.location}/mirror"
    sync(world.dir, mirror, env)
    old_id, = world.ids(world.old_a)
    assert all(old_id in ids for ids in remote_key_ids(mirror, env).values())

    done = rotate(["--old-key-file", world.old, "--new-key-file", world.new, str(world.dir)])
    assert done.returncode == 0, done.stderr
    assert {r["status"] for r in lines(done).values()} == {"rotated"}
    sync(world.dir, mirror, env)

    new_id, = world.ids(world.new)
    held = remote_key_ids(mirror, env)
    assert sorted(held) == sorted(NAMES)
    assert all(old_id not in ids and new_id in ids for ids in held.values()), held
    for name in NAMES:  # the copies themselves: the retired key opens none
        copy = os.path.join(s3.bucket_dir, "mirror", name)
        with open(copy, "rb") as f:
            sealed = f.read()
        assert run(["open", "--key-file", world.old_a], sealed)[:2] == (77, b"")
        assert ok(run(["open", "--key-file", world.new], sealed)) == world.plain[name]


def test_a_local_mirror_too(tmp_path):
    world = backups(tmp_path)
    mirror = tmp_path / "mirror"
    sync(world.dir, str(mirror), python_env())
    done = rotate(["--old-key-file", world.old, "--new-key-file", world.new, str(world.dir)])
    assert done.returncode == 0, done.stderr
    sync(world.dir, str(mirror), python_env())
    for name in NAMES:
        assert (mirror / name).read_bytes() == (world.dir / name).read_bytes()
        assert run(["open", "--key-file", world.old_a], (mirror / name).read_bytes())[:2] == (77, b"")


def test_backups_stored_off_site_are_rotated_through_a_local_copy(s3, tmp_path):
    """README's recipe for `encpipe-backup --to` copies: copy down, rotate, copy back."""
    world = backups(tmp_path)
    env = {**python_env(), **s3.env}
    remote = f"{s3.location}/offsite"
    subprocess.run([rclone_binary(), "copy", str(world.dir), remote], env=env, check=True, capture_output=True,
                   stdin=subprocess.DEVNULL, timeout=120)
    staging = tmp_path / "staging"
    subprocess.run([rclone_binary(), "copy", remote, str(staging)], env=env, check=True, capture_output=True,
                   stdin=subprocess.DEVNULL, timeout=120)
    done = rotate(["--old-key-file", world.old, "--new-key-file", world.new, str(staging)])
    assert done.returncode == 0, done.stderr
    subprocess.run([rclone_binary(), "copy", str(staging), remote], env=env, check=True, capture_output=True,
                   stdin=subprocess.DEVNULL, timeout=120)
    old_id, = world.ids(world.old_a)
    held = remote_key_ids(remote, env)
    assert sorted(held) == sorted(NAMES) and not any(old_id in ids for ids in held.values()), held


def test_a_file_older_than_its_name_stays_so_once_rotated(tmp_path):
    """The time rotate gives is the original's and a second: a file renamed to a later
    time than it was written (an older backup under a newer name, which only a
    writer of the directory, not the file's owner, would make) is still not counted
    once rotated. Given the time of the rotation, it was counted as the newest."""
    world = World(tmp_path)
    name = "shop_20260101T020000Z.sql.enc"  # unlabelled: only its time tells when it was made
    path = world.add(name, "--key-file", world.old_a)
    path.write_bytes(ok(run(["seal", "--key-file", world.old_a], b"--\n-- PostgreSQL database dump\n--\nSELECT 1;\n")))
    written = 1_767_139_200  # 2025-12-31T00:00:00Z, a day before its name
    os.utime(path, (written, written))
    done = rotate(["--old-key-file", world.old, "--new-key-file", world.new, str(world.dir)])
    assert done.returncode == 0, done.stderr
    assert path.stat().st_mtime_ns == (written + 1) * 10**9
    pruned = subprocess.run([sys.executable, str(REPO / "scripts" / "encpipe-prune"), "--dry-run", "--keep-last", "5",
                             "--key-file", world.new, str(world.dir)], env=python_env(), capture_output=True,
                            stdin=subprocess.DEVNULL, timeout=120)
    report = json.loads(pruned.stdout)
    assert report["kept"] == [] and [e["filename"] for e in report["left"]] == [name], report
    assert "older than its name says" in report["left"][0]["reasons"][0]
