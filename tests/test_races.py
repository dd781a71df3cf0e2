"""The backup tools against a user who can write the backup directory (or a
backup-named file of its own, or the directory above) but holds no key, racing
them: a file rewritten, swapped or renamed, or a directory swapped for a link,
between the moment a tool examines or authenticates it and the moment it acts
on it. Each race is won deterministically, through the tools' $ENCPIPE_TEST_HOOK
(a shell command run at named steps, see encpipe.safefile.hook) or by a child
($ENCPIPE, $RCLONE) that acts and then runs the real one. Real scripts.
"""

import io
import json
import os
import shlex
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from cliutil import plugin_text
from s3server import rclone_binary
from test_backup_dir import ENV, KEY, LEGACY_AVAILABLE, ROOT, make_valid
from test_backup_dir_hostile import hours_ago, script, three_days
from test_backup_restore import (
    backup,
    ensure_small,
    leftover_databases,
    restore,
)

# --- helpers -----------------------------------------------------------------------------

CHANGED = "cannot read %s: %s changed since it was listed"
SALT = slice(12, 44)  # magic 7 | version 1 | header_len 2 | suite 1 | chunk_log2 1 | payload_salt 32


def with_other_salt(sealed):
    """`sealed` with another payload salt and the header's CRC made right again: a
    header that parses (status "sealed", same size), with another fingerprint, that
    no key opens. What anyone who can read a backup can make of it."""
    out = bytearray(sealed)
    (length,) = struct.unpack_from(">H", out, 8)
    out[SALT] = bytes(b ^ 0xFF for b in out[SALT])
    out[length - 4 : length] = struct.pack(">I", zlib.crc32(bytes(out[: length - 4])))
    return bytes(out)


REWRITER = """
import os, sys
step, directory, name = sys.argv[1:4]
if step == "opening" and name == os.environ["RACE_NAME"]:
    count = os.environ["RACE_COUNT"]
    seen = int(open(count).read()) + 1 if os.path.exists(count) else 1
    open(count, "w").write(str(seen))
    if seen == int(os.environ["RACE_AT"]):  # rewrite it in place: the same inode, the same size
        with open(os.path.join(directory, name), "r+b") as f:
            f.write(open(os.environ["RACE_WITH"], "rb").read())
"""


def rewrite_at(tmp_path, name, at, source):
    """An environment whose hook rewrites `name` in place with the bytes of `source`
    as it is opened for the `at`-th time (prune, check --verify: first to read its
    header, then to authenticate it)."""
    helper = tmp_path / "rewriter.py"
    helper.write_text(REWRITER)
    saved = tmp_path / "race-source"
    shutil.copy(source, saved)
    return {"ENCPIPE_TEST_HOOK": f'exec {shlex.quote(sys.executable)} {helper} "$@"', "RACE_NAME": name,
            "RACE_COUNT": str(tmp_path / "race-count"), "RACE_AT": str(at), "RACE_WITH": str(saved)}


# --- prune and check --verify: the file authenticated is the file examined -----------------


def with_other_iv(legacy):
    """A file of the previous tool (salt 32 | iv 16 | tag 16 | ciphertext) with another IV."""
    return legacy[:32] + bytes(b ^ 0xFF for b in legacy[32:48]) + legacy[48:]


