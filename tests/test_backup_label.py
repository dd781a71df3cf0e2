"""A backup's label: its database and its name's time, authenticated at the start of its plaintext.

A file's name is not authenticated. A local user who can write the backup
directory (no key) copied database B's genuine backup to a newer name in
database A's series: it authenticates (same key, same maker), so verify and
check counted it as A's newest backup, `encpipe-prune --keep-last 1` removed A's
real one, and encpipe-restore of A's "newest" restored B's data. encpipe-backup
now seals `encpipe-backup v1 db=<name> at=<time>` first (a zstd skippable frame,
an empty gzip member's comment, an SQL comment line; a custom archive's own
header names its database), and each of them refuses a file whose label names
another backup than its name (65).
"""

import json
import os
import shutil
import subprocess
import time

import pytest

from cliutil import a_new_second, plugin_text
from encpipe.backup.names import MARKER
from test_backup_restore import SCRIPTS, backup, databases, dump, encpipe, ensure_small, restore, run, script_env

A, B = "bk_label_a", "bk_label_b"
STAMP = "%Y%m%dT%H%M%SZ"


def _label(db, stamp):
    return b"encpipe-backup v1 db=" + db.encode() + b" at=" + stamp.encode()


def _prefix(compress, db, stamp):
    """The label's bytes as README describes them, for each form."""
    text = _label(db, stamp)
    return {"zstd": b"\x50\x2a\x4d\x18" + len(text).to_bytes(4, "little") + text,
            "gzip": b"\x1f\x8b\x08\x10\x00\x00\x00\x00\x00\xff" + text + b"\x00\x03\x00" + bytes(8),
            "none": b"-- " + text + b"\n"}[compress]


def _stamp_of(path):
    return os.path.basename(path).split("_")[-1].split(".")[0]


def _newer_name(db, ext):
    """A name in `db`'s series for this second, newer than any backup made before it."""
    a_new_second()
    return f"{db}_{time.strftime(STAMP, time.gmtime())}.{ext}.enc"


@pytest.fixture(scope="module")
def made_two(pg, tools, key_file, tmp_path_factory):
    """Made once: genuine backups of A (in b/) and B (in other/, by the same job), zstd (the default)."""
    tmp_path = tmp_path_factory.mktemp("two")
    ensure_small(pg, A, rows=10)
    ensure_small(pg, B, rows=20)
    a, _ = backup(pg, tools, str(tmp_path / "b"), A, "--key-file", key_file)
    b, _ = backup(pg, tools, str(tmp_path / "other"), B, "--key-file", key_file)
    return tmp_path, os.path.basename(a), os.path.basename(b)


@pytest.fixture
def two(made_two, tmp_path):
    """made_two's directories copied for this test (its tests rename and add files): the
    directory of A's backup, A's backup, B's backup."""
    made, a, b = made_two
    for folder in ("b", "other"):
        shutil.copytree(made / folder, tmp_path / folder)
    directory = tmp_path / "b"
    return directory, str(directory / a), str(tmp_path / "other" / b)


def _plant(source, directory, name):
    """`source` renamed to `name` (a copy beside it would be found a copy: same payload salt)."""
    planted = directory / name
    os.rename(source, planted)
    return planted


def globals_of(*paths):
    return [os.path.basename(p).split(".")[0] + ".globals.sql.enc" for p in paths]


def _why_other(planted, found, named):
    return (f"holds a backup of database {found}, not of {named} (its name's): a copy of another backup put under "
            f"this name?")


def test_prune_keeps_a_databases_real_backup_when_another_databases_is_copied_under_a_newer_name(
        pg, tools, key_file, two):
    directory, a, b = two
    planted = _plant(b, directory, _newer_name(A, "sql.zst"))
    env = script_env(pg, tools)
    done = run([SCRIPTS / "encpipe-prune", "--keep-last", "1", "--key-file", key_file, directory], env)
    assert sorted(os.listdir(directory)) == sorted([os.path.basename(a), planted.name, *globals_of(a), MARKER])
    assert done.returncode == 65, done.stderr
    report = json.loads(done.stdout)  # prune's report: what it kept, removed and left
    assert (report["removed"], [k["filename"] for k in report["left"]]) == ([], [planted.name])
    assert os.path.basename(a) in [k["filename"] for k in report["kept"]]
    assert done.stderr.decode() == (f"encpipe-prune: warning: left {planted.name}: failed verification: "
                                    f"{_why_other(planted, B, A)}\n")


