"""encpipe-restore signalled at its commit, the swap, and encpipe-backup at its own,
the renames to the final names: the outcome and the status agree.

The swap (one transaction: DBNAME renamed to its _pre_restore_ copy, the scratch
database to DBNAME) runs in psql. A SIGTERM that came just as psql had
committed it ended the restore with 143 and "nothing written, DBNAME as it
was", while DBNAME was the restored database; one that came while psql ran it
killed psql, and whether the server had committed was anybody's guess. Now
psql's answer is waited for: once DBNAME is swapped in, the restore is done,
says so, and its status is 0, whatever signal comes; a swap that failed is
still the failure it was.

The restore is signalled right after psql's answer to the swap is read
(sigthreads.communicate_bounded returns: a sitecustomize.py on PYTHONPATH, as in
tests/test_signal_commits.py)."""

import json
import os
import shlex
import signal
import sys
import time

import pytest

from test_backup_restore import BACKUP, RESTORE, backup, databases, drop_matching, dump, ensure_small, script_env
from test_signal_commits import IDS, SIGNALS, killing_marked, marked, run, signalled, signalled_env

SIGTHREADS = "__import__('encpipe.sigthreads').sigthreads"  # where run_sql's psql is read (pgclient)
SWAP = "len(args) > 1 and 'RENAME TO' in args[1] and 'encpipe_restore_' in args[1]"  # psql's input: the swap


@pytest.fixture(scope="module")
def source_backup(pg, tools, key_file, tmp_path_factory):
    db = ensure_small(pg, "commit_source", rows=100)
    path, _ = backup(pg, tools, str(tmp_path_factory.mktemp("commit") / "b"), db, "--key-file", key_file)
    return path, db


@pytest.mark.parametrize("sig", SIGNALS, ids=IDS)
@pytest.mark.parametrize("existing", [True, False], ids=["over-existing", "new"])
def test_restore_signalled_just_after_its_swap_says_it_restored_and_exits_0(pg, tools, key_file, source_backup,
                                                                           tmp_path, sig, existing):
    path, source = source_backup
    target = "commit_target"
    drop_matching(pg, lambda d: d.startswith(target) or d.startswith("encpipe_restore_"))
    if existing:
        pg.createdb(target)
        pg.psql("CREATE TABLE old_stuff (x int); INSERT INTO old_stuff VALUES (1);", db=target)
        before = dump(pg, target)
    env = signalled_env(tmp_path, "communicate_bounded", SWAP, sig, script_env(pg, tools), owner=SIGTHREADS)
    done = run([RESTORE, "--key-file", key_file, path, target], env)
    stderr = done.stderr.decode()
    copies = sorted(d for d in databases(pg) if d.startswith(target + "_pre_restore_"))
    assert signalled(tmp_path)
    assert (done.returncode, done.stdout) == (0, b""), stderr
    if existing:
        assert len(copies) == 1 and stderr == (f"encpipe-restore: restored {path} into {target}; previous database "
                                               f"kept as {copies[0]}\n")
        assert dump(pg, copies[0]) == before
    else:
        assert copies == [] and stderr == f"encpipe-restore: restored {path} into new database {target}\n"
    assert dump(pg, target) == dump(pg, source)
    assert not [d for d in databases(pg) if d.startswith("encpipe_restore_")]
    drop_matching(pg, lambda d: d.startswith(target))


# --- encpipe-backup: the files' final names ---------------------------------------------------

RENAMED = {"globals": "args[0].startswith('.encpipe-tmp.') and args[1].endswith('.globals.sql.enc')",
           "dump": "args[0].startswith('.encpipe-tmp.') and args[1].endswith('.enc') "
                   "and not args[1].endswith('.globals.sql.enc')"}


@pytest.mark.parametrize("sig", SIGNALS, ids=IDS)
@pytest.mark.parametrize("renamed", ["globals", "dump"])
def test_backup_signalled_just_after_a_rename_is_stored_said_and_0(pg, tools, key_file, tmp_path, sig, renamed):
    """The globals file (then the dump) given its final name, then the signal: both are
    stored, the JSON line printed, the status 0. Before, SIGINT and SIGTERM, noted until
    the run's end, made it 130 or 143 all the same (JSON line printed, run recorded as a
    success), and SIGHUP ended it at once: no JSON line, and after the globals file's
    rename, a globals file stored without its dump, the dump's temporary file left."""
    db = ensure_small(pg, "commit_backup", rows=10)
    directory = tmp_path / "b"
    env = signalled_env(tmp_path, "rename", RENAMED[renamed], sig, script_env(pg, tools))
    done = run([BACKUP, "--dir", str(directory), "--key-file", key_file, db], env)
    assert signalled(tmp_path)
    assert (done.returncode, done.stderr) == (0, b"")
    lines = done.stdout.decode().splitlines()
    assert len(lines) == 1, lines
    line = json.loads(lines[0])
    assert sorted(os.listdir(directory)) == sorted([line["filename"], line["globals"], ".encpipe-cluster"])
    assert line["filename"].startswith(db + "_") and line["globals"].endswith(".globals.sql.enc")


# --- encpipe-restore --drop-pre-restore-older-than -------------------------------------------

