"""scripts/encpipe-rotate (issue 3, acceptance 7): a backup directory moved from
the old key to the new key by header rewrites, verified before each rename,
safe to kill and re-run, foreign files left alone, and no secret on any argv."""

import fcntl
import json
import os
import random
import re
import shlex
import signal
import stat
import subprocess
import sys
import time

import pytest

import cliutil
from cliutil import ok, run, write_secret


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "encpipe-rotate")
ENCPIPE = f"{shlex.quote(sys.executable)} -m encpipe"
CHUNK = 16 * 1024
TEMP = re.compile(r"^\.encpipe-rotate\..+\.tmp$")


# --- helpers ------------------------------------------------------------------


def rotate_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCPIPE")}
    env["ENCPIPE"] = ENCPIPE
    env.update(extra)
    return env


def rotate(args, env=None, **kwargs):
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True,
                          env=env or rotate_env(), **kwargs)


def lines(done):
    """The JSON lines of a run, by file name relative to the directory."""
    records = [json.loads(line) for line in done.stdout.decode().splitlines()]
    return {os.path.basename(r["file"]) if "/sub/" not in r["file"] else "sub/" + os.path.basename(r["file"]): r
            for r in records}


def assert_one_line_error(stderr, prog="encpipe-rotate"):
    cliutil.assert_one_line_error(stderr, prog)


class World:
    """Old key, new key, escrow identity, and a backup directory of mixed files."""

    def __init__(self, tmp_path):
        self.tmp = tmp_path
        keys = tmp_path / "keys"
        keys.mkdir()
        self.old_hex, self.other_old_hex, self.new_hex = (os.urandom(32).hex() for _ in range(3))
        self.old = write_secret(keys / "old.key", f"# retiring\n{self.old_hex}\n{self.other_old_hex}\n")
        self.old_a = write_secret(keys / "old-a.key", self.old_hex + "\n")
        self.old_b = write_secret(keys / "old-b.key", self.other_old_hex + "\n")
        self.new = write_secret(keys / "new.key", self.new_hex + "\n")
        self.escrow_id = str(keys / "escrow.id")
        self.escrow_pub = ok(run(["keygen", "--x25519", "-o", self.escrow_id])).decode().strip()
        self.dir = tmp_path / "backups"
        self.dir.mkdir()
        self.plain, self.originals = {}, {}

    def ids(self, path):
        return ok(run(["keyid", "--key-file", path])).decode().split()

    def add(self, name, *key_args, size=None, mode=0o600):
        data = os.urandom(size if size is not None else random.randrange(0, 4 * CHUNK))
        sealed = ok(run(["seal", "--chunk-size", "16K", *key_args], data))
        path = self.dir / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(sealed)
        path.chmod(mode)
        self.plain[name], self.originals[name] = data, sealed
        return path

    def add_foreign(self, name, content):
        path = self.dir / name
        path.write_bytes(content)
        self.originals[name] = content

    def mixed(self):
        """Files under the old keys, under the new key, with and without escrow, and foreign ones."""
        self.add("a-old.enc", "--key-file", self.old_a, size=3 * CHUNK + 5)
        self.add("sub/b-old-other.enc", "--key-file", self.old_b, size=0)
        self.add("c-old-escrow.enc", "--key-file", self.old_a, "--recipient", self.escrow_pub)
        self.add("d-new.enc", "--key-file", self.new, "--recipient", self.escrow_pub)
        self.add("e-new-no-escrow.enc", "--key-file", self.new)
        self.add_foreign("notes.txt", b"not encrypted\n")
        self.add_foreign("dump.sql.gz", b"\x1f\x8b\x08" + os.urandom(500))
        self.add_foreign("ENCPIPE", b"ENCPIP")  # a foreign file a magic check must not trip on

    def small(self):
        """Two files under the old keys, one already rotated, one foreign."""
        self.add("a-old.enc", "--key-file", self.old_a, size=2 * CHUNK + 1)
        self.add("b-old.enc", "--key-file", self.old_b, "--recipient", self.escrow_pub, size=CHUNK + 7)
        self.add("c-new.enc", "--key-file", self.new, "--recipient", self.escrow_pub)
        self.add_foreign("notes.txt", b"not encrypted\n")

    def args(self, escrow=True):
        extra = ["--escrow-recipient", self.escrow_pub] if escrow else []
        return ["--old-key-file", self.old, "--new-key-file", self.new, *extra, str(self.dir)]

    def names(self):
        found = []
        for directory, _, files in os.walk(self.dir):
            found += [os.path.relpath(os.path.join(directory, f), self.dir) for f in files]
        return sorted(found)

    def temps(self):
        return [n for n in self.names() if TEMP.match(os.path.basename(n))]

    def assert_intact_or_rotated(self):
        """After any interruption: every file is there, whole, either as it was or rotated."""
        assert sorted(n for n in self.names() if n not in self.temps()) == sorted(self.originals)
        for name, original in self.originals.items():
            now = (self.dir / name).read_bytes()
            if now == original:
                continue
            assert name in self.plain, name  # a foreign file never changes
            assert ok(run(["open", "--key-file", self.new], now)) == self.plain[name], name

    def assert_all_rotated(self, escrow=True):
        assert self.temps() == []
        assert self.names() == sorted(self.originals)
        new_id, escrow_id = self.ids(self.new)[0], self.ids(self.escrow_id)[0]
        old_ids = set(self.ids(self.old))
        for name, data in self.plain.items():
            sealed = (self.dir / name).read_bytes()
            assert ok(run(["open", "--key-file", self.new], sealed)) == data, name
            code, out, _ = run(["open", "--key-file", self.old], sealed)
            assert (code, out) == (77, b""), name
            ids = {s["key_id"] for s in json.loads(ok(run(["inspect", "--json"], sealed)))["slots"]}
            assert new_id in ids and not ids & old_ids, name
            if escrow:
                assert escrow_id in ids
                assert ok(run(["open", "--identity", self.escrow_id], sealed)) == data, name
        for name, content in self.originals.items():
            if name not in self.plain:
                assert (self.dir / name).read_bytes() == content, name