def test_verify_and_check_refuse_another_databases_backup_under_a_newer_name(pg, tools, key_file, two):
    directory, a, b = two
    planted = _plant(b, directory, _newer_name(A, "sql.zst"))
    env = script_env(pg, tools)
    seen = run([SCRIPTS / "encpipe-verify", "--key-file", key_file, directory], env)
    assert seen.returncode == 65, seen.stderr
    results = {r["filename"]: r for r in json.loads(seen.stdout)["results"]}
    assert (results[planted.name]["ok"], results[planted.name]["exit_code"]) == (False, 65)
    assert results[planted.name]["error"] == _why_other(planted, B, A)
    assert results[planted.name]["label"] is None
    assert results[os.path.basename(a)]["label"] == "label"
    alone = run([SCRIPTS / "encpipe-verify", "--key-file", key_file, planted], env)
    assert alone.returncode == 65
    checked = run([SCRIPTS / "encpipe-check", "--verify", "--key-file", key_file, "--max-age", "1", directory], env)
    lines = plugin_text(checked.stdout.decode()).splitlines()
    assert checked.returncode == 1, checked.stderr  # a warning: A's newest file failed; its newest backup is `a`
    assert [line for line in lines if f": {A}:" in line or line.startswith(f"WARNING: {A}")] == [
        f"WARNING: {A}: newest backup {os.path.basename(a)} is 0.0 h old; newest file {planted.name} failed "
        f"authentication: {_why_other(planted, B, A)}"]


def test_restore_refuses_another_databases_backup_under_a_databases_name(pg, tools, key_file, two):
    directory, a, b = two
    planted = _plant(b, directory, _newer_name(A, "sql.zst"))
    target = "bk_label_target"
    pg.dropdb(target)
    proc = restore(pg, tools, planted, target, "--no-globals", "--key-file", key_file)
    assert (proc.returncode, proc.stdout) == (65, b""), proc.stderr
    assert proc.stderr.decode().splitlines()[-1] == (
        f"encpipe-restore: error: {planted} holds a backup of database {B}, not of {A} (its name's) (a copy of "
        f"another backup put under this name?); nothing was changed")
    assert proc.stderr.count(b"error:") == 1
    assert target not in databases(pg)


def test_a_backup_relabelled_to_a_newer_time_of_its_own_database_is_refused(pg, tools, key_file, two):
    directory, a, b = two
    newer, _ = backup(pg, tools, str(directory), A, "--key-file", key_file)
    planted = _plant(a, directory, _newer_name(A, "sql.zst"))
    why = (f"holds the backup made at {_stamp_of(a)}, not at {_stamp_of(planted.name)} (its name's time): a copy "
           f"of another backup put under this name?")
    env = script_env(pg, tools)
    done = run([SCRIPTS / "encpipe-prune", "--keep-last", "1", "--key-file", key_file, directory], env)
    assert done.returncode == 65, done.stderr
    assert done.stderr.decode() == f"encpipe-prune: warning: left {planted.name}: failed verification: {why}\n"
    report = json.loads(done.stdout)
    assert [k["filename"] for k in report["removed"]] == globals_of(a)  # the older run's globals only
    assert [k["filename"] for k in report["left"]] == [planted.name]
    assert os.path.exists(newer)
    target = "bk_label_target"
    pg.dropdb(target)
    proc = restore(pg, tools, planted, target, "--no-globals", "--key-file", key_file)
    assert (proc.returncode, proc.stdout) == (65, b""), proc.stderr
    assert target not in databases(pg)


