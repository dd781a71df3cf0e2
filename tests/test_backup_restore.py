"""scripts/encpipe-backup and scripts/encpipe-restore against a real PostgreSQL 15.

Also holds the helpers the other backup test modules import: how to run the
scripts (with `encpipe` on PATH as this Python's `-m encpipe`), keys, dumps.
"""

import json
import os
import re
import select
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from pgcluster import MARKERS, seed_awkward_database

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = REPO / "scripts"
BACKUP = str(SCRIPTS / "encpipe-backup")
RESTORE = str(SCRIPTS / "encpipe-restore")
AWKWARD_DB = "bk_awkward"
BACKUP_NAME = re.compile(r"^(?P<db>.+)_(?P<ts>[0-9]{8}T[0-9]{6}Z)\.(?P<ext>sql|sql\.zst|sql\.gz|dump|globals\.sql)\.enc$")


# --- helpers shared with test_backup_faults.py and test_scripts_hygiene.py ---


def make_key(path):
    subprocess.run([sys.executable, "-m", "encpipe", "keygen", "-o", str(path)], check=True, env=python_env())
    return str(path)


def read_key(path):
    return Path(path).read_text().strip()


def python_env():
    env = dict(os.environ)
    for name in [n for n in env if n.startswith("ENCPIPE") or n == "BACKUP_ENCRYPTION_KEY"]:
        del env[name]
    env.update(PYTHONPATH=str(REPO), PYTHONDONTWRITEBYTECODE="1")
    return env


def script_env(pg, tools, **extra):
    """The environment the scripts run in: the cluster's libpq variables, no key."""
    env = pg.env
    env.update(python_env())
    for name in ("PGHOST", "PGPORT", "PGUSER", "PGDATABASE"):
        env[name] = pg.env[name]
    env["PATH"] = os.pathsep.join([str(tools), pg.bindir, os.path.dirname(sys.executable), env["PATH"]])
    # From a checkout the scripts run the python3 on PATH: this Python when it is the python3 beside
    # it (a venv's), found first; else named (whose probe, encpipe-sh-setup's, costs a start-up per run).
    beside = os.path.join(os.path.dirname(sys.executable), "python3")
    if not (os.path.exists(beside) and os.path.samefile(beside, sys.executable)):
        env["ENCPIPE_PYTHON"] = sys.executable
    env.update(extra)
    return env


def run(argv, env, **kw):
    kw.setdefault("capture_output", True)
    kw.setdefault("timeout", 300)
    return subprocess.run([str(a) for a in argv], env=env, **kw)


def encpipe(argv, **kw):
    return run([sys.executable, "-m", "encpipe", *argv], python_env(), **kw)


def backup(pg, tools, directory, db, *options, env_extra=None, check=True, pg_dump_options=()):
    """Run encpipe-backup; on success return (path, parsed JSON line)."""
    after = ("--", *pg_dump_options) if pg_dump_options else ()
    proc = run([BACKUP, "--dir", directory, *options, db, *after], script_env(pg, tools, **(env_extra or {})))
    if not check:
        return proc
    assert proc.returncode == 0, proc.stderr.decode()
    lines = proc.stdout.decode().splitlines()
    assert len(lines) == 1, lines
    report = json.loads(lines[0])
    return os.path.join(directory, report["filename"]), report


def restore(pg, tools, path, db, *options, env_extra=None):
    return run([RESTORE, *options, path, db], script_env(pg, tools, **(env_extra or {})))


def dump(pg, db, *options):
    """pg_dump output, less its random per-dump key's \\restrict and \\unrestrict lines
    (only those: a line of the data that reads so stays, to be compared)."""
    proc = subprocess.run([pg.bin("pg_dump"), *options, db], env=pg.env, capture_output=True, check=True)
    lines = proc.stdout.splitlines(keepends=True)
    opening = next(line for line in lines if line.startswith(b"\\restrict "))  # before any SQL
    own = {opening, b"\\un" + opening[1:]}
    return b"".join(line for line in lines if line not in own)