@pytest.fixture
def world(tmp_path):
    return World(tmp_path)


# --- the whole directory ------------------------------------------------------


def test_rotates_a_mixed_directory_and_a_rerun_changes_nothing(world):
    world.mixed()
    (world.dir / "a-old.enc").chmod(0o640)
    os.utime(world.dir / "a-old.enc", ns=(1_500_000_000_000_000_000, 1_600_000_000_000_000_000))
    done = rotate(world.args())
    assert done.returncode == 0, done.stderr
    status = {name: r["status"] for name, r in lines(done).items()}
    assert status == {
        "a-old.enc": "rotated", "sub/b-old-other.enc": "rotated", "c-old-escrow.enc": "rotated",
        "d-new.enc": "skipped", "e-new-no-escrow.enc": "rotated",
        "notes.txt": "foreign", "dump.sql.gz": "foreign", "ENCPIPE": "foreign",
    }
    world.assert_all_rotated()
    assert (world.dir / "d-new.enc").read_bytes() == world.originals["d-new.enc"]
    kept = (world.dir / "a-old.enc").stat()
    # its modification time a second later: a mirror's sync compares sizes and times
    # (tests/test_rotate_mirrors.py)
    assert (stat.S_IMODE(kept.st_mode), kept.st_mtime_ns) == (0o640, 1_600_000_001_000_000_000)
    report = lines(done)["a-old.enc"]
    assert report["plaintext_bytes"] == 3 * CHUNK + 5
    assert report["removed"] == world.ids(world.old_a)
    # Only the header and the v2 trailer changed: the payload bytes are the original ones.
    new = (world.dir / "a-old.enc").read_bytes()
    old = world.originals["a-old.enc"]
    assert _payload(new) == _payload(old)

    snapshot = {n: (world.dir / n).read_bytes() for n in world.names()}
    again = rotate(world.args())
    assert again.returncode == 0, again.stderr
    assert {r["status"] for n, r in lines(again).items() if n in world.plain} == {"skipped"}
    assert {n: (world.dir / n).read_bytes() for n in world.names()} == snapshot


