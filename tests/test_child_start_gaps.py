"""A child a script starts, signalled just after its start returned: stopped, never left.

childerr.started starts a child and records it in one held step; its callers
(encpipe-restore's legacy check and decryption of the globals file, a remote
FILE's fetch helper, encpipe-migrate's open --legacy | seal) then entered the
`try` that stops it only a few bytecodes later: a signal there ended the script
and left the child running (one with the key). Each is now started inside that
`try` (childerr.used).

Each script is signalled right after childerr.started returns (a sitecustomize.py
on PYTHONPATH, as in tests/test_signal_commits.py); each child stands in for one
that hangs, and every process whose command line names the test's own directory
must be gone.

So for children started outside childerr: encpipe-restore's lock session
(pgclient.Session) and a remote's rclone (rclonepipe.Children.start and run),
each signalled inside Popen, the child forked but not yet returned."""

import contextlib
import os
import shlex
import signal
import sys
import time

import pytest

from test_signal_commits import IDS, ROOT, SIGNALS, run, signalled, signalled_env

STARTED = "__import__('encpipe.childerr').childerr", "started"  # the owner and the function wrapped
HANG = f"{shlex.quote(sys.executable)} -c 'import time; time.sleep(1000)'"  # its arguments name the test's directory


def alive(token):
    """The pids of the processes (not zombies) whose command line holds `token`."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                line = f.read()
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if token.encode() in line and state != "Z" and int(pid) != os.getpid():
            found.append(int(pid))
    return found


@contextlib.contextmanager
def none_left(tmp_path):
    """Asserts, at the end of the block, that nothing naming `tmp_path` runs; kills what does."""
    try:
        yield
        deadline = time.monotonic() + 5  # a process killed is reaped by its parent, or by init
        while alive(str(tmp_path)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert alive(str(tmp_path)) == []
    finally:
        for pid in alive(str(tmp_path)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def stand_in(tmp_path, hangs):
    """An ENCPIPE that hangs when its first argument is in `hangs`, its child too; else encpipe."""
    path = tmp_path / "encpipe"
    cases = "|".join(hangs)
    path.write_text(f'#!/bin/sh\ncase "$1" in {cases}) {HANG} {tmp_path} & wait; exit 1;; esac\n'
                    f'exec {shlex.quote(sys.executable)} -m encpipe "$@"\n')
    path.chmod(0o755)
    return str(path)


def stopped(sig):
    """A script's status when a signal stopped it (README "Exit status")."""
    return {signal.SIGTERM: 143, signal.SIGINT: 130}.get(sig, -sig)


# --- encpipe-restore ----------------------------------------------------------------------------


@pytest.mark.parametrize("sig", SIGNALS, ids=IDS)
def test_restore_signalled_just_after_its_legacy_check_started_stops_it(pg, tools, tmp_path, sig):
    from test_backup_restore import RESTORE, make_legacy_file, script_env

    path = make_legacy_file(tmp_path / "gap_legacy_20250101T000000Z.sql.enc", "ab" * 32, b"SELECT 1;\n")
    key = tmp_path / "legacy.key"
    key.write_text("ab" * 32 + "\n")
    key.chmod(0o600)
    env = signalled_env(tmp_path, STARTED[1], "'inspect' in args[1]", sig,
                        {**script_env(pg, tools), "ENCPIPE": stand_in(tmp_path, ["inspect"])}, owner=STARTED[0])
    with none_left(tmp_path):
        done = run([RESTORE, "--key-file", str(key), path, "gap_legacy"], env)
        assert signalled(tmp_path)
        assert (done.returncode, done.stdout, done.stderr) == (stopped(sig), b"", b"")


@pytest.mark.parametrize("sig", SIGNALS, ids=IDS)
def test_restore_signalled_just_after_its_globals_file_s_decryption_started_stops_it(pg, tools, key_file,
                                                                                    tmp_path, sig):
    from test_backup_restore import RESTORE, backup, ensure_small, script_env

    db = ensure_small(pg, "gap_source", rows=10)
    path, _ = backup(pg, tools, str(tmp_path / "b"), db, "--key-file", key_file)
    env = signalled_env(tmp_path, STARTED[1], "args[1].startswith(\"['open'\")", sig,  # the globals file's
                        {**script_env(pg, tools), "ENCPIPE": stand_in(tmp_path, ["open"])}, owner=STARTED[0])
    with none_left(tmp_path):
        done = run([RESTORE, "--key-file", key_file, path, "gap_target"], env)
        assert signalled(tmp_path)
        assert (done.returncode, done.stdout, done.stderr) == (stopped(sig), b"", b"")