@pytest.mark.parametrize("source", ["sealed", "legacy"])
def test_prune_never_counts_a_copy_rewritten_in_after_its_header_was_read(tmp_path, source):
    """prune reads every file's header (to find copies: files sharing a payload
    salt, or a legacy IV), then opens each again to authenticate it. Between the
    two, the planter rewrites a file of its own in place (same inode, same size:
    still the file listed) with the bytes of a genuine backup, which it disguised
    by another salt (IV) while the headers were read: the copy went unseen,
    authenticated, counted as the newest, and --keep-last 1 removed every genuine
    backup, leaving the planter's file alone. The file authenticated must be the
    file examined."""
    d = tmp_path / "b"
    d.mkdir()
    good = three_days(d)
    if source == "sealed":
        original, disguise = good[-1], with_other_salt
    else:  # a file of the previous tool, which counts as made by its key
        if not LEGACY_AVAILABLE:
            pytest.skip("the legacy reader is not available")
        from encpipe.legacy import seal_legacy

        original, disguise = "crm_backup_2020-01-01_00-00-00-000Z.sql.enc", with_other_iv
        with open(d / original, "wb") as dst:
            seal_legacy(io.BytesIO(b"DROP TABLE orders;\n" * 100), dst, KEY)
    planted = f"shop_{hours_ago(1)}.sql.enc"
    (d / planted).write_bytes(disguise((d / original).read_bytes()))
    env = {**ENV, **rewrite_at(tmp_path, planted, 2, d / original)}
    done = script("prune", "--keep-last", "1", "--database", "shop", d, env=env)
    assert open(tmp_path / "race-count").read() == "2"  # the race was run
    assert (d / planted).read_bytes() == (tmp_path / "race-source").read_bytes()
    report = json.loads(done.stdout)
    assert done.returncode == 65, done.stderr
    assert [k["filename"] for k in report["kept"]] == [good[-1]]
    assert sorted(r["filename"] for r in report["removed"]) == good[:2]
    assert {line["filename"]: line["reasons"] for line in report["left"]} == {
        planted: [f"failed verification: {CHANGED % (planted, planted)}"]}
    assert sorted(os.listdir(d)) == sorted([good[-1], planted] + ([original] if source == "legacy" else []))


def test_check_verify_never_counts_a_copy_rewritten_in_after_its_header_was_read(tmp_path):
    """The same race against encpipe-check --verify: a copy of a backup a month old,
    disguised by another payload salt while check read the headers, then rewritten
    in place with the genuine bytes before check authenticated it, made check say
    OK, the newest backup an hour old, while no backup had run for a month."""
    d = tmp_path / "b"
    d.mkdir()
    old, planted = f"shop_{hours_ago(24 * 30)}.sql.enc", f"shop_{hours_ago(1)}.sql.enc"
    make_valid(d, old)
    (d / planted).write_bytes(with_other_salt((d / old).read_bytes()))
    done = script("check", "--max-age", "24", "--verify", d, env={**ENV, **rewrite_at(tmp_path, planted, 2, d / old)})
    assert open(tmp_path / "race-count").read() == "2"
    assert (d / planted).read_bytes() == (d / old).read_bytes()
    assert done.returncode == 2, done.stdout
    said, note = plugin_text(done.stdout.decode()).split("; ")
    assert said.startswith(f"CRITICAL: shop: newest backup {old} is 72")
    assert said.endswith(" h old, over --max-age 24 h")
    assert note == f"newest file {planted} failed authentication: {CHANGED % (planted, planted)}\n"


# --- restore: the SQL it runs is the bytes that authenticated --------------------------------

SECOND_PASS_RACER = """
import os, sys
from encpipe import envelope

def _race_target():
    for arg in sys.argv[1:]:
        if arg.startswith("/dev/fd/"):
            try:
                if os.path.realpath("/proc/self/fd/" + arg[len("/dev/fd/"):]) == os.environ["RACE_FILE"]:
                    return True
            except OSError:
                pass
    return False

if sys.argv[1:2] == ["open"] and _race_target():
    real = envelope.open_payload

    def racing(source, out, *args, **kwargs):
        if out is not None and not os.path.exists(os.environ["RACE_DONE"]):
            open(os.environ["RACE_DONE"], "w").close()
            with open(os.environ["RACE_FILE"], "r+b") as f:  # the same inode, rewritten
                f.write(open(os.environ["RACE_WITH"], "rb").read())
                f.truncate()
        return real(source, out, *args, **kwargs)

    envelope.open_payload = racing
from encpipe.cli import run
run()
"""


