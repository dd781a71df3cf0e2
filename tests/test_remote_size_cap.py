"""A remote object is read as it was listed: its listed size, no more, no fewer.

A hostile or changing remote may serve more bytes than its listing said (an
object replaced by a longer one between the listing and the read, or an endless
stream), which would fill the disk a restore spools the ciphertext to, or keep
a verify running for ever; or fewer. Each read (restore's fetch, verify, the
listing) fails at the first byte past the listed size, or at an end before it:
66, one line naming the object, nothing on standard output, no fetched file
left. Real rclone against `rclone serve s3`; the wrappers (tests/test_remote_listing.py)
replace the object through the server just before each `rclone cat`, as another
writer of the bucket would."""

import json
import os
import re
import subprocess
import sys

import pytest

from s3server import rclone_word
from test_backup_restore import REPO, RESTORE, python_env
from test_remote_listing import upload, wrapper

NAME = "shop_20260101T000000Z.sql.enc"


def replacing(s3, tmp_path, folder, data, skip=0):
    """An rclone whose `cat`, past the first `skip`, first replaces REMOTE/folder/NAME by `data`."""
    other, seen = tmp_path / "other", tmp_path / "seen"
    other.write_bytes(data)
    copy = f"{rclone_word()} copyto {other} {s3.location}/{folder}/{NAME}"
    return wrapper(tmp_path / "rclone", f'echo >> {seen}; [ "$(wc -l < {seen})" -gt {skip} ] && {{ {copy} || exit 9; }}')


def restore(s3, tmp_path, folder, rclone, key):
    spool = tmp_path / "tmp"
    spool.mkdir()
    done = subprocess.run([RESTORE, "--key-file", key, f"{s3.location}/{folder}/{NAME}", "shop"],
                          env={**python_env(), **s3.env, "RCLONE": rclone, "TMPDIR": str(spool)},
                          capture_output=True, stdin=subprocess.DEVNULL, timeout=120)
    return done.returncode, done.stdout, done.stderr.decode(), os.listdir(spool)


@pytest.fixture(scope="module")
def sealed(tmp_path_factory):
    """(a key file, a file sealed with it, one sealed and signed)."""
    base = tmp_path_factory.mktemp("keys")
    key, sign_key = str(base / "k"), str(base / "s")

    def encpipe(*argv, data=b""):
        return subprocess.run([sys.executable, "-m", "encpipe", *argv], input=data, capture_output=True, check=True,
                              env=python_env()).stdout

    encpipe("keygen", "-o", key)
    encpipe("keygen", "--sign", "-o", sign_key)
    return (key, encpipe("seal", "--key-file", key, data=b"select 1;\n"),
            encpipe("seal", "--key-file", key, "--sign-key", sign_key, data=b"x" * 5000))


@pytest.mark.parametrize("change", ["longer", "shorter"])
def test_a_restore_whose_object_is_not_as_listed_fails_66_and_leaves_nothing(s3, sealed, tmp_path, change):
    key, plain, _ = sealed
    folder = f"restore-{change}"
    upload(s3, tmp_path, folder, {NAME: plain})
    other = plain + b"x" * (1 << 20) if change == "longer" else plain[:-5]
    code, out, err, left = restore(s3, tmp_path, folder, replacing(s3, tmp_path, folder, other), key)
    where = f"{s3.location}/{folder}/{NAME}"
    said = (f"is longer than listed ({len(plain)} bytes)" if change == "longer"
            else f"is shorter than listed ({len(plain) - 5} of {len(plain)} bytes)")
    assert (code, out, err, left) == (
        66, b"", f"encpipe-restore: error: cannot fetch {where}: {where} {said}; nothing was changed\n", [])


def test_an_endless_download_stops_at_the_listed_size(s3, sealed, tmp_path):
    """The fetch helper, whose `rclone cat` never ends: it stops one byte past the
    listed size (its standard output, which restore spools, holds no more than that)."""
    upload(s3, tmp_path, "endless", {NAME: sealed[1]})
    rclone = wrapper(tmp_path / "rclone", "exec cat /dev/zero")
    with open(tmp_path / "out", "wb") as out:
        done = subprocess.run([sys.executable, "-m", "encpipe.backup", "fetch", f"{s3.location}/endless/{NAME}"],
                              env={**python_env(), **s3.env, "RCLONE": rclone}, stdout=out, stderr=subprocess.PIPE,
                              stdin=subprocess.DEVNULL, timeout=60)
    where = f"{s3.location}/endless/{NAME}"
    assert (done.returncode, done.stderr.decode()) == (
        66, f"encpipe-backup: error: {where} is longer than listed ({len(sealed[1])} bytes)\n")
    assert (tmp_path / "out").stat().st_size <= len(sealed[1])