@pytest.mark.parametrize("sig", SIGNALS, ids=IDS)
def test_restore_signalled_just_after_a_remote_file_s_fetch_started_stops_it(pg, tools, key_file, tmp_path, sig):
    from test_backup_restore import RESTORE, script_env

    rclone = tmp_path / "rclone"  # the helper's rclone hangs, its arguments naming the remote FILE
    rclone.write_text(f'#!/bin/sh\nexec {HANG} "$@"\n')
    rclone.chmod(0o755)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = signalled_env(tmp_path, STARTED[1], "'fetch' in args[1]", sig,
                        {**script_env(pg, tools), "RCLONE": str(rclone), "TMPDIR": str(tmp)}, owner=STARTED[0])
    with none_left(tmp_path):
        done = run([RESTORE, "--key-file", key_file, f"nowhere:{tmp_path}/gap_x_20250101T000000Z.sql.enc", "gap_x"],
                   env)
        assert signalled(tmp_path)
        assert (done.returncode, done.stdout, done.stderr) == (stopped(sig), b"", b"")
    assert os.listdir(tmp) == []


# --- encpipe-migrate ----------------------------------------------------------------------------


@pytest.mark.parametrize("sig", SIGNALS, ids=IDS)
@pytest.mark.parametrize("child", ["open", "seal"])
def test_migrate_signalled_just_after_a_child_of_its_pipeline_started_stops_both(tmp_path, sig, child):
    """open --legacy started (or seal, open running), then the signal: migrate died and
    left the child running (seal, and open, with the key); its new file's hidden file
    is removed, the legacy file untouched."""
    from test_backup_restore import make_legacy_file

    work = tmp_path / "work"
    work.mkdir(mode=0o700)
    legacy = make_legacy_file(work / "db.sql.enc", "ab" * 32, b"SELECT 1;\n")
    before = open(legacy, "rb").read()
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "old.key").write_text("ab" * 32 + "\n")
    (keys / "new.key").write_text("cd" * 32 + "\n")
    for name in ("old.key", "new.key"):
        (keys / name).chmod(0o600)
    env = signalled_env(tmp_path, STARTED[1], f"'{child}' in args[1]", sig,
                        {"ENCPIPE": stand_in(tmp_path, ["open", "seal"])}, owner=STARTED[0])
    with none_left(tmp_path):
        done = run([sys.executable, os.path.join(ROOT, "scripts", "encpipe-migrate"), "--legacy-key-file",
                    str(keys / "old.key"), "--key-file", str(keys / "new.key"), str(work)], env)
        assert signalled(tmp_path)
        assert (done.returncode, done.stdout, done.stderr) == (stopped(sig), b"", b"")
    assert os.listdir(work) == ["db.sql.enc"]
    assert open(legacy, "rb").read() == before


@pytest.mark.parametrize("sig", SIGNALS, ids=IDS)
def test_restore_signalled_just_after_its_lock_session_started_stops_it(pg, tools, key_file, tmp_path, sig):
    """The psql session that holds the run's advisory lock (pgclient.Session) was started
    unheld, outside the `try` that closes it: a signal inside Popen left it running."""
    from test_backup_restore import RESTORE, backup, ensure_small, script_env

    db = ensure_small(pg, "gap_lock_source", rows=10)
    path, _ = backup(pg, tools, str(tmp_path / "b"), db, "--key-file", key_file)
    fake = tmp_path / "fakebin"  # the session's psql (no -f, no --version) hangs; any other is the real one
    fake.mkdir()
    (fake / "psql").write_text(f'#!/bin/sh\ncase " $* " in *" -f "*|*" --version "*) exec {pg.bin("psql")} "$@";; '
                               f'esac\nexec {HANG} {tmp_path}\n')
    (fake / "psql").chmod(0o755)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = script_env(pg, tools, TMPDIR=str(tmp))
    env["PATH"] = os.pathsep.join([str(fake), env["PATH"]])
    env = signalled_env(tmp_path, "_execute_child", "args[1].endswith(\"'-A', '-t']\")", sig, env,
                        owner="subprocess.Popen")
    with none_left(tmp_path):
        done = run([RESTORE, "--key-file", key_file, path, "gap_lock_target"], env)
        assert signalled(tmp_path)
        assert (done.returncode, done.stdout, done.stderr) == (stopped(sig), b"", b"")
    assert os.listdir(tmp) == []
    assert "gap_lock_target" not in pg.psql("SELECT datname FROM pg_database").split()