def test_restore_runs_none_of_a_backup_rewritten_in_place_between_its_two_passes(pg, tools, key_file, tmp_path):
    """encpipe-restore opens FILE once; its `encpipe open --verify-first` reads it
    twice, through /dev/fd/N (the same inode): a first pass that checks all of it,
    then a second that decrypts. A user who can write the backup file (no key) rewrites
    it in place between the two with another genuine backup of the same database, an
    older state it wants back: had the second pass read a header again, and let out
    what authenticated then, that backup would have been restored, not the file
    checked. The second pass keeps the first's key and witnesses: nothing of the
    other backup reaches psql, the restore fails (65) and the live database is as it
    was, with no scratch or pre-restore copy left."""
    db = ensure_small(pg, "race_restore")
    pg.psql("UPDATE t SET v = 'state A';", db=db)
    checked, _ = backup(pg, tools, str(tmp_path / "a"), db, "--compress", "none", "--key-file", key_file)
    pg.psql("UPDATE t SET v = 'state B';", db=db)
    other, _ = backup(pg, tools, str(tmp_path / "b"), db, "--compress", "none", "--key-file", key_file)
    pg.psql("UPDATE t SET v = 'state now';", db=db)
    racer = tmp_path / "racer.py"
    racer.write_text(SECOND_PASS_RACER)
    done = tmp_path / "raced"
    env = {"ENCPIPE": f"{shlex.quote(sys.executable)} {shlex.quote(str(racer))}",
           "RACE_FILE": os.path.realpath(checked), "RACE_WITH": other, "RACE_DONE": str(done)}
    before = leftover_databases(pg)
    proc = restore(pg, tools, checked, db, "--key-file", key_file, "--terminate-connections", env_extra=env)
    assert done.exists(), proc.stderr.decode()  # the race was run
    assert open(checked, "rb").read() == open(other, "rb").read()
    assert (proc.returncode, proc.stdout) == (65, b""), proc.stderr.decode()
    assert proc.stderr.decode() == (  # encpipe open's reason folded into the one line
        f"encpipe-restore: error: cannot decrypt {checked} (status 65): chunk 0 failed authentication: the file is "
        f"truncated, corrupt or was tampered with; database {db} was not touched\n")
    assert pg.psql("SELECT DISTINCT v FROM t", db=db) == "state now\n"
    assert leftover_databases(pg) == before


RCLONE_RACER = """#!/bin/sh
# rclone, after replacing the object $RACE_OBJECT (its file in the server's bucket
# directory) with the bytes of $RACE_WITH as it is read for the $RACE_AT-th time
if [ "$1" = cat ] && [ "$2" = "$RACE_OBJECT" ]; then
    seen=$(( $(cat "$RACE_COUNT" 2>/dev/null || echo 0) + 1 ))
    echo "$seen" >"$RACE_COUNT"
    if [ "$seen" = "$RACE_AT" ]; then
        cp "$RACE_WITH" "$RACE_BACKING.swap" && mv "$RACE_BACKING.swap" "$RACE_BACKING"
    fi
fi
exec "$RACE_REAL" "$@"
"""


def test_prune_of_a_remote_never_counts_a_copy_put_in_after_its_header_was_read(tmp_path, s3):
    """The same race on an rclone remote, where a writer of the bucket replaces an
    object whole (an object has no inode to compare): the copy put in place of the
    disguised object between the two reads authenticated, counted, and --keep-last 1
    removed every genuine backup. Now it fails as on a local directory."""
    remote = os.path.join(s3.bucket_dir, "raced")
    os.mkdir(remote)
    good = three_days(Path(remote))
    planted = f"shop_{hours_ago(1)}.sql.enc"
    Path(remote, planted).write_bytes(with_other_salt(Path(remote, good[-1]).read_bytes()))
    saved = tmp_path / "race-source"
    shutil.copy(os.path.join(remote, good[-1]), saved)
    racer = tmp_path / "rclone"
    racer.write_text(RCLONE_RACER)
    racer.chmod(0o755)
    env = {**s3.env, **ENV, "RCLONE": str(racer), "RACE_REAL": rclone_binary(), "RACE_AT": "2",
           "RACE_OBJECT": f"{s3.location}/raced/{planted}", "RACE_COUNT": str(tmp_path / "race-count"),
           "RACE_WITH": str(saved), "RACE_BACKING": os.path.join(remote, planted)}
    done = script("prune", "--keep-last", "1", f"{s3.location}/raced", env=env, timeout=120)
    assert open(tmp_path / "race-count").read() == "2\n"  # the race was run
    assert Path(remote, planted).read_bytes() == saved.read_bytes()
    report = json.loads(done.stdout)
    assert done.returncode == 65, done.stderr
    assert [k["filename"] for k in report["kept"]] == [good[-1]]
    assert sorted(r["filename"] for r in report["removed"]) == good[:2]
    assert [line["filename"] for line in report["left"]] == [planted]
    assert report["left"][0]["reasons"][0].endswith(f"{planted} changed since it was listed")
    assert sorted(os.listdir(remote)) == sorted([good[-1], planted])