def test_a_new_key_or_an_escrow_key_given_twice_gets_one_slot(world):
    """--new-key-file FILE twice, or one escrow key in lower and in upper case: each
    was given to rewrap as many times, a slot each."""
    world.small()
    upper = "encpipe1" + world.escrow_pub[len("encpipe1"):].upper()
    done = rotate(["--old-key-file", world.old, "--new-key-file", world.new, "--new-key-file", world.new,
                   "--escrow-recipient", world.escrow_pub, "--escrow-recipient", upper, str(world.dir)])
    assert done.returncode == 0, done.stderr
    world.assert_all_rotated()
    for name in world.plain:
        ids = [s["key_id"] for s in json.loads(ok(run(["inspect", "--json"], (world.dir / name).read_bytes())))["slots"]]
        assert sorted(ids) == sorted([world.ids(world.new)[0], world.ids(world.escrow_id)[0]]), name


def test_new_key_may_be_an_identity_and_old_keys_separate_files(world):
    world.add("one.enc", "--key-file", world.old_a, "--key-file", world.old_b)
    world.add("two.enc", "--key-file", world.old_b)
    done = rotate(["--old-key-file", world.old_a, "--old-key-file", world.old_b,
                   "--new-key-file", world.escrow_id, str(world.dir)])
    assert done.returncode == 0, done.stderr
    assert {r["status"] for r in lines(done).values()} == {"rotated"}
    escrow_id = world.ids(world.escrow_id)
    for name, data in world.plain.items():
        sealed = (world.dir / name).read_bytes()
        slots = json.loads(ok(run(["inspect", "--json"], sealed)))["slots"]
        assert slots == [{"type": "x25519", "key_id": escrow_id[0]}]
        assert ok(run(["open", "--identity", world.escrow_id], sealed)) == data


def test_without_encpipe_on_path_rotate_runs_its_own_python(world):
    """As from cron or systemd with a venv install: no ENCPIPE, no encpipe on PATH."""
    world.small()
    env = rotate_env(PATH="/usr/bin:/bin", PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(SCRIPT))))
    del env["ENCPIPE"]
    done = rotate(world.args(), env=env)
    assert done.returncode == 0, done.stderr
    world.assert_all_rotated()


def test_dry_run_changes_nothing(world):
    world.small()
    done = rotate(["--dry-run", *world.args()])
    assert done.returncode == 0, done.stderr
    assert lines(done)["a-old.enc"]["status"] == "would-rotate"
    assert lines(done)["c-new.enc"]["status"] == "skipped"
    for name, content in world.originals.items():
        assert (world.dir / name).read_bytes() == content


def test_hidden_files_and_symbolic_links_are_left_alone(world, tmp_path):
    """Hidden files and directories, links to files and to directories: each left, and
    reported as ignored (a hidden directory and a link to one were passed over unsaid)."""
    world.add("a.enc", "--key-file", world.old_a)
    world.add(".hidden/b.enc", "--key-file", world.old_a)
    partial = world.dir / ".in-progress.enc"
    partial.write_bytes(world.originals["a.enc"][:50])
    os.symlink("a.enc", world.dir / "link.enc")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "c.enc").write_bytes(world.originals["a.enc"])
    os.symlink(outside, world.dir / "linked")
    done = rotate(world.args())
    assert done.returncode == 0, done.stderr
    got = lines(done)
    assert got[".in-progress.enc"] == {"file": str(partial), "status": "ignored", "reason": "hidden file"}
    assert got["link.enc"]["status"] == "ignored"
    assert got[".hidden"] == {"file": str(world.dir / ".hidden"), "status": "ignored", "reason": "hidden directory"}
    assert got["linked"] == {"file": str(world.dir / "linked"), "status": "ignored",
                             "reason": "symbolic link to a directory"}
    assert sorted(got) == [".hidden", ".in-progress.enc", "a.enc", "link.enc", "linked"]
    assert partial.read_bytes() == world.originals["a.enc"][:50]
    assert os.readlink(world.dir / "link.enc") == "a.enc"
    assert (world.dir / ".hidden" / "b.enc").read_bytes() == world.originals[".hidden/b.enc"]
    assert (outside / "c.enc").read_bytes() == world.originals["a.enc"]


