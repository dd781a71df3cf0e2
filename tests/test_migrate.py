"""scripts/encpipe-migrate: legacy *.sql.enc files become encpipe files, once, losing none."""

import fcntl
import hashlib
import io
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys

import pytest

from cliutil import secret_file

import encpipe
from encpipe import legacy

HERE = os.path.dirname(os.path.abspath(__file__))
MIGRATE = os.path.join(os.path.dirname(HERE), "scripts", "encpipe-migrate")
VECTORS = os.path.join(HERE, "vectors", "legacy")
with open(os.path.join(VECTORS, "manifest.json")) as _f:
    MANIFEST = {v["file"]: v for v in json.load(_f)["vectors"]}
HEX_KEY = MANIFEST["hex-key.sql.enc"]["setting"]
PASSPHRASE = MANIFEST["passphrase.sql.enc"]["setting"]
NEW_KEY = "5e" * 32
ENCPIPE = f"{shlex.quote(sys.executable)} -m encpipe"
# The stand-ins below end in the real encpipe, $REAL_ENCPIPE (ENCPIPE): shell words, split
# by eval as the scripts split ENCPIPE (this Python's path quoted: it may hold a space).

# Fails the way a crash would: SIGKILLs encpipe-migrate (its parent) on the
# Nth call of one encpipe subcommand, before that subcommand does anything.
KILLER = """#!/bin/sh
count="$STATE/calls.$1"
n=$(( $(cat "$count" 2>/dev/null || echo 0) + 1 ))
echo "$n" > "$count"
if [ "$1" = "$KILL_ON" ] && [ "$n" = "$KILL_AT" ]; then
  kill -9 "$PPID"
  exit 137
fi
eval exec "$REAL_ENCPIPE" '"$@"'
"""

# An encpipe whose `inspect` lies about the plaintext size.
LIAR = """#!/bin/sh
if [ "$1" = inspect ]; then
  echo '{"verified": true, "plaintext_bytes": 1}'
  exit 0
fi
eval exec "$REAL_ENCPIPE" '"$@"'
"""

# An encpipe whose `seal` fails as on a full disk.
FAILING_SEAL = """#!/bin/sh
if [ "$1" = seal ]; then
  cat > /dev/null
  echo "encpipe: error: cannot write output: No space left on device" >&2
  exit 74
fi
eval exec "$REAL_ENCPIPE" '"$@"'
"""


def sha(data):
    return hashlib.sha256(data).hexdigest()


def snapshot(directory):
    """{name: sha256 or 'dir' or 'link'} of everything in `directory`."""
    result = {}
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if os.path.islink(path):
            result[name] = "link"
        elif os.path.isdir(path):
            result[name] = "dir"
        else:
            with open(path, "rb") as f:
                result[name] = sha(f.read())
    return result


def is_encpipe(path):
    with open(path, "rb") as f:
        return f.read(7) == b"ENCPIPE"


def open_new(path, key=None):
    out = io.BytesIO()
    with open(path, "rb") as src:
        encpipe.unseal(src, out, [key or encpipe.RawKey(bytes.fromhex(NEW_KEY))])
    return out.getvalue()


def migrate(directory, *argv, keys=None, encpipe=ENCPIPE, env=None):
    """Run encpipe-migrate; (status, [JSON lines], stderr)."""
    key_args = []
    if keys:
        key_args = ["--legacy-key-file", keys["old_key"], "--legacy-passphrase-file", keys["old_pass"],
                    "--key-file", keys["new_key"]]
    done = subprocess.run(
        [sys.executable, MIGRATE, *key_args, *argv, str(directory)],
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"], "PYTHONPATH": os.path.dirname(HERE), "ENCPIPE": encpipe,
             "REAL_ENCPIPE": ENCPIPE, **(env or {})},
        timeout=120,
    )
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines()], done.stderr


