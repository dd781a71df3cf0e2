"""Retention never deletes a backup on the strength of a file whose maker it has not
authenticated. A file sealed to an x25519 public key can be made by anyone who has
the public key (the write-only setup: encpipe-backup --recipient, prune elsewhere
with --identity), a v1 file by any holder of any of its slots: a local user who can
write the backup directory plants newer such files under backup names. prune, the
retention pass of encpipe-backup --keep-... and encpipe-check count a file only
when its maker is authenticated (a raw key or passphrase whose slot authenticator
checked, or a required --signer); the others are left and reported, unless the
weaker --count-unauthenticated. Real scripts, a real cluster."""

import io
import json
import os
import re
import shutil
import sys
from datetime import datetime, timedelta, timezone

import pytest

from cliutil import plugin_text, seal_v1
from encpipe.backup.cli import main as backups_main
from test_backup_dir import KEY, LEGACY_AVAILABLE, by_name, make_valid, stamp
from test_backup_dir import run as backups
from test_backup_restore import (
    REPO,
    backdate,
    backup,
    dir_entries,
    ensure_small,
    run,
    script_env,
)

REASON = ("maker not authenticated: anyone with the public key (or, for a v1 file, any slot holder) could have"
          " made it; use --signer, or --count-unauthenticated")


def stored(directory):
    """The files in `directory` but the cluster's marker (encpipe-backup's, which prune never removes)."""
    return [name for name in dir_entries(directory) if name != ".encpipe-cluster"]


def now():
    """Taken when each test runs: a module-wide moment grows old in a long run."""
    return datetime.now(timezone.utc)


def tool(name, *argv, env):
    return run([sys.executable, REPO / "scripts" / name, *argv], env)


@pytest.fixture(scope="module")
def sender_keys(pg, tools, tmp_path_factory):
    """An x25519 identity and its public key, a signing key and its verify key: made
    once for the module (no test changes them)."""
    env, tmp_path = script_env(pg, tools), tmp_path_factory.mktemp("sender")
    identity, sign_key = tmp_path / "identity", tmp_path / "sign.key"
    run([sys.executable, "-m", "encpipe", "keygen", "--x25519", "-o", identity], env).check_returncode()
    pub = run([sys.executable, "-m", "encpipe", "pubkey", identity], env).stdout.decode().strip()
    verify_key = run([sys.executable, "-m", "encpipe", "keygen", "--sign", "-o", sign_key], env).stdout.decode().strip()
    assert pub and verify_key.startswith("encpipesign1")
    return {"identity": str(identity), "pub": pub, "sign_key": str(sign_key), "signer": verify_key}


@pytest.fixture
def world(pg, tools, sender_keys, tmp_path):
    """A database, the module's keys, and this test's own backup directory."""
    return {"db": ensure_small(pg, "bk_sender"), "env": script_env(pg, tools), **sender_keys, "dir": str(tmp_path / "b")}


def genuine(pg, tools, w, days, *options):
    """An encpipe-backup backup sealed to the public key (with `options`), made again
    (backdate: opened, its label changed, sealed) as backups `days` days old: their
    names. One backup serves them all: backdate seals each file anew."""
    made, _ = backup(pg, tools, w["dir"], w["db"], "--no-globals", "--recipient", w["pub"], *options)
    spare = os.path.join(os.path.dirname(w["dir"]), "spare")  # outside the directory, under the same name
    os.makedirs(spare, exist_ok=True)
    names = []
    for age in days:
        name = f"{w['db']}_{stamp(now() - timedelta(days=age))}.sql.enc"
        backdate(shutil.copy(made, spare), os.path.join(w["dir"], name), ["--identity", w["identity"]],
                 ["--recipient", w["pub"], *options])
        names.append(name)
    os.unlink(made)
    return names


def plant(w, ages):
    """The attacker's files: sealed to the same public key, unsigned, under backup
    names `ages` (timedeltas) old, each with the label encpipe-backup would give it
    (anyone with the public key can seal one: an unlabelled file named after the
    genuine labelled ones would be refused for that alone)."""
    names = []
    for age in ages:
        when = stamp(now() - age)
        name = f"{w['db']}_{when}.sql.enc"
        label = f"-- encpipe-backup v1 db={w['db']} at={when}\n".encode()
        sealed = run([sys.executable, "-m", "encpipe", "seal", "--recipient", w["pub"]], w["env"],
                     input=label + b"DROP TABLE IF EXISTS everything;\n")
        assert sealed.returncode == 0, sealed.stderr
        with open(os.path.join(w["dir"], name), "wb") as f:
            f.write(sealed.stdout)
        names.append(name)
    return names


def prune(w, *options):
    proc = tool("encpipe-prune", "--keep-last", "1", "--identity", w["identity"], *options, w["dir"], env=w["env"])
    return proc, json.loads(proc.stdout)


def left_lines(stderr):
    return sorted(line for line in stderr.decode().splitlines() if line.startswith("encpipe-prune: warning: left "))