# --- a remote's rclone (rclonepipe) -------------------------------------------------------------


def _rclone(tmp_path):
    """An rclone that lists one object and hangs at anything else, its arguments naming the test's directory."""
    path = tmp_path / "rclone"
    path.write_text('#!/bin/sh\ncase "$1" in lsjson) printf \'[{"Name":"db_20250101T000000Z.sql.enc","Size":100}]\';'
                    f' exit 0;; esac\nexec {HANG} {tmp_path}\n')
    path.chmod(0o755)
    return str(path)


@pytest.mark.parametrize("sig", SIGNALS, ids=IDS)
@pytest.mark.parametrize("child", ["cat", "lsjson"])
def test_list_signalled_just_after_a_remote_s_rclone_started_stops_it(tmp_path, sig, child):
    """`rclone cat` (rclonepipe.Children.start, under a thread lock, not held) and
    `rclone lsjson` (rclonepipe.run, whose `try` came after the start): a signal inside
    Popen ended encpipe-list and left the rclone running. lsjson hangs here too."""
    rclone = _rclone(tmp_path)
    if child == "lsjson":
        (tmp_path / "rclone").write_text(f"#!/bin/sh\nexec {HANG} {tmp_path}\n")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = signalled_env(tmp_path, "_execute_child", f"'{child}' in args[1]", sig,
                        {"RCLONE": rclone, "TMPDIR": str(tmp)}, owner="subprocess.Popen")
    with none_left(tmp_path):
        done = run([sys.executable, os.path.join(ROOT, "scripts", "encpipe-list"), f"nowhere:{tmp_path}/b"], env)
        assert signalled(tmp_path)
        assert (done.returncode, done.stdout, done.stderr) == (-sig, b"", b"")  # it dies of the signal
    assert os.listdir(tmp) == []


DOWNLOAD = {"start": "__import__('encpipe.backup.rclonepipe').backup.rclonepipe.Children",
            "_cat": "__import__('encpipe.backup.rclonestore').backup.rclonestore.Rclone"}


@pytest.mark.parametrize("sig", SIGNALS, ids=IDS)
@pytest.mark.parametrize("after", ["start", "_cat"])
@pytest.mark.parametrize("script", ["encpipe-list", "fetch"])
def test_a_remote_s_download_signalled_before_its_reader_entered_its_with_stops_its_rclone(tmp_path, sig, after,
                                                                                         script):
    """`rclone cat` (Rclone._cat's Download) was started before its reader entered the
    `with` that closes it: a signal after Children.start or _cat returned, before that
    `with` (encpipe-list's look at a file, the fetch helper of a restore's remote FILE),
    ended the run and left the rclone running. Now it starts at the first read, inside
    that `with`."""
    rclone = _rclone(tmp_path)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = signalled_env(tmp_path, after, "'cat' in args[1]" if after == "start" else "True", sig,
                        {"RCLONE": rclone, "TMPDIR": str(tmp)}, owner=DOWNLOAD[after])
    argv = ([sys.executable, os.path.join(ROOT, "scripts", "encpipe-list"), f"nowhere:{tmp_path}/b"]
            if script == "encpipe-list" else
            [sys.executable, "-m", "encpipe.backup", "fetch", f"nowhere:{tmp_path}/b/db_20250101T000000Z.sql.enc"])
    with none_left(tmp_path):
        done = run(argv, env)
        assert signalled(tmp_path)
        assert (done.returncode, done.stdout, done.stderr) == (-sig, b"", b"")  # it dies of the signal
    assert os.listdir(tmp) == []
