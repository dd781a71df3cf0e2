"""encpipe-list, encpipe-prune and encpipe-verify over a directory of backups.

A directory holds valid backups, a payload with one flipped byte, truncated
files, foreign files (random bytes, text), a temp file of a backup in progress,
and a file of the previous tool; the JSON reports and exit codes are checked.
Most cases call encpipe.backup.cli.main in-process; the commands in scripts/
are run for real.
"""

import importlib
import io
import json
import os
import random
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

from encpipe import RawKey, seal
from encpipe.backup.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = [os.path.join(ROOT, "scripts", f"encpipe-{c}") for c in ("list", "prune", "verify", "check")]
KEY = bytes(range(32))
OTHER_KEY = bytes(range(100, 132))
CHUNK_LOG2 = 14  # 16 KiB chunks: small multi-chunk files
PLAINTEXT = 40000  # 3 chunks: 16384 + 16384 + 7232
ENV = {"ENCPIPE_KEY": KEY.hex()}


def _legacy_available():
    try:
        importlib.import_module("encpipe.legacy")  # another part of encpipe; may be absent
    except ImportError:
        return False
    return True


LEGACY_AVAILABLE = _legacy_available()


def key_id(key):
    return RawKey(key).key_id.hex()


# What a custom archive (pg_dump -Fc) starts with, a header too old to name its database
# (version 1.9): what a file under a custom archive's name must hold to be counted.
OLD_ARCHIVE = b"PGDMP" + bytes([1, 9, 0, 4, 8, 1])


def sealed_bytes(plaintext=PLAINTEXT, key=KEY, head=b""):
    src = io.BytesIO(head + random.Random(plaintext).randbytes(plaintext - len(head)))
    dst = io.BytesIO()
    info = seal(src, dst, [RawKey(key)], chunk_log2=CHUNK_LOG2)
    return dst.getvalue(), info.header_bytes


def write(directory, name, data):
    path = directory / name
    path.write_bytes(data)
    return path


def make_valid(directory, name, key=KEY):
    return write(directory, name, sealed_bytes(key=key, head=OLD_ARCHIVE if ".dump." in name else b"")[0])


def make_corrupt(directory, name):
    data, header = sealed_bytes()
    data = bytearray(data)
    data[header + 20000] ^= 0x01  # inside chunk 1's ciphertext
    return write(directory, name, bytes(data))


def make_truncated(directory, name):
    """Cut so that, before the 64-byte v2 trailer, the last record is shorter than a
    tag: no stream has this size."""
    data, header = sealed_bytes()
    return write(directory, name, data[: header + 2 * (16384 + 16) + 5 + 64])


def run(*argv, env=ENV):
    out, err = io.BytesIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err, env=dict(env))
    return code, (json.loads(out.getvalue()) if out.getvalue() else None), err.getvalue()


def by_name(listing):
    return {entry["filename"]: entry for entry in listing}


def stamp(moment):
    return moment.strftime("%Y%m%dT%H%M%SZ")


@pytest.fixture
def mixed(tmp_path):
    d = tmp_path / "backups"
    d.mkdir()
    make_valid(d, "shop_20240101T000000Z.sql.enc")
    make_corrupt(d, "shop_20240102T000000Z.sql.enc")
    make_truncated(d, "shop_20240103T000000Z.dump.enc")
    write(d, "shop_20240104T000000Z.sql.enc", sealed_bytes()[0][:30])
    make_valid(d, "my_app_db_20240105T010203Z.dump.enc")
    write(d, "noise.bin", random.Random(1).randbytes(1000))
    write(d, "README.txt", b"these are the shop backups\n")
    write(d, ".encpipe-tmp.x", sealed_bytes()[0][:100])
    (d / "subdir").mkdir()
    return d


# --- list --------------------------------------------------------------------