@pytest.mark.parametrize("name", ["shared/x.enc", "shared/own/x.enc"])
def test_a_file_under_a_subdirectory_every_user_can_write_is_left(world, name):
    """DIR is checked when rotate starts; a subdirectory every user can write (or one
    below it: its own mode is safe) is checked when a file in it is written: that
    file's error (73), nothing written in it, the run fails (1)."""
    (world.dir / os.path.dirname(name)).mkdir(parents=True)
    world.add(name, "--key-file", world.old_a, size=100)
    os.chmod(world.dir / "shared", 0o777)
    done = rotate(world.args())
    path, shared = world.dir / name, world.dir / "shared"
    above = "" if path.parent == shared else f" (above {path.parent})"
    assert (done.returncode, done.stderr) == (1, b"encpipe-rotate: error: 1 file(s) could not be rotated\n")
    assert [json.loads(line) for line in done.stdout.decode().splitlines()] == [{
        "file": str(path), "status": "error", "step": "rename", "exit": 73,
        "error": f"{shared}{above} can be written by every user (mode o+w, not sticky); refusing to write in it"}]
    assert path.read_bytes() == world.originals[name] and sorted(os.listdir(path.parent)) == ["x.enc"]
    dry = rotate(["--dry-run", *world.args()])  # says so too (before, would-rotate and 0)
    assert (dry.returncode, dry.stdout) == (done.returncode, done.stdout), dry.stderr

def test_files_are_reported_in_name_order_each_directory_before_the_ones_below_it(world):
    for name in ("b/x.enc", "a/z/x.enc", "a/x.enc", "c.enc", "a/y/x.enc"):
        (world.dir / os.path.dirname(name)).mkdir(parents=True, exist_ok=True)
        world.add(name, "--key-file", world.old_a, size=10)
    done = rotate(world.args())
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["file"] for line in done.stdout.decode().splitlines()] == [
        str(world.dir / name) for name in ("c.enc", "a/x.enc", "a/y/x.enc", "a/z/x.enc", "b/x.enc")]

def test_a_file_swapped_for_a_fifo_after_its_magic_was_read_hangs_nothing(world):
    """Before: rotate read a file's magic (not through a link, never blocking), then
    ran `encpipe inspect` on its name; a writer of the directory who swapped it for a
    FIFO in between made rotate wait for ever, holding the directory's lock (so
    every encpipe-backup into it waited too). Now inspect reads the descriptor
    whose magic was read; the swapped name is then refused: an error line, 66."""
    world.add("a.enc", "--key-file", world.old_a)
    world.add("b.enc", "--key-file", world.old_a)
    wrapper = world.tmp / "encpipe-swapping"
    wrapper.write_text(
        "#!/bin/sh\n"
        'if [ "$1 $2" = "inspect --json" ] && [ "$SWAP_DONE" ] && [ ! -e "$SWAP_DONE" ]; then\n'
        '    : >"$SWAP_DONE"; mv "$SWAP_NAME" "$SWAP_NAME.moved"; mkfifo "$SWAP_NAME"\n'
        "fi\n"
        f'exec {ENCPIPE} "$@"\n')
    wrapper.chmod(0o755)
    done = rotate(world.args(), env=rotate_env(ENCPIPE=str(wrapper), SWAP_NAME=str(world.dir / "a.enc"),
                                               SWAP_DONE=str(world.tmp / "swapped")), timeout=60)
    assert (world.tmp / "swapped").exists()
    assert done.returncode == 1, done.stderr
    got = lines(done)
    assert (got["a.enc"]["status"], got["a.enc"]["step"], got["a.enc"]["exit"]) == ("error", "rewrap", 66)
    assert got["b.enc"]["status"] == "rotated"
    assert stat.S_ISFIFO(os.lstat(world.dir / "a.enc").st_mode)
    assert (world.dir / "a.enc.moved").read_bytes() == world.originals["a.enc"]
    assert world.temps() == []