# --- rotate: a subdirectory swapped for a link once the walk has checked it ------------------


def test_rotate_changes_no_file_outside_when_a_subdirectory_becomes_a_link_inside_its_walk(tmp_path):
    """rotate checks that a subdirectory is still the one listed when the walk enters
    it (test_shared_dir_scripts), then opens and rewrites each of its files by a path
    through it. The writer of DIR swaps sub/ for a link to a directory outside while
    rotate rewrites sub's first file: the next file of sub/ is opened, rewrapped and
    renamed over through the link, in the directory outside (a root-only encpipe file
    there that the old key opens loses its old-key slot). Then the rename was refused
    (75); now each file is opened and rewritten by its name in the directory listed,
    through its descriptor, wherever that directory has gone."""
    from cliutil import ok, run
    from test_rotate import World, rotate, rotate_env
    from test_shared_dir_scripts import SealedVictim

    world = World(tmp_path)
    world.mixed()
    world.add("sub/c-old.enc", "--key-file", world.old_a, size=100)
    sub = world.dir / "sub"
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = SealedVictim(outside / "c-old.enc", (sub / "c-old.enc").read_bytes())
    hook = (f'[ "$1" = created ] && [ "$2" = {sub} ] && [ "$4" = b-old-other.enc ] && '
            f'mv {sub} {world.dir}/.moved && ln -s {outside} {sub}; exit 0')
    done = rotate(["--allow-shared-dir", *world.args()], env=rotate_env(ENCPIPE_TEST_HOOK=hook))
    assert sub.is_symlink(), done.stderr  # the race was run
    victim.assert_untouched()
    assert done.returncode == 0, done.stderr  # now sub's files are read and rewritten in sub, as listed
    [record] = [json.loads(line) for line in done.stdout.decode().splitlines() if f"{sub}/c-old.enc" in line]
    assert record["status"] == "rotated"
    rotated = (world.dir / ".moved" / "c-old.enc").read_bytes()
    assert ok(run(["open", "--key-file", world.new], rotated)) == world.plain["sub/c-old.enc"]


def test_migrate_changes_no_file_outside_when_its_directory_becomes_a_link(tmp_path, migrate_keys):
    """The writer of DIR's parent (--allow-shared-dir) swaps DIR for a link to a
    directory outside while migrate converts DIR's first file: the next legacy file
    of that name outside (root-only, the old key opens it) was converted and
    replaced there. Then it was refused (75); now each file is read and replaced by
    its name in the directory listed, through its descriptor."""
    from test_migrate import FEW, is_encpipe, make_backups, migrate
    from test_shared_dir_scripts import SealedVictim

    parent = tmp_path / "shared"
    parent.mkdir()
    directory = parent / "backups"
    make_backups(directory, FEW, python_made=False)
    first, second = sorted(FEW)
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = SealedVictim(outside / second, (directory / second).read_bytes())
    hook = (f'[ "$1" = created ] && [ "$4" = {first} ] && [ ! -L {directory} ] && '
            f'mv {directory} {parent}/.moved && ln -s {outside} {directory}; exit 0')
    status, lines, err = migrate(directory, "--allow-shared-dir", keys=migrate_keys,
                                 env={"ENCPIPE_TEST_HOOK": hook})
    assert directory.is_symlink(), err  # the race was run
    victim.assert_untouched()
    records = {line["file"]: line for line in lines}
    assert (status, records[first]["status"], records[second]["status"]) == (0, "migrated", "migrated"), err
    assert is_encpipe(parent / ".moved" / second)  # converted in the directory listed, wherever it went