def test_planted_public_key_files_make_prune_remove_no_genuine_backup(pg, tools, world):
    w = world
    ours = genuine(pg, tools, w, (3, 2))
    theirs = plant(w, (timedelta(days=1), timedelta(hours=1)))
    proc, report = prune(w)
    assert proc.returncode == 65
    assert sorted(stored(w["dir"])) == sorted(ours + theirs)  # before: only the newest planted file was left
    assert (report["removed"], report["kept"], report["count_unauthenticated"]) == ([], [], False)
    assert sorted(line["filename"] for line in report["left"]) == sorted(ours + theirs)
    assert all(line["reasons"] == [REASON] for line in report["left"])
    assert left_lines(proc.stderr) == sorted(f"encpipe-prune: warning: left {n}: {REASON}" for n in ours + theirs)
    assert report["unprotected"] == [f"{w['db']} (plain)"]
    # encpipe-verify says who could have made them, and does not fail them
    proc = tool("encpipe-verify", "--identity", w["identity"], w["dir"], env=w["env"])
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)["results"]
    assert [(r["ok"], r["sender_authenticated"]) for r in results] == [(True, False)] * 4


def test_with_sign_key_and_signer_prune_works_normally(pg, tools, world):
    w = world
    ours = genuine(pg, tools, w, (3, 2), "--sign-key", w["sign_key"])
    proc, report = prune(w, "--signer", w["signer"])
    assert (proc.returncode, proc.stderr) == (0, b"")
    assert stored(w["dir"]) == [ours[1]] and [k["filename"] for k in report["removed"]] == [ours[0]]
    theirs = plant(w, (timedelta(days=1), timedelta(hours=1)))
    proc, report = prune(w, "--signer", w["signer"])
    assert proc.returncode == 65  # the planted files were left, and said so
    assert sorted(stored(w["dir"])) == sorted([ours[1], *theirs])
    assert [k["filename"] for k in report["kept"]] == [ours[1]] and report["removed"] == []
    assert all("not signed by a trusted signer" in line["reasons"][0] for line in report["left"])
    proc = tool("encpipe-verify", "--identity", w["identity"], "--signer", w["signer"], os.path.join(w["dir"], ours[1]),
                env=w["env"])
    assert proc.returncode == 0 and json.loads(proc.stdout)["results"][0]["sender_authenticated"] is True


def test_count_unauthenticated_restores_the_old_counting_planted_files_and_all(pg, tools, world):
    w = world
    genuine(pg, tools, w, (3, 2))
    theirs = plant(w, (timedelta(days=1), timedelta(hours=1)))
    proc, report = prune(w, "--count-unauthenticated")
    assert (proc.returncode, proc.stderr) == (0, b"")
    assert report["count_unauthenticated"] is True
    assert stored(w["dir"]) == [theirs[1]]  # what the option risks: the planted file is all that is left


def test_encpipe_check_is_not_fooled_by_a_planted_public_key_file(pg, tools, world):
    w = world
    old = genuine(pg, tools, w, (3,), "--sign-key", w["sign_key"])  # the backups stopped three days ago
    check = ["--max-age", "24", "--database", w["db"], w["dir"]]
    proc = tool("encpipe-check", *check, env=w["env"])
    assert proc.returncode == 2 and proc.stdout.decode().startswith(f"CRITICAL: {w['db']}: newest backup {old[0]}")
    theirs = plant(w, (timedelta(hours=1),))
    proc = tool("encpipe-check", *check, env=w["env"])
    assert proc.returncode == 2, proc.stdout  # before: OK, the planted file counted as a fresh backup
    said = re.sub(r" is 72\.[0-9] h old,", " is 72.x h old,", plugin_text(proc.stdout.decode()))
    assert said == (
        f"CRITICAL: {w['db']}: newest backup {old[0]} is 72.x h old, over --max-age 24 h; newest file {theirs[0]} is"
        " not counted: its maker cannot be authenticated (anyone with the public key, or for a v1 file any slot"
        " holder, could have made it; seal with --sign-key, or --count-unauthenticated)\n")
    proc = tool("encpipe-check", *check, "--count-unauthenticated", env=w["env"])
    assert proc.returncode == 0 and proc.stdout.decode().startswith(f"OK: {w['db']}: newest backup {theirs[0]}")