def test_a_custom_archive_of_another_database_is_refused_by_its_own_header(pg, tools, key_file, tmp_path):
    ensure_small(pg, A, rows=10)
    ensure_small(pg, B, rows=20)
    directory = tmp_path / "b"
    a, _ = backup(pg, tools, str(directory), A, "--format", "custom", "--key-file", key_file)
    b, _ = backup(pg, tools, str(directory), B, "--format", "custom", "--key-file", key_file)
    planted = _plant(b, directory, _newer_name(A, "dump"))
    env = script_env(pg, tools)
    seen = run([SCRIPTS / "encpipe-verify", "--key-file", key_file, directory], env)
    results = {r["filename"]: r for r in json.loads(seen.stdout)["results"]}
    assert (seen.returncode, results[planted.name]["error"]) == (65, _why_other(planted, B, A))
    assert results[os.path.basename(a)]["label"] == "archive"
    target = "bk_label_target"
    pg.dropdb(target)
    proc = restore(pg, tools, planted, target, "--no-globals", "--key-file", key_file)
    assert (proc.returncode, proc.stdout) == (65, b""), proc.stderr
    assert target not in databases(pg)
    proc = restore(pg, tools, a, target, "--no-globals", "--key-file", key_file)
    assert proc.returncode == 0, proc.stderr.decode()
    assert dump(pg, target) == dump(pg, A)
    pg.dropdb(target)


@pytest.mark.parametrize("compress, ext", [("zstd", "sql.zst"), ("gzip", "sql.gz"), ("none", "sql")])
def test_the_label_is_ignored_by_the_restore_tools_byte_for_byte(pg, tools, key_file, tmp_path, compress, ext):
    ensure_small(pg, A, rows=10)
    path, report = backup(pg, tools, str(tmp_path / "b"), A, "--compress", compress, "--key-file", key_file)
    prefix = _prefix(compress, A, _stamp_of(path))
    plaintext = encpipe(["open", "--key-file", key_file, path], check=True).stdout
    assert plaintext.startswith(prefix)
    if compress == "none":
        assert plaintext[len(prefix):].startswith(b"--\n-- PostgreSQL database dump\n")
    else:  # the real tool writes the same for the labelled stream as for the stream alone, and says nothing
        whole = subprocess.run([compress, "-d", "-c"], input=plaintext, capture_output=True, check=True)
        alone = subprocess.run([compress, "-d", "-c"], input=plaintext[len(prefix):], capture_output=True, check=True)
        assert (whole.stdout, whole.stderr) == (alone.stdout, b"")
        assert alone.stdout.startswith(b"--\n-- PostgreSQL database dump\n")


def test_an_unlabelled_backup_is_still_verified_and_restored(pg, tools, key_file, tmp_path):
    """A backup made before labels (the same dump, no label) verifies, says it is
    unlabelled, and restores as before."""
    ensure_small(pg, A, rows=10)
    directory = tmp_path / "b"
    path, _ = backup(pg, tools, str(directory), A, "--compress", "none", "--no-globals", "--key-file", key_file)
    plaintext = encpipe(["open", "--key-file", key_file, path], check=True).stdout
    prefix = _prefix("none", A, _stamp_of(path))
    assert plaintext.startswith(prefix + b"--\n-- PostgreSQL database dump\n")
    older = plaintext[len(prefix):]  # as encpipe-backup wrote it before labels
    encpipe(["seal", "--key-file", key_file, "-o", path], input=older, check=True)
    env = script_env(pg, tools)
    seen = run([SCRIPTS / "encpipe-verify", "--key-file", key_file, directory], env)
    assert seen.returncode == 0, seen.stderr
    [result] = json.loads(seen.stdout)["results"]
    assert (result["ok"], result["label"]) == (True, "unlabelled")
    target = "bk_label_target"
    pg.dropdb(target)
    proc = restore(pg, tools, path, target, "--no-globals", "--key-file", key_file)  # made without one
    assert proc.returncode == 0, proc.stderr.decode()
    assert dump(pg, target) == dump(pg, A)
    pg.dropdb(target)


# --- the label's forms, read by verify from hand-sealed files (no PostgreSQL) ----------------

SQL = b"--\n-- PostgreSQL database dump\n--\n\nSELECT 1;\n"
NAME_TIME = "20240101T000000Z"


def _archive(db, major=1, minor=14, int_size=4, made=(0, 0, 0, 1, 0, 124, 0)):
    """A custom archive's header as pg_backup_archiver.c's WriteHead writes it (PostgreSQL 15;
    from archive version 1.15 the compression is one byte), then some of its TOC."""
    def write_int(value):
        return bytes([value < 0]) + abs(value).to_bytes(int_size, "little")

    def write_str(text):
        return write_int(len(text)) + text

    head = b"PGDMP" + bytes([major, minor, 0, int_size, 8, 1])
    head += b"\x00" if (major, minor) >= (1, 15) else write_int(-1)
    head += b"".join(write_int(v) for v in made)  # sec, min, hour, mday, mon (0-11), year - 1900, isdst
    return head + write_str(db) + write_str(b"15.18") + write_str(b"15.18") + bytes(600)


