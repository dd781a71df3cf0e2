"""encpipe-check --verify: a database's newest backup is the newest file under a
backup name that authenticates as prune counts one (every chunk, its maker, a
required signer), read from the newest back, stopping at the first that does;
each newer one that fails is a warning naming it and why. Without a key it is
critical. Without --verify, check reads names and headers only (README
"Monitoring: --metrics-file and encpipe-check")."""

import io
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from cliutil import assert_one_line_error, plugin_text, secret_file
from test_backup_dir import ENV, KEY, OTHER_KEY, make_corrupt, make_valid, sealed_bytes, stamp

from encpipe import envelope
from encpipe.backup.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NO_KEY = "CRITICAL: --verify needs a key: give the key options encpipe-verify takes, or set ENCPIPE_KEY\n"
TAMPERED = "chunk 1 failed authentication: the file is corrupt or was tampered with"


def check(*argv, env=ENV):
    out, err = io.BytesIO(), io.StringIO()
    code = main(["check", *argv], stdout=out, stderr=err, env=dict(env))
    return code, plugin_text(out.getvalue().decode()), err.getvalue()


def ago(hours):
    return stamp(datetime.now(timezone.utc) - timedelta(hours=hours))


def test_a_genuine_fresh_backup_is_ok(tmp_path):
    d, name = tmp_path / "b", f"shop_{ago(1)}.sql.enc"
    d.mkdir()
    make_valid(d, name)
    said = (0, f"OK: shop: newest backup {name} is 1.0 h old\n", "")
    assert check("--max-age", "24", "--verify", str(d)) == said  # ENCPIPE_KEY
    key_file = str(secret_file(tmp_path, "k.key", KEY.hex() + "\n"))
    assert check("--max-age", "24", "--verify", "--key-file", key_file, str(d), env={}) == said


def test_a_tampered_newest_is_a_warning_and_the_older_backup_counts(tmp_path):
    older, newest = f"shop_{ago(5)}.sql.enc", f"shop_{ago(1)}.sql.enc"
    make_valid(tmp_path, older)
    make_corrupt(tmp_path, newest)  # a flipped byte in chunk 1: the header is as good as any
    assert check("--max-age", "24", str(tmp_path)) == (0, f"OK: shop: newest backup {newest} is 1.0 h old\n", "")
    said = f"; newest file {newest} failed authentication: {TAMPERED}\n"
    assert check("--max-age", "24", "--verify", str(tmp_path)) == (
        1, f"WARNING: shop: newest backup {older} is 5.0 h old{said}", "")
    assert check("--max-age", "4", "--verify", str(tmp_path)) == (
        2, f"CRITICAL: shop: newest backup {older} is 5.0 h old, over --max-age 4 h{said}", "")


def test_reading_stops_at_the_newest_that_authenticates(tmp_path):
    """Older files are not read once a newer one authenticates: a tampered older
    backup says nothing (encpipe-verify and encpipe-prune read them all)."""
    newest = f"shop_{ago(1)}.sql.enc"
    make_corrupt(tmp_path, f"shop_{ago(5)}.sql.enc")
    make_valid(tmp_path, newest)
    assert check("--max-age", "24", "--verify", str(tmp_path)) == (
        0, f"OK: shop: newest backup {newest} is 1.0 h old\n", "")


def test_no_file_counts_when_no_supplied_key_opens_any(tmp_path):
    older, newest = f"shop_{ago(5)}.sql.enc", f"shop_{ago(1)}.sql.enc"
    make_valid(tmp_path, older)
    make_valid(tmp_path, newest)
    code, out, err = check("--max-age", "24", "--verify", str(tmp_path), env={"ENCPIPE_KEY": OTHER_KEY.hex()})
    assert (code, err) == (2, "")
    assert out == (f"CRITICAL: shop: no backup; newest file {newest} failed authentication: no supplied key opens"
                   f" this file; file {older} failed authentication: no supplied key opens this file\n")
    assert OTHER_KEY.hex() not in out


@pytest.mark.parametrize("env", [{}, {"BACKUP_ENCRYPTION_KEY": "the previous tool's key only"}])
def test_without_a_key_verify_is_critical_and_says_why(tmp_path, env):
    make_valid(tmp_path, f"shop_{ago(1)}.sql.enc")
    assert check("--max-age", "24", "--verify", str(tmp_path), env=env) == (2, NO_KEY, "")
    assert check("--max-age", "24", "--verify", str(tmp_path / "missing"), env=env) == (2, NO_KEY, "")


def test_a_key_that_cannot_be_read_is_critical(tmp_path):
    code, out, err = check("--max-age", "24", "--verify", "--key-file", str(tmp_path / "none"), str(tmp_path), env={})
    assert (code, err) == (2, "")
    missing = tmp_path / "none"
    assert out == f"CRITICAL: cannot load the keys for --verify: cannot read {missing}: No such file or directory\n"


@pytest.mark.parametrize("option", [["--key-file", "k.key"], ["--signer", "encpipesign1x"], ["-p"]])
def test_key_options_without_verify_are_a_usage_error(tmp_path, option):
    code, out, err = check("--max-age", "24", *option, str(tmp_path))
    assert (code, out) == (3, f"UNKNOWN: {err.splitlines()[0].partition(': error: ')[2]}\n")  # the plugin's
    assert_one_line_error(err, "encpipe-check")
    assert "is read only with --verify" in err


