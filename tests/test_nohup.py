"""A script started with SIGHUP, SIGINT or SIGTERM ignored (as `nohup` ignores
SIGHUP, and a shell a background job's SIGINT) keeps it ignored, in itself and
in every child it starts: a hangup of the whole process group while the work
runs changes nothing (README "Exit status"): encpipe-backup (and pg_dump),
encpipe-restore, encpipe-rotate and encpipe-migrate (and the encpipe each runs),
encpipe-verify and encpipe-prune."""

import os
import shlex
import signal
import subprocess
import sys
import threading
import time

import pytest

from test_backup_faults import _fake_pg_dump, _with_path_first
from test_backup_dir import make_valid
from test_backup_restore import (
    BACKUP,
    RESTORE,
    backup,
    dir_entries,
    dump,
    ensure_small,
    python_env,
    read_key,
    script_env,
)
from test_migrate import HEX_KEY, MIGRATE, NEW_KEY, make_backups
from test_rotate import SCRIPT as ROTATE, World, lines, rotate_env
from cliutil import ok, reader_opened, run as encpipe_run

WAIT = 60
SCRIPTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts")
IGNORABLE = [signal.SIGHUP, signal.SIGTERM, signal.SIGINT]
IDS = ["SIGHUP", "SIGTERM", "SIGINT"]


def ignoring(signum):
    """preexec_fn: every signal at its default, but `signum` ignored, as nohup leaves SIGHUP."""
    def preexec():
        for sig in IGNORABLE:
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signum, signal.SIG_IGN)

    return preexec


class FifoWriter(threading.Thread):
    """Gives `data` to each reader that opens the FIFO `path`; before the first,
    sends `signum` to the process group `pgid` (the script and its child, which
    is then blocked reading the FIFO), as a hangup of the terminal would."""

    def __init__(self, path, data, signum, pgid):
        super().__init__(daemon=True)
        self.path, self.data, self.signum, self.pgid = path, data, signum, pgid
        self.stop, self.signalled = threading.Event(), False

    def run(self):
        while (fd := reader_opened(self.path, self.stop)) is not None:
            if not self.signalled:
                os.killpg(self.pgid, self.signum)
                self.signalled = True
                time.sleep(0.3)  # time to die of it, were it not ignored
            try:
                os.write(fd, self.data)
            except BrokenPipeError:  # the reader is gone
                pass
            os.close(fd)
            time.sleep(0.05)  # the reader sees end of file before it could open again


@pytest.mark.parametrize("signum", IGNORABLE, ids=IDS)
def test_rotate_and_its_encpipe_children_keep_an_ignored_signal_ignored(tmp_path, signum):
    world = World(tmp_path)
    world.add("a.enc", "--key-file", world.old_a)
    fifo = tmp_path / "new.fifo"
    status, out, err = run_through_a_hangup(
        [sys.executable, ROTATE, "--old-key-file", world.old_a, "--new-key-file", str(fifo), str(world.dir)],
        fifo, (world.new_hex + "\n").encode(), signum, env=rotate_env())
    assert status == 0, err
    report = lines(subprocess.CompletedProcess([], 0, out))
    assert {n: r["status"] for n, r in report.items()} == {"a.enc": "rotated"}
    rotated = (world.dir / "a.enc").read_bytes()
    assert ok(encpipe_run(["open", "--key-file", world.new], rotated)) == world.plain["a.enc"]


def run_through_a_hangup(argv, fifo, secret, signum, **kwargs):
    """`argv` started with `signum` ignored, in a session of its own, its key on
    the FIFO `fifo`; `signum` sent to the whole session once a reader opened it."""
    os.mkfifo(fifo, 0o600)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=ignoring(signum),
                            start_new_session=True, **kwargs)
    writer = FifoWriter(fifo, secret, signum, proc.pid)
    writer.start()
    try:
        out, err = proc.communicate(timeout=WAIT)
    finally:
        writer.stop.set()
        proc.kill()
        proc.wait()
    assert writer.signalled
    return proc.returncode, out, err