DROP = "len(args) > 1 and 'DROP DATABASE' in args[1] and '_pre_restore_' in args[1]"  # psql's input: a drop


@pytest.mark.parametrize("sig", SIGNALS, ids=IDS)
def test_drop_pre_restore_signalled_just_after_a_drop_drops_the_rest_and_says_so(pg, tools, tmp_path, sig):
    """The first copy dropped, then the signal: the second is dropped too, the line names
    both, 0. Before, the run ended with the first gone, no line, and 143 (130, 129)."""
    copies = ["commit_copies_pre_restore_20200101T000000Z", "commit_copies_pre_restore_20200102T000000Z"]
    drop_matching(pg, lambda d: d.startswith("commit_copies"))
    for name in copies:
        pg.createdb(name)
    env = signalled_env(tmp_path, "communicate_bounded", DROP, sig, script_env(pg, tools), owner=SIGTHREADS)
    done = run([RESTORE, "--drop-pre-restore-older-than", "0", "commit_copies"], env)
    assert signalled(tmp_path)
    assert (done.returncode, done.stdout) == (0, b""), done.stderr
    assert done.stderr.decode() == f"encpipe-restore: dropped previous copies: {', '.join(copies)}\n"
    assert not [d for d in databases(pg) if d.startswith("commit_copies")]


@pytest.mark.parametrize("sig", SIGNALS, ids=IDS)
def test_backup_signalled_just_as_it_makes_its_directory_removes_it(pg, tools, key_file, tmp_path, sig):
    """DIR made (with its missing parents), then the signal, before the run had recorded
    what it made: the directories stayed. Now removed again, as for any interrupted run."""
    db = ensure_small(pg, "commit_backup", rows=10)
    directory = tmp_path / "new" / "b"
    env = signalled_env(tmp_path, "makedirs", f"args[0] == {str(directory)!r}", sig, script_env(pg, tools))
    done = run([BACKUP, "--dir", str(directory), "--key-file", key_file, db], env)
    assert signalled(tmp_path)
    assert (done.returncode, done.stdout) == ({signal.SIGINT: 130}.get(sig, -sig), b""), done.stderr
    assert sorted(os.listdir(tmp_path)) == ["signalled", "site"]


# --- encpipe-restore of a remote FILE: its local copy -------------------------------------------


@pytest.mark.parametrize("sig", SIGNALS, ids=IDS)
def test_a_signal_just_as_a_remote_file_s_copy_is_created_leaves_none(pg, tools, key_file, tmp_path, sig):
    """The private temporary file a remote FILE is fetched into, just made: a signal there
    (before its name was recorded for removal) left it in TMPDIR. Now removed, as any."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = signalled_env(tmp_path, "mkstemp", "kwargs.get('prefix') == 'encpipe-restore.'", sig,
                        {**script_env(pg, tools), "TMPDIR": str(tmp)}, owner="__import__('tempfile')")
    done = run([RESTORE, "--key-file", key_file, "nowhere:backups/commit_x_20250101T000000Z.sql.enc", "commit_x"],
               env)
    assert signalled(tmp_path)
    assert (done.returncode, done.stdout, done.stderr) == ({signal.SIGTERM: 143, signal.SIGINT: 130}.get(sig, -sig),
                                                           b"", b"")
    assert os.listdir(tmp) == []


# --- encpipe-restore's encpipe children, signalled as they start -------------------------------


@pytest.mark.parametrize("sig", SIGNALS, ids=IDS)
def test_restore_signalled_as_its_legacy_check_starts_stops_it(pg, tools, tmp_path, sig):
    """The signal came inside Popen, `encpipe inspect --legacy --verify` forked but not
    yet recorded: the restore died of it and the child (here one that hangs) ran on,
    with the key. It is now started in one step (childerr.started), and stopped."""
    from test_backup_restore import make_legacy_file

    path = make_legacy_file(tmp_path / "commit_legacy_20250101T000000Z.sql.enc", "ab" * 32, b"SELECT 1;\n")
    key = tmp_path / "legacy.key"
    key.write_text("ab" * 32 + "\n")
    key.chmod(0o600)
    stand_in = tmp_path / "encpipe"  # the legacy check hangs, with a child of its own; the rest is encpipe
    stand_in.write_text(f'#!/bin/sh\n[ "$1" = inspect ] && {{ sleep 1000 & wait; }}\n'
                        f'exec {shlex.quote(sys.executable)} -m encpipe "$@"\n')
    stand_in.chmod(0o755)
    mark = f"RESTORE_MARK={tmp_path}"
    env = signalled_env(tmp_path, "_execute_child", "'inspect' in args[1] and '--legacy' in args[1]", sig,
                        {**script_env(pg, tools), "ENCPIPE": str(stand_in), "RESTORE_MARK": str(tmp_path)},
                        owner="subprocess.Popen")
    with killing_marked(mark):
        done = run([RESTORE, "--key-file", str(key), path, "commit_legacy"], env)
        assert signalled(tmp_path)
        assert (done.returncode, done.stdout, done.stderr) == ({signal.SIGTERM: 143, signal.SIGINT: 130}.get(sig, -sig),
                                                               b"", b"")
        time.sleep(0.5)  # a process killed is reaped by init
        assert marked(mark) == []
