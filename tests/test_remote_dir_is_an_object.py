"""A remote location that names an object, not a folder, is refused as a local DIR
that is a file is: 66, one line, nothing on standard output.

rclone lists an object's path as that one object, under its own name; encpipe-list
read it as a folder holding it, and then looked for LOCATION/NAME: the object was
listed `unreadable` (`no such object`), exit 0, where a local file given as DIR is
66 (`Not a directory`); encpipe-prune and encpipe-check went on from that listing.
encpipe-verify of a remote object verifies it, as it does a local file. A folder
that holds one object of the folder's own name stays a folder (`lsjson --stat`
tells them apart)."""

import json
import os
import subprocess
import sys

import pytest

from s3server import rclone_binary
from test_backup_restore import REPO, python_env

KEY = "00" * 32


def script(name, *argv, env):
    return subprocess.run([sys.executable, str(REPO / "scripts" / name), *argv], env=env, capture_output=True,
                          stdin=subprocess.DEVNULL, timeout=120)


@pytest.fixture(scope="module")
def sealed():
    done = subprocess.run([sys.executable, "-m", "encpipe", "seal"], input=b"select 1;\n", capture_output=True,
                          env={**python_env(), "ENCPIPE_KEY": KEY}, check=True)
    return done.stdout


def put(s3, tmp_path, folder, files):
    local = tmp_path / "up" / folder
    local.mkdir(parents=True)
    for name, data in files.items():
        (local / name).write_bytes(data)
    subprocess.run([rclone_binary(), "copy", str(local), f"{s3.location}/{folder}"], env={**python_env(), **s3.env},
                   check=True, capture_output=True)


RUNS = [("encpipe-list", []), ("encpipe-prune", ["--keep-last", "1"]), ("encpipe-verify", []),
        ("encpipe-check", ["--max-age", "24"])]
ERRORS = {"encpipe-list": (66, "encpipe-list: error: cannot list {}: Not a directory\n"),
          "encpipe-prune": (66, "encpipe-prune: error: cannot list {}: Not a directory\n"),
          "encpipe-check": (2, "CRITICAL: cannot list {}: Not a directory\n")}


@pytest.mark.parametrize("name, argv", RUNS)
def test_an_object_given_as_a_remote_dir(s3, sealed, tmp_path, name, argv):
    put(s3, tmp_path, "one", {"shop_20260101T000000Z.sql.enc": sealed, "notes.enc": b"not a backup\n"})
    env = {**python_env(), **s3.env, "ENCPIPE_KEY": KEY}
    for where in (f"{s3.location}/one/notes.enc", f":local:{tmp_path}/up/one/notes.enc"):
        done = script(name, *argv, where, env=env)
        if name == "encpipe-verify":  # as a local file: verified, and it is none of encpipe's
            assert done.returncode == 65, done.stderr
            assert done.stderr.decode() == f"encpipe-verify: error: {where}: not an encpipe file\n"
            assert [r["filename"] for r in json.loads(done.stdout)["results"]] == ["notes.enc"]
            continue
        status, line = ERRORS[name]
        said = (done.stdout if name == "encpipe-check" else done.stderr).decode()  # a plugin's line: stdout
        assert (done.returncode, said) == (status, line.format(where)), done.stderr
        assert (done.stderr if name == "encpipe-check" else done.stdout) == b""
    assert sorted(os.listdir(s3.root + "/backups/one")) == ["notes.enc", "shop_20260101T000000Z.sql.enc"]


def test_a_folder_holding_an_object_of_its_own_name_is_a_folder(s3, sealed, tmp_path):
    put(s3, tmp_path, "same", {"same": b"x\n"})
    env = {**python_env(), **s3.env, "ENCPIPE_KEY": KEY}
    for where in (f"{s3.location}/same", f"{s3.location}/same/", f":local:{tmp_path}/up/same"):
        done = script("encpipe-list", where, env=env)
        assert done.returncode == 0, done.stderr
        assert [(e["filename"], e["status"]) for e in json.loads(done.stdout)] == [("same", "foreign")]


def test_a_remote_backup_object_is_verified_as_a_file(s3, sealed, tmp_path):
    put(s3, tmp_path, "named", {"shop_20260101T000000Z.sql.enc": sealed})
    done = script("encpipe-verify", f"{s3.location}/named/shop_20260101T000000Z.sql.enc",
                  env={**python_env(), **s3.env, "ENCPIPE_KEY": KEY})
    assert (done.returncode, done.stderr) == (0, b"")
    assert [(r["filename"], r["ok"]) for r in json.loads(done.stdout)["results"]] == [
        ("shop_20260101T000000Z.sql.enc", True)]