def make_backups(directory, legacy_files, python_made=True):
    """A directory of legacy files (Node vectors, one made in Python), an encpipe file and
    foreign files. Returns {legacy name: expected plaintext sha256}."""
    directory.mkdir()
    expected = {}
    for name, source in legacy_files.items():
        shutil.copyfile(os.path.join(VECTORS, source), directory / name)
        expected[name] = MANIFEST[source]["plaintext_sha256"]
    if python_made:
        plaintext = b"-- made in Python\n" * 2000
        with open(directory / "py_backup_2025-11-18.sql.enc", "wb") as f:
            legacy.seal_legacy(io.BytesIO(plaintext), f, bytes.fromhex(HEX_KEY))
        expected["py_backup_2025-11-18.sql.enc"] = sha(plaintext)
    with open(directory / "already-new.sql.enc", "wb") as f:
        encpipe.seal(io.BytesIO(b"already new"), f, [encpipe.RawKey(bytes.fromhex(NEW_KEY))])
    (directory / "notes.txt").write_text("not a backup\n")
    (directory / "old-unencrypted.sql").write_text("-- the previous tool without a key\n")
    (directory / "checksums.sql.enc.sha256").write_text("abc  x.sql.enc\n")
    (directory / "nested.sql.enc").mkdir()
    shutil.copyfile(os.path.join(VECTORS, "hex-key.sql.enc"), directory / "nested.sql.enc" / "inner.sql.enc")
    os.symlink("a_backup.sql.enc", directory / "link.sql.enc")
    return expected


FEW = {"a_backup.sql.enc": "hex-key.sql.enc", "b_backup.sql.enc": "passphrase.sql.enc"}
MANY = {**FEW, "c_empty.sql.enc": "empty-passphrase.sql.enc"}


def assert_converted(directory, expected, before):
    """Every legacy file is now an encpipe file with the same plaintext; the rest as before."""
    after = snapshot(directory)
    assert set(after) == set(before)
    for name in expected:
        assert is_encpipe(directory / name), name
        assert sha(open_new(str(directory / name))) == expected[name], name
    for name in set(before) - set(expected):
        assert after[name] == before[name], name
    assert not [n for n in os.listdir(directory) if n.endswith(".migrate-tmp")]


def test_migrates_mixed_directory_once(tmp_path, keys):
    directory = tmp_path / "backups"
    expected = make_backups(directory, MANY)
    shutil.copyfile(os.path.join(VECTORS, "tampered-ciphertext.sql.enc"), directory / "damaged.sql.enc")
    old_mtime = os.stat(directory / "a_backup.sql.enc").st_mtime_ns - 10**9 * 3600
    os.utime(directory / "a_backup.sql.enc", ns=(old_mtime, old_mtime))
    before = snapshot(directory)

    status, lines, err = migrate(directory, keys=keys)
    assert status == 77  # damaged.sql.enc: no key authenticates it
    by_name = {line["file"]: line for line in lines}
    assert sorted(by_name) == sorted(n for n in before if n.endswith(".sql.enc"))
    for name in expected:
        assert by_name[name]["status"] == "migrated"
        assert by_name[name]["kept"] is None
    assert by_name["c_empty.sql.enc"]["plaintext_bytes"] == 0
    assert by_name["already-new.sql.enc"] == {
        "file": "already-new.sql.enc", "status": "skipped", "reason": "already an encpipe file"}
    assert by_name["nested.sql.enc"]["status"] == by_name["link.sql.enc"]["status"] == "skipped"
    assert by_name["damaged.sql.enc"]["status"] == "failed"
    assert by_name["damaged.sql.enc"]["exit_code"] == 77
    assert by_name["damaged.sql.enc"]["reason"] == ("encpipe open --legacy failed with status 77: "
                                                    "no supplied key authenticates this legacy file")
    assert "no supplied key" not in err  # in the file's line, not on standard error too
    assert_converted(directory, expected, before)
    assert snapshot(directory)["damaged.sql.enc"] == before["damaged.sql.enc"]
    assert os.stat(directory / "a_backup.sql.enc").st_mtime_ns == old_mtime
    with open(os.path.join(VECTORS, "hex-key.sql.enc"), "rb") as f:
        assert snapshot(directory / "nested.sql.enc") == {"inner.sql.enc": sha(f.read())}

    converted = snapshot(directory)
    status, lines, _ = migrate(directory, keys=keys)
    assert status == 77
    assert {line["file"]: line["status"] for line in lines if line["file"] in expected} == {
        name: "skipped" for name in expected}
    assert snapshot(directory) == converted


