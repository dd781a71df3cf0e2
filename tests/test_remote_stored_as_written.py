"""A remote that does not keep what it was given: the run never says it stored a backup.

An `rclone rcat` that reads the whole stream and exits 0 but stores less (a
proxy or gateway that cuts the body short, a backend's bug) left a short object
under the backup's name: exit 0, its JSON line and the metrics file both said
the backup succeeded, and only a later verify found it truncated. An upload now
asks the remote for the object's size (`rclone lsjson --stat`; the listing
with an rclone that has no --stat) and checks it against the bytes it wrote
before the object is renamed: 74, one line, nothing stored, the failed run
recorded.

An object that, once renamed, is gone or reads back as something else (another
writer of the bucket, a remote that loses it) was read back and its damage
never looked at: exit 0, recorded a success. The read-back now fails on it:
exit 1, `backup written, but LOCATION/NAME does not read back as stored: ...`,
and the run recorded as a failed attempt (the backup is not there as written);
a read-back that cannot run at all (the remote does not answer just then) stays
what README says (exit 1, recorded a success without a size). Every file the
run renamed is read back so, in every store: the run's globals file too, and
the off-site copy of a run given --dir as well (before, only the dump in the
first store was).

Real rclone against `rclone serve s3`; a fake pg_dump (no cluster needed); the
faults are made by a wrapper around the real rclone.
"""

import json
import os
import re
import shlex
import subprocess
import sys

import pytest

from s3server import rclone_word
from test_backup_monitoring import samples
from test_backup_restore import BACKUP, python_env
from test_rclone_leftovers import fake_env

DB = "shop"
# incompressible, so that the sealed object is much larger than its header
DUMP = "head -c 300000 /dev/urandom\n"


def wrapped(tmp_path, when, then):
    """An rclone that, for `rclone WHEN ...`, runs the shell lines `then`; the real one otherwise."""
    path = tmp_path / "rclone"
    path.write_text(f'#!/bin/bash\nR={rclone_word()}\nif [ "$1" = {when} ]; then\n{then}\nfi\nexec "$R" "$@"\n')
    path.chmod(0o755)
    return str(path)


def backup(s3, tmp_path, folder, rclone, key_file, *options):
    prom = tmp_path / "encpipe.prom"
    env = fake_env(tmp_path, DUMP, **s3.env, RCLONE=rclone)
    done = subprocess.run([BACKUP, "--no-globals", "--compress", "none", "--to", f"{s3.location}/{folder}",
                           "--key-file", key_file, "--metrics-file", str(prom), *options, DB],
                          env=env, capture_output=True, stdin=subprocess.DEVNULL, timeout=300)
    return done.returncode, done.stdout, done.stderr.decode(), samples(prom)


def assert_upload_refused(s3, folder, result, what, why):
    """A backup whose upload `what` (a pattern of the object's name) failed for `why` (a
    pattern): 74, that one line, nothing on stdout nor on the remote, a failed attempt recorded."""
    code, out, err, recorded = result
    assert (code, out) == (74, b""), err
    assert re.fullmatch(rf"encpipe-backup: error: backup of {DB} failed \(status 74\): cannot upload "
                        rf"{what}: {why}; nothing was stored\n", err), err
    assert s3.objects(folder) == []
    assert recorded[("encpipe_backup_last_attempt_success", DB)] == 0


def test_an_upload_the_remote_keeps_short_is_not_stored(s3, key_file, tmp_path):
    """Before: exit 0, `bytes` 1000 in the JSON line, a success recorded."""
    rclone = wrapped(tmp_path, "rcat", '{ head -c 1000; cat > /dev/null; } | "$R" rcat "$2"; exit')
    result = backup(s3, tmp_path, "short", rclone, key_file)
    assert_upload_refused(s3, "short", result, rf"{re.escape(s3.location)}/short/\.encpipe-tmp\.\S+",
                          r"the remote holds 1000 bytes of the [0-9]+ written")
    assert ("encpipe_backup_last_success_timestamp_seconds", DB) not in result[3]


REPLACED = {
    "gone": ('"$R" deletefile "$3"', "cannot read {name}: no such object"),
    "foreign": ('echo not a backup | "$R" rcat "$3"', "{name}: not an encpipe file"),
    "truncated": ('"$R" cat --count 1000 "$3" | "$R" rcat "$3"', "{name} is 1000 bytes, {size} were stored"),
}