@pytest.mark.parametrize("plaintext, label", [
    (_prefix("none", "shop", NAME_TIME) + SQL, "label"),
    (SQL, "unlabelled"),
    (b"\x50\x2a\x4d\x18\x05\x00\x00\x00other" + SQL, "unlabelled"),  # someone else's skippable frame
    (b"\x1f\x8b\x08\x10\x00\x00\x00\x00\x00\xffa comment\x00\x03\x00" + bytes(8), "unlabelled"),
    (_prefix("zstd", "shop", NAME_TIME) + SQL, "label"),
    (_prefix("gzip", "shop", NAME_TIME) + SQL, "label"),
    (_archive(b"shop"), "archive"),
    (_archive(b"shop", 1, 15), "archive"),
    (_archive(b"shop", 1, 9), "unlabelled"),  # before archive version 1.10: no database in the header
    (_archive(b"shop")[:11], "unlabelled"),  # too short to hold its header's database
    (_archive(b"shop")[:20], "unlabelled"),
    (_archive(b"shop", 1, 15)[:40], "unlabelled"),
    (_archive(b"shop", made=(0, 0, 14, 1, 0, 124, 0)), "archive"),  # pg_dump's local time: UTC+14
    (_archive(b"shop", made=(0, 0, 12, 31, 11, 123, 0)), "archive"),  # UTC-12
])
def test_verify_reads_each_form_of_the_label(tmp_path, plaintext, label):
    from test_backup_dir import run as backups
    name = f"shop_{NAME_TIME}.{'dump' if plaintext.startswith(b'PGDMP') else 'sql'}.enc"
    path = _sealed(tmp_path, name, plaintext)
    code, report, err = backups("verify", str(path))
    assert (code, err) == (0, ""), err
    assert [(r["ok"], r["label"]) for r in report["results"]] == [(True, label)]


@pytest.mark.parametrize("name, plaintext, why", [
    ("shop", _prefix("none", "shop", "20240102T000000Z") + SQL,
     "holds the backup made at 20240102T000000Z, not at 20240101T000000Z (its name's time)"),
    ("my shop%", _prefix("none", "my shop", NAME_TIME).replace(b"my shop", b"my%20shop") + SQL,
     "holds a backup of database my%20shop, not of my%20shop%25 (its name's)"),
    ("shop", _archive(b"stock"), "holds a backup of database stock, not of shop (its name's)"),
    ("shop", _archive(b"shop", made=(0, 0, 0, 2, 0, 124, 0)),
     "holds an archive pg_dump made at 2024-01-02 00:00:00 (its local time), not near 20240101T000000Z (its name's "
     "time)"),
    ("shop", b"-- encpipe-backup v1 db=shop at=2024\n" + SQL,
     "its label (encpipe-backup's, before the dump) is malformed"),
    ("shop", b"-- encpipe-backup v1 db=sh%6fp at=" + NAME_TIME.encode() + b"\n" + SQL,  # not as escape() writes it
     "its label (encpipe-backup's, before the dump) is malformed"),
])
def test_verify_refuses_a_label_that_contradicts_the_name(tmp_path, name, plaintext, why):
    from test_backup_dir import run as backups
    path = _sealed(tmp_path, f"{name}_{NAME_TIME}.{'dump' if plaintext.startswith(b'PGDMP') else 'sql'}.enc",
                   plaintext)
    code, report, err = backups("verify", str(path))
    if "malformed" not in why:
        why += ": a copy of another backup put under this name?"
    assert (code, [(r["ok"], r["error"]) for r in report["results"]]) == (65, [(False, why)])
    assert err == f"encpipe-verify: error: {path}: {why}\n"


def _sealed(tmp_path, name, plaintext):
    import io

    from encpipe import RawKey, seal
    from test_backup_dir import KEY

    out = io.BytesIO()
    seal(io.BytesIO(plaintext), out, [RawKey(KEY)], chunk_log2=14)
    path = tmp_path / name
    path.write_bytes(out.getvalue())
    return path