def backdate(path, target, open_keys, seal_keys):
    """encpipe-backup's backup `path` made again as `target`, another time's name, sealed
    with `seal_keys`: its label says that time too (a file merely renamed to another
    time is refused by its label). `path` is removed."""
    said = [BACKUP_NAME.match(os.path.basename(p))["ts"].encode() for p in (path, target)]
    plaintext = encpipe(["open", *open_keys, path], check=True).stdout
    assert b" at=" + said[0] in plaintext[:512]
    encpipe(["seal", *seal_keys, "-o", target], input=plaintext.replace(b" at=" + said[0], b" at=" + said[1], 1),
            check=True)
    os.unlink(path)


def databases(pg):
    return set(pg.psql("SELECT datname FROM pg_database").split())


def leftover_databases(pg):
    """Temporary or pre-restore databases a restore left behind."""
    return {d for d in databases(pg) if d.startswith("encpipe_restore_") or "_pre_restore_" in d}


def drop_matching(pg, predicate):
    for name in databases(pg):
        if predicate(name):
            pg.dropdb(name)


def ensure_awkward(pg):
    if AWKWARD_DB not in databases(pg):
        seed_awkward_database(pg, AWKWARD_DB)
    return AWKWARD_DB


def ensure_small(pg, name, rows=50):
    """A tiny database: one table, with MARKERS[0] in its rows."""
    if name not in databases(pg):
        pg.createdb(name)
        pg.psql("CREATE TABLE t (id int PRIMARY KEY, v text);"
                "INSERT INTO t SELECT g, '%s ' || g FROM generate_series(1, %d) AS g;" % (MARKERS[0], rows),
                db=name)
    return name


def make_legacy_file(path, key_hex, plaintext):
    """A file of the previous tool: salt (32) | IV (16) | GCM tag (16) | ciphertext."""
    from Crypto.Cipher import AES

    iv = os.urandom(16)
    ciphertext, tag = AES.new(bytes.fromhex(key_hex), AES.MODE_GCM, nonce=iv).encrypt_and_digest(plaintext)
    Path(path).write_bytes(os.urandom(32) + iv + tag + ciphertext)
    return str(path)


def dir_entries(directory):
    return sorted(os.listdir(directory)) if os.path.isdir(directory) else []


@pytest.fixture
def awkward(pg):
    return ensure_awkward(pg)


# --- backup then restore ------------------------------------------------------


@pytest.mark.parametrize("fmt, compress, ext, magic", [
    # zstd: a skippable frame (the label, then zstd's frames); gzip: an empty member (the label)
    ("plain", "zstd", "sql.zst", b"\x50\x2a\x4d\x18"), ("plain", "gzip", "sql.gz", b"\x1f\x8b"),
    ("plain", "none", "sql", b"--"), ("custom", "none", "dump", b"PGDMP")])
def test_backup_then_restore_reproduces_the_database(pg, tools, key_file, awkward, tmp_path, fmt, compress, ext,
                                                     magic):
    directory = str(tmp_path / "backups")
    options = ("--compress", compress) if fmt == "plain" else ()
    if compress == "zstd":
        options += ("--compress-level", "5", "--compress-threads", "2")
    path, report = backup(pg, tools, directory, awkward, "--format", fmt, *options, "--key-file", key_file)
    match = BACKUP_NAME.match(report["filename"])
    assert match.group("db", "ext") == (awkward, ext)
    globals_name = "%s_%s.globals.sql.enc" % (awkward, match["ts"])
    assert dir_entries(directory) == sorted([report["filename"], globals_name, ".encpipe-cluster"])
    assert report["globals"] == globals_name
    plaintext = encpipe(["open", "--key-file", key_file, path], check=True).stdout
    assert plaintext.startswith(magic)
    # the label, as README "The backup's label" gives its bytes: the dump's (none: a comment line) and its globals file's
    escaped = b"".join(bytes([c]) if 0x21 <= c <= 0x7E and c != 0x25 else b"%%%02X" % c for c in awkward.encode())
    label = b"encpipe-backup v1 db=" + escaped + b" at=" + match["ts"].encode()
    if compress == "none" and fmt == "plain":
        assert plaintext.startswith(b"-- " + label + b"\n--\n-- PostgreSQL database dump\n")
    if compress == "zstd":
        assert plaintext.startswith(magic + len(label).to_bytes(4, "little") + label + b"\x28\xb5\x2f\xfd")
    globals_plaintext = encpipe(["open", "--key-file", key_file, os.path.join(directory, globals_name)],
                                check=True).stdout
    assert globals_plaintext.startswith(b"-- " + label + b"\n--\n-- PostgreSQL database cluster dump\n")
    env = script_env(pg, tools)
    listed = json.loads(run([SCRIPTS / "encpipe-list", directory], env).stdout)
    assert {e["filename"]: (e["status"], e["dump_format"]) for e in listed} == {
        globals_name: ("sealed", "globals"), report["filename"]: ("sealed", fmt), ".encpipe-cluster": ("marker", None)}
    verified = json.loads(run([SCRIPTS / "encpipe-verify", "--key-file", key_file, directory], env).stdout)
    assert verified["ok"] and verified["verified"] == 2

    target = "bk_restored_" + ext.replace(".", "_")
    pg.dropdb(target)
    proc = restore(pg, tools, path, target, "--key-file", key_file)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == b""
    assert dump(pg, target) == dump(pg, awkward)
    assert leftover_databases(pg) == set()
    pg.dropdb(target)


