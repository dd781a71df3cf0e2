"""The backup tools against a local user who can write the backup directory (or
only read it) but holds no key: a name swapped at the very moment prune removes
it, the directory's lock held for ever, a file that grows while it is read, an
old backup or a run's globals file renamed to the newest dump's name. Races are
won deterministically ($ENCPIPE_TEST_HOOK, see encpipe.safefile.hook, or by
waiting for the reader's first read). Real scripts."""

import fcntl
import io
import json
import os
import re
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from cliutil import plugin_text
from test_backup_dir import ENV, KEY, ROOT, make_valid, sealed_bytes
from test_backup_dir_hostile import hours_ago, script, three_days
from test_backup_made_dir import env as made_dir_env
from test_backup_restore import BACKUP, make_key

from encpipe import RawKey, seal
from encpipe import bounded
from encpipe.backup import removal
from encpipe.errors import InvalidStream


def test_prune_never_unlinks_a_file_renamed_over_the_name_after_its_last_check(tmp_path):
    """prune checked that the name to remove was still the file it authenticated
    (its inode), then unlinked it by name: a writer of the directory who renamed
    the kept backup over that name between the check and the unlink made prune
    delete the kept backup instead, exit 0. Now the file is first moved, by name,
    into a directory of prune's own that no one else can write, compared there
    (its inode), and only then unlinked; another file found there goes back."""
    d = tmp_path / "b"
    d.mkdir()
    old, kept, newest = three_days(d)
    saved = (d / kept).read_bytes()
    hook = f'[ "$1" = removing ] && [ "$3" = {old} ] && mv {d / kept} {d / old}; true'
    done = script("prune", "--keep-last", "2", d, env={**ENV, "ENCPIPE_TEST_HOOK": hook})
    assert not (d / kept).exists()  # the race was run
    assert (d / old).read_bytes() == saved and sorted(os.listdir(d)) == sorted([old, newest]), done.stderr
    assert done.returncode == 74, done.stderr
    assert done.stderr.decode() == f"encpipe-prune: error: {old} changed while pruning; left in place\n"



# --- removal.remove_listed on its own: the moves an attacker can make at each of its steps ---------


def _listed(d, name, data=b"listed\n"):
    (d / name).write_bytes(data)
    info = os.lstat(d / name)
    return info.st_dev, info.st_ino


def _remove(d, name, identity):
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        removal.remove_listed(fd, str(d), name, identity)
    finally:
        os.close(fd)


def test_remove_listed_unlinks_the_listed_file_and_leaves_no_hold_directory(tmp_path):
    identity = _listed(tmp_path, "a.enc")
    (tmp_path / "b.enc").write_bytes(b"b")
    _remove(tmp_path, "a.enc", identity)
    assert os.listdir(tmp_path) == ["b.enc"]