@pytest.mark.parametrize("kill_on", ["seal", "inspect"])
def test_killed_run_then_rerun_converts_each_file_once(tmp_path, keys, kill_on):
    directory = tmp_path / "backups"
    expected = make_backups(directory, FEW)
    before = snapshot(directory)
    state = tmp_path / "state"
    state.mkdir()
    killer = tmp_path / "killer"
    killer.write_text(KILLER)
    killer.chmod(0o700)

    env = {"STATE": str(state), "KILL_ON": kill_on, "KILL_AT": "2"}
    status, lines, _ = migrate(directory, keys=keys, encpipe=str(killer), env=env)
    assert status == -signal.SIGKILL
    assert [(line["file"], line["status"]) for line in lines] == [
        ("a_backup.sql.enc", "migrated"), ("already-new.sql.enc", "skipped")]
    now = snapshot(directory)
    assert is_encpipe(directory / "a_backup.sql.enc")
    for name in ("b_backup.sql.enc", "py_backup_2025-11-18.sql.enc"):
        assert now[name] == before[name]  # still the old file, untouched
    leftovers = [n for n in now if n.endswith(".migrate-tmp")]
    assert len(leftovers) == 1 and leftovers[0].startswith(".b_backup.sql.enc.")

    status, lines, err = migrate(directory, keys=keys)
    assert status == 0
    assert f"encpipe-migrate: warning: removed {leftovers[0]}, left by an interrupted run" in err
    statuses = {line["file"]: line["status"] for line in lines}
    assert statuses["a_backup.sql.enc"] == "skipped"
    assert statuses["b_backup.sql.enc"] == statuses["py_backup_2025-11-18.sql.enc"] == "migrated"
    assert_converted(directory, expected, before)


def test_sigkill_at_a_real_moment_loses_nothing(tmp_path, keys):
    directory = tmp_path / "backups"
    expected = make_backups(directory, FEW)
    before = snapshot(directory)
    key_args = ["--legacy-key-file", keys["old_key"], "--legacy-passphrase-file", keys["old_pass"],
                "--key-file", keys["new_key"]]
    process = subprocess.Popen(
        [sys.executable, MIGRATE, *key_args, str(directory)],
        stdout=subprocess.PIPE,
        env={"PATH": os.environ["PATH"], "PYTHONPATH": os.path.dirname(HERE), "ENCPIPE": ENCPIPE},
    )
    first = json.loads(process.stdout.readline())
    process.kill()
    process.wait()
    process.stdout.close()
    assert first["status"] == "migrated"
    for name, digest in snapshot(directory).items():  # each file is old or converted, never half-written
        if name in expected and digest != before[name]:
            assert sha(open_new(str(directory / name))) == expected[name]

    status, lines, _ = migrate(directory, keys=keys)
    assert status == 0
    assert_converted(directory, expected, before)


def test_keep_originals(tmp_path, keys):
    directory = tmp_path / "backups"
    expected = make_backups(directory, FEW, python_made=False)
    before = snapshot(directory)
    passfile = secret_file(tmp_path, "new.pass", "new passphrase\n")
    argv = ["--keep-originals", "--legacy-key-file", keys["old_key"], "--legacy-passphrase-file", keys["old_pass"],
            "--passphrase-file", passfile, "--work-factor", "10"]
    # An earlier run was interrupted between keeping one original and replacing it.
    os.link(directory / "a_backup.sql.enc", directory / "a_backup.sql.enc.legacy")
    status, lines, _ = migrate(directory, *argv)
    assert status == 0
    for name in expected:
        assert {"file": name, "status": "migrated", "kept": name + ".legacy"}.items() <= next(
            line for line in lines if line["file"] == name).items()
        assert snapshot(directory)[name + ".legacy"] == before[name]
        assert sha(open_new(str(directory / name), encpipe.Passphrase("new passphrase"))) == expected[name]
    again = snapshot(directory)
    status, lines, _ = migrate(directory, *argv)
    assert status == 0
    assert all(line["status"] == "skipped" for line in lines)
    assert snapshot(directory) == again


def test_kept_name_taken_by_another_file_fails_that_file_only(tmp_path, keys):
    directory = tmp_path / "backups"
    make_backups(directory, FEW, python_made=False)
    (directory / "a_backup.sql.enc.legacy").write_bytes(b"something else")
    before = snapshot(directory)
    status, lines, _ = migrate(directory, "--keep-originals", keys=keys)
    assert status == 73
    line = next(line for line in lines if line["file"] == "a_backup.sql.enc")
    assert line["status"] == "failed"
    after = snapshot(directory)
    assert after["a_backup.sql.enc"] == before["a_backup.sql.enc"]
    assert after["a_backup.sql.enc.legacy"] == before["a_backup.sql.enc.legacy"]
    assert is_encpipe(directory / "b_backup.sql.enc")