def test_a_tree_nested_deeper_than_pythons_recursion_limit_is_rotated_not_a_traceback(world):
    """Before: os.walk recursed once a level (Python 3.11), so a writer of DIR who
    nested 1100 directories made encpipe-rotate end in a RecursionError traceback,
    rotating nothing past it. Now the walk keeps its own stack."""
    world.add("a.enc", "--key-file", world.old_a)
    deep = str(world.dir)
    try:
        for _ in range(1100):
            deep = os.path.join(deep, "d")
            os.mkdir(deep)
        with open(os.path.join(deep, "deep.enc"), "wb") as f:
            f.write(world.originals["a.enc"])
        done = rotate(world.args(), timeout=120)
        assert done.returncode == 0, done.stderr[-500:]
        assert done.stderr == b""
        got = lines(done)
        assert got["a.enc"]["status"] == got["deep.enc"]["status"] == "rotated"
    finally:  # bottom up, whatever is left there: shutil.rmtree (pytest's clean-up) recurses too
        while deep != str(world.dir):
            for name in os.listdir(deep) if os.path.isdir(deep) else []:
                if not os.path.isdir(os.path.join(deep, name)):
                    os.unlink(os.path.join(deep, name))
            if os.path.isdir(deep):
                os.rmdir(deep)
            deep = os.path.dirname(deep)


# --- failures: the file stays as it was ----------------------------------------


def test_a_file_no_given_key_opens_is_reported_and_left_alone(world):
    world.add("a.enc", "--key-file", world.old_a)
    stranger = write_secret(world.tmp / "stranger.key", os.urandom(32).hex())
    world.add("b-stranger.enc", "--key-file", stranger)
    done = rotate(world.args())
    assert done.returncode == 1
    got = lines(done)
    assert got["a.enc"]["status"] == "rotated"
    assert (got["b-stranger.enc"]["status"], got["b-stranger.enc"]["exit"]) == ("error", 77)
    assert (world.dir / "b-stranger.enc").read_bytes() == world.originals["b-stranger.enc"]
    assert world.temps() == []


def _payload(sealed):
    """The payload records: after the header, before the v2 trailer."""
    report = json.loads(ok(run(["inspect", "--json"], sealed)))
    return sealed[report["header_bytes"] : report["header_bytes"] + report["payload_bytes"]]


def test_a_damaged_payload_fails_verification_and_is_left_alone(world):
    """Cut at a chunk boundary, the header and sizes look fine; rewrap itself finds
    that the payload no longer matches the v2 trailer's commitment."""
    world.add("a.enc", "--key-file", world.old_a, size=3 * CHUNK)
    good = world.originals["a.enc"]
    cut = good[:len(good) - (CHUNK + 16)]
    (world.dir / "a.enc").write_bytes(cut)
    assert json.loads(ok(run(["inspect", "--json"], cut)))["chunks"] == 2
    done = rotate(world.args())
    assert done.returncode == 1
    record = lines(done)["a.enc"]
    assert (record["status"], record["step"], record["exit"]) == ("error", "rewrap", 65)
    assert (world.dir / "a.enc").read_bytes() == cut
    assert world.temps() == []


def test_a_corrupt_header_is_reported_and_left_alone(world):
    world.add("a.enc", "--key-file", world.old_a)
    damaged = bytearray(world.originals["a.enc"])
    damaged[20] ^= 1
    (world.dir / "a.enc").write_bytes(bytes(damaged))
    done = rotate(world.args())
    assert done.returncode == 1
    assert (lines(done)["a.enc"]["status"], lines(done)["a.enc"]["exit"]) == ("error", 65)
    assert (world.dir / "a.enc").read_bytes() == bytes(damaged)


def _wrapper(tmp_path, body):
    """An ENCPIPE command that runs `body` (sh) before the real encpipe; $n counts rewraps."""
    script = tmp_path / "encpipe-wrapper"
    script.write_text(
        "#!/bin/sh\n"
        f'counter="{tmp_path}/count"\n'
        'if [ "$1" = rewrap ]; then\n'
        '  n=$(cat "$counter" 2>/dev/null || echo 0); echo $((n + 1)) > "$counter"\n'
        f"{body}\n"
        "fi\n"
        f'exec "{sys.executable}" -m encpipe "$@"\n'
    )
    script.chmod(0o700)
    return str(script)


