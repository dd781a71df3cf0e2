"""encpipe-backup whose last step, the renames to the final names, fails: a
directory planted under the dump's name in DIR, an object under it on the
remote, the dump renamed on the remote but not in DIR. A failed commit leaves
what any failed run leaves: no globals file without its dump, no temporary
file, no file under a final name in any store, no cluster marker it wrote, the
failure recorded in the metrics file (encpipe-check says so), one line on stderr
that says what failed and that nothing was stored, and nothing on stdout.
Real PostgreSQL, real rclone against `rclone serve s3`; the failures are made
by the test hook ($ENCPIPE_TEST_HOOK) at the step `renaming` of the local store.
"""

import json
import os
import re
import shlex
import sys

from cliutil import plugin_text
from encpipe.backup.names import MARKER
from s3server import rclone_binary, rclone_word
from test_backup_monitoring import samples
from test_backup_restore import (
    BACKUP,
    REPO,
    backup,
    dir_entries,
    ensure_small,
    run,
    script_env,
)

DB = "bk_commit"
# $2 DIR, $4 the final name being renamed to; ${4%%.*} is DB_STAMP (neither has a dot)
PLANT_DIR_UNDER_DUMP = '[ "$1" = renaming ] && case "$4" in *.globals.sql.enc) ;; *.enc) mkdir "$2/$4" ;; esac; true'


def failing_backup(pg, tools, env_extra, *options):
    proc = run([BACKUP, *options, DB], script_env(pg, tools, **env_extra))
    assert (proc.returncode, proc.stdout) == (74, b""), proc.stderr.decode()
    lines = proc.stderr.decode().splitlines()  # before: the rename's error, then the run's, on two lines
    assert len(lines) == 1, lines
    found = re.fullmatch(rf"encpipe-backup: error: backup of {DB} failed \(status 74\): (.+); nothing was stored",
                         lines[0])
    assert found, lines
    return found[1]


def test_a_failed_rename_of_the_dump_removes_the_globals_and_temps_and_is_recorded(pg, tools, key_file, tmp_path):
    """Before: the globals file, already renamed, stayed under its final name with
    no dump beside it, the dump's temporary file stayed, and the metrics file still
    said the last attempt succeeded: encpipe-check said OK."""
    ensure_small(pg, DB)
    d, prom = str(tmp_path / "b"), str(tmp_path / "encpipe.prom")
    good, _ = backup(pg, tools, d, DB, "--key-file", key_file, "--metrics-file", prom)
    before = dir_entries(d)
    succeeded = samples(prom)
    cause = failing_backup(pg, tools, {"ENCPIPE_TEST_HOOK": PLANT_DIR_UNDER_DUMP},
                           "--dir", d, "--key-file", key_file, "--metrics-file", prom)
    found = re.fullmatch(rf"cannot rename {re.escape(d)}/\.encpipe-tmp\.\S+ to "
                         rf"({DB}_\S+\.sql\.zst\.enc): Is a directory", cause)
    assert found, cause
    planted = found[1]
    assert dir_entries(d) == sorted(before + [planted]) and os.path.isdir(os.path.join(d, planted))
    failed = samples(prom)
    assert failed[("encpipe_backup_last_attempt_success", DB)] == 0
    assert failed[("encpipe_backup_last_attempt_timestamp_seconds", DB)] > \
        succeeded[("encpipe_backup_last_attempt_timestamp_seconds", DB)]
    assert failed[("encpipe_backup_last_success_timestamp_seconds", DB)] == \
        succeeded[("encpipe_backup_last_success_timestamp_seconds", DB)]
    check = run([sys.executable, REPO / "scripts" / "encpipe-check", "--max-age", "24", "--metrics-file", prom,
                 "--database", DB, d], script_env(pg, tools))
    assert (check.returncode, check.stderr) == (1, b"")
    assert plugin_text(check.stdout.decode()) == (f"WARNING: {DB}: newest backup {os.path.basename(good)} is 0.0 h old; "
                                     "the last backup attempt failed\n")


def test_a_globals_file_swapped_meanwhile_is_not_removed(pg, tools, key_file, tmp_path):
    """What is removed again is only the very file this run renamed: a file put
    under the globals name after the rename (another inode) stays."""
    ensure_small(pg, DB)
    d = str(tmp_path / "b")
    swap = ('[ "$1" = renaming ] && case "$4" in *.globals.sql.enc) ;; *.enc) printf other > "$2/swap" && '
            'mv "$2/swap" "$2/${4%%.*}.globals.sql.enc" && mkdir "$2/$4" ;; esac; true')
    failing_backup(pg, tools, {"ENCPIPE_TEST_HOOK": swap}, "--dir", d, "--key-file", key_file)
    globals_name = [n for n in dir_entries(d) if n.endswith(".globals.sql.enc")]
    assert len(globals_name) == 1 and len(dir_entries(d)) == 2 and MARKER not in dir_entries(d)
    assert open(os.path.join(d, globals_name[0]), "rb").read() == b"other"


