"""What the children of encpipe-restore inherit, read from /proc by the real children.

psql, pg_restore, zstd and rclone (and the fetch helper that runs rclone) need no
key: each is wrapped by a spy that records its environment, its open file
descriptors and, for rclone, its parent's environment, then runs the real tool.
None may hold ENCPIPE_KEY, ENCPIPE_PASSPHRASE, BACKUP_ENCRYPTION_KEY or their
values, nor any descriptor beyond standard input, output and error (a
--passphrase-fd secret is lent at its N to `encpipe open` only).
"""

import json
import shutil

import pytest

from s3server import rclone_binary
from spies import install, records
from test_backup_restore import (
    BACKUP,
    RESTORE,
    backup,
    dump,
    ensure_small,
    read_key,
    run,
    script_env,
)

PASSPHRASE = "restore-children passphrase 7f3a"
LEGACY_KEY = "legacy-key-9c1e-never-shown"
SECRET_NAMES = ("ENCPIPE_KEY", "ENCPIPE_PASSPHRASE", "BACKUP_ENCRYPTION_KEY")


def _spies(tmp_path, pg):
    spies, log = tmp_path / "spies", tmp_path / "children.log"
    reals = {"psql": pg.bin("psql"), "pg_restore": pg.bin("pg_restore"), "zstd": shutil.which("zstd"),
             "rclone": rclone_binary()}
    install(spies, reals, log, parents={"rclone"})
    return spies, log


def _assert_clean(records, secrets, tools):
    assert {r["tool"] for r in records} == set(tools), [r["tool"] for r in records]
    for record in records:
        for env in (record["env"], record.get("parent_env", [])):
            names = {entry.partition("=")[0] for entry in env}
            assert not names & set(SECRET_NAMES), (record["tool"], record["argv"], names & set(SECRET_NAMES))
            assert not any(secret in entry for entry in env for secret in secrets), (record["tool"], record["argv"])
        assert set(record["fds"]) <= {"0", "1", "2"}, (record["tool"], record["argv"], record["fds"])


@pytest.mark.parametrize("fmt", ["plain", "custom"])
def test_no_child_of_a_restore_holds_a_secret_variable_or_descriptor(pg, tools, key_file, tmp_path, fmt):
    """The key in ENCPIPE_KEY (with the other secret variables set too), a plain
    zstd dump through psql or a custom archive through pg_restore."""
    db = ensure_small(pg, "children_source")
    options = ("--compress", "zstd") if fmt == "plain" else ("--format", "custom")
    path, _ = backup(pg, tools, str(tmp_path / "b"), db, "--no-globals", "--key-file", key_file, *options)
    spies, log = _spies(tmp_path, pg)
    key = read_key(key_file)
    env = script_env(pg, tools, ENCPIPE_KEY=key, ENCPIPE_PASSPHRASE=PASSPHRASE, BACKUP_ENCRYPTION_KEY=LEGACY_KEY)
    env["PATH"] = "%s:%s" % (spies, env["PATH"])
    pg.dropdb("children_copy")
    extra = ["-v", "SHOW_CONTEXT=errors"] if fmt == "plain" else ["--no-data-for-failed-tables"]  # the user's options
    proc = run([RESTORE, "--no-globals", path, "children_copy", "--", *extra], env)
    assert proc.returncode == 0, proc.stderr.decode()
    assert dump(pg, "children_copy") == dump(pg, db)
    pg.dropdb("children_copy")
    _assert_clean(records(log), (key, PASSPHRASE, LEGACY_KEY),
                  {"psql", "zstd"} if fmt == "plain" else {"psql", "pg_restore"})
    _assert_restore_argv(records(log), fmt, extra)


def _assert_restore_argv(found, fmt, extra):
    """The psql that runs the dump: a plain dump's in one transaction of its own, with the
    user's options; an archive's SQL as pg_restore -f - writes it (one transaction, BEGIN to
    COMMIT, stopping at the first error), which took the options. Its errors quiet either way."""
    quiet = ["-v", "VERBOSITY=sqlstate", "-v", "SHOW_CONTEXT=never"]
    restoring = [r["argv"] for r in found if r["tool"] == "psql" and "VERBOSITY=sqlstate" in r["argv"]]
    assert len(restoring) == 1, [r["argv"] for r in found]
    argv = restoring[0]
    # -w: it never asks for a password, which it read from the dump without a terminal (test_client_passwords.py)
    assert argv[:6] == ["-X", "-w", "-q", "-v", "ON_ERROR_STOP=1", "-d"], argv
    assert argv[6].startswith("encpipe_restore_"), argv
    if fmt == "plain":  # its transaction read-write whatever the role's default (test_restore_read_only_default.py)
        assert argv[7:] == ["--single-transaction", *quiet, "-c", "SET TRANSACTION READ WRITE", *extra, "-f", "-"]
    else:
        assert argv[7:] == [*quiet, "-c", "SET default_transaction_read_only = off", "-f", "-"]
        assert [r["argv"] for r in found if r["tool"] == "pg_restore"] == [
            ["--exit-on-error", "--single-transaction", "-f", "-", *extra]]