@pytest.mark.parametrize("owner, mode", [(65534, 0o700), (0, 0o770), (0, 0o707)])
def test_remove_listed_leaves_the_file_when_its_hold_directory_was_replaced(tmp_path, monkeypatch, owner, mode):
    """A writer of the directory renames prune's fresh hold directory away and puts
    one of its own (another owner, or one others can write) under its name: nothing
    is moved into it; the file stays under its name, as it was."""
    identity = _listed(tmp_path, "a.enc")
    real_mkdir = os.mkdir

    def mkdir_then_swap(path, mode_made=0o777, *, dir_fd=None):
        real_mkdir(path, mode_made, dir_fd=dir_fd)
        os.rename(path, "away", src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        real_mkdir(path, dir_fd=dir_fd)
        os.chown(path, owner, owner, dir_fd=dir_fd)
        os.chmod(path, mode, dir_fd=dir_fd)

    monkeypatch.setattr(os, "mkdir", mkdir_then_swap)
    with pytest.raises(OSError) as raised:
        _remove(tmp_path, "a.enc", identity)
    monkeypatch.undo()
    hold = re.escape(f"{tmp_path}/{removal.HOLD_PREFIX}") + "[0-9a-f]{16}"
    assert re.fullmatch(hold + " was replaced; a.enc left in place", str(raised.value))
    assert (tmp_path / "a.enc").read_bytes() == b"listed\n" and os.listdir(tmp_path / "away") == []


def test_remove_listed_never_moves_a_file_that_was_already_another_under_the_name(tmp_path, monkeypatch):
    """The name is another file when removal starts: it is never moved (a reader of it
    sees no gap, and no one taking the name meanwhile can leave it out of place)."""
    identity = _listed(tmp_path, "a.enc")
    os.rename(tmp_path / "a.enc", tmp_path / "listed.enc")
    (tmp_path / "a.enc").write_bytes(b"newest\n")
    moved = []
    monkeypatch.setattr(os, "rename", lambda *args, **kwargs: moved.append(args))
    with pytest.raises(OSError) as raised:
        _remove(tmp_path, "a.enc", identity)
    monkeypatch.undo()
    assert (str(raised.value), moved) == ("a.enc changed while pruning; left in place", [])
    assert (tmp_path / "a.enc").read_bytes() == b"newest\n" and sorted(os.listdir(tmp_path)) == ["a.enc", "listed.enc"]

def test_remove_listed_puts_back_a_directory_moved_over_the_name(tmp_path):
    """A directory put under the name cannot be linked back: it is renamed back, the name being free."""
    identity = _listed(tmp_path, "a.enc")
    hook = f'[ "$1" = removing ] && cd {tmp_path} && mkdir new && : > new/x && rm a.enc && mv new a.enc'  # new inode
    with pytest.MonkeyPatch.context() as env:
        env.setenv("ENCPIPE_TEST_HOOK", hook)
        with pytest.raises(OSError) as raised:
            _remove(tmp_path, "a.enc", identity)
    assert str(raised.value) == "a.enc changed while pruning; left in place"
    assert os.listdir(tmp_path) == ["a.enc"] and os.listdir(tmp_path / "a.enc") == ["x"]


@pytest.mark.parametrize("planted", ["file", "empty directory"])
def test_remove_listed_never_puts_a_file_back_over_one_put_under_the_name_since(tmp_path, monkeypatch, planted):
    """Another file (a directory, which cannot be linked back) renamed over the name,
    moved into the hold directory, and the name taken yet again before it goes back
    (by a file, or an empty directory, which a rename would replace): neither is
    replaced nor removed; the one moved stays in the hold directory, which the error names."""
    identity = _listed(tmp_path, "a.enc")
    hook = f'[ "$1" = removing ] && cd {tmp_path} && mkdir new && : > new/x && rm a.enc && mv new a.enc'
    monkeypatch.setenv("ENCPIPE_TEST_HOOK", hook)
    real_rename = os.rename

    def rename_then_plant(src, dst, *, src_dir_fd=None, dst_dir_fd=None):
        real_rename(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)
        if src_dir_fd != dst_dir_fd and planted == "file":
            (tmp_path / "a.enc").write_bytes(b"planted since\n")
        elif src_dir_fd != dst_dir_fd:
            (tmp_path / "a.enc").mkdir()

    monkeypatch.setattr(os, "rename", rename_then_plant)
    with pytest.raises(OSError) as raised:
        _remove(tmp_path, "a.enc", identity)
    monkeypatch.undo()
    hold = next(n for n in os.listdir(tmp_path) if n.startswith(removal.HOLD_PREFIX))
    assert str(raised.value) == (f"a.enc changed while pruning; the file found under its name is now "
                                 f"{tmp_path / hold / 'a.enc'}")
    if planted == "file":
        assert (tmp_path / "a.enc").read_bytes() == b"planted since\n"
    else:
        assert os.listdir(tmp_path / "a.enc") == []
    assert os.listdir(tmp_path / hold / "a.enc") == ["x"] and sorted(os.listdir(tmp_path)) == sorted(["a.enc", hold])


# --- a sealed file that grows while it is read ------------------------------------------

GREW = "encpipe: error: %s grew while it was read\n"


def _grow_once_read(pid, path, stop):
    """Once process `pid` has `path` open and has read from it, extend it by 64 MiB
    (a hole: no disk used) every millisecond, faster than any reader, until `stop`."""
    path = os.path.realpath(path)
    deadline = time.monotonic() + 30
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            fds = [fd for fd in os.listdir(f"/proc/{pid}/fd") if os.readlink(f"/proc/{pid}/fd/{fd}") == path]
            if any(int(open(f"/proc/{pid}/fdinfo/{fd}").read().split()[1]) > 0 for fd in fds):
                break
        except OSError:
            pass
        time.sleep(0.001)
    while not stop.is_set() and time.monotonic() < deadline:
        os.truncate(path, os.path.getsize(path) + (64 << 20))
        time.sleep(0.001)


def _run_while_growing(path, argv, stdin=subprocess.DEVNULL):
    proc = subprocess.Popen([sys.executable, "-m", "encpipe", *argv], stdin=stdin, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": ROOT, **ENV})
    stop = threading.Event()
    grower = threading.Thread(target=_grow_once_read, args=(proc.pid, path, stop))
    grower.start()
    try:
        out, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError(f"encpipe {argv[0]} read a growing file for ever")
    finally:
        stop.set()
        grower.join()
    assert os.path.getsize(path) > 64 << 20  # the race was run
    return proc.returncode, out, err.decode()


@pytest.mark.parametrize("how", ["file", "stdin"])
def test_open_refuses_a_file_that_grows_while_it_is_read(tmp_path, how):
    """A writer of a backup extended it (by holes, costing no disk) faster than
    `encpipe open` read it: a v2 file's first pass (its trailer, before any output)
    read to its end, never reached. Now a regular file is read to its size when
    reading started, and one that has grown by then is refused (65), nothing out."""
    path = tmp_path / "shop.sql.enc"
    # 8 MiB: its first pass lasts long enough for the growth to begin during it (a few KiB were read
    # whole before the grower, polling every millisecond, saw the read begin: 0 and the plaintext)
    path.write_bytes(sealed_bytes(plaintext=8 << 20)[0])
    if how == "file":
        done = _run_while_growing(path, ["open", str(path)])
        name = str(path)
    else:
        with open(path, "rb") as src:
            done = _run_while_growing(path, ["open"], stdin=src)
        name = "standard input"
    assert done == (65, b"", GREW % name)


@pytest.mark.parametrize("how", ["stdin", "in-place"])
def test_rewrap_refuses_a_file_that_grows_while_it_is_read(tmp_path, how):
    path = tmp_path / "shop.sql.enc"
    path.write_bytes(sealed_bytes()[0])
    new_key = tmp_path / "new.key"
    new_key.write_text(bytes(range(100, 132)).hex() + "\n")
    new_key.chmod(0o600)
    if how == "stdin":
        with open(path, "rb") as src:
            done = _run_while_growing(path, ["rewrap", "--add-key-file", str(new_key)], stdin=src)
        assert done == (65, b"", GREW % "standard input")
    else:
        done = _run_while_growing(path, ["rewrap", "--add-key-file", str(new_key), "--in-place", str(path)])
        # seen by the read (65); or, where the growth began only once the read had ended (a
        # loaded machine's scheduling), by the check before the rename (75): refused either way
        assert done in [(65, b"", GREW % path),
                        (75, b"", f"encpipe: error: {path} changed while it was being rewritten; left alone\n")], done
        assert sorted(os.listdir(tmp_path)) == ["new.key", "shop.sql.enc"]  # no temporary file left


@pytest.mark.parametrize("buffered", [0, 3, 5000])
def test_as_found_reads_a_file_from_where_its_reader_stands_to_its_size_then(tmp_path, buffered):
    """A reader that has read `buffered` bytes (its buffer holding more): the rest, exactly,
    and no byte appended once reading started; a pipe is read as it is."""
    data = bytes(range(256)) * 40
    (tmp_path / "f").write_bytes(data)
    with open(tmp_path / "f", "rb") as src:
        assert src.read(buffered) == data[:buffered]
        found = bounded.as_found(src, "f")
        with open(tmp_path / "f", "ab") as more:
            more.write(b"appended")
        assert found.read(7) == data[buffered:buffered + 7]
        assert found.seek(-6, os.SEEK_END) == len(data) - 6 and found.read(6) == data[-6:]
        found.seek(buffered + 7)
        with pytest.raises(InvalidStream) as raised:
            found.read(len(data) - buffered - 7 + 4)  # more than was there: an error, never b"appe"
        assert str(raised.value) == "f grew while it was read"
    r, w = os.pipe()
    os.close(w)
    with os.fdopen(r, "rb") as pipe, open("/dev/zero", "rb") as device:  # a device has no size to stop at
        assert bounded.as_found(pipe, "pipe") is pipe and bounded.as_found(device, "zero") is device


# --- the directory's lock, held by a reader of the directory ------------------------------


def test_a_backup_waits_for_the_directory_lock_a_bounded_time_then_fails_75(tmp_path):
    """flock needs only read access: a user who can open the backup directory held
    its lock and every encpipe-backup into it waited for ever, saying nothing more
    than that it waits (no failure for a monitor to see). Now it waits
    ENCPIPE_LOCK_WAIT seconds (default 5 h), then fails with 75, naming the lock;
    nothing stored. No server is needed: the lock comes before pg_dump."""
    key = make_key(tmp_path / "backup.key")
    directory = tmp_path / "backups"
    directory.mkdir(mode=0o700)
    fd = os.open(directory, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        started = time.monotonic()
        done = subprocess.run([BACKUP, "--dir", str(directory), "--key-file", key, "db"],
                              env={**made_dir_env(tmp_path), "ENCPIPE_LOCK_WAIT": "1.5"}, capture_output=True,
                              timeout=60)
        waited = time.monotonic() - started
    finally:
        os.close(fd)
    assert (done.returncode, done.stdout) == (75, b""), done.stderr
    assert done.stderr.decode() == (
        f"encpipe-backup: waiting for another run in {directory}\n"
        f"encpipe-backup: error: backup of db failed (status 75): {directory}: its lock (flock on the directory)"
        " is still held after 1.5 s; not waiting longer; nothing was stored\n"
        "encpipe-backup: hint: a backup, a prune, a rotation or a migration in it, or any user who can open it,"
        " holds it; ENCPIPE_LOCK_WAIT sets the wait in seconds\n")
    assert 1.5 <= waited < 30 and os.listdir(directory) == []


def test_a_malformed_lock_wait_is_a_usage_error(tmp_path):
    key = make_key(tmp_path / "backup.key")
    done = subprocess.run([BACKUP, "--dir", str(tmp_path / "b"), "--key-file", key, "db"],
                          env={**made_dir_env(tmp_path), "ENCPIPE_LOCK_WAIT": "1e9"}, capture_output=True, timeout=60)
    assert (done.returncode, done.stdout) == (64, b"")
    assert done.stderr.decode().splitlines()[0] == (
        "encpipe-backup: error: ENCPIPE_LOCK_WAIT must be a number of seconds from 0 to 1000000, not '1e9'")
    assert not (tmp_path / "b").exists()


# --- an old backup renamed to a newer name ----------------------------------------------


def _dated(directory, hours):
    """A genuine backup made `hours` ago: its name and its modification time say so."""
    name = f"shop_{hours_ago(hours)}.sql.enc"
    make_valid(directory, name)
    moment = time.time() - hours * 3600 + 60  # written a minute after the run started
    os.utime(directory / name, (moment, moment))
    return name


def test_an_old_backup_renamed_to_a_newer_name_never_counts_as_the_newest(tmp_path):
    """A writer of the directory (no key, no write access to the files) renamed a
    month-old backup to this hour's name: it authenticates (a file authenticates its
    content, not its name), so it counted as the newest backup: prune --keep-last 1
    removed the real newest one, leaving only the month-old content, and check
    --verify said OK while no backup had run for a month. Its modification time, which
    only its owner can set, still says when it was written: a file last written
    before the time its name says is left (prune, 65) and not counted (check)."""
    d = tmp_path / "b"
    d.mkdir()
    month, newest = _dated(d, 24 * 30), _dated(d, 24)
    renamed = f"shop_{hours_ago(0.1)}.sql.enc"
    os.rename(d / month, d / renamed)
    seen = script("check", "--verify", "--max-age", "36", "--warn-age", "12", d, env=ENV)
    assert (seen.returncode, plugin_text(seen.stdout.decode())) == (1, (
        f"WARNING: shop: newest backup {newest} is 24.0 h old, over --warn-age 12 h; newest file {renamed} is older"
        f" than its name says (last written {_written(d / renamed)})\n")), seen.stderr
    done = script("prune", "--keep-last", "1", d, env=ENV)
    assert sorted(os.listdir(d)) == sorted([newest, renamed]), done.stderr
    assert done.returncode == 65, done.stderr
    assert done.stderr.decode() == (f"encpipe-prune: warning: left {renamed}: older than its name says (last written"
                                    f" {_written(d / renamed)}): never counted\n")


def _written(path):
    return datetime.fromtimestamp(int(path.stat().st_mtime), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_backup_whose_time_is_a_little_behind_its_name_still_counts(tmp_path):
    """A file server's clock (NFS sets the time) may be behind the backup host's:
    a file last written up to an hour before the time its name says still counts."""
    d = tmp_path / "b"
    d.mkdir()
    older, newest = _dated(d, 48), _dated(d, 2)
    moment = time.time() - 2 * 3600 - 50 * 60  # 50 minutes before its name's time
    os.utime(d / newest, (moment, moment))
    done = script("prune", "--keep-last", "1", d, env=ENV)
    assert (done.returncode, done.stderr, os.listdir(d)) == (0, b"", [newest])
    assert json.loads(done.stdout)["removed"][0]["filename"] == older


@pytest.mark.parametrize("behind, counted", [(3600, True), (3601, False)])
def test_a_file_counts_until_it_was_last_written_more_than_an_hour_before_its_name_says(tmp_path, behind, counted):
    """The slack is one hour, to the second: a file last written 3600 s before its
    name's time counts (prune removes the older backup); 3601 s, it is left, never
    counted (65), and the older backup stays too."""
    d = tmp_path / "b"
    d.mkdir()
    older = _dated(d, 48)
    named = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=2)
    newest = f"shop_{named.strftime('%Y%m%dT%H%M%SZ')}.sql.enc"
    make_valid(d, newest)
    os.utime(d / newest, (named.timestamp() - behind,) * 2)
    done = script("prune", "--keep-last", "1", d, env=ENV)
    if counted:
        assert (done.returncode, done.stderr, os.listdir(d)) == (0, b"", [newest])
    else:
        assert (done.returncode, sorted(os.listdir(d))) == (65, sorted([older, newest]))
        assert done.stderr.decode() == (f"encpipe-prune: warning: left {newest}: older than its name says (last written"
                                        f" {_written(d / newest)}): never counted\n")

# --- a run's globals file renamed to a dump's name -------------------------------------

GLOBALS = b"--\n-- PostgreSQL database cluster dump\n--\n\nCREATE ROLE app;\n" + b"-- filler\n" * 5000


def test_a_globals_file_renamed_to_a_dump_name_never_counts_as_the_newest_dump(tmp_path):
    """A writer of the directory (no key) renamed the last run's globals file to a
    dump's name a second later: it
    authenticates (same key, same maker) and its time is its name's, so it counted
    as the newest plain dump; prune --keep-last 1 removed every real dump, leaving a
    file with no database in it, and check --verify said OK. encpipe-restore already
    refuses such a file; now prune and check --verify do not count a file under a
    dump's name whose content starts as pg_dumpall's (65, left)."""
    d = tmp_path / "b"
    d.mkdir()
    _dated(d, 48)
    newest = _dated(d, 24)
    stamp = hours_ago(24 - 1 / 3600)  # a second after the run's own: the newest name
    out = io.BytesIO()
    seal(io.BytesIO(GLOBALS), out, [RawKey(KEY)], chunk_log2=14)
    planted = d / f"shop_{stamp}.sql.gz.enc"  # was the run's globals file
    planted.write_bytes(out.getvalue())
    os.utime(planted, ((d / newest).stat().st_mtime,) * 2)
    why = "holds pg_dumpall's dump of a cluster (a globals file under a dump's name?), not a database's dump"
    seen = script("check", "--verify", "--max-age", "36", d, env=ENV)
    assert (seen.returncode, plugin_text(seen.stdout.decode())) == (1, (
        f"WARNING: shop: newest backup {newest} is 24.0 h old; newest file {planted.name} failed authentication:"
        f" {why}\n")), seen.stderr
    done = script("prune", "--keep-last", "1", d, env=ENV)
    assert sorted(os.listdir(d)) == sorted([newest, planted.name]), done.stderr
    assert done.returncode == 65, done.stderr
    assert done.stderr.decode() == f"encpipe-prune: warning: left {planted.name}: failed verification: {why}\n"


def test_a_dump_renamed_to_a_globals_files_name_never_counts_as_the_newest_globals_file(tmp_path):
    """The other way round: a writer of the directory (no key) renamed the newest dump
    to a globals file's name a second later. It authenticated and counted as the
    newest globals file, so prune --keep-last 1 removed every run's real globals
    file (a restore on an empty server then has no roles to create), exit 0, and
    encpipe-verify passed it. Now a file under a globals file's name must start as
    pg_dumpall's output, else it fails (65) and is left."""
    d = tmp_path / "b"
    d.mkdir()
    real = []
    for hours in (48, 24):
        out = io.BytesIO()
        seal(io.BytesIO(GLOBALS), out, [RawKey(KEY)], chunk_log2=14)
        real.append(f"shop_{hours_ago(hours)}.globals.sql.enc")
        (d / real[-1]).write_bytes(out.getvalue())
        os.utime(d / real[-1], (time.time() - hours * 3600 + 60,) * 2)
    dump = _dated(d, 24)
    planted = d / f"shop_{hours_ago(24 - 1 / 3600)}.globals.sql.enc"  # was the run's dump
    os.rename(d / dump, planted)
    why = "does not hold pg_dumpall's dump of a cluster (a database's dump under a globals file's name?)"
    done = script("verify", d, env=ENV)
    assert done.returncode == 65
    assert done.stderr.decode() == f"encpipe-verify: error: {planted}: {why}\n"
    done = script("prune", "--keep-last", "1", d, env=ENV)
    assert done.returncode == 65, done.stderr
    assert sorted(os.listdir(d)) == sorted([real[1], planted.name])
    assert done.stderr.decode() == f"encpipe-prune: warning: left {planted.name}: failed verification: {why}\n"


def _globals(directory, db, hours, run=None):
    """A run's globals file made `hours` ago: pg_dumpall's output and the properties
    line encpipe-backup ends it with (naming the run; `run` to name another)."""
    name = f"{db}_{hours_ago(hours)}.globals.sql.enc"
    props = json.dumps({"name": db, "owner": "postgres", "run": run or name[: -len(".globals.sql.enc")]})
    out = io.BytesIO()
    seal(io.BytesIO(GLOBALS + f"-- encpipe-database-properties: {props}\n".encode()), out, [RawKey(KEY)],
         chunk_log2=14)
    (directory / name).write_bytes(out.getvalue())
    os.utime(directory / name, (time.time() - hours * 3600 + 60,) * 2)
    return name


def test_another_databases_globals_file_renamed_into_a_series_never_counts_as_its_newest(tmp_path):
    """A writer of the directory (no key) renamed crm's newest globals file to shop's a
    second after shop's newest: it authenticated and counted as shop's newest globals
    file, so prune --keep-last 1 removed every real one of shop, exit 0. Now a globals
    file's properties line must name the database and run its name gives: else it
    fails (65) and is left."""
    d = tmp_path / "b"
    d.mkdir()
    real = [_globals(d, "shop", 48), _globals(d, "shop", 24)]
    crm = _globals(d, "crm", 24)
    planted = d / f"shop_{hours_ago(24 - 1 / 3600)}.globals.sql.enc"
    os.rename(d / crm, planted)
    why = "holds the globals of database crm, not of shop (another database's globals file under this name?)"
    done = script("prune", "--keep-last", "1", "--database", "shop", d, env=ENV)
    assert done.returncode == 65, done.stderr
    assert sorted(os.listdir(d)) == sorted([real[1], planted.name])
    assert done.stderr.decode() == f"encpipe-prune: warning: left {planted.name}: failed verification: {why}\n"


def test_another_runs_globals_file_renamed_in_its_series_never_counts(tmp_path):
    """The same with a globals file of shop's own, of another run: the name says one run,
    its properties another."""
    d = tmp_path / "b"
    d.mkdir()
    real = [_globals(d, "shop", 48), _globals(d, "shop", 24)]
    run = f"shop_{hours_ago(30)}"
    other = _globals(d, "shop", 24 - 1 / 3600, run=run)
    why = f"was made by run {run} (another run's globals file under this name?)"
    done = script("verify", d, env=ENV)
    assert done.returncode == 65
    assert done.stderr.decode() == f"encpipe-verify: error: {d / other}: {why}\n"
    done = script("prune", "--keep-last", "1", d, env=ENV)
    assert done.returncode == 65, done.stderr
    assert sorted(os.listdir(d)) == sorted([real[1], other])