def test_backup_file_is_sealed_private_and_holds_no_plaintext(pg, tools, key_file, awkward, tmp_path):
    directory = str(tmp_path / "new" / "backups")
    path, report = backup(pg, tools, directory, awkward, "--compress", "none", "--key-file", key_file)
    data = Path(path).read_bytes()
    assert all(m.encode() in dump(pg, awkward) for m in MARKERS)  # the canaries are in the dump...
    assert not [m for m in MARKERS if m.encode() in data]  # ...and none is in the backup
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700

    header = json.loads(encpipe(["inspect", "--json", path], check=True).stdout)
    assert header["format"] == "encpipe" and header["plaintext_bytes"] > 5_000_000
    key_id = encpipe(["keyid", "--key-file", key_file], check=True).stdout.decode().split()
    assert report["key_ids"] == key_id == [s["key_id"] for s in header["slots"]]
    assert report["bytes"] == len(data)
    assert report["database"] == awkward and report["format"] == "plain"
    assert report["path"] == path and report["duration_seconds"] >= 0
    verified = json.loads(encpipe(["inspect", "--json", "--verify", "--key-file", key_file, path], check=True).stdout)
    assert verified["verified"] is True


def test_passphrase_from_the_environment_only(pg, tools, tmp_path):
    db = ensure_small(pg, "bk_small")
    directory = str(tmp_path / "b")
    secret = {"ENCPIPE_PASSPHRASE": "correct horse battery staple"}
    path, report = backup(pg, tools, directory, db, "--work-factor", "10", env_extra=secret)
    assert report["key_ids"] == [] and report["slots"] == ["passphrase"]
    pg.dropdb("bk_small_copy")
    proc = restore(pg, tools, path, "bk_small_copy", env_extra=secret)
    assert proc.returncode == 0, proc.stderr.decode()
    assert dump(pg, "bk_small_copy") == dump(pg, db)
    pg.dropdb("bk_small_copy")


def test_no_key_fails_before_pg_dump_runs(pg, tools, tmp_path):
    db = ensure_small(pg, "bk_small")
    fake = tmp_path / "fakebin"
    fake.mkdir()
    called = tmp_path / "pg_dump-was-called"
    (fake / "pg_dump").write_text("#!/bin/sh\ntouch %s\nexit 0\n" % shlex.quote(str(called)))
    (fake / "pg_dump").chmod(0o755)
    env = script_env(pg, tools)
    env["PATH"] = "%s:%s" % (fake, env["PATH"])
    directory = tmp_path / "b"
    proc = run([BACKUP, "--dir", directory, db], env)
    assert proc.returncode == 78
    assert proc.stdout == b""
    assert b"no key configured" in proc.stderr
    assert not called.exists()
    assert dir_entries(directory) == []