def test_a_passphrase_fd_reaches_no_child_but_encpipe(pg, tools, tmp_path, s3):
    """A --passphrase-fd secret, a remote backup (rclone, through the fetch helper)."""
    db = ensure_small(pg, "children_source")
    secret = tmp_path / "pass"
    secret.write_text(PASSPHRASE + "\n")
    secret.chmod(0o600)
    remote = f"{s3.location}/children"
    env = script_env(pg, tools, **s3.env)
    with open(secret, "rb") as f:
        proc = run([BACKUP, "--no-globals", "--to", remote, "--compress", "zstd", "--work-factor", "10",
                    "--passphrase-fd", str(f.fileno()), db], env, pass_fds=(f.fileno(),))
    assert proc.returncode == 0, proc.stderr.decode()
    name = json.loads(proc.stdout)["filename"]
    spies, log = _spies(tmp_path, pg)
    env["PATH"] = "%s:%s" % (spies, env["PATH"])
    env.update(RCLONE=str(spies / "rclone"), BACKUP_ENCRYPTION_KEY=LEGACY_KEY)
    pg.dropdb("children_copy")
    with open(secret, "rb") as f:
        proc = run([RESTORE, "--no-globals", "--passphrase-fd", str(f.fileno()), f"{remote}/{name}", "children_copy"],
                   env,
                   pass_fds=(f.fileno(),))
    assert proc.returncode == 0, proc.stderr.decode()
    # the remote FILE by its name, not the temporary copy's (removed by now)
    assert proc.stderr.decode().splitlines()[-1] == f"encpipe-restore: restored {remote}/{name} into new database " \
        "children_copy"
    assert dump(pg, "children_copy") == dump(pg, db)
    pg.dropdb("children_copy")
    _assert_clean(records(log), (PASSPHRASE, LEGACY_KEY), {"psql", "zstd", "rclone"})


def _encpipe_children(pg, tools, key_file, tmp_path, **secrets):
    """The records of the encpipe children (a spy as ENCPIPE) of a restore given
    --key-file, with `secrets` in its environment."""
    from spies import write
    import sys

    db = ensure_small(pg, "children_source")
    path, _ = backup(pg, tools, str(tmp_path / "b"), db, "--no-globals", "--key-file", key_file)
    spy, log = tmp_path / "encpipe-spy", tmp_path / "encpipe.log"
    write(spy, "encpipe", [sys.executable, "-m", "encpipe"], log)
    env = script_env(pg, tools, **secrets)
    env["ENCPIPE"] = str(spy)
    pg.dropdb("children_copy")
    proc = run([RESTORE, "--no-globals", "--key-file", key_file, path, "children_copy"], env)
    assert proc.returncode == 0, proc.stderr.decode()
    assert dump(pg, "children_copy") == dump(pg, db)
    pg.dropdb("children_copy")
    return records(log)


def test_only_an_open_of_a_legacy_file_gets_the_previous_tools_key(pg, tools, key_file, tmp_path):
    """BACKUP_ENCRYPTION_KEY (the previous tool's key) is read by `open --legacy` and
    `inspect --legacy` alone: before, every encpipe a restore ran got it, the keyid
    and the opens of a file of this format too."""
    seen = _encpipe_children(pg, tools, key_file, tmp_path, BACKUP_ENCRYPTION_KEY=LEGACY_KEY)
    held = [(r["argv"][0], any(LEGACY_KEY in entry for entry in r["env"])) for r in seen]
    assert sorted(held) == [("keyid", False), ("open", False)], held


def test_an_encpipe_given_its_key_by_option_gets_none_of_the_environments(pg, tools, key_file, tmp_path):
    """--key-file given: `encpipe keyid` and `encpipe open` read no key from their
    environment, so they get neither ENCPIPE_KEY nor ENCPIPE_PASSPHRASE (before, both)."""
    other = "7c" * 32  # a key of the environment, which opens nothing here
    seen = _encpipe_children(pg, tools, key_file, tmp_path, ENCPIPE_KEY=other, ENCPIPE_PASSPHRASE=PASSPHRASE)
    assert sorted(r["argv"][0] for r in seen) == ["keyid", "open"], [r["argv"] for r in seen]
    for record in seen:
        held = [entry.partition("=")[0] for entry in record["env"] if other in entry or PASSPHRASE in entry
                or entry.partition("=")[0] in SECRET_NAMES]
        assert held == [], (record["argv"][0], held)