def test_a_backup_that_does_not_read_back_as_stored_fails_and_is_recorded_failed(s3, key_file, tmp_path):
    """The object replaced right after its rename (moveto). Before: exit 0 and a
    success recorded for each; `bytes` 1000 for the truncated one."""
    for folder, (then, said) in REPLACED.items():
        rclone = wrapped(tmp_path, "moveto", f'"$R" moveto "$2" "$3" || exit; {then}; exit')
        code, out, err, recorded = backup(s3, tmp_path, folder, rclone, key_file)
        assert code == 1, (folder, err)
        line = json.loads(out)
        assert (line["bytes"], line["key_ids"], line["slots"]) == (None, None, None)
        lines = err.splitlines()
        assert len(lines) == 1, lines
        size = re.search(r"([0-9]+) were stored", lines[0])
        expected = said.format(name=re.escape(line["filename"]), size=size and size[1])
        assert re.fullmatch(rf"encpipe-backup: error: backup written, but {re.escape(s3.location)}/{folder}/"
                            rf"{re.escape(line['filename'])} does not read back as stored: " + expected,
                            lines[0]), (folder, lines)
        assert recorded[("encpipe_backup_last_attempt_success", DB)] == 0, folder
        assert ("encpipe_backup_last_success_timestamp_seconds", DB) not in recorded, folder


def test_an_rclone_without_lsjson_stat_still_stores_and_reads_back(s3, key_file, tmp_path):
    """An older rclone has no `lsjson --stat` (Ubuntu 22.04 ships 1.53): the object's
    size is then read from the listing, and the backup is stored as before."""
    rclone = wrapped(tmp_path, "lsjson", 'for a; do [ "$a" = --stat ] && { echo "2026/01/01 00:00:00 NOTICE: Fatal '
                                         'error: unknown flag: --stat" >&2; exit 1; }; done')
    code, out, err, recorded = backup(s3, tmp_path, "old", rclone, key_file)
    assert (code, err) == (0, ""), err
    line = json.loads(out)
    assert s3.objects("old") == [".encpipe-cluster", line["filename"]] and line["bytes"] > 300000 and line["key_ids"]
    assert recorded[("encpipe_backup_last_attempt_success", DB)] == 1


def test_an_object_size_that_is_not_json_fails_the_upload_in_one_line(s3, key_file, tmp_path):
    """As a listing that is not one does (66; before, 74 and `its output is not JSON`):
    tests/test_remote_head_bounded.py."""
    rclone = wrapped(tmp_path, "lsjson", 'for a; do [ "$a" = --stat ] && { echo "{not json"; exit 0; }; done')
    code, out, err, recorded = backup(s3, tmp_path, "garbled", rclone, key_file)
    assert (code, out) == (66, b""), err
    assert re.fullmatch(rf"encpipe-backup: error: backup of {DB} failed \(status 66\): cannot list "
                        rf"{re.escape(s3.location)}/garbled/\.encpipe-tmp\.\S+: rclone lsjson: its output is not a "
                        r"listing \(line 1: not JSON\); nothing was stored\n", err), err
    assert s3.objects("garbled") == []
    assert recorded[("encpipe_backup_last_attempt_success", DB)] == 0


@pytest.mark.parametrize("size", ["-1", '"unknown"'], ids=["minus-one", "not-a-number"])
def test_an_object_the_remote_gives_no_size_for_is_said_without_one(s3, key_file, tmp_path, size):
    """rclone gives -1 for a size the backend does not tell: before, `the remote holds -1
    bytes of the N written` (and `None bytes` for one that is no number)."""
    stat = ('for a; do [ "$a" = --stat ] && { echo "{\\"Path\\":\\"x\\",\\"Name\\":\\"x\\",\\"Size\\":'
            + size.replace('"', '\\"') + ',\\"IsDir\\":false}"; exit 0; }; done')
    result = backup(s3, tmp_path, "sizeless", wrapped(tmp_path, "lsjson", stat), key_file)
    assert_upload_refused(s3, "sizeless", result, rf"{re.escape(s3.location)}/sizeless/\.encpipe-tmp\.\S+",
                          r"the remote gives no size for it, so the [0-9]+ bytes written are not known to be there")