def test_usage_errors(pg, tools, key_file, tmp_path):
    env = script_env(pg, tools)
    for argv in ([], ["--format", "tar", "db"], ["--keep"], ["--bogus", "db"], ["a", "b"], ["../etc"]):
        proc = run([BACKUP, "--dir", tmp_path, "--key-file", key_file, *argv], env)
        assert proc.returncode == 64, (argv, proc.stderr)
        assert proc.stdout == b""
    # A database name after -- would make pg_dump dump that database under db's name.
    proc = run([BACKUP, "--dir", tmp_path / "other", "--key-file", key_file, "db", "--", "-N", "audit", "postgres"], env)
    assert (proc.returncode, proc.stdout) == (64, b"")
    assert b"pg_dump argument postgres is not an option" in proc.stderr
    assert not (tmp_path / "other").exists() or not os.listdir(tmp_path / "other")
    proc = run([RESTORE, "--key-file", key_file, "only-one-argument"], env)
    assert (proc.returncode, proc.stdout) == (64, b"")
    proc = run([RESTORE, "--key-file", key_file, tmp_path / "missing.sql.enc", "db"], env)
    assert (proc.returncode, proc.stdout) == (66, b"")
    assert run([BACKUP, "--help"], env).stdout.startswith(b"encpipe-backup:")


def test_keep_and_max_age_prune_after_a_backup(pg, tools, key_file, tmp_path):
    db = ensure_small(pg, "bk_small")
    directory = str(tmp_path / "b")
    made, report = backup(pg, tools, directory, db, "--key-file", key_file)
    old = os.path.join(directory, db + "_20000101T000000Z.sql.zst.enc")
    backdate(made, old, ["--key-file", key_file], ["--key-file", key_file])  # a backup of its own, made in 2000
    # its globals file names its run: under another name it would fail verification, and be left
    globals_name = BACKUP_NAME.match(report["filename"])["ts"].join([db + "_", ".globals.sql.enc"])
    os.unlink(os.path.join(directory, globals_name))
    first, report = backup(pg, tools, directory, db, "--key-file", key_file)
    foreign = os.path.join(directory, "notes.txt")
    Path(foreign).write_text("not a backup\n")
    _, report = backup(pg, tools, directory, db, "--key-file", key_file, "--max-age", "30")
    assert sorted(report["pruned"]) == [os.path.basename(old)]
    assert os.path.basename(first) in dir_entries(directory)
    backup(pg, tools, directory, db, "--key-file", key_file)
    newest, report = backup(pg, tools, directory, db, "--key-file", key_file, "--keep", "2")
    assert len(report["pruned"]) == 4  # two dumps, two globals files
    names = [n for n in dir_entries(directory) if BACKUP_NAME.match(n)]
    assert len(names) == 4 and os.path.basename(newest) == max(n for n in names if "globals" not in n)
    assert "notes.txt" in dir_entries(directory)


def test_restore_of_a_file_of_the_previous_tool(pg, tools, key_file, tmp_path):
    db = ensure_small(pg, "bk_small")
    plain = dump(pg, db)
    path = make_legacy_file(tmp_path / "bk_small_backup_2024-01-02_03-04-05-678Z.sql.enc", read_key(key_file), plain)
    pg.dropdb("bk_legacy_copy")
    proc = restore(pg, tools, path, "bk_legacy_copy", "--key-file", key_file)
    assert proc.returncode == 0, proc.stderr.decode()
    assert dump(pg, "bk_legacy_copy") == plain

    damaged = bytearray(Path(path).read_bytes())
    damaged[-10] ^= 0x40
    Path(path).write_bytes(bytes(damaged))
    proc = restore(pg, tools, path, "bk_legacy_copy", "--key-file", key_file)
    assert proc.returncode == 77  # GCM cannot tell damage from a wrong key
    assert proc.stdout == b""
    assert dump(pg, "bk_legacy_copy") == plain
    assert leftover_databases(pg) == set()
    pg.dropdb("bk_legacy_copy")


# --- restore over an existing database --------------------------------------------