def test_the_script_says_verify_and_prints_no_secret(tmp_path):
    name = f"shop_{ago(1)}.sql.enc"
    make_valid(tmp_path, name)
    make_corrupt(tmp_path, f"shop_{ago(0.5)}.sql.enc")
    env = {"PATH": os.environ["PATH"], "ENCPIPE_KEY": KEY.hex()}
    done = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "encpipe-check"), "--max-age", "24",
                           "--verify", str(tmp_path)], capture_output=True, env=env, timeout=120)
    assert (done.returncode, done.stderr) == (1, b"")
    assert done.stdout.startswith(f"WARNING: shop: newest backup {name} is 1.0 h old; newest file shop_".encode())
    assert KEY.hex().encode() not in done.stdout + done.stderr
    usage = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "encpipe-check"), "--help"],
                           capture_output=True, env=env, timeout=120)
    assert usage.returncode == 0 and b"[--verify]" in usage.stdout and b"--verify " in usage.stdout


def test_verify_reads_a_remote_location_as_a_local_one(tmp_path, s3):
    older, newest = f"shop_{ago(5)}.sql.enc", f"shop_{ago(1)}.sql.enc"
    remote = Path(s3.bucket_dir) / "checked"
    os.mkdir(remote)
    for where in (tmp_path, remote):
        make_valid(where, older)
        make_corrupt(where, newest)
    env = {**s3.env, **ENV, "PATH": os.environ["PATH"]}
    local = check("--max-age", "24", "--verify", str(tmp_path), env=env)
    assert local[0] == 1 and check("--max-age", "24", "--verify", f"{s3.location}/checked", env=env) == local


def test_a_fifo_or_a_huge_sparse_file_under_a_backup_name_is_not_read_for_ever(tmp_path):
    """A writer of the directory puts a FIFO under the newest name, and under the next
    a genuine file's header and first chunk sparse-extended to 8 GB: the FIFO is not
    opened as a backup, the sparse file fails at its first chunk of zeros; the
    genuine older backup counts, each planted one is a warning, in well under a second."""
    older, fifo, sparse = f"shop_{ago(5)}.sql.enc", f"shop_{ago(1)}.sql.enc", f"shop_{ago(2)}.dump.enc"
    make_valid(tmp_path, older)
    os.mkfifo(tmp_path / fifo)
    data, header = sealed_bytes()
    parsed = envelope.read_header(io.BytesIO(data))
    record = parsed.header.chunk_size + 16
    with open(tmp_path / sparse, "wb") as f:
        f.write(data[: header + record])
        f.truncate(header + 500_000 * record + parsed.trailer_len)
    start = time.monotonic()
    said = (f"WARNING: shop: newest backup {older} is 5.0 h old; newest file {fifo} is foreign; file {sparse} failed "
            f"authentication: chunk 1 failed authentication: the file is corrupt or was tampered with\n")
    assert check("--max-age", "24", "--verify", str(tmp_path)) == (1, said, "")
    assert time.monotonic() - start < 20


@pytest.mark.parametrize("option", [["--passphrase-fd", "57"], ["--key-file", "/dev/fd/57"]])
def test_a_closed_key_descriptor_is_critical(tmp_path, option):
    done = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "encpipe-check"), "--max-age", "24",
                           "--verify", *option, str(tmp_path)], capture_output=True, env={**os.environ, **ENV},
                          timeout=60)
    assert done.returncode == 2 and done.stdout.startswith(b"CRITICAL: cannot load the keys for --verify: ")


def test_encpipe_verify_of_a_remote_location_with_no_backup_fails_with_66(tmp_path, s3):
    remote = Path(s3.bucket_dir) / "nothing-here"
    os.mkdir(remote)
    (remote / "README.txt").write_bytes(b"notes\n")
    env = {**s3.env, **ENV, "PATH": os.environ["PATH"]}
    for folder in ("nothing-here", "no-such-folder"):
        out, err = io.BytesIO(), io.StringIO()
        code = main(["verify", f"{s3.location}/{folder}"], stdout=out, stderr=err, env=env)
        assert (code, out.getvalue(), err.getvalue()) == (
            66, b"", f"encpipe-verify: error: {s3.location}/{folder}: no backup to verify "
                     "(--allow-empty accepts that)\n")
    out = io.BytesIO()
    assert main(["verify", "--allow-empty", f"{s3.location}/nothing-here"], stdout=out, stderr=io.StringIO(),
                env=env) == 0
    assert b'"verified": 0' in out.getvalue()


def test_encpipe_prune_of_a_remote_location_with_no_backup_fails_with_66(tmp_path, s3):
    """As verify: an empty remote folder, or one that is not there (an object store
    has no folders), is 66 and one line, unless --allow-empty."""
    remote = Path(s3.bucket_dir) / "nothing-to-prune"
    os.mkdir(remote)
    (remote / "README.txt").write_bytes(b"notes\n")
    env = {**s3.env, **ENV, "PATH": os.environ["PATH"]}
    for folder in ("nothing-to-prune", "no-such-folder"):
        out, err = io.BytesIO(), io.StringIO()
        code = main(["prune", "--keep-last", "1", f"{s3.location}/{folder}"], stdout=out, stderr=err, env=env)
        assert (code, out.getvalue(), err.getvalue()) == (
            66, b"", f"encpipe-prune: error: {s3.location}/{folder}: no backup to prune "
                     "(--allow-empty accepts that)\n")
    out = io.BytesIO()
    assert main(["prune", "--allow-empty", "--keep-last", "1", f"{s3.location}/nothing-to-prune"], stdout=out,
                stderr=io.StringIO(), env=env) == 0
    assert b'"removed": []' in out.getvalue() and os.listdir(remote) == ["README.txt"]
