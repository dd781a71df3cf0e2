"""A signal at a commit point: the outcome and the exit status agree.

`encpipe rewrap --in-place FILE` once died of SIGTERM after its rename had
replaced FILE: the rewrap was complete, yet the status was 143, and whoever ran
it believed FILE unchanged. A signal that came between the creation of the
hidden file and the `try` that removes it on failure left that file behind.
Now, once the change is visible (a rename, a removal), a signal no longer turns
it into a failure: the change is reported, and `seal -o` and `rewrap --in-place`
exit 0 (README "Exit status"); before it, it leaves nothing behind.

Each process is signalled at exactly that point: a sitecustomize.py on
PYTHONPATH wraps the os function that makes the change, signals the process
right after it, and runs bytecodes (at any of which a handler could run)."""

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time

import pytest

import test_mutants_backup_command_line
from fuzz.craft import clean_env, command
from test_backup_restore import BACKUP

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEY = "3e" * 32
ADDED = "4f" * 32
WAIT = 60
SIGNALS = [signal.SIGTERM, signal.SIGINT, signal.SIGHUP]
IDS = ["SIGTERM", "SIGINT", "SIGHUP"]

# Signals the process right after OWNER.FUNCTION(*args) returns (os.rename, say), when
# `condition` holds (`args`, the call's arguments, each as a string): once only.
SITE = """
import os, signal, subprocess, sys, time

_owner = {owner}
_real = getattr(_owner, {function!r})
_done = []

def _wrapped(*args, **kwargs):
    result = _real(*args, **kwargs)
    args = [os.fsdecode(a) if isinstance(a, (str, bytes)) else str(a) for a in args]
    if not _done and ({condition}):
        _done.append(1)
        open({mark!r}, "w").close()  # the test knows it came
        os.kill(os.getpid(), {signum})
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline:  # bytecodes: any of them could run the handler
            pass
    return result

setattr(_owner, {function!r}, _wrapped)
"""


def signalled_env(tmp_path, function, condition, signum, env=None, owner="os"):
    """`env` (else a clean one) with a sitecustomize.py that signals at `owner`.`function`."""
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(SITE.format(owner=owner, function=function, condition=condition,
                                                       signum=int(signum), mark=str(tmp_path / "signalled")))
    env = clean_env(env)
    env["PYTHONPATH"] = os.pathsep.join([str(site), ROOT])
    return env


