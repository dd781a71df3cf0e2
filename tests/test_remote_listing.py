"""A remote listing examines several objects at once (listing.REMOTE_AT_ONCE), through
real rclone against `rclone serve s3`: the same JSON as a local listing of the same
files, in name order; never more than the bound at once, and more than one; and no
rclone left running when the listing is interrupted or an examination fails.

The wrappers here stand in for rclone's `cat` (recording how many run at once, or
hanging as a stalled remote would); everything else goes to the real rclone."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from encpipe.backup import listing
from encpipe.backup.rclonestore import Rclone
from procs import alive
from s3server import rclone_binary, rclone_word
from test_backup_restore import REPO, python_env

SEALED = "shop_20260101T000000Z.sql.enc"


@pytest.fixture(scope="module")
def sealed(tmp_path_factory):
    """(a sealed file, a signed one, the signer's key id)."""
    base, env = tmp_path_factory.mktemp("keys"), python_env()
    key, sign_key = str(base / "k"), str(base / "s")

    def encpipe(*argv, data=b""):
        return subprocess.run([sys.executable, "-m", "encpipe", *argv], input=data, capture_output=True, check=True,
                              env=env).stdout

    encpipe("keygen", "-o", key)
    verify_key = encpipe("keygen", "--sign", "-o", sign_key).decode().strip()
    return (encpipe("seal", "--key-file", key, data=b"select 1;\n"),
            encpipe("seal", "--key-file", key, "--sign-key", sign_key, data=b"x" * 5000),
            encpipe("keyid", "--signer", verify_key).decode().split())


def put(directory, files):
    os.makedirs(directory, exist_ok=True)
    for name, data in files.items():
        with open(os.path.join(directory, name), "wb") as f:
            f.write(data)


def upload(s3, tmp_path, folder, files):
    """The files, in a local directory and uploaded through rclone (the server caches
    its directories: a file written beside it may not be seen); the directory."""
    local = str(tmp_path / folder)
    put(local, files)
    subprocess.run([rclone_binary(), "copy", local, f"{s3.location}/{folder}"], env={**python_env(), **s3.env},
                   check=True, capture_output=True)
    return local


def encpipe_list(where, env):
    return subprocess.run([sys.executable, str(REPO / "scripts" / "encpipe-list"), where], env=env,
                          capture_output=True, stdin=subprocess.DEVNULL, timeout=120)


def wrapper(path, cat):
    """An rclone that runs the shell lines `cat` for `rclone cat ...`, the real one otherwise."""
    path.write_text(f'#!/bin/sh\nif [ "$1" = cat ]; then\n{cat}\nfi\nexec {rclone_word()} "$@"\n')
    path.chmod(0o755)
    return str(path)


def test_a_remote_listing_is_the_local_one_in_name_order(s3, sealed, tmp_path):
    plain, signed, signer = sealed
    files = {
        SEALED: plain,
        "shop_20260102T000000Z.dump.enc": signed,
        "shop_20260103T000000Z.sql.enc": plain[:-20],  # its payload cut: damaged
        "shop_20260104T000000Z.sql.enc": plain[:30],  # its header cut: damaged
        "shop_20260105T000000Z.sql.enc": b"",
        "notes.txt": b"not a backup\n",
        "old_backup.sql.enc": bytes(range(256)),  # the previous tool's, as far as anyone can tell
        ".encpipe-tmp.20260106T000000Z_1_2": plain,
    }
    for i in range(10):  # more than REMOTE_AT_ONCE, in an order the names sort into
        files[f"zz_202602{i + 1:02d}T000000Z.sql.enc"] = signed if i % 2 else plain
    local = upload(s3, tmp_path, "mix", files)
    env = {**python_env(), **s3.env}
    listings = [encpipe_list(where, env) for where in (local, f"{s3.location}/mix")]
    assert [(p.returncode, p.stderr) for p in listings] == [(0, b""), (0, b"")]
    assert listings[0].stdout == listings[1].stdout  # no field names where it is
    entries = json.loads(listings[1].stdout)
    assert [e["filename"] for e in entries] == sorted(files)
    got = {e["filename"]: (e["status"], e["signers"]) for e in entries}
    assert got[SEALED] == ("sealed", [])
    assert got["shop_20260102T000000Z.dump.enc"] == got["zz_20260202T000000Z.sql.enc"] == ("sealed", signer)
    assert [got[f"shop_2026010{i}T000000Z.sql.enc"][0] for i in (3, 4, 5)] == ["damaged", "damaged", "foreign"]
    assert (got["notes.txt"][0], got["old_backup.sql.enc"][0], got[".encpipe-tmp.20260106T000000Z_1_2"][0]) == (
        "foreign", "legacy", "partial")

    # and what each file was before the listing ran several at once: one examine after another
    store = Rclone(f"{s3.location}/mix", env)
    one_by_one = [listing.examine(store, item, True).to_json() for item in store.list()]
    assert [e.to_json() for e in listing.scan(store, True)] == one_by_one
    assert not store.children.running


def test_several_objects_are_read_at_once_never_more_than_the_bound(s3, sealed, tmp_path):
    """Each `cat` notes how many run with it (a count, not a time): more than one, at most the
    bound. The files are larger than the header's read: each one's download is killed before
    its trailer is fetched, so an examine never holds two rclone at once."""
    plain, signed, _ = sealed
    n = 3 * listing.REMOTE_AT_ONCE
    upload(s3, tmp_path, "many", {f"shop_202601{i + 1:02d}T000000Z.sql.enc": signed for i in range(n)})
    running, counts = tmp_path / "running", tmp_path / "counts"
    running.mkdir()
    # one file per `rclone cat` started, named by its pid (the real rclone's, once exec'd): those not
    # yet reaped by encpipe (kill -0 finds a zombie too) run at once, as far as encpipe is concerned
    rclone = wrapper(tmp_path / "rclone", f'touch {running}/$$; n=0\n'
                     f'for f in {running}/*; do kill -0 "${{f##*/}}" 2>/dev/null && n=$((n + 1)); done\n'
                     f'echo $n >> {counts}; sleep 0.3; exec {rclone_word()} "$@"')
    proc = encpipe_list(f"{s3.location}/many", {**python_env(), **s3.env, "RCLONE": rclone})
    assert (proc.returncode, proc.stderr) == (0, b"")
    assert [e["status"] for e in json.loads(proc.stdout)] == ["sealed"] * n
    seen = [int(line) for line in counts.read_text().split()]
    assert len(seen) == 2 * n  # the header, then the trailer, of each
    assert 1 < max(seen) <= listing.REMOTE_AT_ONCE, seen


def hanging_rclone(tmp_path):
    """An rclone whose every `cat` hangs (a stalled remote), each noting its pid."""
    pids = tmp_path / "pids"
    return wrapper(tmp_path / "rclone", f"echo $$ >> {pids}; exec sleep 120"), pids


def started(pids, count):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = pids.read_text().split() if pids.exists() else []
        if len(found) >= count:
            return [int(pid) for pid in found]
        time.sleep(0.05)
    raise AssertionError(f"{count} rclone cat did not start")


def signalled_listing(s3, sealed, tmp_path, folder, signum):
    """encpipe-list of a remote whose every `cat` hangs, sent `signum` once REMOTE_AT_ONCE
    of them run: (its status, its output, those rclone, every rclone it started).
    Any rclone it left is killed afterwards."""
    upload(s3, tmp_path, folder,
           {f"shop_202601{i + 1:02d}T000000Z.sql.enc": sealed[0] for i in range(listing.REMOTE_AT_ONCE + 4)})
    rclone, pids = hanging_rclone(tmp_path)
    proc = subprocess.Popen([sys.executable, str(REPO / "scripts" / "encpipe-list"), f"{s3.location}/{folder}"],
                            env={**python_env(), **s3.env, "RCLONE": rclone}, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        hung = started(pids, listing.REMOTE_AT_ONCE)
        time.sleep(0.3)  # room for one more to start, were the bound not kept
        os.kill(proc.pid, signum)  # encpipe-list alone, not its process group
        out, _ = proc.communicate(timeout=30)
        # An rclone killed at exit may take a moment to die (a zombie counts as dead);
        # one left running hangs for 120 s, well past this wait.
        deadline = time.monotonic() + 30
        while [pid for pid in hung if alive(pid)] and time.monotonic() < deadline:
            time.sleep(0.05)
        alive_then = [pid for pid in hung if alive(pid)]
    finally:
        proc.kill()
        proc.wait()
        for pid in [int(p) for p in pids.read_text().split()]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    return proc.returncode, out, alive_then, [int(pid) for pid in pids.read_text().split()], hung


def test_an_interrupted_remote_listing_leaves_no_rclone_behind(s3, sealed, tmp_path):
    status, out, left, every, hung = signalled_listing(s3, sealed, tmp_path, "stalled", signal.SIGINT)
    assert (status, out) == (-signal.SIGINT, b"")
    assert len(hung) == len(every) == listing.REMOTE_AT_ONCE
    assert left == []


def test_an_examine_that_raises_stops_the_others_and_their_rclone(s3, sealed, tmp_path):
    """Not a bad file (that is an entry's error) but a bug: it goes up at once, as
    it did when one file was examined after another, and no rclone is left."""
    names = [f"shop_202601{i + 1:02d}T000000Z.sql.enc" for i in range(listing.REMOTE_AT_ONCE + 4)]
    upload(s3, tmp_path, "buggy", dict.fromkeys(names, sealed[0]))
    rclone, pids = hanging_rclone(tmp_path)

    class Buggy(Rclone):
        def open(self, item):
            if item.name == names[3]:
                started(pids, 3)
                raise RuntimeError("a bug")
            return super().open(item)

    store = Buggy(f"{s3.location}/buggy", {**python_env(), **s3.env, "RCLONE": rclone})
    before, start = threading.active_count(), time.monotonic()
    with pytest.raises(RuntimeError, match="a bug"):
        listing.scan(store)
    assert time.monotonic() - start < 60  # not once the hanging ones end by themselves (120 s)
    hung = [int(pid) for pid in pids.read_text().split()]
    assert 3 <= len(hung) <= listing.REMOTE_AT_ONCE and [pid for pid in hung if alive(pid)] == []
    assert not store.children.running and threading.active_count() == before
    assert not store.children.stopped  # the store reads again


def test_object_names_that_look_like_options_are_read_as_names(s3, sealed, tmp_path):
    """Each object goes to rclone as REMOTE:PATH/NAME, never as an argument of its
    own: names starting with dashes (an rclone option's shape), very long or not
    ASCII list as the same entries as the same files in a directory."""
    plain, signed, _ = sealed
    files = {"-shop_20260101T000000Z.sql.enc": plain, "--help": b"not a backup\n", "--config=x": signed,
             "--tail=64": plain, "a b_20260101T000000Z.sql.enc": plain,
             "\u00e9t\u00e9_20260101T000000Z.sql.enc": signed, "x" * 200 + "_20260101T000000Z.sql.enc": plain}
    local = upload(s3, tmp_path, "dashes", files)
    env = {**python_env(), **s3.env}
    listings = [encpipe_list(where, env) for where in (local, f"{s3.location}/dashes")]
    assert [(p.returncode, p.stderr) for p in listings] == [(0, b""), (0, b"")]
    assert listings[0].stdout == listings[1].stdout
    got = {e["filename"]: e["status"] for e in json.loads(listings[1].stdout)}
    assert got == {**dict.fromkeys(files, "sealed"), "--help": "foreign"}


def test_a_listing_ended_by_sigterm_leaves_no_rclone_behind(s3, sealed, tmp_path):
    status, out, left, _, _ = signalled_listing(s3, sealed, tmp_path, "terminated", signal.SIGTERM)
    assert (out, left) == (b"", [])


def test_an_examine_that_failed_before_the_listing_waits_is_raised_at_once():
    """The examine that fails may end before the listing starts waiting for one to end
    (it fails fast; the others hang on a stalled remote): its error goes up then too,
    not once one of the others ends (the 120 s the test above once took)."""
    from concurrent.futures import Future
    from collections import deque

    failed, hanging = Future(), Future()
    failed.set_exception(RuntimeError("a bug"))
    window, outcome = deque([hanging, failed]), []

    def settle():
        try:
            listing._settle(window, [])
        except RuntimeError as e:
            outcome.append(e)

    waiter = threading.Thread(target=settle, daemon=True)
    waiter.start()
    waiter.join(10)
    raised_at_once = [str(e) for e in outcome]
    hanging.set_result(None)  # lets a waiting _settle end
    waiter.join(10)
    assert raised_at_once == ["a bug"]


HANDLED = sum(1 << (s - 1) for s in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM))


def test_the_examine_threads_leave_signals_to_the_main_thread_their_rclone_does_not(s3, sealed, tmp_path):
    """The examine threads were started by the pool with the main thread's mask: a
    SIGTERM the kernel gave one of them waited for the main thread's next bytecode
    (README, "Signals"). They now block SIGINT, SIGTERM and SIGHUP, as every other
    thread of encpipe's does; the `rclone cat` they start does not (a child that
    blocks SIGTERM ignores `kill` and a systemd stop). Each `cat` records its own
    mask and those of encpipe's threads other than the main one (its parent's tasks).
    A thread that is starting a child unblocks them just while it forks (sigthreads.popen),
    so another cat may see it unblocked then: each thread must be seen blocking them at
    least once; a thread started with the main thread's mask never is."""
    plain, _, _ = sealed
    upload(s3, tmp_path, "masks", {f"shop_202601{i + 1:02d}T000000Z.sql.enc": plain for i in range(4)})
    own, threads = tmp_path / "own", tmp_path / "threads"
    rclone = wrapper(tmp_path / "rclone",
                     f'while read -r key value; do [ "$key" = SigBlk: ] && echo "$value" >> {own}; done < /proc/$$/status\n'
                     f'for task in /proc/$PPID/task/*; do [ "${{task##*/}}" = "$PPID" ] && continue\n'
                     f'while read -r key value; do [ "$key" = SigBlk: ] && echo "${{task##*/}}:$value" >> {threads}; done'
                     f' < "$task/status"; done')
    proc = encpipe_list(f"{s3.location}/masks", {**python_env(), **s3.env, "RCLONE": rclone})
    assert (proc.returncode, proc.stderr) == (0, b"")
    children = [int(v, 16) for v in own.read_text().split()]
    assert len(children) >= 4 and all(mask & HANDLED == 0 for mask in children), [hex(m) for m in children]
    others = {}
    for line in threads.read_text().split():
        task, mask = line.split(":")
        others.setdefault(task, []).append(int(mask, 16))
    assert others and all(any(m & HANDLED == HANDLED for m in masks) for masks in others.values()), others