@pytest.fixture(scope="module")
def made_small_backup(pg, tools, key_file, tmp_path_factory):
    """A backup of a small database, made once for the module (its tests only read it)."""
    db = ensure_small(pg, "bk_source", rows=200)
    path, _ = backup(pg, tools, str(tmp_path_factory.mktemp("small") / "b"), db, "--key-file", key_file)
    return path, db


def make_target(pg, name):
    pg.dropdb(name)
    pg.createdb(name)
    pg.psql("CREATE TABLE old_stuff (x int); INSERT INTO old_stuff VALUES (1), (2);", db=name)


def test_restore_over_existing_keeps_the_old_one(pg, tools, key_file, small_backup):
    path, source = small_backup
    make_target(pg, "bk_target")
    before = dump(pg, "bk_target")
    proc = restore(pg, tools, path, "bk_target", "--key-file", key_file)
    assert proc.returncode == 0, proc.stderr.decode()
    assert dump(pg, "bk_target") == dump(pg, source)
    kept = [d for d in databases(pg) if d.startswith("bk_target_pre_restore_")]
    assert len(kept) == 1 and re.fullmatch(r"bk_target_pre_restore_[0-9]{8}T[0-9]{6}Z", kept[0])
    assert kept[0].encode() in proc.stderr
    assert dump(pg, kept[0]) == before
    assert not [d for d in databases(pg) if d.startswith("encpipe_restore_")]
    drop_matching(pg, lambda d: d.startswith("bk_target"))


def test_restore_with_drop_old(pg, tools, key_file, small_backup):
    path, source = small_backup
    make_target(pg, "bk_target")
    proc = restore(pg, tools, path, "bk_target", "--drop-old", "--key-file", key_file)
    assert proc.returncode == 0, proc.stderr.decode()
    assert dump(pg, "bk_target") == dump(pg, source)
    assert leftover_databases(pg) == set()
    pg.dropdb("bk_target")