def marked(mark):
    """The pids of this user's processes whose environment holds `mark`."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if mark.encode() in f.read().split(b"\0"):
                    found.append(int(pid))
        except OSError:
            pass
    return found


@contextlib.contextmanager
def killing_marked(mark):
    """Kills, at the end, every process still marked with `mark` (a test that failed)."""
    try:
        yield
    finally:
        for pid in marked(mark):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def signalled(tmp_path):
    """Whether the sitecustomize.py of signalled_env did signal (its condition was met)."""
    return (tmp_path / "signalled").exists()


def _defaults():
    for sig in SIGNALS:
        signal.signal(sig, signal.SIG_DFL)


def run(argv, env, data=b""):
    return subprocess.run(argv, input=data, env=env, capture_output=True, timeout=WAIT, preexec_fn=_defaults)


def _opened(path, key):
    done = subprocess.run(command("open", "--key-file", str(key), str(path)), env=clean_env(), capture_output=True,
                          timeout=WAIT)
    return done.returncode, done.stdout


@pytest.fixture
def keys(tmp_path):
    folder = tmp_path / "keys"
    folder.mkdir()
    paths = []
    for name, value in (("old.key", KEY), ("added.key", ADDED)):
        (folder / name).write_text(value + "\n")
        (folder / name).chmod(0o600)
        paths.append(folder / name)
    return paths


def _sealed_in_work(tmp_path, key):
    """(a private directory `work`, its `db.enc`: b"plaintext" sealed to `key`)."""
    work = tmp_path / "work"
    work.mkdir(mode=0o700)
    target = work / "db.enc"
    sealed = run(command("seal", "--key-file", str(key), "-o", str(target)), clean_env(), b"plaintext")
    assert sealed.returncode == 0, sealed.stderr
    return work, target


# --- encpipe seal -o, rewrap --in-place ------------------------------------------


@pytest.mark.parametrize("sig", SIGNALS, ids=IDS)
def test_rewrap_in_place_signalled_just_after_its_rename_exits_0(tmp_path, keys, sig):
    old, added = keys
    work, target = _sealed_in_work(tmp_path, old)
    env = signalled_env(tmp_path, "rename", "args[1] == 'db.enc'", sig)
    done = run(command("rewrap", "--in-place", str(target), "--key-file", str(old), "--add-key-file", str(added)),
               env)
    assert signalled(tmp_path)
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")
    assert sorted(os.listdir(work)) == ["db.enc"]
    assert _opened(target, added) == (0, b"plaintext")


@pytest.mark.parametrize("sig", SIGNALS, ids=IDS)
@pytest.mark.parametrize("existing", [True, False], ids=["replacing", "new"])
def test_seal_to_a_file_signalled_just_after_its_rename_exits_0(tmp_path, keys, sig, existing):
    old, _ = keys
    work = tmp_path / "work"
    work.mkdir(mode=0o700)
    out = work / "out.enc"
    if existing:
        out.write_bytes(b"the old file")
    env = signalled_env(tmp_path, "rename", "args[1] == 'out.enc'", sig)
    done = run(command("seal", "--key-file", str(old), "-o", str(out)), env, b"plaintext")
    assert signalled(tmp_path)
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")
    assert sorted(os.listdir(work)) == ["out.enc"]
    assert _opened(out, old) == (0, b"plaintext")


@pytest.mark.parametrize("sig", SIGNALS, ids=IDS)
@pytest.mark.parametrize("command_line", ["seal", "rewrap"])
def test_a_signal_just_as_the_hidden_file_is_created_leaves_nothing(tmp_path, keys, sig, command_line):
    """os.open has made the hidden file; the signal comes before the code that removes
    it on failure was reached: it stayed. Now it is removed, FILE as it was, 128 + N."""
    old, added = keys
    work, target = _sealed_in_work(tmp_path, old)
    before = target.read_bytes()
    env = signalled_env(tmp_path, "open", "args[0].startswith('.encpipe-tmp.')", sig)
    if command_line == "seal":
        argv = command("seal", "--key-file", str(old), "-o", str(target))
    else:
        argv = command("rewrap", "--in-place", str(target), "--key-file", str(old), "--add-key-file", str(added))
    done = run(argv, env, b"other plaintext")
    assert signalled(tmp_path)
    assert (done.returncode, done.stdout, done.stderr) == (-sig, b"", b"")
    assert sorted(os.listdir(work)) == ["db.enc"]
    assert target.read_bytes() == before


def test_the_signal_helper_signals_where_it_says(tmp_path, keys):
    """The sitecustomize.py above does signal the process: one that renames nothing of
    that name is not signalled, one that does dies of it where it is not held."""
    old, _ = keys
    env = signalled_env(tmp_path, "getcwd", "True", signal.SIGTERM)
    done = run([sys.executable, "-c", "import os; os.getcwd(); print('after')"], env)
    assert (done.returncode, done.stdout) == (-signal.SIGTERM, b"")
    assert signalled(tmp_path)
    os.unlink(tmp_path / "signalled")
    env = signalled_env(tmp_path, "rename", "args[1] == 'elsewhere'", signal.SIGTERM)
    done = run(command("seal", "--key-file", str(old), "-o", str(tmp_path / "x.enc")), env, b"x")
    assert (done.returncode, done.stdout, done.stderr, signalled(tmp_path)) == (0, b"", b"", False)
    assert json.loads(run(command("inspect", "--json", str(tmp_path / "x.enc")), clean_env()).stdout)["version"] == 2


# --- encpipe-rotate, encpipe-migrate: one file at a time -------------------------------

NEW = "5e" * 32
ENCPIPE = f"{shlex.quote(sys.executable)} -m encpipe"


def _new_key_and_work(tmp_path):
    """(the new key file a rotation goes to, an empty private directory of files to rotate)."""
    new = tmp_path / "keys" / "new.key"
    new.write_text(NEW + "\n")
    new.chmod(0o600)
    work = tmp_path / "work"
    work.mkdir(mode=0o700)
    return new, work


def _json_lines(done):
    return [json.loads(line) for line in done.stdout.decode().splitlines()]


# Python's own death by the signal (run_script), or migrate's exit(143) for SIGTERM, 130 for SIGINT
ROTATE_STATUS = {signal.SIGTERM: -signal.SIGTERM, signal.SIGINT: -signal.SIGINT, signal.SIGHUP: -signal.SIGHUP}
MIGRATE_STATUS = {signal.SIGTERM: 143, signal.SIGINT: 130, signal.SIGHUP: -signal.SIGHUP}


@pytest.mark.parametrize("sig", SIGNALS, ids=IDS)
def test_rotate_signalled_just_after_a_rename_reports_that_file(tmp_path, keys, sig):
    """a.enc renamed, then the signal: a.enc's "rotated" line is printed, then rotate
    dies of the signal, b.enc untouched. Before, a.enc was rotated with no line."""
    old, _ = keys
    new, work = _new_key_and_work(tmp_path)
    for name, data in (("a.enc", b"first"), ("b.enc", b"second")):
        made = run(command("seal", "--key-file", str(old), "-o", str(work / name)), clean_env(), data)
        assert made.returncode == 0, made.stderr
    b_before = (work / "b.enc").read_bytes()
    env = signalled_env(tmp_path, "rename", "args[1] == 'a.enc'", sig, {"ENCPIPE": ENCPIPE})
    done = run([sys.executable, os.path.join(ROOT, "scripts", "encpipe-rotate"), "--old-key-file", str(old),
                "--new-key-file", str(new), str(work)], env)
    assert signalled(tmp_path)
    assert (done.returncode, done.stderr) == (ROTATE_STATUS[sig], b"")
    assert [(line["file"], line["status"]) for line in _json_lines(done)] == [(str(work / "a.enc"), "rotated")]
    assert sorted(os.listdir(work)) == ["a.enc", "b.enc"]
    assert _opened(work / "a.enc", new) == (0, b"first")
    assert (work / "b.enc").read_bytes() == b_before


@pytest.mark.parametrize("sig", SIGNALS, ids=IDS)
def test_migrate_signalled_just_after_a_rename_reports_that_file(tmp_path, sig):
    """a.sql.enc converted and renamed, then the signal: its "migrated" line is printed,
    b.sql.enc is left in the old format. Before, a.sql.enc was converted with no line."""
    import io

    from encpipe import legacy

    old = os.urandom(32)
    new = tmp_path / "new.key"
    new.write_text(NEW + "\n")
    new.chmod(0o600)
    work = tmp_path / "work"
    work.mkdir(mode=0o700)
    for name, data in (("a.sql.enc", b"first"), ("b.sql.enc", b"second")):
        with open(work / name, "wb") as f:
            legacy.seal_legacy(io.BytesIO(data), f, old)
    b_before = (work / "b.sql.enc").read_bytes()
    env = signalled_env(tmp_path, "rename", "args[1] == 'a.sql.enc'", sig,
                        {"ENCPIPE": ENCPIPE, "BACKUP_ENCRYPTION_KEY": old.hex()})
    done = run([sys.executable, os.path.join(ROOT, "scripts", "encpipe-migrate"), "--key-file", str(new),
                str(work)], env)
    assert signalled(tmp_path)
    assert (done.returncode, done.stderr) == (MIGRATE_STATUS[sig], b"")
    assert [(line["file"], line["status"]) for line in _json_lines(done)] == [("a.sql.enc", "migrated")]
    assert sorted(os.listdir(work)) == ["a.sql.enc", "b.sql.enc"]
    assert _opened(work / "a.sql.enc", new) == (0, b"first")
    assert (work / "b.sql.enc").read_bytes() == b_before


# --- encpipe-prune ----------------------------------------------------------------------


@pytest.mark.parametrize("sig", SIGNALS, ids=IDS)
@pytest.mark.parametrize("function", ["unlink", "rename", "mkdir"])
def test_prune_signalled_just_after_a_removal_reports_it_and_its_status(tmp_path, sig, function):
    """The first backup unlinked (or moved into prune's hold directory, the step before,
    or that directory just made), then the signal: prune removes the other one its
    policy does not keep, prints its report and exits 0. Before, it died of the signal
    with the first one gone and no report (nor the second removed); signalled in the
    hold directory, it left the backup there, in a hidden `.encpipe-removing.*`
    directory; signalled as it made that directory, it left the directory."""
    from test_backup_dir import ENV
    from test_backup_dir_hostile import three_days

    work = tmp_path / "b"
    work.mkdir(mode=0o700)
    oldest, old, newest = three_days(work)
    condition = "args[0].startswith('.encpipe-removing.')" if function == "mkdir" else f"args[0] in {[oldest, old]!r}"
    env = signalled_env(tmp_path, function, condition, sig, ENV)
    done = run([sys.executable, os.path.join(ROOT, "scripts", "encpipe-prune"), "--keep-last", "1", str(work)], env)
    assert signalled(tmp_path)
    assert (done.returncode, done.stderr) == (0, b"")
    report = json.loads(done.stdout)
    assert sorted(r["filename"] for r in report["removed"]) == [oldest, old]
    assert [r["filename"] for r in report["kept"]] == [newest]
    assert os.listdir(work) == [newest]


# --- encpipe keygen -o ---------------------------------------------------------------------

# where the signal comes: the file just created; _print_or_remove about to print (SIGPIPE
# ignored first, before its `try`); the public key printed (SIGPIPE set back, after it)
PIPE = "args[0] == str(signal.SIGPIPE) and args[1] == str(signal.{})"
KEYGEN_POINTS = {"created": ("os", "open", "args[0] == {key!r}"),
                 "printing": ("signal", "signal", PIPE.format("SIG_IGN")),
                 "printed": ("signal", "signal", PIPE.format("SIG_DFL") + " and os.path.exists({key!r})")}


@pytest.mark.parametrize("sig", SIGNALS, ids=IDS)
@pytest.mark.parametrize("point", list(KEYGEN_POINTS))
def test_keygen_signalled_around_its_file_leaves_it_only_with_its_public_key_and_0(tmp_path, sig, point):
    """Before the public key is printed, a signal leaves no key file (keygen dies of it);
    once printed, the run is done: the file stays, 0. Before, a signal just after the
    file's creation, or just before the print's `try`, left a key file no one saw the
    public half of (an empty one, the first time), and one just after the print left the
    file and said 143."""
    work = tmp_path / "work"
    work.mkdir(mode=0o700)
    key = work / "id.key"
    owner, function, condition = KEYGEN_POINTS[point]
    env = signalled_env(tmp_path, function, condition.format(key=str(key)), sig, owner=owner)
    done = run(command("keygen", "--x25519", "-o", str(key)), env)
    assert signalled(tmp_path)
    if point == "printed":
        assert (done.returncode, done.stderr) == (0, b"")
        assert os.listdir(work) == ["id.key"] and done.stdout.decode().startswith("encpipe1")
        public = run(command("pubkey", str(key)), clean_env())
        assert public.stdout == done.stdout
    else:
        assert (done.returncode, done.stdout, done.stderr) == (-sig, b"", b"")
        assert os.listdir(work) == []


# --- a script's encpipe child, signalled as it starts --------------------------------------



@pytest.mark.parametrize("sig", SIGNALS, ids=IDS)
def test_rotate_signalled_as_its_inspect_child_starts_stops_it(tmp_path, keys, sig):
    """The signal came inside Popen, the `encpipe inspect` of a file forked but not yet
    recorded: rotate died of it and the child (here one that hangs) ran on. It is now
    started and recorded in one step (childerr.run), and stopped with the run."""
    old, _ = keys
    new, work = _new_key_and_work(tmp_path)
    made = run(command("seal", "--key-file", str(old), "-o", str(work / "a.enc")), clean_env(), b"first")
    assert made.returncode == 0, made.stderr
    stand_in = tmp_path / "encpipe"  # inspect hangs, with a child of its own; the rest is encpipe
    stand_in.write_text(f'#!/bin/sh\n[ "$1" = inspect ] && {{ sleep 1000 & wait; }}\nexec {ENCPIPE} "$@"\n')
    stand_in.chmod(0o755)
    mark = f"ROTATE_MARK={tmp_path}"
    env = signalled_env(tmp_path, "_execute_child", "'inspect' in args[1]", sig,
                        {"ENCPIPE": str(stand_in), "ROTATE_MARK": str(tmp_path)}, owner="subprocess.Popen")
    with killing_marked(mark):
        done = run([sys.executable, os.path.join(ROOT, "scripts", "encpipe-rotate"), "--old-key-file", str(old),
                    "--new-key-file", str(new), str(work)], env)
        assert signalled(tmp_path)
        assert (done.returncode, done.stdout, done.stderr) == (-sig, b"", b"")
        time.sleep(0.5)  # a process killed is reaped by init
        assert marked(mark) == []


# --- encpipe-backup -----------------------------------------------------------------------

stand_ins = test_mutants_backup_command_line.stand_ins  # the fixture: a pg_dump, zstd and gzip of the test's


@pytest.mark.parametrize("sig", SIGNALS, ids=IDS)
def test_backup_signalled_just_after_its_rename_is_stored_said_and_0(stand_ins, sig):
    """The dump renamed into place in DIR, then the signal: the backup is stored, so the run
    reads it back, prints its line and exits 0 (job.cmd_commit's hold_for_good). A mutant
    without it (the signal held only until the renames were done) died of the signal with
    the backup stored and no line: whoever ran it took the night's backup for missing."""
    env, tmp_path = stand_ins
    condition = "len(args) > 1 and args[1].startswith('shop_') and args[1].endswith('.enc')"
    env = signalled_env(tmp_path, "rename", condition, sig, env)
    done = run([BACKUP, "--dir", str(tmp_path / "b"), "--no-globals", "shop"], env)
    assert signalled(tmp_path)
    said = done.stderr.decode().splitlines()  # no server here: the marker's warning only
    assert done.returncode == 0 and [s for s in said if "the location's .encpipe-cluster not checked" not in s] == []
    line = json.loads(done.stdout)
    assert line["filename"] in os.listdir(tmp_path / "b") and line["bytes"] > 0
    assert not [name for name in os.listdir(tmp_path / "b") if name.startswith(".encpipe-tmp")]