def test_migrate_keeps_the_original_in_its_own_directory_whatever_the_name_leads_to(tmp_path, migrate_keys):
    """--keep-originals links NAME.legacy to NAME just before the rename. Made by
    path, once DIR had become a link to a directory outside (after the conversion
    was written), the link went there: a new name for a file outside. Now it is
    made through the directory's descriptor, beside the converted file."""
    from test_migrate import FEW, make_backups, migrate

    parent = tmp_path / "shared"
    parent.mkdir()
    directory = parent / "backups"
    make_backups(directory, FEW, python_made=False)
    first = sorted(FEW)[0]
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(directory / first, outside / first)
    hook = (f'[ "$1" = verified ] && [ "$4" = {first} ] && [ ! -L {directory} ] && '
            f'mv {directory} {parent}/.moved && ln -s {outside} {directory}; exit 0')
    status, lines, err = migrate(directory, "--allow-shared-dir", "--keep-originals", keys=migrate_keys,
                                 env={"ENCPIPE_TEST_HOOK": hook})
    assert directory.is_symlink(), err  # the race was run
    assert os.listdir(outside) == [first]
    assert {line["file"]: line for line in lines}[first]["kept"] == first + ".legacy"
    moved = parent / ".moved"
    assert (moved / (first + ".legacy")).read_bytes() == (outside / first).read_bytes()  # the original, kept


# --- encpipe-backup: its retention pass in the directory it wrote in -------------------------

def test_the_retention_pass_of_a_backup_prunes_no_directory_outside(tmp_path):
    """The writer of DIR's parent (--allow-shared-dir) swaps DIR for a link to a
    directory outside (root's archive of the same backups, kept longer) once the new
    backup is stored (as it is read back): the retention pass that follows
    (--keep-last 1) listed the archive and removed all but its newest backup there,
    exit 0, nothing said on standard error. Now the store is the directory opened
    once, at the start: every step, the retention pass's too, is relative to it."""
    parent = tmp_path / "shared"
    parent.mkdir()
    d, archive = parent / "b", tmp_path / "archive"
    d.mkdir()
    archive.mkdir()
    kept = [f"shop_{hours_ago(h)}.sql.enc" for h in (24 * 60, 24 * 30)]
    for name in kept:
        make_valid(archive, name)
    temp, final = ".encpipe-tmp.20240101T000000Z_1_2", f"shop_{hours_ago(0)}.sql.enc"
    make_valid(d, temp)
    hook = (f'[ "$1" = opening ] && [ ! -L {d} ] && mv {d} {parent}/.moved && ln -s {archive} {d}; true')
    done = subprocess.run([sys.executable, "-m", "encpipe.backup", "commit", "--dir", d, "--allow-shared-dir",
                           "--database", "shop", "--kind", "sql", "--started", "1", "--keep-last", "1", temp, final],
                          capture_output=True, timeout=30,
                          env={**os.environ, **ENV, "PYTHONPATH": ROOT, "ENCPIPE_TEST_HOOK": hook})
    assert d.is_symlink(), done.stderr  # the race was run
    assert sorted(os.listdir(archive)) == sorted(kept), done.stderr
    assert (done.returncode, done.stderr) == (0, b"")
    assert json.loads(done.stdout)["pruned"] == [] and os.listdir(parent / ".moved") == [final]


def test_prune_removes_only_the_file_it_examined_not_one_renamed_in_since(tmp_path):
    """prune authenticates every file, then removes those the policy does not keep,
    by name. Once it has authenticated them all, a writer of the directory renames a
    kept backup over the name of one to go: unlinked by that name, the kept backup
    would go in its place. The name must still be the very file examined (its inode),
    else it is left and said (74): the kept backup's bytes survive."""
    d = tmp_path / "b"
    d.mkdir()
    old, kept, newest = three_days(d)
    saved = (d / kept).read_bytes()
    count = tmp_path / "count"
    hook = (f'[ "$1" = opening ] && [ "$3" = {newest} ] && echo >>{count} && '
            f'[ "$(wc -l <{count})" = 2 ] && mv {d / kept} {d / old}; true')
    done = script("prune", "--keep-last", "2", d, env={**ENV, "ENCPIPE_TEST_HOOK": hook})
    assert not (d / kept).exists()  # the race was run
    assert done.returncode == 74, done.stderr
    assert done.stderr.decode() == f"encpipe-prune: error: {old} changed while pruning; left in place\n"
    assert (d / old).read_bytes() == saved and sorted(os.listdir(d)) == sorted([old, newest])