def test_a_read_back_that_cannot_be_made_leaves_the_backup_counted_as_stored(s3, key_file, tmp_path):
    """The object there at its size, its download failing (the remote not answering just
    then): exit 1, `cannot read ... back` with rclone's own reason (its last line; before,
    only `rclone cannot read ...`), and the run recorded a success (without a size), as
    README says; not `does not read back as stored`, a failed attempt. Its prune (--keep-last,
    its download answered) succeeds: the run's status stays 1."""
    once = shlex.quote(str(tmp_path / "answered"))  # the first download, the read-back, only
    rclone = wrapped(tmp_path, "cat", f'[ -e {once} ] || {{ touch {once}; '
                                      'echo "2026/12/05 01:00:00 ERROR : connection reset" >&2; exit 1; }')
    code, out, err, recorded = backup(s3, tmp_path, "unanswered", rclone, key_file, "--keep-last", "3")
    assert code == 1, err
    line = json.loads(out)
    where = f"{s3.location}/unanswered/{line['filename']}"
    assert err == (f"encpipe-backup: error: backup written, but cannot read {where} back: cannot read "
                   f"{line['filename']}: rclone cannot read {where}: 2026/12/05 01:00:00 ERROR : "
                   "connection reset\n"), err
    assert line["filename"] in s3.objects("unanswered")
    assert recorded[("encpipe_backup_last_attempt_success", DB)] == 1


def test_the_off_site_copy_is_read_back_too(s3, key_file, tmp_path):
    """--dir and --to: the remote's object lost right after its rename. Before, only
    the local file was read back: exit 0, a success recorded, no word of the copy."""
    rclone = wrapped(tmp_path, "moveto", '"$R" moveto "$2" "$3" || exit; "$R" deletefile "$3"; exit')
    prom, directory = tmp_path / "encpipe.prom", tmp_path / "local"
    done = subprocess.run([BACKUP, "--no-globals", "--compress", "none", "--dir", str(directory),
                           "--to", f"{s3.location}/both", "--key-file", key_file, "--metrics-file", str(prom), DB],
                          env=fake_env(tmp_path, DUMP, **s3.env, RCLONE=rclone), capture_output=True,
                          stdin=subprocess.DEVNULL, timeout=300)
    err = done.stderr.decode()
    assert done.returncode == 1, err
    line = json.loads(done.stdout)
    assert line["bytes"] > 300000 and line["key_ids"]  # the local file, read back as stored
    assert sorted(os.listdir(directory)) == sorted([line["filename"], ".encpipe-cluster"])
    assert s3.objects("both") == []  # the marker's object went the way of every moveto here
    assert err == (f"encpipe-backup: error: backup written, but {s3.location}/both/{line['filename']} does not read "
                   f"back as stored: cannot read {line['filename']}: no such object\n")
    recorded = samples(prom)
    assert recorded[("encpipe_backup_last_attempt_success", DB)] == 0
    assert ("encpipe_backup_last_success_timestamp_seconds", DB) not in recorded