def test_encpipe_backups_own_retention_pass(pg, tools, world):
    w = world
    ours = genuine(pg, tools, w, (3, 2))
    theirs = plant(w, (timedelta(minutes=20), timedelta(minutes=10)))
    options = ["--no-globals", "--recipient", w["pub"], "--identity", w["identity"], "--keep-last", "3"]
    proc = backup(pg, tools, w["dir"], w["db"], *options, check=False)
    assert proc.returncode == 1
    line = json.loads(proc.stdout)
    assert line["pruned"] == []  # before: both genuine backups went, the planted files kept
    assert sorted(stored(w["dir"])) == sorted([*ours, *theirs, line["filename"]])
    assert f"encpipe-backup: warning: left {theirs[0]}: {REASON}" in proc.stderr.decode()
    # signed, with the host's own verify key as --signer: pruned as before, planted files left
    for name in [*ours, line["filename"]]:
        os.remove(os.path.join(w["dir"], name))
    ours = genuine(pg, tools, w, (3, 2), "--sign-key", w["sign_key"])
    signed = options + ["--sign-key", w["sign_key"], "--signer", w["signer"]]
    proc = backup(pg, tools, w["dir"], w["db"], *signed, check=False)
    assert proc.returncode == 1  # the planted files are still there, and reported
    assert json.loads(proc.stdout)["pruned"] == []  # three signed backups: none to remove
    proc = backup(pg, tools, w["dir"], w["db"], *signed, check=False)
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["pruned"] == [ours[0]]
    assert set(theirs) <= set(stored(w["dir"]))
    # the opt-out: the old counting, planted files and all
    before = stored(w["dir"])
    proc = backup(pg, tools, w["dir"], w["db"], *options, "--count-unauthenticated", check=False)
    assert proc.returncode == 0, proc.stderr
    everything = sorted([*before, json.loads(proc.stdout)["filename"]])  # names sort by date
    assert sorted(stored(w["dir"])) == everything[-3:]
    assert ".encpipe-cluster" in dir_entries(w["dir"])  # never pruned
    assert sorted(json.loads(proc.stdout)["pruned"]) == sorted([ours[1], *theirs])


# --- v1 files, in-process ------------------------------------------------------


def days():
    """day(i): a backup name of day i of the last ten (one moment per test)."""
    start = now()
    return lambda i: f"shop_{stamp(start - timedelta(days=10 - i))}.sql.enc"


def test_a_v1_file_is_left_alone_unless_counted(tmp_path):
    _day = days()
    for i in (1, 2):
        make_valid(tmp_path, _day(i))
    (tmp_path / _day(3)).write_bytes(seal_v1(os.urandom(5000), key=KEY.hex()))  # any slot holder could make it
    code, report, err = backups("prune", "--keep-last", "1", "--dry-run", str(tmp_path))
    assert code == 65
    assert ([k["filename"] for k in report["kept"]], [r["filename"] for r in report["removed"]]) == (
        [_day(2)], [_day(1)])
    assert report["left"][0]["filename"] == _day(3) and report["left"][0]["reasons"] == [REASON]
    assert err == f"encpipe-prune: warning: left {_day(3)}: {REASON}\n"
    code, report, err = backups("prune", "--keep-last", "1", str(tmp_path))
    assert code == 65 and sorted(os.listdir(tmp_path)) == [_day(2), _day(3)]
    code, report, err = backups("prune", "--keep-last", "1", "--count-unauthenticated", str(tmp_path))
    assert (code, err) == (0, "") and os.listdir(tmp_path) == [_day(3)]
    code, report, _ = backups("verify", str(tmp_path))
    assert code == 0 and by_name(report["results"])[_day(3)]["sender_authenticated"] is False


def check(*argv):
    out, err = io.BytesIO(), io.StringIO()
    code = backups_main(["check", *argv], stdout=out, stderr=err, env={})
    assert err.getvalue() == ""
    return code, plugin_text(out.getvalue().decode())


def test_encpipe_check_does_not_count_a_v1_file(tmp_path):
    _day = days()
    make_valid(tmp_path, _day(1))  # nine days old
    (tmp_path / _day(9)).write_bytes(seal_v1(os.urandom(5000), key=KEY.hex()))  # one day old
    code, out = check("--max-age", "48", str(tmp_path))
    assert code == 2 and out.startswith(f"CRITICAL: shop: newest backup {_day(1)} is ")
    assert f"; newest file {_day(9)} is not counted: its maker cannot be authenticated" in out
    code, out = check("--max-age", "48", "--count-unauthenticated", str(tmp_path))
    assert code == 0 and out.startswith(f"OK: shop: newest backup {_day(9)} is ")


@pytest.mark.skipif(not LEGACY_AVAILABLE, reason="the legacy reader is not available")
def test_a_file_of_the_previous_tool_counts_as_made_by_its_key(tmp_path):
    from encpipe.legacy import seal_legacy

    _day = days()
    make_valid(tmp_path, _day(1))
    with open(tmp_path / _day(2), "wb") as dst:  # one secret only: whoever made it holds the key
        seal_legacy(io.BytesIO(b"SELECT 1;\n" * 100), dst, KEY)
    code, report, _ = backups("verify", str(tmp_path))
    assert code == 0 and by_name(report["results"])[_day(2)]["sender_authenticated"] is True
    code, report, err = backups("prune", "--keep-last", "1", str(tmp_path))
    assert (code, err) == (0, "") and os.listdir(tmp_path) == [_day(2)]