def test_killed_half_way_through_writing_a_file_then_rerun(world):
    """The second rewrap writes part of its output and then SIGKILLs encpipe-rotate."""
    world.small()
    wrapper = _wrapper(world.tmp, '  if [ "$n" = 1 ]; then head -c 300; kill -KILL "$PPID"; exit 1; fi')
    done = rotate(world.args(), env=rotate_env(ENCPIPE=wrapper))
    assert done.returncode == -signal.SIGKILL
    assert len(world.temps()) == 1  # the half-written output, under a temporary name only
    assert os.path.getsize(world.dir / world.temps()[0]) == 300
    world.assert_intact_or_rotated()
    assert lines(done)["a-old.enc"]["status"] == "rotated"
    assert (world.dir / "b-old.enc").read_bytes() == world.originals["b-old.enc"]

    again = rotate(world.args())
    assert again.returncode == 0, again.stderr
    records = [json.loads(line) for line in again.stdout.decode().splitlines()]
    assert [r["status"] for r in records if TEMP.match(os.path.basename(r["file"]))] == ["removed"]
    assert lines(again)["a-old.enc"]["status"] == "skipped"
    world.assert_all_rotated()


def test_a_failing_rewrap_or_verify_mid_way_leaves_that_file_and_goes_on(world):
    world.mixed()
    # Rewraps in order: a-old, c-old-escrow, e-new-no-escrow, sub/b-old-other. The second
    # fails after reading a little; the third and fourth write the input unchanged, which
    # verification must refuse (wrong slots; not openable with the new key).
    wrapper = _wrapper(world.tmp, '  if [ "$n" = 1 ]; then head -c 100 >/dev/null; echo "encpipe: error: '
                                  'cannot write output: disk full" >&2; exit 74; fi\n'
                                  '  if [ "$n" -ge 2 ]; then cat; exit 0; fi')
    done = rotate(world.args(), env=rotate_env(ENCPIPE=wrapper))
    assert done.returncode == 1
    got = {name: (r["status"], r.get("step"), r.get("exit")) for name, r in lines(done).items()}
    assert got["a-old.enc"] == ("rotated", None, None)
    assert got["c-old-escrow.enc"] == ("error", "rewrap", 74)
    assert "disk full" in lines(done)["c-old-escrow.enc"]["error"]
    assert got["e-new-no-escrow.enc"] == ("error", "verify", 70)
    assert got["sub/b-old-other.enc"] == ("error", "verify", 77)
    for name in ("c-old-escrow.enc", "e-new-no-escrow.enc", "sub/b-old-other.enc"):
        assert (world.dir / name).read_bytes() == world.originals[name]
    assert world.temps() == []
    world.assert_intact_or_rotated()
    again = rotate(world.args())
    assert again.returncode == 0, again.stderr
    world.assert_all_rotated()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sigkill_at_a_random_moment_then_rerun(tmp_path, seed):
    """Kill the script and its encpipe children while the k-th encpipe child (k at
    random) runs, after a further random delay; then re-run to the end."""
    rng = random.Random(seed)
    world = World(tmp_path)
    world.small()
    target, delay = rng.randint(4, 11), rng.uniform(0, 0.15)  # 4 children start up, 7 do the files
    child = subprocess.Popen([sys.executable, SCRIPT, *world.args()], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=rotate_env(), start_new_session=True)
    started = set()
    while child.poll() is None and len(started) < target:
        started |= {pid for pid in cliutil.descendants(child.pid) if pid != child.pid}
        time.sleep(0.002)
    time.sleep(delay)
    try:
        os.killpg(child.pid, signal.SIGKILL)  # the script and whatever encpipe it is running
    except ProcessLookupError:
        pass
    child.communicate()
    world.assert_intact_or_rotated()
    again = rotate(world.args())
    assert again.returncode == 0, again.stderr
    world.assert_all_rotated()


def test_sigterm_cleans_up_its_temporary_file(world):
    world.small()
    wrapper = _wrapper(world.tmp, '  if [ "$n" = 1 ]; then head -c 10; kill -TERM "$PPID"; exec sleep 30; fi')
    done = rotate(world.args(), env=rotate_env(ENCPIPE=wrapper), timeout=60)
    assert done.returncode == -signal.SIGTERM
    assert world.temps() == []
    world.assert_intact_or_rotated()


# --- secrets and usage ----------------------------------------------------------