def _uploaded(tmp_path, key_file, env, where, temp, data):
    """`data` sealed into TEMP in `where` (`job upload`'s options)."""
    sealed = subprocess.run([sys.executable, "-m", "encpipe", "seal", "--key-file", key_file], input=data, env=env,
                            capture_output=True, timeout=60)
    assert sealed.returncode == 0, sealed.stderr
    done = subprocess.run([sys.executable, "-m", "encpipe.backup", "upload", *where, temp], input=sealed.stdout,
                          env=env, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr


def _commit(env, where, final, *options):
    """`job commit` of the uploaded .encpipe-tmp.d as `final` into `where`, after `options`."""
    return subprocess.run([sys.executable, "-m", "encpipe.backup", "commit", *where, "--database", DB, "--kind", "sql",
                           "--started", "1", *options, "--", ".encpipe-tmp.d", final], env=env, capture_output=True,
                          stdin=subprocess.DEVNULL, timeout=300)


def test_the_globals_file_is_read_back_too(s3, key_file, tmp_path):
    """The run's globals file replaced on the remote right after its rename (`job
    commit --globals-temp`). Before, only the dump was read back: exit 0, a
    success recorded, and the dump stored beside a globals file that is not its."""
    rclone = wrapped(tmp_path, "moveto", '"$R" moveto "$2" "$3" || exit\ncase "$3" in *.globals.sql.enc) '
                                         'echo not a backup | "$R" rcat "$3";; esac; exit')
    env = {**python_env(), **s3.env, "RCLONE": rclone}
    prom, where = tmp_path / "encpipe.prom", ["--to", f"{s3.location}/globals"]
    stamp = "20261205T000000Z"
    _uploaded(tmp_path, key_file, env, where, ".encpipe-tmp.g", b"-- globals\n")
    _uploaded(tmp_path, key_file, env, where, ".encpipe-tmp.d", b"select 1;\n")
    done = subprocess.run([sys.executable, "-m", "encpipe.backup", "commit", *where, "--database", DB, "--kind", "sql",
                           "--started", "1", "--metrics-file", str(prom), "--globals-temp", ".encpipe-tmp.g",
                           "--globals-name", f"{DB}_{stamp}.globals.sql.enc", "--", ".encpipe-tmp.d",
                           f"{DB}_{stamp}.sql.enc"], env=env, capture_output=True, stdin=subprocess.DEVNULL,
                          timeout=300)
    err = done.stderr.decode()
    assert done.returncode == 1, err
    line = json.loads(done.stdout)
    assert line["bytes"] and line["key_ids"]  # the dump, read back as stored
    assert err == (f"encpipe-backup: error: backup written, but {s3.location}/globals/{DB}_{stamp}.globals.sql.enc "
                   f"does not read back as stored: {DB}_{stamp}.globals.sql.enc: not an encpipe file\n")
    recorded = samples(prom)
    assert recorded[("encpipe_backup_last_attempt_success", DB)] == 0
    assert ("encpipe_backup_last_success_timestamp_seconds", DB) not in recorded


LAGGING = """for a; do [ "$a" = --stat ] && exec "$R" "$@"; done
echo '[]'; exit 0"""  # a listing that does not show the run's objects yet (Swift's is updated later)


def test_a_rename_taken_back_on_a_remote_whose_listing_lags(s3, key_file, tmp_path):
    """The globals file renamed, the dump's rename failing, on a remote whose listing
    does not show the run's objects yet: the globals file is taken back, as README
    says (the objects are asked for themselves). Before, the rename looked for the
    temporary object in the listing, found none, and taking the globals file back
    did nothing: `nothing was stored`, 74, and the globals file left under its name."""
    path = tmp_path / "rclone"
    path.write_text(f'#!/bin/bash\nR={rclone_word()}\ncase "$1" in\nlsjson) {LAGGING};;\n'
                    'moveto) case "$3" in *.globals.sql.enc) ;; *) echo "2026/12/05 01:00:00 NOTICE: Failed to '
                    'moveto: connection reset" >&2; exit 1;; esac;;\nesac\nexec "$R" "$@"\n')
    path.chmod(0o755)
    env = {**python_env(), **s3.env, "RCLONE": str(path)}
    where, stamp = ["--to", f"{s3.location}/lagging"], "20261205T000000Z"
    _uploaded(tmp_path, key_file, env, where, ".encpipe-tmp.g", b"-- globals\n")
    _uploaded(tmp_path, key_file, env, where, ".encpipe-tmp.d", b"select 1;\n")
    done = _commit(env, where, f"{DB}_{stamp}.sql.enc", "--globals-temp", ".encpipe-tmp.g", "--globals-name",
                   f"{DB}_{stamp}.globals.sql.enc")
    assert (done.returncode, done.stdout) == (74, b""), done.stderr
    assert done.stderr.decode() == (
        f"encpipe-backup: error: backup of {DB} failed (status 74): rclone moveto "
        f"{s3.location}/lagging/.encpipe-tmp.d {s3.location}/lagging/{DB}_{stamp}.sql.enc: 2026/12/05 01:00:00 "
        "NOTICE: Failed to moveto: connection reset; nothing was stored\n")
    assert s3.objects("lagging") == []


def test_a_moveto_that_copied_and_then_failed_leaves_no_object_under_the_final_name(s3, key_file, tmp_path):
    """`rclone moveto` is a copy, then the removal of the source (S3: CopyObject, then
    DeleteObject): one whose removal fails (a bucket that refuses deletes, a connection
    lost) exits 1 with the copy made. Before, the run said `nothing was stored` (74) and
    left that copy under the backup's final name; it is now taken back as a rename's is."""
    rclone = wrapped(tmp_path, "moveto", '"$R" copyto "$2" "$3" || exit; echo "2026/12/05 01:00:00 ERROR : '
                                         'Failed to moveto: AccessDenied: access denied" >&2; exit 1')
    env = {**python_env(), **s3.env, "RCLONE": rclone}
    where, final = ["--to", f"{s3.location}/halfmoved"], f"{DB}_20261205T000000Z.sql.enc"
    _uploaded(tmp_path, key_file, env, where, ".encpipe-tmp.d", b"select 1;\n")
    done = _commit(env, where, final)
    assert (done.returncode, done.stdout) == (74, b""), done.stderr
    assert done.stderr.decode() == (
        f"encpipe-backup: error: backup of {DB} failed (status 74): rclone moveto "
        f"{s3.location}/halfmoved/.encpipe-tmp.d {s3.location}/halfmoved/{final}: 2026/12/05 01:00:00 ERROR : "
        "Failed to moveto: AccessDenied: access denied; nothing was stored\n")
    assert s3.objects("halfmoved") == []


def test_a_copy_that_cannot_be_taken_back_is_named(s3, key_file, tmp_path):
    """The same on a bucket that refuses every delete: the copy stays, and the run's line names it."""
    refused = 'echo "2026/12/05 01:00:00 ERROR : Failed to $1: AccessDenied: access denied" >&2; exit 1'
    path = tmp_path / "rclone"
    path.write_text(f'#!/bin/bash\nR={rclone_word()}\ncase "$1" in\nmoveto) "$R" copyto "$2" "$3" || exit; '
                    f'{refused};;\ndeletefile) {refused};;\nesac\nexec "$R" "$@"\n')
    path.chmod(0o755)
    env = {**python_env(), **s3.env, "RCLONE": str(path)}
    where, final = ["--to", f"{s3.location}/undeletable"], f"{DB}_20261205T000000Z.sql.enc"
    _uploaded(tmp_path, key_file, env, where, ".encpipe-tmp.d", b"select 1;\n")
    done = _commit(env, where, final)
    assert (done.returncode, done.stdout) == (74, b""), done.stderr
    place = f"{s3.location}/undeletable"
    assert done.stderr.decode().splitlines() == [
        f"encpipe-backup: warning: {place}/.encpipe-tmp.d not removed: rclone deletefile: 2026/12/05 01:00:00 ERROR : "
        "Failed to deletefile: AccessDenied: access denied",
        f"encpipe-backup: error: backup of {DB} failed (status 74): rclone moveto {place}/.encpipe-tmp.d "
        f"{place}/{final}: 2026/12/05 01:00:00 ERROR : Failed to moveto: AccessDenied: access denied; "
        f"{place}/{final} left in place: rclone deletefile {place}/{final}: 2026/12/05 01:00:00 ERROR : Failed to "
        "deletefile: AccessDenied: access denied; not all of it could be taken back"]
    assert s3.objects("undeletable") == sorted([".encpipe-tmp.d", final])


def _lagging_rclone(tmp_path, moveto):
    """An rclone whose listing does not show new objects yet (LAGGING), `moveto` the shell
    lines its moveto runs."""
    path = tmp_path / "rclone"
    path.write_text(f'#!/bin/bash\nR={rclone_word()}\ncase "$1" in\nlsjson) {LAGGING};;\nmoveto) {moveto};;\nesac\n'
                    'exec "$R" "$@"\n')
    path.chmod(0o755)
    return str(path)


@pytest.mark.parametrize("moveto", ['"$R" moveto "$2" "$3"; exit',
                                    'echo "2026/12/05 01:00:00 NOTICE: Failed to moveto: connection reset" >&2; '
                                    'exit 1'], ids=["moved", "failed"])
def test_an_object_a_lagging_listing_does_not_show_is_neither_replaced_nor_removed(s3, key_file, tmp_path, moveto):
    """Another run's backup already under the final name (the same database, the same
    second, another host), the size of this run's, on a remote whose listing does not
    show it yet. The rename looked for it in that listing, found none, and moveto went
    ahead: it replaced the other backup (exit 0), or, failing before its copy, took back
    "its copy" by its size, which was the other backup (74, `nothing was stored`, and
    that backup removed). The final name is asked of the object itself now: `already
    exists`, 74, the other backup as it was."""
    where, final = ["--to", f"{s3.location}/other"], f"{DB}_20261205T000000Z.sql.enc"
    plain = {**python_env(), **s3.env}
    _uploaded(tmp_path, key_file, plain, where, final, b"select 1;\n")  # the other run's
    _uploaded(tmp_path, key_file, plain, where, ".encpipe-tmp.d", b"select 1;\n")
    stored = os.path.join(s3.bucket_dir, "other")
    theirs = open(os.path.join(stored, final), "rb").read()
    assert os.path.getsize(os.path.join(stored, ".encpipe-tmp.d")) == len(theirs) != 0
    done = subprocess.run([sys.executable, "-m", "encpipe.backup", "commit", *where, "--database", DB, "--kind", "sql",
                           "--started", "1", "--", ".encpipe-tmp.d", final],
                          env={**plain, "RCLONE": _lagging_rclone(tmp_path, moveto)}, capture_output=True,
                          stdin=subprocess.DEVNULL, timeout=300)
    assert (done.returncode, done.stdout) == (74, b""), done.stderr
    assert done.stderr.decode() == (f"encpipe-backup: error: backup of {DB} failed (status 74): {s3.location}/other/"
                                    f"{final} already exists; nothing was stored\n")
    assert s3.objects("other") == [final]
    assert open(os.path.join(stored, final), "rb").read() == theirs


def test_an_object_listed_that_the_remote_does_not_answer_for_yet_is_not_replaced(s3, key_file, tmp_path):
    """The mirror: another run's backup under the final name, listed, but the object
    asked for itself not found yet (`lsjson --stat` null: a HEAD answered from a cache
    of the earlier 404). The listing's word is enough: `already exists`, 74, the other
    backup as it was (moveto would have replaced it)."""
    where, final = ["--to", f"{s3.location}/unheaded"], f"{DB}_20261205T000000Z.sql.enc"
    plain = {**python_env(), **s3.env}
    _uploaded(tmp_path, key_file, plain, where, final, b"select 1;\n")  # the other run's
    _uploaded(tmp_path, key_file, plain, where, ".encpipe-tmp.d", b"select 2;\n")
    stored = os.path.join(s3.bucket_dir, "unheaded", final)
    theirs = open(stored, "rb").read()
    rclone = wrapped(tmp_path, "lsjson", f'case "$*" in *--stat*/{final}) echo null; exit 0;; esac')
    done = _commit({**plain, "RCLONE": rclone}, where, final)
    assert (done.returncode, done.stdout) == (74, b""), done.stderr
    assert done.stderr.decode() == (f"encpipe-backup: error: backup of {DB} failed (status 74): {s3.location}/"
                                    f"unheaded/{final} already exists; nothing was stored\n")
    assert s3.objects("unheaded") == [final] and open(stored, "rb").read() == theirs


def test_a_failed_moveto_of_an_object_not_answered_for_takes_nothing_back(s3, key_file, tmp_path):
    """The temporary object not found when asked for (its size unknown), then the moveto
    failing before its copy: there is nothing to go by, nothing is taken back (not a
    `deletefile` of whatever has no size under the final name), the moveto's error alone."""
    where, final = ["--to", f"{s3.location}/unsized"], f"{DB}_20261205T000000Z.sql.enc"
    plain = {**python_env(), **s3.env}
    _uploaded(tmp_path, key_file, plain, where, ".encpipe-tmp.d", b"select 1;\n")
    path = tmp_path / "rclone"
    path.write_text(f'#!/bin/bash\nR={rclone_word()}\ncase "$1 $*" in\nlsjson*--stat*/.encpipe-tmp.d) echo null; '
                    'exit 0;;\nmoveto*) echo "2026/12/05 01:00:00 NOTICE: Failed to moveto: connection reset" >&2; '
                    'exit 1;;\ndeletefile*/' + final + ') echo "deletefile of the final name" >&2; exit 1;;\nesac\n'
                    'exec "$R" "$@"\n')
    path.chmod(0o755)
    done = _commit({**plain, "RCLONE": str(path)}, where, final)
    assert (done.returncode, done.stdout) == (74, b""), done.stderr
    place = f"{s3.location}/unsized"
    assert done.stderr.decode() == (
        f"encpipe-backup: error: backup of {DB} failed (status 74): rclone moveto {place}/.encpipe-tmp.d "
        f"{place}/{final}: 2026/12/05 01:00:00 NOTICE: Failed to moveto: connection reset; nothing was stored\n")
    assert s3.objects("unsized") == []


def test_a_final_name_the_remote_does_not_answer_for_is_not_moved_to(s3, key_file, tmp_path):
    """`lsjson --stat` of the final name failing (the remote not answering just then, not
    an rclone without --stat): the rename fails on it, 74, rather than go by the listing
    alone, which may lag behind another run's object under that name."""
    where, final = ["--to", f"{s3.location}/unasked"], f"{DB}_20261205T000000Z.sql.enc"
    plain = {**python_env(), **s3.env}
    _uploaded(tmp_path, key_file, plain, where, ".encpipe-tmp.d", b"select 1;\n")
    rclone = wrapped(tmp_path, "lsjson", f'case "$*" in *--stat*/{final}) echo "2026/12/05 01:00:00 ERROR : '
                                         'connection reset" >&2; exit 1;; esac')
    done = _commit({**plain, "RCLONE": rclone}, where, final)
    assert (done.returncode, done.stdout) == (74, b""), done.stderr
    place = f"{s3.location}/unasked"
    assert done.stderr.decode() == (f"encpipe-backup: error: backup of {DB} failed (status 74): rclone lsjson "
                                    f"{place}/{final}: 2026/12/05 01:00:00 ERROR : connection reset; nothing was "
                                    "stored\n")
    assert s3.objects("unasked") == []


def test_a_failed_moveto_whose_copy_cannot_be_looked_for_says_so(s3, key_file, tmp_path):
    """An older rclone (no `lsjson --stat`: the listing is read instead) whose moveto
    made its copy and failed, the remote then not answering a listing. Before, the
    listing's error replaced the moveto's: `(status 66): cannot list ...; nothing was
    stored`, no word of the copy left under the final name. Now the moveto's error, 74,
    and the copy named as left in place, why after it."""
    gone = tmp_path / "connection.lost"
    path = tmp_path / "rclone"
    path.write_text(f'#!/bin/bash\nR={rclone_word()}\ncase "$1" in\nlsjson) for a; do [ "$a" = --stat ] && '
                    '{ echo "2026/01/01 00:00:00 NOTICE: Fatal error: unknown flag: --stat" >&2; exit 1; }; done\n'
                    f'  [ -e {gone} ] && {{ echo "lsjson: connection reset" >&2; exit 1; }};;\n'
                    f'moveto) "$R" copyto "$2" "$3" || exit; touch {gone}; echo "2026/12/05 01:00:00 ERROR : Failed '
                    'to moveto: connection reset" >&2; exit 1;;\nesac\nexec "$R" "$@"\n')
    path.chmod(0o755)
    env = {**python_env(), **s3.env, "RCLONE": str(path)}
    where, final = ["--to", f"{s3.location}/unlisted"], f"{DB}_20261205T000000Z.sql.enc"
    _uploaded(tmp_path, key_file, env, where, ".encpipe-tmp.d", b"select 1;\n")
    done = _commit(env, where, final)
    assert (done.returncode, done.stdout) == (74, b""), done.stderr
    place = f"{s3.location}/unlisted"
    assert done.stderr.decode() == (
        f"encpipe-backup: error: backup of {DB} failed (status 74): rclone moveto {place}/.encpipe-tmp.d "
        f"{place}/{final}: 2026/12/05 01:00:00 ERROR : Failed to moveto: connection reset; {place}/{final} left in "
        f"place: cannot list {place}: rclone lsjson: lsjson: connection reset; not all of it could be taken back\n")
    assert s3.objects("unlisted") == [final]
