"""A remote may list an object under a name no command line can carry: S3 takes
any Unicode character in a key, U+0000 too, which rclone lists as it is (JSON's
\\u0000). encpipe cannot ask rclone for it, so it is listed `unreadable` and the
tools go on with the others
(README, "Off-site copies"). Before, the first `rclone cat` of such a name was a
ValueError: encpipe-list, -verify and -prune ended in a traceback, status 1, and
a bucket writer who planted one stopped every prune.

The rclone here is a stand-in that lists what the test gives it and serves the
objects from a local directory; nothing else of rclone's is needed."""

import json
import os
import shlex
import subprocess
import sys

from cliutil import plugin_text
from s3server import rclone_word
from test_backup_monitoring import samples
from test_backup_restore import BACKUP
from test_backup_dir import ENV, ROOT, make_valid
from test_backup_dir_hostile import hours_ago
from test_rclone_leftovers import fake_env

REMOTE = "fake:bucket"


def fake_remote(tmp_path, names):
    """(RCLONE for a remote holding the files of tmp_path/objects, listed as `names`)."""
    objects = tmp_path / "objects"
    listing = [{"Path": name, "Name": name, "Size": os.path.getsize(objects / name.replace("\0", "")),
                "IsDir": False} for name in names]
    (tmp_path / "listing.json").write_text(json.dumps(listing))
    rclone = tmp_path / "rclone"
    rclone.write_text(f"""#!/bin/sh
case "$1" in
  lsjson) exec cat {tmp_path}/listing.json ;;
  cat) [ "$2" = --tail ] && exec tail -c "$3" "{objects}/${{4#{REMOTE}/}}"; exec cat "{objects}/${{2#{REMOTE}/}}" ;;
  deletefile) exec rm "{objects}/${{2#{REMOTE}/}}" ;;
esac
exit 1
""")
    rclone.chmod(0o755)
    return str(rclone)


def script(rclone, command, *argv):
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": ROOT, "RCLONE": rclone, **ENV}
    return subprocess.run([sys.executable, os.path.join(ROOT, "scripts", f"encpipe-{command}"), *argv, REMOTE],
                          capture_output=True, env=env, stdin=subprocess.DEVNULL, timeout=60)


def test_an_object_whose_name_holds_a_nul_is_unreadable_and_the_rest_goes_on(tmp_path):
    (tmp_path / "objects").mkdir()
    good, planted = f"shop_{hours_ago(1)}.sql.enc", f"shop_{hours_ago(0.5)}.sql.enc"
    make_valid(tmp_path / "objects", good)
    make_valid(tmp_path / "objects", planted)
    nul = planted.replace("_", "\0_", 1)  # shop\0_<time>.sql.enc: a backup's name, of database "shop\0"
    rclone = fake_remote(tmp_path, [good, nul])
    why = f"cannot read {nul}: its name holds a NUL character, which rclone cannot be given"

    listed = script(rclone, "list")
    assert (listed.returncode, listed.stderr) == (0, b"")
    assert [(e["filename"], e["status"], e["error"]) for e in json.loads(listed.stdout)] == [
        (nul, "unreadable", why), (good, "sealed", None)]  # by name: NUL before "_"

    verified = script(rclone, "verify")
    assert verified.returncode == 66, verified.stderr
    assert [(r["filename"], r["ok"]) for r in json.loads(verified.stdout)["results"]] == [(nul, False), (good, True)]
    shown = nul.replace("\0", "\\x00")
    assert verified.stderr.decode() == (f"encpipe-verify: error: {REMOTE}/{shown}: cannot read {shown}: its name "
                                        "holds a NUL character, which rclone cannot be given\n")

    pruned = script(rclone, "prune", "--keep-last", "1")
    assert pruned.returncode == 65, pruned.stderr
    report = json.loads(pruned.stdout)
    assert ([k["filename"] for k in report["kept"]], [k["filename"] for k in report["left"]]) == ([good], [nul])
    assert sorted(os.listdir(tmp_path / "objects")) == sorted([good, planted])

    checked = script(rclone, "check", "--max-age", "24")
    assert (checked.returncode, checked.stderr) == (2, b"")
    lines = plugin_text(checked.stdout.decode()).splitlines()
    assert lines[0] == f"CRITICAL: shop\\x00: no backup; newest file {shown} is unreadable"
    assert len(lines) == 2 and lines[1].startswith(f"OK: shop: newest backup {good} is ")