def test_verify_of_an_object_replaced_by_a_longer_one_is_66_unreadable(s3, sealed, tmp_path):
    key, plain, _ = sealed
    upload(s3, tmp_path, "verify", {NAME: plain})
    rclone = replacing(s3, tmp_path, "verify", plain + plain, skip=1)  # read as listed by verify's listing
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "encpipe-verify"), "--key-file", key,
                           f"{s3.location}/verify"], env={**python_env(), **s3.env, "RCLONE": rclone},
                          capture_output=True, stdin=subprocess.DEVNULL, timeout=120)
    where = f"{s3.location}/verify/{NAME}"
    assert done.returncode == 66, done.stderr
    [result] = json.loads(done.stdout)["results"]
    assert (result["ok"], result["exit_code"], result["error"]) == (
        False, 66, f"{where} is longer than listed ({len(plain)} bytes)")


def test_an_object_listed_without_a_size_is_not_read(s3, sealed, tmp_path):
    """A size of -1 (a backend that cannot tell) bounds nothing: the object is not fetched."""
    upload(s3, tmp_path, "nosize", {NAME: sealed[1]})
    rclone = tmp_path / "rclone"
    rclone.write_text(f'#!/bin/sh\nif [ "$1" = lsjson ]; then\n'
                      f'  {rclone_word()} "$@" | sed \'s/"Size":[0-9]*/"Size":-1/g\'\n  exit 0\nfi\n'
                      f'exec {rclone_word()} "$@"\n')
    rclone.chmod(0o755)
    done = subprocess.run([sys.executable, "-m", "encpipe.backup", "fetch", f"{s3.location}/nosize/{NAME}"],
                          env={**python_env(), **s3.env, "RCLONE": str(rclone)}, capture_output=True,
                          stdin=subprocess.DEVNULL, timeout=60)
    where = f"{s3.location}/nosize/{NAME}"
    assert (done.returncode, done.stdout, done.stderr.decode()) == (
        66, b"", f"encpipe-backup: error: {where}: the remote lists no size for it; not read\n")


def test_a_trailer_served_longer_than_asked_is_the_file_unreadable(s3, sealed, tmp_path):
    """encpipe-list reads a signed object's trailer (`rclone cat --tail`): a remote
    that serves more is stopped there too (before, all of it was read into memory)."""
    signed = sealed[2]
    upload(s3, tmp_path, "tail", {NAME: signed})
    rclone = wrapper(tmp_path / "rclone", '[ "$2" = --tail ] && exec head -c 50000000 /dev/zero')
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "encpipe-list"), f"{s3.location}/tail"],
                          env={**python_env(), **s3.env, "RCLONE": rclone}, capture_output=True,
                          stdin=subprocess.DEVNULL, timeout=60)
    assert (done.returncode, done.stderr) == (0, b"")
    [entry] = json.loads(done.stdout)
    assert entry["status"] == "unreadable"
    assert re.fullmatch(f"cannot read {NAME}: the last [0-9]+ bytes of {s3.location}/tail/{NAME} "
                        "is longer than listed \\([0-9]+ bytes\\)", entry["error"]), entry["error"]


def test_a_globals_file_served_longer_than_listed_fails_the_restore(s3, sealed, tmp_path):
    """The globals file of the run, beside FILE on the remote: absent, the restore is refused
    (tests/test_restore_globals_missing.py); there but not as listed, it fails, as for a
    local globals file that cannot be read. Before, any failure of its fetch was
    taken for its absence: the restore went on without the run's roles."""
    key, plain, _ = sealed
    globals_name = NAME.replace(".sql.enc", ".globals.sql.enc")
    upload(s3, tmp_path, "beside", {NAME: plain, globals_name: plain})
    other = tmp_path / "other"
    other.write_bytes(plain * 2)
    copy = f"{rclone_word()} copyto {other} {s3.location}/beside/{globals_name}"
    rclone = wrapper(tmp_path / "rclone", f'case "$2" in *.globals.sql.enc) {copy} || exit 9;; esac')
    code, out, err, left = restore(s3, tmp_path, "beside", rclone, key)
    where = f"{s3.location}/beside/{globals_name}"
    assert (code, out, err, left) == (
        66, b"", f"encpipe-restore: error: cannot fetch {where}: {where} is longer than listed ({len(plain)} bytes); "
                 "nothing was changed\n", [])