def test_verification_mismatch_keeps_the_original(tmp_path, keys):
    directory = tmp_path / "backups"
    make_backups(directory, FEW, python_made=False)
    before = snapshot(directory)
    liar = tmp_path / "liar"
    liar.write_text(LIAR)
    liar.chmod(0o700)
    status, lines, _ = migrate(directory, keys=keys, encpipe=str(liar))
    assert status == 70
    failed = [line for line in lines if line["status"] == "failed"]
    assert len(failed) == 2
    assert failed[0]["reason"].startswith("the new file holds 1 bytes, not ")
    assert snapshot(directory) == before


def test_failing_seal_keeps_the_original(tmp_path, keys):
    """(A missing key file no longer makes seal fail: it is refused before any file.)"""
    directory = tmp_path / "backups"
    make_backups(directory, FEW, python_made=False)
    before = snapshot(directory)
    failing = tmp_path / "failing"
    failing.write_text(FAILING_SEAL)
    failing.chmod(0o700)
    status, lines, err = migrate(directory, keys=keys, encpipe=str(failing))
    assert status == 74
    assert {line["status"] for line in lines if line["file"] in FEW} == {"failed"}
    assert snapshot(directory) == before
    assert "Traceback" not in err


def test_old_key_from_the_environment(tmp_path):
    directory = tmp_path / "backups"
    directory.mkdir()
    shutil.copyfile(os.path.join(VECTORS, "passphrase.sql.enc"), directory / "x.sql.enc")
    status, lines, _ = migrate(directory, env={"BACKUP_ENCRYPTION_KEY": PASSPHRASE, "ENCPIPE_KEY": NEW_KEY})
    assert status == 0
    assert lines[0]["status"] == "migrated"
    assert sha(open_new(str(directory / "x.sql.enc"))) == MANIFEST["passphrase.sql.enc"]["plaintext_sha256"]


def test_dry_run_changes_nothing(tmp_path, keys):
    directory = tmp_path / "backups"
    make_backups(directory, FEW, python_made=False)
    before = snapshot(directory)
    status, lines, _ = migrate(directory, "--dry-run", keys=keys)
    assert status == 0
    assert {line["file"]: line["status"] for line in lines if line["file"] in FEW} == {
        name: "would-migrate" for name in FEW}
    assert snapshot(directory) == before


def test_dry_run_says_what_a_run_would_do_with_leftovers(tmp_path, keys):
    """Before, --dry-run said nothing of the temporary files an interrupted run left:
    now what the run would do, in its words ("would remove"; "left" of what it leaves)."""
    directory = tmp_path / "backups"
    make_backups(directory, FEW, python_made=False)
    ours, other = ".a_backup.sql.enc.k3x9.migrate-tmp", ".b_backup.sql.enc.q7.migrate-tmp"
    (directory / ours).write_bytes(b"ciphertext of a killed run")
    (directory / other).mkdir()
    said = (f"encpipe-migrate: warning: {{}} {ours}, left by an interrupted run\n"
            f"encpipe-migrate: warning: left {other}: named like a temporary file of this tool, but not a regular "
            "file\n")
    before = snapshot(directory)
    status, lines, err = migrate(directory, "--dry-run", keys=keys)
    assert (status, err) == (0, said.format("would remove"))
    assert [line["status"] for line in lines if line["file"] in FEW] == ["would-migrate"] * len(FEW)
    assert snapshot(directory) == before
    status, _, err = migrate(directory, keys=keys)
    assert (status, err) == (0, said.format("removed"))
    assert not (directory / ours).exists() and (directory / other).is_dir()