def test_list_describes_every_file(mixed):
    code, listing, err = run("list", str(mixed))
    assert code == 0 and err == ""
    files = by_name(listing)
    assert sorted(files) == [
        ".encpipe-tmp.x", "README.txt", "my_app_db_20240105T010203Z.dump.enc", "noise.bin",
        "shop_20240101T000000Z.sql.enc", "shop_20240102T000000Z.sql.enc",
        "shop_20240103T000000Z.dump.enc", "shop_20240104T000000Z.sql.enc",
    ]  # the subdirectory is not listed
    assert [e["filename"] for e in listing] == sorted(files)
    valid = files["shop_20240101T000000Z.sql.enc"]
    assert valid == {
        "filename": "shop_20240101T000000Z.sql.enc",
        "status": "sealed",
        "bytes": (mixed / "shop_20240101T000000Z.sql.enc").stat().st_size,
        "sealed": True,
        "version": 2,
        "database": "shop",
        "dump_format": "plain",
        "created": "2024-01-01T00:00:00Z",
        "key_ids": [key_id(KEY)],
        "slots": ["raw-key"],
        "signers": [],
        "plaintext_bytes": PLAINTEXT,
        "chunks": 3,
        "error": None,
    }
    underscored = files["my_app_db_20240105T010203Z.dump.enc"]
    assert (underscored["database"], underscored["dump_format"], underscored["created"]) == (
        "my_app_db", "custom", "2024-01-05T01:02:03Z")
    # Without a key a flipped payload byte cannot be seen: the header is fine.
    assert files["shop_20240102T000000Z.sql.enc"]["status"] == "sealed"
    truncated = files["shop_20240103T000000Z.dump.enc"]
    assert truncated["status"] == "damaged" and truncated["sealed"] is False
    assert "cannot be a complete stream" in truncated["error"]
    assert truncated["key_ids"] == [key_id(KEY)] and truncated["database"] == "shop"
    short = files["shop_20240104T000000Z.sql.enc"]
    assert (short["status"], short["error"], short["version"]) == ("damaged", "truncated header", None)
    for name in ("noise.bin", "README.txt"):
        assert files[name]["status"] == "foreign"
        assert files[name]["error"] == "not an encpipe file"
        assert files[name]["database"] is None and files[name]["sealed"] is False
    assert files[".encpipe-tmp.x"]["status"] == "partial"
    assert files[".encpipe-tmp.x"]["bytes"] == 100


def test_list_stats(mixed):
    code, report, _ = run("list", "--stats", "--dir", str(mixed))
    assert code == 0
    assert set(report) == {"backups", "stats"}
    assert len(report["backups"]) == 8
    stats = report["stats"]
    sizes = {p.name: p.stat().st_size for p in mixed.iterdir() if p.is_file()}
    usable = ["shop_20240101T000000Z.sql.enc", "shop_20240102T000000Z.sql.enc",
              "my_app_db_20240105T010203Z.dump.enc"]
    assert stats["count"] == 8
    assert stats["bytes"] == sum(sizes.values())
    assert stats["backups"] == 3
    assert stats["backup_bytes"] == sum(sizes[n] for n in usable)
    assert stats["oldest"] == {"filename": "shop_20240101T000000Z.sql.enc", "created": "2024-01-01T00:00:00Z"}
    assert stats["newest"] == {"filename": "my_app_db_20240105T010203Z.dump.enc",
                               "created": "2024-01-05T01:02:03Z"}
    assert stats["by_status"] == {"damaged": 2, "foreign": 2, "partial": 1, "sealed": 3}
    assert stats["databases"]["shop"] == {
        "backups": 2,
        "bytes": sizes[usable[0]] + sizes[usable[1]],
        "oldest": {"filename": usable[0], "created": "2024-01-01T00:00:00Z"},
        "newest": {"filename": usable[1], "created": "2024-01-02T00:00:00Z"},
    }
    assert set(stats["databases"]) == {"shop", "my_app_db"}