def test_the_dump_renamed_on_the_remote_but_not_in_dir_is_removed_from_both(pg, tools, key_file, s3, tmp_path):
    """The remote is renamed first: its globals and dump had their final names when
    DIR's dump failed to. A failed run stores nothing anywhere (as when the upload
    to DIR fails): the remote's objects are removed again, no temporary object
    stays, and the earlier backups are all there is, in both places alike."""
    ensure_small(pg, DB)
    d, remote = str(tmp_path / "b"), f"{s3.location}/half"
    failing_backup(pg, tools, {**s3.env, "ENCPIPE_TEST_HOOK": PLANT_DIR_UNDER_DUMP},
                   "--dir", d, "--to", remote, "--key-file", key_file)
    assert s3.objects("half") == []  # the marker written before the renames taken back: nothing stored
    assert len(dir_entries(d)) == 1 and os.path.isdir(os.path.join(d, dir_entries(d)[0]))


def test_an_object_under_the_dump_name_on_the_remote_fails_the_commit_and_stays(pg, tools, key_file, s3, tmp_path):
    """The remote's dump name taken (planted while DIR's globals was renamed): the
    globals, renamed in both places, are removed again; the planted object is
    not this run's and stays as it was."""
    ensure_small(pg, DB)
    d, remote = str(tmp_path / "b"), f"{s3.location}/taken"
    # through the server (it caches); the hook gets no RCLONE_ variable of ours: its own given
    config = " ".join(f"{name}={shlex.quote(value)}" for name, value in s3.env.items())
    plant = ('[ "$1" = renaming ] && case "$4" in *.globals.sql.enc) printf planted | '
             f'{config} {rclone_word()} rcat "{remote}/${{4%%.*}}.sql.enc" ;; esac; true')
    cause = failing_backup(pg, tools, {**s3.env, "ENCPIPE_TEST_HOOK": plant},
                           "--dir", d, "--to", remote, "--compress", "none", "--key-file", key_file)
    objects = s3.objects("taken")
    assert len(objects) == 1 and objects[0].endswith(".sql.enc")
    assert cause == f"{remote}/{objects[0]} already exists"
    assert open(os.path.join(s3.bucket_dir, "taken", objects[0]), "rb").read() == b"planted"
    assert not os.path.exists(d)  # the directory the run made removed: empty again


# --- after the renames: the backup is stored, whatever fails next ---------------------

# rclone, except that `lsjson` fails once the run has done STEP (a file STEP.done marks it)
RCLONE_FAILING_AFTER = """#!/bin/sh
case "$1" in
  lsjson) [ -e "{mark}" ] && {{ echo "lsjson: connection reset" >&2; exit 1; }} ;;
  {step}) case "$*" in *.encpipe-cluster*) exec "{real}" "$@" ;; esac  # the marker's, before the backup's
    "{real}" "$@"; status=$?; touch "{mark}"; exit $status ;;
esac
exec "{real}" "$@"
"""


def _stored_although(pg, tools, key_file, s3, tmp_path, step, *options):
    """A remote-only backup whose listings of the remote fail once `step` ran."""
    ensure_small(pg, DB)
    wrapper, prom = tmp_path / "rclone", str(tmp_path / "encpipe.prom")
    wrapper.write_text(RCLONE_FAILING_AFTER.format(mark=tmp_path / "step.done", step=step, real=rclone_binary()))
    wrapper.chmod(0o755)
    remote = f"{s3.location}/{step}"
    proc = run([BACKUP, "--to", remote, "--no-globals", "--key-file", key_file, "--metrics-file", prom, *options, DB],
               script_env(pg, tools, **s3.env, RCLONE=str(wrapper)))
    assert proc.stdout, proc.stderr.decode()
    line = json.loads(proc.stdout)
    assert line["filename"] in s3.objects(step) and line["remote"] == f"{remote}/{line['filename']}"
    recorded = samples(prom)
    assert recorded[("encpipe_backup_last_attempt_success", DB)] == 1
    assert recorded[("encpipe_backup_last_success_timestamp_seconds", DB)] > 0
    return proc, line


def test_a_remote_that_cannot_be_listed_after_the_upload_still_gives_the_line_and_the_record(
        pg, tools, key_file, s3, tmp_path):
    """Before: a listing that failed while looking for stale temporary objects, after
    the backup was stored, was 66 with no JSON line and no record of the run."""
    proc, line = _stored_although(pg, tools, key_file, s3, tmp_path, "cat")
    assert proc.returncode == 0 and line["bytes"] > 0
    assert proc.stderr.decode() == ("encpipe-backup: warning: stale temporary objects not looked for: cannot list "
                                    f"{s3.location}/cat: rclone lsjson: lsjson: connection reset\n")


def test_a_stored_backup_that_cannot_be_read_back_or_pruned_says_so_and_is_recorded(
        pg, tools, key_file, s3, tmp_path):
    proc, line = _stored_although(pg, tools, key_file, s3, tmp_path, "moveto", "--keep-last", "3")
    assert proc.returncode == 1 and line["bytes"] is None and line["pruned"] == []
    errors = [text for text in proc.stderr.decode().splitlines() if ": error: " in text]
    assert errors == [
        f"encpipe-backup: error: backup written, but cannot read {line['remote']} back: rclone lsjson "
        f"{line['remote']}: lsjson: connection reset",
        f"encpipe-backup: error: backup written, but {s3.location}/moveto/ not pruned: cannot list "
        f"{s3.location}/moveto: rclone lsjson: lsjson: connection reset"]