def _connect_and_hold(pg, db):
    holder = subprocess.Popen([pg.bin("psql"), "-X", "-q", "-d", db], env=pg.env, stdin=subprocess.PIPE,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while pg.psql("SELECT count(*) FROM pg_stat_activity WHERE datname = '%s'" % db).strip() == "0":
        assert time.monotonic() < deadline and holder.poll() is None
        time.sleep(0.05)
    return holder


def test_restore_refuses_a_database_in_use_unless_told(pg, tools, key_file, small_backup):
    path, source = small_backup
    make_target(pg, "bk_target")
    before = dump(pg, "bk_target")
    holder = _connect_and_hold(pg, "bk_target")
    try:
        proc = restore(pg, tools, path, "bk_target", "--key-file", key_file)
        assert proc.returncode == 75
        assert proc.stdout == b""
        assert b"active connection" in proc.stderr and b"--terminate-connections" in proc.stderr
        assert dump(pg, "bk_target") == before
        assert leftover_databases(pg) == set()

        proc = restore(pg, tools, path, "bk_target", "--terminate-connections", "--drop-old",
                       "--key-file", key_file)
        assert proc.returncode == 0, proc.stderr.decode()
        assert dump(pg, "bk_target") == dump(pg, source)
        assert leftover_databases(pg) == set()
    finally:
        holder.kill()
        holder.wait()
        pg.dropdb("bk_target")


# --- the demo -------------------------------------------------------------------


def test_demo_runs_and_cleans_up(pg, tools):
    workdir = tempfile.mkdtemp(prefix="encpipe-demo-test-")
    os.chmod(workdir, 0o711)  # the demo's server may run as another user
    try:
        env = script_env(pg, tools, TMPDIR=workdir, PG_BINDIR=pg.bindir)
        for name in ("PGHOST", "PGPORT", "PGUSER", "PGDATABASE"):
            del env[name]
        proc = run([SCRIPTS / "encpipe-demo"], env)
        out = proc.stdout.decode()
        assert proc.returncode == 0, out + proc.stderr.decode()
        assert "\nidentical\n" in out
        assert re.search(r"shop_[0-9TZ]+\.sql(\.zst)?\.enc: 0 lines", out)
        assert "pg_dump shop: 2000 lines" in out
        # signed backups restore with --signer-file; a forged one is refused before shop is touched
        assert re.search(r"\$ encpipe-backup --dir backups --key-file demo.key --sign-key demo.sign shop\n", out)
        assert re.search(r"\$ encpipe-restore --key-file demo.key --signer-file demo.verify backups/shop_\S+ "
                         r"shop_restored\n", out)
        assert out.endswith("$ encpipe-restore --key-file demo.key --signer-file demo.verify forged.sql.enc shop\n"
                            "(exit status 67, as expected)\n\n==> Done; removing " + out.rsplit(" ", 1)[1])
        assert os.listdir(workdir) == []
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def test_readme_quick_start_begins_with_the_demo():
    readme = (REPO / "README.md").read_text()
    quick_start = readme.split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^```[a-z]*\n(.*?)\n```$", quick_start, re.M | re.S)
    assert commands[0] == "scripts/encpipe-demo"
    section = readme.split("\n## Backups with PostgreSQL\n", 1)[1].split("\n## ", 1)[0]
    assert "encpipe-backup@shop.timer" in section
    assert re.search(r"^    0 2 \* \* \* \S+ \S*encpipe-backup .*--key-file ", section, re.M)  # the cron line


def test_a_passphrase_descriptor_over_64_kib_is_refused_not_a_hang(pg, tools, tmp_path):
    """The scripts read a --passphrase-fd secret once and hand it on, written whole
    first (encpipe-backup through a pipe of its own, encpipe-restore as a copy lent at
    N, a pipe where there is no memfd): a secret that would not fit is refused (64)
    before anything runs, instead of blocking for ever."""
    env = script_env(pg, tools)
    secret = tmp_path / "secret"
    for size, status in ((65536, None), (65537, 64)):
        secret.write_bytes(b"x" * size)
        for argv in ([BACKUP, "--dir", tmp_path / "d", "--no-globals", "--passphrase-fd", "{fd}", "nosuchdb"],
                     [RESTORE, "--passphrase-fd", "{fd}", tmp_path / "missing_20260101T000000Z.sql.enc", "db"]):
            with open(secret, "rb") as f:
                fd = f.fileno()
                argv = [str(a).replace("{fd}", str(fd)) for a in argv]
                proc = run(argv, env, pass_fds=(fd,), timeout=60)
            if status is None:  # fits: the run goes on, and fails later for its own reason
                assert b"is over 65536 bytes" not in proc.stderr
                continue
            assert (proc.returncode, proc.stdout) == (64, b""), proc.stderr
            assert b"error: the passphrase on file descriptor %d is over 65536 bytes" % fd in proc.stderr
            assert b"x" * 8 not in proc.stderr


def test_backups_into_one_directory_take_turns(pg, tools, key_file, tmp_path):
    """A backup that finds DIR locked says so, waits, and runs once the lock is gone;
    the stale temporary file a killed run left is removed only then."""
    import fcntl

    db = ensure_small(pg, "bk_turns")
    directory = tmp_path / "turns"
    directory.mkdir(mode=0o700)
    stale = directory / ".encpipe-tmp.20260101T000000Z_1_1"
    stale.write_bytes(b"left by a killed run")
    fd = os.open(directory, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    proc = subprocess.Popen([BACKUP, "--dir", str(directory), "--key-file", key_file, "--no-globals", db],
                            env=script_env(pg, tools), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # its line says it found the lock taken (60 s at most); a second later it still waits
        assert select.select([proc.stderr], [], [], 60)[0], "no line in 60 s"
        said = proc.stderr.readline()
        assert said.decode() == "encpipe-backup: waiting for another run in %s\n" % directory
        time.sleep(1)
        assert proc.poll() is None  # waiting
        assert stale.exists()
        assert [p.name for p in directory.iterdir()] == [stale.name]
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert err == b""  # nothing after that line
    assert not stale.exists()
    assert sorted(p.name for p in directory.iterdir())[0] == ".encpipe-cluster"  # the cluster's, then the backup
    assert [BACKUP_NAME.match(p.name)["db"] for p in sorted(directory.iterdir())[1:]] == [db]
    assert json.loads(out)["database"] == db