def test_refuses_without_keys_or_while_another_run_works(tmp_path, keys):
    directory = tmp_path / "backups"
    make_backups(directory, FEW, python_made=False)
    before = snapshot(directory)
    status, lines, err = migrate(directory, env={"BACKUP_ENCRYPTION_KEY": HEX_KEY})
    assert (status, lines) == (78, [])
    assert err.startswith("encpipe-migrate: error: no key for the new files")
    status, lines, err = migrate(directory, "--recipient", "encpipe1xyz", env={"BACKUP_ENCRYPTION_KEY": HEX_KEY})
    assert (status, lines) == (64, [])
    status, lines, err = migrate(directory, "--key-file", keys["new_key"])
    assert (status, lines) == (78, [])
    assert "no key for the old files" in err
    status, lines, err = migrate(directory, "--bogus", keys=keys)
    assert (status, lines) == (64, [])
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        status, lines, err = migrate(directory, keys=keys)
    finally:
        os.close(fd)
    assert (status, lines) == (75, [])
    assert "its lock (flock on the directory) is held" in err
    status, lines, err = migrate(tmp_path / "missing", keys=keys)
    assert status == 66
    assert snapshot(directory) == before


def test_a_legacy_file_with_a_name_near_the_limit_is_migrated(tmp_path, keys):
    """The temporary file is named after the file: a name of 250 bytes (the limit is
    255) made it too long, and the file failed (74) on every run, never converted."""
    directory = tmp_path / "backups"
    name = "é" * 60 + "b" * 126 + ".sql.enc"  # 250 bytes, a two-byte character cut at the temporary's
    expected = make_backups(directory, {name: "hex-key.sql.enc"}, python_made=False)
    before = snapshot(directory)
    status, lines, err = migrate(directory, keys=keys)
    by_name = {line["file"]: line for line in lines}
    assert (status, by_name[name]["status"]) == (0, "migrated"), (lines, err)
    assert_converted(directory, expected, before)


def test_a_hard_link_elsewhere_keeps_the_old_format_and_is_said(tmp_path, keys):
    """Another link to an old file (a snapshot's) keeps it in the previous tool's
    format, which its old key or passphrase opens: said, as rotate and rewrap say it.
    NAME.legacy of --keep-originals is no such link (an interrupted run's included)."""
    directory = tmp_path / "backups"
    make_backups(directory, FEW, python_made=False)
    snapshot_dir = tmp_path / "snapshot"
    snapshot_dir.mkdir()
    os.link(directory / "a_backup.sql.enc", snapshot_dir / "a_backup.sql.enc")
    old = (snapshot_dir / "a_backup.sql.enc").read_bytes()
    status, lines, err = migrate(directory, keys=keys)
    assert status == 0, err
    by_name = {line["file"]: line for line in lines}
    assert by_name["a_backup.sql.enc"]["other_links"] == 1
    assert all("other_links" not in line for name, line in by_name.items() if name != "a_backup.sql.enc")
    assert err == ("encpipe-migrate: warning: a_backup.sql.enc: 1 other hard link to it keeps the file as it was, "
                   "in the previous tool's format (its old secret opens them): migrate replaces this name only\n")
    assert (snapshot_dir / "a_backup.sql.enc").read_bytes() == old
    kept_dir = tmp_path / "kept"
    make_backups(kept_dir, FEW, python_made=False)
    os.link(kept_dir / "a_backup.sql.enc", kept_dir / "a_backup.sql.enc.legacy")  # an interrupted run's
    status, lines, err = migrate(kept_dir, "--keep-originals", keys=keys)
    assert (status, err) == (0, "")
    assert all("other_links" not in line for line in lines)


@pytest.mark.parametrize("content", ["", "\n", "\r\n", "\n\n\r\n\n"])
@pytest.mark.parametrize("side", ["--legacy-passphrase-file", "--passphrase-file"])
def test_an_empty_passphrase_file_is_refused_once_before_any_file(tmp_path, keys, side, content):
    """Before: one failed line per file (encpipe refuses an empty passphrase, 64), and
    exit 0 once no file needed converting."""
    directory = tmp_path / "backups"
    make_backups(directory, FEW, python_made=False)
    before = snapshot(directory)
    empty = secret_file(tmp_path, "empty.pass", content)
    argv = ["--legacy-key-file", keys["old_key"], "--key-file", keys["new_key"]] if side == "--legacy-passphrase-file" \
        else ["--legacy-key-file", keys["old_key"], "--work-factor", "10"]
    status, lines, err = migrate(directory, *argv, side, empty)
    assert (status, lines) == (64, [])
    assert err == f"encpipe-migrate: error: {side}: {empty}: the passphrase is empty\n"
    assert snapshot(directory) == before
