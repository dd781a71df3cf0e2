"""encpipe-backup --signer / --signer-file (else ENCPIPE_SIGNER): the retention
pass after the backup counts only files a trusted signer signed as kept, and
never removes a backup on the strength of one that is not signed."""

import json
import os
import shutil
import sys

import pytest

from test_backup_restore import (
    backdate,
    backup,
    dir_entries,
    ensure_small,
    run,
    script_env,
)


@pytest.fixture(scope="module")
def made_world(pg, tools, key_file, tmp_path_factory):
    """Made once: a directory with an old signed backup (A) and a newer unsigned one (B)."""
    tmp_path = tmp_path_factory.mktemp("signers")
    db = ensure_small(pg, "bk_signers")
    sign_key = tmp_path / "sign.key"
    pub = run([sys.executable, "-m", "encpipe", "keygen", "--sign", "-o", sign_key],
              script_env(pg, tools)).stdout.decode().strip()
    directory = str(tmp_path / "b")
    signed, _ = backup(pg, tools, directory, db, "--no-globals", "--key-file", key_file, "--sign-key", sign_key)
    unsigned, _ = backup(pg, tools, directory, db, "--no-globals", "--key-file", key_file)
    a, b = (os.path.join(directory, f"{db}_2000010{d}T000000Z.sql.zst.enc") for d in (1, 2))
    backdate(signed, a, ["--key-file", key_file], ["--key-file", key_file, "--sign-key", sign_key])
    backdate(unsigned, b, ["--key-file", key_file], ["--key-file", key_file])
    return db, directory, str(sign_key), pub, os.path.basename(a), os.path.basename(b)


@pytest.fixture
def signed_world(made_world, tmp_path):
    """made_world's directory copied for this test (its run prunes and adds files)."""
    db, directory, *rest = made_world
    copy = str(tmp_path / "b")
    shutil.copytree(directory, copy)
    return (db, copy, *rest)


def _keep_two(pg, tools, key_file, world, *options, env_extra=None):
    db, directory, sign_key, *_ = world
    return backup(pg, tools, directory, db, "--no-globals", "--key-file", key_file, "--sign-key", sign_key,
                  "--keep-last", "2", *options, env_extra=env_extra, check=False)


def test_without_a_signer_an_unsigned_backup_counts_as_kept(pg, tools, key_file, signed_world):
    db, directory, _, _, a, b = signed_world
    proc = _keep_two(pg, tools, key_file, signed_world)
    assert proc.returncode == 0, proc.stderr.decode()
    line = json.loads(proc.stdout)
    assert line["pruned"] == [a]
    assert sorted(dir_entries(directory)) == sorted([b, line["filename"], ".encpipe-cluster"])


@pytest.mark.parametrize("how", ["--signer", "--signer-file", "ENCPIPE_SIGNER"])
def test_with_a_signer_an_unsigned_backup_is_never_counted_as_kept(pg, tools, key_file, signed_world, tmp_path,
                                                                     how):
    db, directory, _, pub, a, b = signed_world
    signer_file = tmp_path / "signers"
    signer_file.write_text(f"# the backup host\n{pub}\n")
    options = {"--signer": ["--signer", pub], "--signer-file": ["--signer-file", str(signer_file)],
               "ENCPIPE_SIGNER": []}[how]
    env_extra = {"ENCPIPE_SIGNER": pub} if how == "ENCPIPE_SIGNER" else None
    proc = _keep_two(pg, tools, key_file, signed_world, *options, env_extra=env_extra)
    assert proc.returncode == 1  # the unsigned file is reported, left in place
    line = json.loads(proc.stdout)
    assert line["pruned"] == []  # the signed A is one of the two kept, not B
    assert f"left {b}: failed verification: not signed by a trusted signer".encode() in proc.stderr, proc.stderr.decode()
    assert sorted(dir_entries(directory)) == sorted([a, b, line["filename"], ".encpipe-cluster"])


def test_a_bad_signer_is_refused_before_the_dump(pg, tools, key_file, signed_world):
    db, directory, *_ = signed_world
    before = sorted(dir_entries(directory))
    proc = _keep_two(pg, tools, key_file, signed_world, "--signer", "encpipesign1notakey")
    assert (proc.returncode, proc.stdout) == (64, b""), proc.stderr.decode()
    assert b"encpipe-backup: error: " in proc.stderr
    assert sorted(dir_entries(directory)) == before
