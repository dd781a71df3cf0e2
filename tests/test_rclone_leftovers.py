"""What a failed or interrupted upload leaves, through real rclone (the local
backend, and `rclone serve s3` on 127.0.0.1), and what the commands make of
what only SIGKILL can leave.

rclone 1.75 writes an `rclone rcat` to its local backend in place (under the
run's `.encpipe-tmp.*` name); `rclone copy`, `move` and `sync` to a backend
that takes partial uploads (local, sftp, ftp...) write `NAME.<8 hex>.partial`
first; `rclone serve s3` keeps the parts of an unfinished multipart upload in
`.rclone_temp_multipart_<upload id>` in the directory it serves (invisible to
S3 listings). A streamed upload to S3 is a multipart upload: rclone aborts it
on SIGTERM or SIGINT, not on SIGKILL."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from cliutil import a_new_second
from s3server import rclone_binary, rclone_word
from test_backup_restore import BACKUP, REPO, python_env

FOREIGN = "notes.txt"


def tool(name, *argv, env):
    return subprocess.run([sys.executable, str(REPO / "scripts" / name), *map(str, argv)], env=env,
                          capture_output=True, stdin=subprocess.DEVNULL, timeout=300)


FAKE_CLUSTER = "7000000000000000001"


def fake_env(tmp_path, body, **extra):
    """The scripts' environment with a pg_dump that runs `body` (no cluster needed), and a psql
    that gives a cluster's system identifier (encpipe-backup's one question before the dump)."""
    fake = tmp_path / "fakebin"
    fake.mkdir(exist_ok=True)
    (fake / "pg_dump").write_text("#!/bin/sh\n" + body)
    (fake / "pg_dump").chmod(0o755)
    (fake / "psql").write_text("#!/bin/sh\nprintf %s " + FAKE_CLUSTER + "\n")
    (fake / "psql").chmod(0o755)
    env = python_env()
    env.update(PATH=os.pathsep.join([str(fake), os.path.dirname(sys.executable), env["PATH"]]),
               ENCPIPE_PYTHON=sys.executable, **extra)
    return env


def two_backups(env, key_file, where):
    """Two backups of `shop` into `where` (a directory or REMOTE:PATH), a second apart: their names."""
    names = []
    for _ in range(2):
        done = subprocess.run([BACKUP, "--no-globals", "--to" if ":" in where else "--dir", where,
                               "--key-file", key_file, "shop"], env=env, capture_output=True, timeout=300)
        assert done.returncode == 0, done.stderr.decode()
        names.append(json.loads(done.stdout)["filename"])
        a_new_second()
    return names


def leftovers(directory, backup, served=True):
    """What an interrupted rclone leaves beside `backup` (a file in `directory`), and a
    foreign file; with `served`, the parts `rclone serve s3` keeps there too (which it
    never lists, nor takes as an object)."""
    data = open(os.path.join(directory, backup), "rb").read()
    planted = {
        f"{backup}.118b99b3.partial": data[: len(data) // 3],  # rclone copy/move/sync killed: the start
        f"{backup}.0a1b2c3d.partial": data,  # killed after the last byte, before its rename
        FOREIGN: b"not a backup\n",
    }
    if served:
        planted[".rclone_temp_multipart_8276c92b-622b-4971-be8c-392a3ff0df19"] = data[: len(data) // 2]
    for name, content in planted.items():
        with open(os.path.join(directory, name), "wb") as f:
            f.write(content)
    return planted


def assert_leftovers_change_nothing(where, names, planted, key_file, env):
    """`encpipe-list` lists the leftovers as partial (never sealed, never a backup);
    verify, check and prune go as if they were not there, and leave them."""
    listed = tool("encpipe-list", "--stats", where, env=env)
    assert (listed.returncode, listed.stderr) == (0, b""), listed.stderr
    report = json.loads(listed.stdout)
    statuses = {e["filename"]: e["status"] for e in report["backups"]}
    assert statuses == {**{n: "sealed" for n in names}, FOREIGN: "foreign", ".encpipe-cluster": "marker",
                        **{n: "partial" for n in planted if n != FOREIGN}}
    assert report["stats"]["backups"] == 2
    verified = tool("encpipe-verify", "--key-file", key_file, where, env=env)
    assert verified.returncode == 0, verified.stderr.decode()
    results = {r["filename"]: r for r in json.loads(verified.stdout)["results"]}
    assert all(results[n]["ok"] for n in names)
    assert all(results[n]["ok"] is None and results[n]["note"] for n in planted)
    for keys in ((), ("--verify", "--key-file", key_file)):
        checked = tool("encpipe-check", "--max-age", "1", *keys, where, env=env)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert checked.stdout.startswith(b"OK: shop: newest backup " + names[1].encode()), checked.stdout
    pruned = tool("encpipe-prune", "--keep-last", "1", "--key-file", key_file, where, env=env)
    assert pruned.returncode == 0, pruned.stdout + pruned.stderr
    assert [r["filename"] for r in json.loads(pruned.stdout)["removed"]] == [names[0]]


def test_leftovers_in_a_directory_are_partial_never_backups(key_file, tmp_path):
    """Before, a `.partial` copy of a backup was read as a sealed file: encpipe-verify
    failed (65) on the truncated one, and both were the backup's copies (one payload
    key), so that neither counted: encpipe-check said CRITICAL, no backup, and
    encpipe-prune (65) removed nothing, the series left unprotected."""
    directory = tmp_path / "b"
    env = fake_env(tmp_path, "head -c 600000 /dev/urandom | base64\n")
    names = two_backups(env, key_file, str(directory))
    planted = leftovers(directory, names[1])
    assert_leftovers_change_nothing(str(directory), names, planted, key_file, env)
    assert sorted(os.listdir(directory)) == sorted([names[1], *planted, ".encpipe-cluster"])


def test_leftovers_on_a_remote_are_partial_never_backups(key_file, s3, tmp_path):
    env = fake_env(tmp_path, "head -c 600000 /dev/urandom | base64\n", **s3.env)
    where = f"{s3.location}/planted"
    names = two_backups(env, key_file, where)
    here = tmp_path / "copy"
    here.mkdir()
    subprocess.run([rclone_binary(), "copy", where, str(here)], env=env, check=True, capture_output=True)
    planted = leftovers(here, names[1], served=False)
    for name in names:
        os.unlink(here / name)
    # put through rclone (the server caches its directories); --inplace: no .partial of its own
    subprocess.run([rclone_binary(), "copy", "--inplace", str(here), where], env=env, check=True, capture_output=True)
    assert_leftovers_change_nothing(where, names, planted, key_file, env)
    assert s3.objects("planted") == sorted([names[1], *planted, ".encpipe-cluster"])


def test_rclone_copy_killed_leaves_a_partial_name(tmp_path):
    """What the names above stand for: an `rclone copyto` to the local backend,
    killed, leaves NAME.<8 hex>.partial (rclone 1.75); `rclone rcat` writes in place."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.write_bytes(os.urandom(1 << 20))
    dst.mkdir()
    proc = subprocess.Popen([rclone_binary(), "copyto", "--bwlimit", "64k", str(src), str(dst / "x.enc")],
                            env={**python_env(), "RCLONE_CONFIG": "/dev/null"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not (os.listdir(dst) and os.path.getsize(dst / os.listdir(dst)[0])):  # its first bytes written
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()
    [left] = os.listdir(dst)
    assert left.startswith("x.enc.") and left.endswith(".partial") and len(left) == len("x.enc.") + 8 + 8
    from encpipe.backup.names import is_partial, parse_name

    assert is_partial(left) and parse_name(left).naming is None
    shutil.rmtree(dst)


# --- what a failed or interrupted upload leaves --------------------------------


def multipart_uploads(s3, prefix):
    """The unfinished multipart uploads under `prefix`, as the server lists them (and
    the parts it keeps for them in its directory, which s3.objects() shows too)."""
    done = subprocess.run([rclone_binary(), "backend", "list-multipart-uploads", f"{s3.location}/{prefix}"],
                          env={**python_env(), **s3.env}, capture_output=True, timeout=60)
    parts = [n for n in s3.objects(prefix) if n.startswith(".rclone_temp_multipart_")]
    if done.returncode and b"api error NoSuchUpload" in done.stderr:  # serve s3's answer where none ever began
        return parts
    assert done.returncode == 0, done.stderr
    return [u["Key"] for u in json.loads(done.stdout)[s3.location.split(":")[1]]] + parts


def wait_for_multipart(s3, prefix, proc=None):
    """Until rclone sends the first part of a multipart upload under `prefix`. Not as
    soon as the server lists the upload: rclone learns the upload's id from the
    server's answer and only then takes it as one to abort on SIGINT or SIGTERM; a
    signal between the two ends rclone with the upload left (rclone's own window,
    a few milliseconds, once in a few hundred runs on a loaded machine)."""
    deadline = time.monotonic() + 30
    while not (multipart_uploads(s3, prefix) and _part_sent(s3, prefix)):
        assert time.monotonic() < deadline and (proc is None or proc.poll() is None), "no multipart upload began"
        time.sleep(0.1)


def _part_sent(s3, prefix):
    """Whether `rclone serve s3` holds some bytes of a part of an upload under `prefix`."""
    folder = os.path.join(s3.bucket_dir, prefix)
    for name in s3.objects(prefix):
        try:
            if name.startswith(".rclone_temp_multipart_") and os.path.getsize(os.path.join(folder, name)):
                return True
        except FileNotFoundError:  # the part done meanwhile
            pass
    return False


def _terminated_uploading(proc, folder, larger_than=-1):
    """SIGTERM to encpipe-backup `proc` (a session of its own) once its upload's one
    object in the local remote's `folder` holds more than `larger_than` bytes:
    (that object's name, the run's stdout, its stderr)."""
    try:
        deadline = time.monotonic() + 30
        while not (os.path.isdir(folder) and os.listdir(folder)
                   and os.path.getsize(folder / os.listdir(folder)[0]) > larger_than):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        [temp] = os.listdir(folder)
        os.kill(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return temp, out, err


def test_a_failed_upload_aborts_its_multipart_upload(s3):
    """A write that fails once the upload is a multipart upload (another store's disk
    full, the seal failing): its rclone rcat is ended unfinished, and the multipart
    upload goes with it. Before, rclone was killed (SIGKILL), which leaves it on the
    server: invisible to every listing, its parts billed until someone aborts it."""
    from encpipe.backup import storage
    from encpipe.backup.rclonestore import Rclone
    from encpipe.errors import IOFailure

    def write(out):
        out.write(os.urandom(6 << 20))  # past rcat's first 100 KiB and S3's first 5 MiB part
        wait_for_multipart(s3, "failed")
        raise OSError(28, "No space left on device")

    with pytest.raises(IOFailure) as failed:
        storage.write_new([Rclone(f"{s3.location}/failed", {**python_env(), **s3.env})], ".encpipe-tmp.x", write, "x")
    assert str(failed.value) == "cannot store .encpipe-tmp.x: No space left on device"
    assert multipart_uploads(s3, "failed") == [] and s3.objects("failed") == []


# > 5 MiB, then no end. With --compress none: zstd keeps what it was given last until its input ends.
BIG_SLOW_DUMP = "head -c 9000000 /dev/urandom | base64\nexec sleep 120\n"
INTERRUPTED = b"encpipe-backup: error: backup of shop interrupted; nothing was stored\n"


@pytest.mark.parametrize("signum,group", [(signal.SIGTERM, False), (signal.SIGINT, False), (signal.SIGINT, True)],
                         ids=["sigterm", "sigint", "sigint-to-the-group"])
def test_an_interrupted_backup_leaves_nothing_on_s3(key_file, s3, tmp_path, signum, group):
    """SIGTERM or SIGINT to encpipe-backup (alone, as `kill PID` does, or to its
    process group, as a terminal's Ctrl-C) while its upload is a multipart upload:
    128 + N, nothing on standard output, one line on standard error, no object and no unfinished
    multipart upload. Before, the run killed rclone (SIGKILL): the multipart upload
    stayed on the server."""
    prefix = f"stopped{signum}{'g' if group else ''}"
    env = fake_env(tmp_path, BIG_SLOW_DUMP, **s3.env)
    proc = subprocess.Popen([BACKUP, "--no-globals", "--compress", "none", "--to", f"{s3.location}/{prefix}",
                             "--key-file", key_file, "shop"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        wait_for_multipart(s3, prefix, proc)
        os.killpg(proc.pid, signum) if group else os.kill(proc.pid, signum)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert (proc.returncode, out, err) == (128 + signum, b"", INTERRUPTED), err
    assert multipart_uploads(s3, prefix) == [] and s3.objects(prefix) == []


def test_an_interrupted_backup_leaves_nothing_on_the_local_backend(key_file, tmp_path):
    """rclone's local backend writes rcat's object in place, under the run's
    temporary name: an interrupted run removes it."""
    bucket = tmp_path / "bucket"
    bucket.mkdir()
    (tmp_path / "rclone.conf").write_text("")
    env = fake_env(tmp_path, BIG_SLOW_DUMP, RCLONE_CONFIG=str(tmp_path / "rclone.conf"),
                   RCLONE_CONFIG_HERE_TYPE="alias", RCLONE_CONFIG_HERE_REMOTE=str(bucket))
    proc = subprocess.Popen([BACKUP, "--no-globals", "--compress", "none", "--to", "here:up", "--key-file", key_file,
                             "shop"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    temp, out, err = _terminated_uploading(proc, bucket / "up", 1 << 20)
    assert temp.startswith(".encpipe-tmp.")  # rcat writes in place: no .partial of rclone's
    assert (proc.returncode, out, err) == (143, b"", INTERRUPTED), err
    assert os.listdir(bucket / "up") == []


# --- and what it says when it could not remove it ------------------------------

STUBBORN = """#!/bin/sh
# rclone, but with STUBBORN set an rcat that does not end on SIGTERM (a cat that ignores
# it: rclone itself would not), and a deletefile the remote refuses (with REFUSED_ONCE set,
# only the first: that file then exists)
case "$1" in
rcat) if [ -n "$STUBBORN" ]; then trap '' TERM; exec cat >/dev/null; fi; exec %s "$@";;
deletefile)
    if [ -n "$REFUSED_ONCE" ] && [ -e "$REFUSED_ONCE" ]; then exec %s "$@"; fi
    if [ -n "$REFUSED_ONCE" ]; then : >"$REFUSED_ONCE"; fi
    echo "2026/12/05 01:00:00 NOTICE: Failed to deletefile: AccessDenied: access denied" >&2; exit 1;;
esac
exec %s "$@"
"""


def stubborn_remote(tmp_path, **extra):
    """(env, bucket directory) for `here:`, an rclone alias of a directory, through STUBBORN."""
    bucket, wrapper = tmp_path / "bucket", tmp_path / "rclone"
    bucket.mkdir()
    (tmp_path / "rclone.conf").write_text("")
    wrapper.write_text(STUBBORN % ((rclone_word(),) * 3))
    wrapper.chmod(0o755)
    return {"RCLONE": str(wrapper), "RCLONE_CONFIG": str(tmp_path / "rclone.conf"), "RCLONE_CONFIG_HERE_TYPE": "alias",
            "RCLONE_CONFIG_HERE_REMOTE": str(bucket), **extra}, bucket


@pytest.mark.parametrize("refused", ["always", "once"])
def test_an_interrupted_backup_says_what_it_could_not_remove(key_file, tmp_path, refused):
    """SIGTERM to encpipe-backup, whose temporary object the remote will not delete:
    143, and one line that says so, naming it. Before, the run said nothing (the
    object, listed as partial, stayed unmentioned). Refused only once, the run's
    second try (`job abort`) removes it: 143, the line of any interrupted run, nothing left. Before, the
    line said the first try's refusal, of an object that was gone."""
    once = {"REFUSED_ONCE": str(tmp_path / "refused")} if refused == "once" else {}
    remote, bucket = stubborn_remote(tmp_path, **once)
    env = fake_env(tmp_path, BIG_SLOW_DUMP, **remote)
    proc = subprocess.Popen([BACKUP, "--no-globals", "--compress", "none", "--to", "here:up", "--key-file", key_file,
                             "shop"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    temp, out, err = _terminated_uploading(proc, bucket / "up")
    assert (proc.returncode, out) == (143, b"")
    if once:
        assert (err, os.path.exists(once["REFUSED_ONCE"]), os.listdir(bucket / "up")) == (INTERRUPTED, True, [])
        return
    assert err.decode() == (f"encpipe-backup: error: backup of shop interrupted; nothing was stored; here:up/{temp} "
                            "not removed: rclone deletefile: 2026/12/05 01:00:00 NOTICE: Failed to deletefile: "
                            "AccessDenied: access denied\n")
    assert os.listdir(bucket / "up") == [temp]


def _recorded_uploads(tmp_path, monkeypatch):
    """(an Rclone store on a remote whose rclone does not end on SIGTERM, its bucket,
    the list of Uploads its writer() makes, in order)."""
    from encpipe.backup.rclonestore import Rclone

    remote, bucket = stubborn_remote(tmp_path, STUBBORN="1")
    store = Rclone("here:up", {**python_env(), **remote})
    uploads, writer = [], Rclone.writer
    monkeypatch.setattr(Rclone, "writer", lambda self, *a: uploads.append(writer(self, *a)) or uploads[-1])
    return store, bucket, uploads


def test_an_rclone_that_does_not_stop_is_killed_and_said(tmp_path, monkeypatch):
    """An rclone rcat that does not end on SIGTERM (so cannot abort its upload) is
    killed ABORT_WAIT s later, and the store keeps the sentence that says what may
    be left, for the run's line."""
    from encpipe.backup import rclonepipe, storage
    from encpipe.errors import IOFailure

    monkeypatch.setattr(rclonepipe, "ABORT_WAIT", 1)
    store, bucket, uploads = _recorded_uploads(tmp_path, monkeypatch)

    def write(out):
        out.write(b"x" * 300000)
        raise OSError(28, "No space left on device")

    with pytest.raises(IOFailure):
        storage.write_new([store], ".encpipe-tmp.x", write, "x")
    assert uploads[0].proc.returncode == -signal.SIGKILL
    assert store.unfinished == [
        "rclone rcat did not end within 1 s of SIGTERM and was killed: an unfinished upload of here:up/.encpipe-tmp.x "
        "may be left (an S3 multipart upload: rclone backend list-multipart-uploads REMOTE:BUCKET)"]
    assert store.unremoved == {".encpipe-tmp.x": "here:up/.encpipe-tmp.x not removed: rclone deletefile: 2026/12/05 "
                                                 "01:00:00 NOTICE: Failed to deletefile: AccessDenied: access denied"}


def test_the_unit_stops_encpipe_backup_alone():
    """systemd's default stop (KillMode=control-group) sends SIGTERM to every process
    of the unit at once: rclone rcat then begins to abort its multipart upload, and
    the second SIGTERM, encpipe-backup's own, kills it before that is done (rclone
    dies of a second signal). KillMode=mixed sends it to encpipe-backup alone, which
    stops its children itself; SIGKILL still goes to all, TimeoutStopSec= later."""
    from encpipe.backup import unit

    lines = unit.render("/usr/local/bin/encpipe-backup", []).splitlines()
    assert "KillMode=mixed" in lines and lines.index("KillMode=mixed") > lines.index("[Service]")


def test_a_server_that_refuses_the_upload_fails_the_run_and_keeps_nothing(key_file, tmp_path):
    """A server that refuses every write (`rclone serve s3 --read-only`): 74, one
    line with rclone's error, nothing on standard output, no object and no
    unfinished multipart upload (this one refuses the first request: none began,
    even with RCLONE_S3_LEAVE_PARTS_ON_ERROR=true)."""
    from s3server import S3Server

    server = S3Server(str(tmp_path / "ro"), options=["--read-only"])
    try:
        env = fake_env(tmp_path, "head -c 3000000 /dev/urandom | base64\n", **server.env)
        done = subprocess.run([BACKUP, "--no-globals", "--compress", "none", "--to", f"{server.location}/refused",
                               "--key-file", key_file, "shop"], env=env, capture_output=True, timeout=300)
        lines = done.stderr.decode().splitlines()
        assert (done.returncode, done.stdout, len(lines)) == (74, b"", 1), lines
        assert lines[0].startswith("encpipe-backup: error: backup of shop failed (status 74): cannot upload "
                                   f"{server.location}/refused/.encpipe-tmp."), lines
        assert lines[0].endswith("; nothing was stored"), lines
        assert multipart_uploads(server, "refused") == [] and server.objects("refused") == []
    finally:
        server.stop()


def test_a_dump_that_fails_mid_way_leaves_nothing_on_s3(key_file, s3, tmp_path):
    """pg_dump fails after 8 MB (the upload a multipart upload by then): the seal
    ends its stream, rclone completes the upload under the run's temporary name,
    and the run removes it: 1, one line, no object, no unfinished upload."""
    env = fake_env(tmp_path, "head -c 6000000 /dev/urandom | base64; exit 1\n", **s3.env)
    done = subprocess.run([BACKUP, "--no-globals", "--compress", "none", "--to", f"{s3.location}/dumpfailed",
                           "--key-file", key_file, "shop"], env=env, capture_output=True, timeout=300)
    lines = done.stderr.decode().splitlines()
    assert (done.returncode, done.stdout) == (1, b"") and lines[-1].startswith(
        "encpipe-backup: error: backup of shop failed (status 1): "), lines
    assert multipart_uploads(s3, "dumpfailed") == [] and s3.objects("dumpfailed") == []


# --- a signal as the upload's rclone starts ------------------------------------------

COUNTED = """#!/bin/sh
# rclone, each rcat's process id written to %s first (exec keeps it)
[ "$1" = rcat ] && echo $$ >> %s
exec %s "$@"
"""


def _running(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_signal_as_the_upload_s_rclone_starts_stops_it(key_file, tmp_path):
    """SIGTERM just as `rclone rcat` is started (Popen returned, the upload not yet
    recorded): the run stops that rclone, which is in a process group of its own,
    and dies of the signal (143), nothing on the remote. Before, the rclone was
    never recorded, so never stopped: it ran on after the run, read the end of its
    input and stored an empty object under the run's temporary name, maybe after
    the run had removed that name."""
    from test_signal_commits import signalled, signalled_env

    bucket, wrapper, pids = tmp_path / "bucket", tmp_path / "rclone", tmp_path / "pids"
    bucket.mkdir()
    (tmp_path / "rclone.conf").write_text("")
    wrapper.write_text(COUNTED % (pids, pids, rclone_word()))
    wrapper.chmod(0o755)
    env = fake_env(tmp_path, BIG_SLOW_DUMP, RCLONE=str(wrapper), RCLONE_CONFIG=str(tmp_path / "rclone.conf"),
                   RCLONE_CONFIG_HERE_TYPE="alias", RCLONE_CONFIG_HERE_REMOTE=str(bucket))
    site = signalled_env(tmp_path, "Popen", "'rcat' in args[0]", signal.SIGTERM, owner="subprocess")
    env["PYTHONPATH"] = site["PYTHONPATH"]
    done = subprocess.run([BACKUP, "--no-globals", "--compress", "none", "--to", "here:up", "--key-file", key_file,
                           "shop"], env=env, capture_output=True, timeout=300, start_new_session=True)
    assert signalled(tmp_path)
    [pid] = pids.read_text().split()
    alive = _running(int(pid))
    if alive:
        os.kill(int(pid), signal.SIGKILL)
    assert (done.returncode, done.stdout, done.stderr, alive) == (143, b"", INTERRUPTED, False)
    assert not (bucket / "up").exists() or os.listdir(bucket / "up") == []


def test_an_rclone_killed_as_the_run_is_interrupted_again_is_said(tmp_path, monkeypatch):
    """Interrupted again while rclone aborts its upload (a second Ctrl-C), the run kills
    it at once: the store keeps the sentence that says what may be left, for the run's
    line. Before, that kill went unsaid: an interrupted run prints no line unless
    something is left, and an S3 multipart upload was left, in no listing."""
    from encpipe.backup import storage

    store, bucket, uploads = _recorded_uploads(tmp_path, monkeypatch)

    def write(out):
        out.write(b"x" * 300000)
        proc = uploads[0].proc
        real = proc.wait

        def wait(timeout=None):  # the wait for rclone's abort is interrupted again
            if timeout is not None:
                raise KeyboardInterrupt
            return real()

        proc.wait = wait
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        storage.write_new([store], ".encpipe-tmp.x", write, "x")
    assert uploads[0].proc.returncode == -signal.SIGKILL
    assert store.unfinished == [
        "rclone rcat was killed, the run interrupted again while it aborted its upload: an unfinished upload of "
        "here:up/.encpipe-tmp.x may be left (an S3 multipart upload: rclone backend list-multipart-uploads "
        "REMOTE:BUCKET)"]


def test_job_abort_says_what_it_could_not_remove(tmp_path):
    """`job abort` whose temporary object the remote will not delete: a warning naming it
    (the run's removal, recorded all the same). Before, nothing: status 0, no line."""
    remote, bucket = stubborn_remote(tmp_path)
    (bucket / "up").mkdir()
    (bucket / "up" / ".encpipe-tmp.x").write_bytes(b"partial")
    done = subprocess.run([sys.executable, "-m", "encpipe.backup", "abort", "--to", "here:up", "--database", "shop",
                           "--started", "1", ".encpipe-tmp.x"], env={**python_env(), **remote}, capture_output=True,
                          stdin=subprocess.DEVNULL, timeout=300)
    assert (done.returncode, done.stdout) == (0, b"")
    assert done.stderr.decode() == ("encpipe-backup: warning: here:up/.encpipe-tmp.x not removed: rclone deletefile: "
                                    "2026/12/05 01:00:00 NOTICE: Failed to deletefile: AccessDenied: access denied\n")
    assert os.listdir(bucket / "up") == [".encpipe-tmp.x"]


def test_a_commit_whose_rename_fails_says_what_it_could_not_remove(tmp_path):
    """`job commit` whose rename fails (NAME is there already) removes TEMP as abort does:
    refused, a warning names it before the run's line. Before, nothing said it was left."""
    remote, bucket = stubborn_remote(tmp_path)
    (bucket / "up").mkdir()
    (bucket / "up" / ".encpipe-tmp.x").write_bytes(b"partial")
    (bucket / "up" / "shop_20261205T000000Z.sql.enc").write_bytes(b"there")
    done = subprocess.run([sys.executable, "-m", "encpipe.backup", "commit", "--to", "here:up", "--database", "shop",
                           "--kind", "sql", "--started", "1", "--", ".encpipe-tmp.x", "shop_20261205T000000Z.sql.enc"],
                          env={**python_env(), **remote}, capture_output=True, stdin=subprocess.DEVNULL, timeout=300)
    assert (done.returncode, done.stdout) == (74, b"")
    assert done.stderr.decode().splitlines() == [
        "encpipe-backup: warning: here:up/.encpipe-tmp.x not removed: rclone deletefile: 2026/12/05 01:00:00 NOTICE: "
        "Failed to deletefile: AccessDenied: access denied",
        "encpipe-backup: error: backup of shop failed (status 74): here:up/shop_20261205T000000Z.sql.enc already "
        "exists; nothing was stored"]
    assert sorted(os.listdir(bucket / "up")) == [".encpipe-tmp.x", "shop_20261205T000000Z.sql.enc"]