def test_a_name_the_remote_lists_twice_is_unreadable_never_counted_nor_removed(tmp_path):
    """Google Drive, Opendrive and Mega hold several files under one name, and
    rclone lists each; `rclone cat` and `rclone deletefile` of that name reach one
    of them, which one not said. A writer of the folder who uploaded a second file
    under a backup's name made copies() raise StopIteration: encpipe-prune ended in
    a traceback, and encpipe-check too (status 1, a WARNING). Each such entry is now
    unreadable: verify fails it, prune leaves it, check does not count it."""
    (tmp_path / "objects").mkdir()
    old, twice = f"shop_{hours_ago(26)}.sql.enc", f"shop_{hours_ago(2)}.sql.enc"
    make_valid(tmp_path / "objects", old)
    make_valid(tmp_path / "objects", twice)
    rclone = fake_remote(tmp_path, [old, twice, twice])
    why = (f"cannot read {twice}: the remote lists 2 files under this name (rclone dedupe tells them apart): "
           "which one a read or a removal reaches is not known")

    listed = script(rclone, "list")
    assert (listed.returncode, listed.stderr) == (0, b"")
    assert [(e["filename"], e["status"], e["error"]) for e in json.loads(listed.stdout)] == [
        (old, "sealed", None), (twice, "unreadable", why), (twice, "unreadable", why)]

    verified = script(rclone, "verify")
    assert verified.returncode == 66, verified.stderr
    assert [(r["filename"], r["ok"]) for r in json.loads(verified.stdout)["results"]] == [
        (old, True), (twice, False), (twice, False)]

    pruned = script(rclone, "prune", "--keep-last", "1")
    assert pruned.returncode == 65, pruned.stderr
    report = json.loads(pruned.stdout)
    assert ([k["filename"] for k in report["kept"]], [k["filename"] for k in report["left"]]) == ([old], [twice, twice])
    assert report["removed"] == [] and sorted(os.listdir(tmp_path / "objects")) == sorted([old, twice])

    checked = script(rclone, "check", "--max-age", "48")
    assert (checked.returncode, checked.stderr) == (1, b"")
    assert checked.stdout.decode().startswith(f"WARNING: shop: newest backup {old} is ")
    assert plugin_text(checked.stdout.decode()).endswith(f" h old; newest file {twice} is unreadable\n")


def test_a_stale_temporary_name_holding_a_nul_is_left_and_the_backup_stands(s3, key_file, tmp_path):
    """The look for a killed run's temporary objects, once the backup is stored, took
    an old `.encpipe-tmp.*` name holding a NUL for one to remove: its `rclone
    deletefile` was a ValueError, and every backup to that remote, stored, ended in
    70 with no JSON line and no record in the metrics file. A bucket writer needed
    one object to do it. It is unreadable, never named to rclone: left alone."""
    planted = ".encpipe-tmp.20200101T000000Z_1_1\0x"
    rclone = tmp_path / "rclone"
    rclone.write_text(f"""#!/bin/bash
if [ "$1" = lsjson ]; then
  {rclone_word()} "$@" | {shlex.quote(sys.executable)} -c 'import json, sys; listed = json.load(sys.stdin)
if isinstance(listed, list):  # a listing, not one object (--stat)
    listed.append({{"Path": {json.dumps(planted)}, "Name": {json.dumps(planted)}, "Size": 5, "IsDir": False}})
print(json.dumps(listed))'
  exit "${{PIPESTATUS[0]}}"
fi
exec {rclone_word()} "$@"
""")
    rclone.chmod(0o755)
    prom = tmp_path / "encpipe.prom"
    done = subprocess.run([BACKUP, "--no-globals", "--to", f"{s3.location}/nul", "--key-file", key_file,
                           "--metrics-file", str(prom), "shop"],
                          env=fake_env(tmp_path, "echo 'select 1;'\n", **s3.env, RCLONE=str(rclone)),
                          capture_output=True, stdin=subprocess.DEVNULL, timeout=120)
    assert (done.returncode, done.stderr) == (0, b""), done.stderr
    assert s3.objects("nul") == [".encpipe-cluster", json.loads(done.stdout)["filename"]]
    assert samples(prom)[("encpipe_backup_last_attempt_success", "shop")] == 1
