"""Backups of a database whose name holds a newline.

encpipe-backup backs up and encpipe-restore restores such a database
(tests/test_restore_names.py), but the listing took a file name whose database
part held a newline for no backup's name: `foreign`. So encpipe-verify of the
directory never read its backups (a tampered one was a note, exit 0), prune
never counted nor removed them (encpipe-backup's --keep-last left them all), and
encpipe-check said CRITICAL, no backup, for `--database` of that name. Now the
database part of a name may hold a newline (a name that ends in one is still no
backup's name: tests/test_backup_dir_hostile.py).
"""

import json
import os

from cliutil import plugin_text
from test_backup_dir import ENV, make_valid
from test_backup_dir_hostile import hours_ago, script

DB = "shop\nx"


def test_an_emptied_backup_of_such_a_database_fails_verify(tmp_path):
    good, emptied = f"{DB}_{hours_ago(3)}.sql.enc", f"{DB}_{hours_ago(2)}.sql.enc"
    make_valid(tmp_path, good)
    (tmp_path / emptied).write_bytes(b"")  # a writer of the directory emptied it
    done = script("verify", tmp_path, env=ENV)
    assert done.returncode == 65, done
    assert [(r["filename"], r["ok"], r["error"]) for r in json.loads(done.stdout)["results"]] == [
        (good, True, None), (emptied, False, "empty file")]
    assert done.stderr.decode().splitlines() == [
        f"encpipe-verify: error: {tmp_path}/{emptied.replace(chr(10), chr(92) + 'n')}: empty file"]


def test_its_backups_are_pruned_and_checked_as_any_others(tmp_path):
    old, new = hours_ago(3), hours_ago(2)
    make_valid(tmp_path, f"{DB}_{old}.sql.enc")
    make_valid(tmp_path, f"{DB}_{new}.sql.enc")
    done = script("prune", "--keep-last", "1", tmp_path, env=ENV)
    assert (done.returncode, done.stderr) == (0, b""), done
    report = json.loads(done.stdout)
    assert ([f["filename"] for f in report["removed"]], [f["filename"] for f in report["kept"]]) == (
        [f"{DB}_{old}.sql.enc"], [f"{DB}_{new}.sql.enc"])
    assert os.listdir(tmp_path) == [f"{DB}_{new}.sql.enc"]
    done = script("check", "--max-age", "24", "--database", DB, tmp_path)
    assert (done.returncode, done.stderr) == (0, b""), done
    assert plugin_text(done.stdout.decode()) == f"OK: shop\\nx: newest backup shop\\nx_{new}.sql.enc is 2.0 h old\n"