def test_list_empty_directory_and_default_directory(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run("list", "--stats", env={"ENCPIPE_BACKUP_DIR": str(empty)})[:2] == (0, {
        "backups": [],
        "stats": {"count": 0, "bytes": 0, "backups": 0, "backup_bytes": 0, "oldest": None,
                  "newest": None, "by_status": {}, "databases": {}},
    })
    code, report, err = run("list", str(tmp_path / "missing"))
    assert (code, report) == (66, None)
    assert err.startswith("encpipe-list: error: cannot read backup directory")


def test_list_unreadable_and_special_files(tmp_path):
    os.symlink(tmp_path / "gone", tmp_path / "db_20240101T000000Z.sql.enc")
    os.mkfifo(tmp_path / "pipe")  # must not block the listing
    code, listing, _ = run("list", str(tmp_path))
    files = by_name(listing)
    assert code == 0
    dangling = files["db_20240101T000000Z.sql.enc"]
    assert dangling["status"] == "unreadable" and "No such file" in dangling["error"]
    assert (files["pipe"]["status"], files["pipe"]["error"]) == ("foreign", "not a regular file")


def test_list_legacy_and_plaintext_files_of_the_previous_tool(tmp_path):
    write(tmp_path, "crm_backup_2025-11-17_06-25-03-303Z.sql.enc", random.Random(2).randbytes(300))
    write(tmp_path, "crm_backup_2025-11-16_06-25-03-303Z.sql", b"CREATE TABLE t (id int);\n")
    write(tmp_path, "random.enc", random.Random(3).randbytes(300))
    write(tmp_path, "tiny.enc", random.Random(4).randbytes(63))  # shorter than salt|iv|tag
    files = by_name(run("list", str(tmp_path))[1])
    legacy = files["crm_backup_2025-11-17_06-25-03-303Z.sql.enc"]
    assert (legacy["status"], legacy["database"], legacy["created"], legacy["dump_format"]) == (
        "legacy", "crm", "2025-11-17T06:25:03.303Z", "plain")
    assert files["crm_backup_2025-11-16_06-25-03-303Z.sql"]["status"] == "plaintext"
    assert files["random.enc"]["status"] == "legacy"  # without a key it cannot be told apart
    assert files["tiny.enc"]["status"] == "foreign"


def test_list_rejects_bad_usage(tmp_path):
    code, _, err = run("list", "--dir", str(tmp_path), str(tmp_path))
    assert code == 64 and err.startswith("encpipe-list: error:")
    assert run("list", "--bogus")[0] == 64


# --- verify ------------------------------------------------------------------


def test_verify_directory_reports_each_file(mixed):
    code, report, _ = run("verify", str(mixed))
    results = by_name(report["results"])
    assert code == 65  # the first failure, in file name order: the flipped byte
    assert (report["ok"], report["files"], report["verified"], report["failed"], report["not_verified"]) == (
        False, 8, 2, 3, 3)
    assert results["shop_20240101T000000Z.sql.enc"] == {
        "filename": "shop_20240101T000000Z.sql.enc",
        "path": str(mixed / "shop_20240101T000000Z.sql.enc"),
        "status": "sealed",
        "ok": True,
        "plaintext_bytes": PLAINTEXT,
        "chunks": 3,
        "error": None,
        "exit_code": None,
        "error_class": None,
        "note": None,
        "sender_authenticated": True,  # opened by a raw key whose slot authenticator checked
        "label": "unlabelled",  # made by hand, not by encpipe-backup: no label before its data
    }
    assert results["my_app_db_20240105T010203Z.dump.enc"]["ok"] is True
    for name in ("shop_20240102T000000Z.sql.enc", "shop_20240103T000000Z.dump.enc",
                 "shop_20240104T000000Z.sql.enc"):
        assert (results[name]["ok"], results[name]["exit_code"], results[name]["error_class"]) == (
            False, 65, "invalid_stream")
        assert results[name]["plaintext_bytes"] is None and results[name]["sender_authenticated"] is None
    assert results["shop_20240104T000000Z.sql.enc"]["error"] == "truncated header"
    for name in ("noise.bin", "README.txt", ".encpipe-tmp.x"):
        assert results[name]["ok"] is None and results[name]["exit_code"] is None
        assert results[name]["note"].startswith(("foreign:", "partial:"))


def test_verify_all_good_exits_zero_with_key_file(tmp_path):
    make_valid(tmp_path, "a_20240101T000000Z.sql.enc")
    make_valid(tmp_path, "a_20240102T000000Z.sql.enc", key=OTHER_KEY)
    keys = tmp_path.parent / "keys"
    keys.write_text(f"# two keys\n{KEY.hex()}\n{OTHER_KEY.hex()}\n")
    keys.chmod(0o600)
    code, report, err = run("verify", "--threads", "2", "--key-file", str(keys), "--dir", str(tmp_path), env={})
    assert (code, err) == (0, "")
    assert (report["ok"], report["verified"], report["failed"]) == (True, 2, 0)
    assert all(r["plaintext_bytes"] == PLAINTEXT for r in report["results"])


def test_verify_exit_code_is_the_first_failure(tmp_path):
    make_valid(tmp_path, "a_20240101T000000Z.sql.enc", key=OTHER_KEY)  # no supplied key opens it
    make_corrupt(tmp_path, "b_20240101T000000Z.sql.enc")
    code, report, _ = run("verify", str(tmp_path))
    assert code == 77
    assert [(r["exit_code"], r["error_class"]) for r in report["results"]] == [
        (77, "no_matching_key"), (65, "invalid_stream")]
    assert report["results"][0]["error"] == "no supplied key opens this file"


def test_verify_named_files(mixed, tmp_path):
    corrupt = str(mixed / "shop_20240102T000000Z.sql.enc")
    valid = str(mixed / "shop_20240101T000000Z.sql.enc")
    assert run("verify", valid)[0] == 0
    code, report, _ = run("verify", valid, corrupt)
    assert code == 65 and [r["ok"] for r in report["results"]] == [True, False]
    assert report["results"][1]["path"] == corrupt
    # A foreign file named explicitly is a failure, not a note.
    code, report, _ = run("verify", str(mixed / "noise.bin"))
    assert code == 65 and report["results"][0]["error"] == "not an encpipe file"
    # A file that is not there at all is the command's failure: one line, no report.
    code, report, err = run("verify", str(tmp_path / "missing.sql.enc"))
    assert (code, report, err) == (66, None, f"encpipe-verify: error: cannot read {tmp_path}/missing.sql.enc: "
                                             "No such file or directory\n")
    # One that is there but cannot be read (a link to nowhere) fails in the report.
    os.symlink(tmp_path / "nowhere", tmp_path / "dangling.sql.enc")
    code, report, _ = run("verify", str(tmp_path / "dangling.sql.enc"))
    assert code == 66 and report["results"][0]["error_class"] == "input_unavailable"


@pytest.mark.parametrize("name", [".encpipe-tmp.x", "shop_20240101T000000Z.sql.enc.0a1b2c3d.partial"])
def test_verify_of_a_named_file_under_an_unfinished_name_fails(mixed, name):
    """A file named on the command line must be a backup. One under an unfinished file's
    name (never read: a note in a location) said ok, exit 0, whatever it held
    (here, noise)."""
    write(mixed, name, random.Random(1).randbytes(1000))
    code, report, err = run("verify", str(mixed / name))
    assert (code, report["ok"], report["results"][0]["error"]) == (65, False, UNFINISHED)
    assert err == f"encpipe-verify: error: {mixed / name}: {UNFINISHED}\n"


UNFINISHED = ("partial: named as a backup still being written, or left by an interrupted one, which is never read as"
              " a backup")


def test_verify_needs_a_key(mixed):
    """Its hint names encpipe's own key options and variables first (it led with the
    previous tool's BACKUP_ENCRYPTION_KEY, and named only --key-file and
    --passphrase-file), then the old setting, for that tool's files."""
    code, report, err = run("verify", str(mixed), env={})
    assert (code, report) == (78, None)
    assert err == ("encpipe-verify: error: no key configured\nencpipe-verify: hint: set ENCPIPE_KEY or "
                   "ENCPIPE_PASSPHRASE, or use --key-file, --identity, --passphrase-file, --key-command or -p; for "
                   "files of the previous tool, BACKUP_ENCRYPTION_KEY as it had it\n")


def test_verify_writes_no_plaintext(tmp_path):
    make_valid(tmp_path, "a_20240101T000000Z.sql.enc")
    before = sorted(os.listdir(tmp_path))
    code, _, _ = run("verify", str(tmp_path))
    assert code == 0 and sorted(os.listdir(tmp_path)) == before


def test_verify_legacy_file(tmp_path):
    write(tmp_path, "crm_backup_2025-11-17_06-25-03-303Z.sql.enc", random.Random(2).randbytes(300))
    code, report, _ = run("verify", str(tmp_path))
    result = report["results"][0]
    if LEGACY_AVAILABLE:  # random bytes never authenticate; a real legacy file does
        assert (code, result["ok"], result["error_class"]) == (77, False, "no_matching_key")
        from encpipe.legacy import seal_legacy

        with open(tmp_path / "crm_backup_2025-11-18_06-25-03-303Z.sql.enc", "wb") as dst:
            seal_legacy(io.BytesIO(b"CREATE TABLE t (id int);\n" * 100), dst, KEY)
        results = by_name(run("verify", str(tmp_path))[1]["results"])
        good = results["crm_backup_2025-11-18_06-25-03-303Z.sql.enc"]
        assert (good["status"], good["ok"], good["plaintext_bytes"]) == ("legacy", True, 2500)
        # Without a key option, the previous tool's own setting is used as well.
        code, report, _ = run("verify", str(tmp_path / "crm_backup_2025-11-18_06-25-03-303Z.sql.enc"),
                              env={"BACKUP_ENCRYPTION_KEY": KEY.hex()})
        assert (code, report["verified"]) == (0, 1)
    else:
        assert code == 0 and result["ok"] is None
        assert result["note"].startswith("legacy: not verified")
        assert report["not_verified"] == 1


# --- prune -------------------------------------------------------------------


@pytest.fixture
def history(tmp_path):
    """app: five valid daily backups in 2020; other: one; and files prune must not touch."""
    d = tmp_path / "backups"
    d.mkdir()
    for day in range(1, 6):
        make_valid(d, f"app_2020010{day}T000000Z.sql.enc")
    make_valid(d, "other_db_20200101T000000Z.dump.enc")
    untouchable = [
        "notes.txt", "app_20200101T000000Z.sql.enc.bak", "app_20201301T000000Z.sql.enc",
        "app_20200101T000000Z.sql", ".encpipe-tmp.app", "app_backup_2019-01-01_00-00-00-000Z.sql.enc",
    ]
    for name in untouchable:
        make_valid(d, name)
    return d, untouchable


def names(directory):
    return sorted(p.name for p in directory.iterdir())


def test_prune_keeps_the_newest_per_database(history):
    d, untouchable = history
    code, report, err = run("prune", str(d), "--keep", "2")
    assert (code, err) == (0, "")
    removed = ["app_20200101T000000Z.sql.enc", "app_20200102T000000Z.sql.enc", "app_20200103T000000Z.sql.enc"]
    assert [r["filename"] for r in report["removed"]] == removed
    assert report["removed"][0] == {
        "filename": "app_20200101T000000Z.sql.enc",
        "database": "app",
        "series": "plain",
        "created": "2020-01-01T00:00:00Z",
        "bytes": len(sealed_bytes()[0]),
        "reasons": ["not kept by the policy"],
    }
    assert [(k["filename"], k["reasons"]) for k in report["kept"]] == [
        ("app_20200104T000000Z.sql.enc", ["last"]), ("app_20200105T000000Z.sql.enc", ["last"]),
        ("other_db_20200101T000000Z.dump.enc", ["last"])]
    assert (report["dry_run"], report["policy"], report["errors"], report["left"]) == (
        False, {"keep_last": 2}, [], [])
    assert not set(removed) & set(names(d))
    assert set(untouchable) <= set(names(d))


def test_prune_dry_run_removes_nothing(history):
    d, _ = history
    before = names(d)
    code, report, _ = run("prune", "--dry-run", "--keep-last", "0", "--dir", str(d))
    assert code == 0 and names(d) == before
    assert report["dry_run"] is True
    assert len(report["removed"]) == 4  # app's newest authenticated backup is always kept
    # The real run removes exactly what the dry run announced.
    code, real, _ = run("prune", "--keep-last", "0", "--dir", str(d))
    assert [r["filename"] for r in real["removed"]] == [r["filename"] for r in report["removed"]]
    assert set(before) - set(names(d)) == {r["filename"] for r in report["removed"]}


def test_prune_never_counts_or_removes_a_file_that_fails_verification(history):
    d, untouchable = history
    write(d, "app_20200106T000000Z.sql.enc", b"ENCPIPE\x01")  # newer, damaged
    make_truncated(d, "app_20200107T000000Z.sql.enc")  # newer, damaged
    make_corrupt(d, "app_20200108T000000Z.sql.enc")  # newer, header fine, payload flipped
    code, report, err = run("prune", str(d), "--keep-last", "1", "--max-age", "0")
    assert code == 65
    assert [(k["filename"], k["reasons"]) for k in report["kept"]] == [
        ("app_20200105T000000Z.sql.enc", ["newest authenticated"]),
        ("other_db_20200101T000000Z.dump.enc", ["newest authenticated"])]
    assert [r["filename"] for r in report["removed"]] == [f"app_2020010{i}T000000Z.sql.enc" for i in range(1, 5)]
    left = {r["filename"]: r["reasons"][0] for r in report["left"]}
    assert sorted(left) == [f"app_2020010{i}T000000Z.sql.enc" for i in (6, 7, 8)]
    assert all(reason.startswith("failed verification: ") for reason in left.values())
    assert "left app_20200108T000000Z.sql.enc: failed verification" in err
    # Pruning again removes nothing more.
    assert run("prune", str(d), "--keep-last", "1", "--max-age", "0")[1]["removed"] == []


def test_prune_max_age(history):
    d, _ = history
    recent = f"app_{stamp(datetime.now(timezone.utc) - timedelta(hours=1))}.sql.enc"
    make_valid(d, recent)
    code, report, _ = run("prune", str(d), "--keep", "10", "--max-age", "30")
    assert code == 0
    assert {r["filename"] for r in report["removed"]} == {f"app_2020010{i}T000000Z.sql.enc" for i in range(1, 6)}
    assert all(r["reasons"] == ["max-age"] for r in report["removed"])
    # other_db's only backup is older than 30 days, but it is that database's newest authenticated one.
    assert [k["filename"] for k in report["kept"]] == [recent, "other_db_20200101T000000Z.dump.enc"]
    assert report["policy"] == {"keep_last": 10, "max_age_days": 30}


def test_prune_leaves_a_database_without_any_valid_backup_alone(tmp_path):
    make_truncated(tmp_path, "db_20200101T000000Z.sql.enc")
    write(tmp_path, "db_20200102T000000Z.sql.enc", b"not encrypted at all")
    code, report, err = run("prune", str(tmp_path), "--keep", "0")
    assert code == 65 and report["removed"] == [] and len(report["left"]) == 2
    assert report["unprotected"] == ["db (plain)"]
    assert "db (plain) has no authenticated backup" in err
    assert len(names(tmp_path)) == 2


def test_prune_never_follows_or_removes_symlinks(tmp_path):
    target = make_valid(tmp_path, "x_20200101T000000Z.sql.enc")
    make_valid(tmp_path, "x_20200102T000000Z.sql.enc")
    os.symlink(target, tmp_path / "x_20190101T000000Z.sql.enc")
    code, report, _ = run("prune", str(tmp_path), "--keep", "0")
    assert [r["filename"] for r in report["removed"]] == ["x_20200101T000000Z.sql.enc"]
    assert os.path.islink(tmp_path / "x_20190101T000000Z.sql.enc")


@pytest.mark.parametrize("argv", [
    ["prune"], ["prune", "--keep", "x"], ["prune", "--keep", "-1"], ["prune", "--keep", "1", "--max-age", "-3"],
    ["prune", "--keep", "1", "--max-age", "soon"], ["prune", "--keep", "1", "--keep-last", "2"],
    ["prune", "--keep-daily", "1.5"],
])
def test_prune_usage_errors(argv, tmp_path):
    code, report, err = run(*argv, env={"ENCPIPE_BACKUP_DIR": str(tmp_path), **ENV})
    assert (code, report) == (64, None) and "error" in err


def test_prune_missing_directory(tmp_path):
    assert run("prune", str(tmp_path / "missing"), "--keep", "1")[0] == 66


# --- the commands in scripts/ ------------------------------------------------


def script(name, *argv, env=None):
    full = {k: v for k, v in os.environ.items() if not k.startswith("ENCPIPE_") and k != "PYTHONPATH"}
    full.update(env or {})
    return subprocess.run([sys.executable, os.path.join(ROOT, "scripts", name), *argv], env=full,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)


def test_wrappers(mixed, tmp_path):
    done = script("encpipe-list", "--stats", env={"ENCPIPE_BACKUP_DIR": str(mixed)})
    assert done.returncode == 0 and json.loads(done.stdout)["stats"]["count"] == 8
    done = script("encpipe-verify", str(mixed / "shop_20240101T000000Z.sql.enc"), env=ENV)
    assert done.returncode == 0 and json.loads(done.stdout)["verified"] == 1
    done = script("encpipe-verify", "--dir", str(mixed), env=ENV)
    assert done.returncode == 65 and json.loads(done.stdout)["failed"] == 3
    assert script("encpipe-verify", str(mixed)).returncode == 78
    done = script("encpipe-prune", str(mixed), "--keep", "0")
    assert (done.returncode, done.stdout) == (78, "")
    assert done.stderr.startswith("encpipe-prune: error: no key configured: prune removes nothing")
    done = script("encpipe-prune", str(mixed), "--keep", "0", env=ENV)
    assert done.returncode == 65  # the damaged files are left, and reported
    assert [r["filename"] for r in json.loads(done.stdout)["removed"]] == []
    done = script("encpipe-list", "--help")
    assert done.returncode == 0 and "Usage:" in done.stdout


def test_wrappers_are_small_and_executable():
    for path in SCRIPTS:
        assert os.access(path, os.X_OK)
        assert len(open(path).read().splitlines()) < 20


# --- verify of a location with no backup ----------------------------------------


@pytest.mark.parametrize("content", ["empty", "foreign only"])
def test_verify_of_a_location_with_no_backup_fails_with_66(tmp_path, content):
    """A monitoring job must tell "all good" from "nothing there": one line, 66,
    nothing on standard output."""
    if content != "empty":
        write(tmp_path, "README.txt", b"notes\n")
        write(tmp_path, ".encpipe-tmp.x", sealed_bytes()[0][:100])
        (tmp_path / "subdir").mkdir()
    for argv in (["verify", str(tmp_path)], ["verify", "--dir", str(tmp_path)]):
        assert run(*argv) == (66, None, f"encpipe-verify: error: {tmp_path}: no backup to verify "
                                        "(--allow-empty accepts that)\n")
    assert run("verify", env={**ENV, "ENCPIPE_BACKUP_DIR": str(tmp_path)})[:2] == (66, None)


def test_verify_of_an_empty_location_beside_a_good_one_fails(tmp_path):
    good, empty = tmp_path / "good", tmp_path / "empty"
    good.mkdir()
    empty.mkdir()
    make_valid(good, "a_20240101T000000Z.sql.enc")
    assert run("verify", str(good))[0] == 0
    assert run("verify", str(good), str(empty)) == (66, None, f"encpipe-verify: error: {empty}: no backup to "
                                                             "verify (--allow-empty accepts that)\n")


def test_verify_allow_empty_accepts_a_location_with_no_backup(tmp_path):
    code, report, err = run("verify", "--allow-empty", str(tmp_path))
    assert (code, err) == (0, "")
    assert (report["ok"], report["files"], report["results"]) == (True, 0, [])
    make_corrupt(tmp_path, "a_20240101T000000Z.sql.enc")  # a failure still fails
    assert run("verify", "--allow-empty", str(tmp_path))[0] == 65


def test_verify_script_of_an_empty_directory_exits_66(tmp_path):
    done = subprocess.run([SCRIPTS[2], str(tmp_path)], capture_output=True, env={**os.environ, **ENV}, timeout=60)
    assert (done.returncode, done.stdout) == (66, b"")
    assert done.stderr == (f"encpipe-verify: error: {tmp_path}: no backup to verify "
                           "(--allow-empty accepts that)\n").encode()


# --- prune of a location with no backup: as verify, 66 unless --allow-empty --------


@pytest.mark.parametrize("content", ["empty", "foreign only", "other databases only"])
def test_prune_of_a_location_with_no_backup_fails_with_66(tmp_path, content):
    """Before: 0 and a report that removed and kept nothing, so that a timer pruning
    a location no backup reaches any more (a wrong path, a moved mount) said all
    was well. Now one line, 66, nothing on standard output, nothing removed."""
    select = []
    if content == "foreign only":
        write(tmp_path, "README.txt", b"notes\n")
        write(tmp_path, ".encpipe-tmp.x", sealed_bytes()[0][:100])
        (tmp_path / "subdir").mkdir()
    elif content == "other databases only":
        make_valid(tmp_path, "crm_20240101T000000Z.sql.enc")
        select = ["--database", "shop"]
    before = sorted(os.listdir(tmp_path))
    of = " of shop" if select else ""
    for where in ([str(tmp_path)], ["--dir", str(tmp_path)]):
        assert run("prune", "--keep-last", "1", *select, *where) == (
            66, None, f"encpipe-prune: error: {tmp_path}: no backup{of} to prune (--allow-empty accepts that)\n")
    assert run("prune", "--keep-last", "1", *select, env={**ENV, "ENCPIPE_BACKUP_DIR": str(tmp_path)})[:2] == \
        (66, None)
    code, report, err = run("prune", "--allow-empty", "--keep-last", "1", *select, str(tmp_path))
    assert (code, err, report["removed"], report["kept"], report["left"]) == (0, "", [], [], [])
    assert sorted(os.listdir(tmp_path)) == before


def test_prune_of_a_missing_directory_is_66_even_with_allow_empty(tmp_path):
    """A path that is not there is a mistake (a typo, a mount that is not up), not
    an empty location: 66 whatever --allow-empty says, as verify."""
    missing = tmp_path / "nothing"
    for extra in ([], ["--allow-empty"]):
        assert run("prune", *extra, "--keep-last", "1", str(missing)) == (
            66, None, f"encpipe-prune: error: cannot read backup directory {missing}: No such file or directory\n")


def test_prune_script_of_an_empty_directory_exits_66(tmp_path):
    done = subprocess.run([SCRIPTS[1], "--keep-daily", "7", str(tmp_path)], capture_output=True,
                          env={**os.environ, **ENV}, timeout=60)
    assert (done.returncode, done.stdout) == (66, b"")
    assert done.stderr == f"encpipe-prune: error: {tmp_path}: no backup to prune (--allow-empty accepts that)\n".encode()


@pytest.mark.parametrize("cut", [0, 1, 63])
def test_a_file_cut_inside_its_trailer_is_damaged_with_no_negative_size(tmp_path, cut):
    """A v2 file whose whole header is there but not its 64-byte trailer: listed as
    damaged with its size and what its header and trailer take. Before, the error
    named a payload of a negative number of bytes (`payload of -47 bytes`)."""
    data, header = sealed_bytes()
    d = tmp_path / "backups"
    d.mkdir()
    write(d, "shop_20240103T000000Z.sql.enc", data[:header + cut])
    code, listing, err = run("list", "--dir", str(d))
    assert (code, err) == (0, "")
    [entry] = listing
    assert (entry["status"], entry["error"]) == (
        "damaged", f"{header + cut} bytes, fewer than its header and trailer take ({header + 64}): truncated?")