@pytest.mark.parametrize("signum", IGNORABLE, ids=IDS)
@pytest.mark.parametrize("script", ["encpipe-verify", "encpipe-prune"])
def test_verify_and_prune_keep_an_ignored_signal_ignored(tmp_path, script, signum):
    """They load the key themselves, in the script's process."""
    directory = tmp_path / "b"
    directory.mkdir()
    make_valid(directory, "shop_20240101T000000Z.sql.enc")
    key = bytes(range(32)).hex()  # test_backup_dir's KEY
    argv = [os.path.join(SCRIPTS, script), *(["--keep-last", "1"] if script == "encpipe-prune" else []),
            "--key-file", str(tmp_path / "key.fifo"), str(directory)]
    status, out, err = run_through_a_hangup(argv, tmp_path / "key.fifo", key.encode() + b"\n", signum,
                                            env={k: v for k, v in python_env().items() if k != "ENCPIPE_KEY"})
    assert status == 0, err
    assert out.startswith(b"{") and os.listdir(directory) == ["shop_20240101T000000Z.sql.enc"]


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGTERM], ids=["SIGHUP", "SIGTERM"])
def test_migrate_and_its_encpipe_children_keep_an_ignored_signal_ignored(tmp_path, signum):
    directory = tmp_path / "d"
    expected = make_backups(directory, {"a_backup.sql.enc": "hex-key.sql.enc"}, python_made=False)
    legacy_key = tmp_path / "legacy.key"
    legacy_key.write_text(HEX_KEY + "\n")
    legacy_key.chmod(0o600)
    env = {**python_env(), "ENCPIPE": f"{shlex.quote(sys.executable)} -m encpipe"}
    status, out, err = run_through_a_hangup(
        [sys.executable, MIGRATE, "--legacy-key-file", str(legacy_key), "--key-file", str(tmp_path / "new.fifo"),
         str(directory)], tmp_path / "new.fifo", NEW_KEY.encode() + b"\n", signum, env=env)
    assert status == 0, err
    assert b'"migrated"' in out and set(expected) <= set(os.listdir(directory))


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGTERM], ids=["SIGHUP", "SIGTERM"])
def test_restore_and_its_children_keep_an_ignored_signal_ignored(pg, tools, key_file, tmp_path, signum):
    db = ensure_small(pg, "nohup_source")
    made, _ = backup(pg, tools, str(tmp_path / "b"), db, "--key-file", key_file)
    pg.dropdb("nohup_copy")
    status, out, err = run_through_a_hangup([RESTORE, "--key-file", str(tmp_path / "key.fifo"), made, "nohup_copy"],
                                            tmp_path / "key.fifo", read_key(key_file).encode() + b"\n", signum,
                                            env=script_env(pg, tools))
    assert status == 0, err
    assert dump(pg, "nohup_copy") == dump(pg, db)
    pg.dropdb("nohup_copy")


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGTERM], ids=["SIGHUP", "SIGTERM"])
def test_nohup_backup_and_its_pg_dump_survive_a_hangup(pg, tools, key_file, tmp_path, signum):
    """`nohup encpipe-backup ...`: the hangup reaches the backup and pg_dump; both go on."""
    started, go = tmp_path / "pg_dump-started", tmp_path / "go"
    body = (f"echo 'CREATE TABLE t (x int);'\ntouch {started}\n"
            f"while [ ! -e {go} ]; do sleep 0.05; done\necho 'CREATE TABLE u (y int);'\n")
    env = _with_path_first(script_env(pg, tools), _fake_pg_dump(tmp_path, body))
    directory = tmp_path / "b"
    argv = [BACKUP, "--dir", directory, "--compress", "none", "--key-file", key_file, ensure_small(pg, "nohup_db")]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=ignoring(signum), start_new_session=True)
    try:
        deadline = time.monotonic() + WAIT
        while not started.exists():
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()
            time.sleep(0.05)
        os.killpg(proc.pid, signum)  # the backup, pg_dump and everything else of the session
        time.sleep(0.5)
        go.touch()
        out, err = proc.communicate(timeout=WAIT)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, err
    dumps = [n for n in dir_entries(directory) if not n.endswith(".globals.sql.enc") and n != ".encpipe-cluster"]
    assert len(dumps) == 1 and out.count(b"\n") == 1, (dumps, out)
    sealed = (directory / dumps[0]).read_bytes()
    stamp = dumps[0].split("_")[-1].split(".")[0]  # the label first: README, "The backup's label"
    assert ok(encpipe_run(["open", "--key-file", key_file], sealed)) == (
        b"-- encpipe-backup v1 db=nohup_db at=" + stamp.encode() + b"\n"
        b"CREATE TABLE t (x int);\nCREATE TABLE u (y int);\n")