def test_no_secret_appears_on_any_argv(world):
    world.small()
    identity = [line for line in open(world.escrow_id).read().splitlines() if not line.startswith("#")][0]
    secrets = [world.old_hex, world.other_old_hex, world.new_hex, identity]
    secrets = [s.encode() for s in secrets] + [s.upper().encode() for s in secrets]
    child = subprocess.Popen([sys.executable, SCRIPT, "--new-key-file", world.escrow_id, *world.args()],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=rotate_env())
    seen = cliutil.argvs_while_running(child)
    out, err = child.communicate()
    assert child.returncode == 0, err
    assert any(b"\0rewrap\0" in argv for argv in seen), seen
    assert any(b"\0--verify\0" in argv for argv in seen), seen
    for argv in seen:
        for value in secrets:
            assert value not in argv, argv
    for value in secrets:
        assert value not in out and value not in err


@pytest.mark.parametrize(
    "argv",
    [
        ["--old-key-file", "K", "DIR"],  # without --old-key-file: tests/test_rotate_keeping_the_key.py
        ["--old-key-file", "K", "--new-key-file", "K"],
        ["--bogus", "--old-key-file", "K", "--new-key-file", "K", "DIR"],
    ],
)
def test_usage_errors_are_64(argv, world):
    argv = [world.old if a == "K" else str(world.dir) if a == "DIR" else a for a in argv]
    done = rotate(argv)
    assert (done.returncode, done.stdout) == (64, b"")
    assert_one_line_error(done.stderr)


def test_bad_arguments_are_refused_before_touching_any_file(world):
    world.add("a.enc", "--key-file", world.old_a)
    cases = [
        (["--old-key-file", world.old, "--new-key-file", world.new, "--escrow-recipient", "encpipe1abc",
          str(world.dir)], 64),
        (["--old-key-file", world.old, "--new-key-file", world.old_a, str(world.dir)], 64),
        (["--old-key-file", world.old, "--new-key-file", str(world.tmp / "missing.key"), str(world.dir)], 66),
        (["--old-key-file", world.old, "--new-key-file", world.new, str(world.tmp / "no-such-dir")], 66),
    ]
    for argv, code in cases:
        done = rotate(argv)
        assert (done.returncode, done.stdout) == (code, b""), (argv, done.stderr)
        assert_one_line_error(done.stderr)
        assert (world.dir / "a.enc").read_bytes() == world.originals["a.enc"]


def test_a_second_run_on_the_same_directory_is_refused(world):
    world.add("a.enc", "--key-file", world.old_a)
    fd = os.open(world.dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        done = rotate(world.args())
    finally:
        os.close(fd)
    assert (done.returncode, done.stdout) == (75, b"")
    assert_one_line_error(done.stderr)
    assert (world.dir / "a.enc").read_bytes() == world.originals["a.enc"]


def test_a_stale_temporary_file_that_cannot_be_removed_is_that_files_error(world, monkeypatch, capsys):
    """Removing a killed run's temporary file can fail (a read-only or immutable
    file system, a directory the user may not write): one JSON error line for it,
    the other files rotated, exit 1, not a traceback."""
    from encpipe import rotate as rotate_module

    world.small()
    stale = world.dir / ".encpipe-rotate.a-old.enc.x1y2.tmp"
    stale.write_bytes(b"half written")
    unlink = os.unlink

    def refusing_unlink(path, *args, **kwargs):
        if os.path.basename(path) == stale.name:
            raise PermissionError(1, "Operation not permitted", str(path))
        return unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", refusing_unlink)
    monkeypatch.setenv("ENCPIPE", ENCPIPE)
    for name in [n for n in os.environ if n.startswith("ENCPIPE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("ENCPIPE_MODE_WARNED", "0")  # main sets it to 1: undone after, not left to the next tests
    code = rotate_module.main(world.args())
    out, err = capsys.readouterr()
    records = {os.path.basename(r["file"]): r for r in map(json.loads, out.splitlines())}
    assert code == 1
    assert records[stale.name] == {"file": str(stale), "status": "error", "step": "remove", "exit": 74,
                                   "error": "cannot remove it: Operation not permitted"}
    assert stale.read_bytes() == b"half written"
    assert records["a-old.enc"]["status"] == "rotated" and records["b-old.enc"]["status"] == "rotated"
    assert err == "encpipe-rotate: error: 1 file(s) could not be rotated\n"
