"""encpipe-rotate, encpipe-migrate and encpipe-backup, run as root over a backup
directory that another user (postgres) can write.

The attack from the review: postgres swaps the temporary file for a symbolic
link to a root-only file after it was checked; root's chmod/chown/utime (or
seal -o's O_TRUNC) then hit that file. Now:
- without --allow-shared-dir, the directory is refused (73), nothing changes;
- with it, a swap at any step (hook) or at a racing moment changes no file
  outside the directory: the tool reports an error, or the swap has no effect.
"""

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from cliutil import ok, run
from shared_dir import STEPS, Victim, swap_env
from test_backup_restore import backup
from test_migrate import FEW, make_backups, migrate, snapshot
from test_rotate import World, rotate, rotate_env

POSTGRES = (101, 104)
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the attacks need root (the victim is root's)")


class SealedVictim(Victim):
    """A root-only encpipe file that would pass the tools' checks by path."""

    def __init__(self, path, content):
        self.CONTENT = content
        super().__init__(path)


def hand_to_postgres(directory):
    for root, dirs, files in os.walk(directory):
        for name in [root, *(os.path.join(root, f) for f in files)]:
            os.lchown(name, *POSTGRES)


class Racer:
    """Swaps every new name matching `match` in `directory` for a symbolic link to
    `victim`, as soon as it appears, for as long as the tool runs (bounded)."""

    def __init__(self, directory, match, victim):
        self.directory, self.match, self.victim = str(directory), match, victim
        self.swapped, self._stop = [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self):
        deadline = time.monotonic() + 120
        while not self._stop.is_set() and time.monotonic() < deadline:
            for name in os.listdir(self.directory):
                path = os.path.join(self.directory, name)
                if self.match(name) and name not in self.swapped and not os.path.islink(path):
                    try:
                        os.unlink(path)
                        os.symlink(self.victim.path, path)
                        self.swapped.append(name)
                    except OSError:
                        pass
            time.sleep(0.0005)


# --- encpipe-rotate ---------------------------------------------------------------------------


@pytest.fixture
def world(tmp_path):
    world = World(tmp_path)
    world.small()
    return world


def rotate_victim(world):
    """An encpipe file under the new key and the escrow key: by path, it verifies."""
    content = ok(run(["seal", "--key-file", world.new, "--recipient", world.escrow_pub], b"root's data"))
    return SealedVictim(world.tmp / "victim.enc", content)


def test_rotate_refuses_a_directory_every_user_can_write(world):
    os.chmod(world.dir, 0o777)
    done = rotate(world.args())
    assert (done.returncode, done.stdout) == (73, b"")
    assert b"encpipe-rotate: error: " in done.stderr and b"can be written by every user" in done.stderr
    assert b"--allow-shared-dir" in done.stderr
    world.assert_intact_or_rotated()
    assert all((world.dir / n).read_bytes() == c for n, c in world.originals.items())


def test_rotate_as_root_in_a_postgres_directory_with_a_racing_swap(world):
    """The review's attack (3 of 3 on the old code): refused outright now."""
    hand_to_postgres(world.dir)
    victim = rotate_victim(world)
    with Racer(world.dir, lambda n: n.startswith(".encpipe-rotate."), victim):
        done = rotate(world.args())
    victim.assert_untouched()
    assert done.returncode == 73, done.stderr


def test_rotate_allowed_in_a_shared_directory_with_a_racing_swap(world):
    hand_to_postgres(world.dir)
    victim = rotate_victim(world)
    with Racer(world.dir, lambda n: n.startswith(".encpipe-rotate."), victim) as racer:
        done = rotate(["--allow-shared-dir", *world.args()])
    assert racer.swapped
    victim.assert_untouched()
    assert done.returncode == 1
    for record in map(json.loads, done.stdout.decode().splitlines()):
        assert record["status"] != "rotated", record


@pytest.mark.parametrize("what", ["temp", "final"])
@pytest.mark.parametrize("step", STEPS)
def test_rotate_swap_at_each_step(world, step, what):
    hand_to_postgres(world.dir)
    victim = rotate_victim(world)
    marker, env = swap_env(world.tmp, victim, step, what)
    done = rotate(["--allow-shared-dir", *world.args()], env=rotate_env(**env))
    assert marker.exists(), "the swap did not happen"
    victim.assert_untouched()
    records = {os.path.basename(r["file"]): r for r in map(json.loads, done.stdout.decode().splitlines())}
    for name in ("a-old.enc", "b-old.enc"):
        path = world.dir / name
        if records[name]["status"] == "rotated":  # the swap had no effect on this file
            assert not path.is_symlink() and os.stat(path).st_uid == POSTGRES[0]
            assert ok(run(["open", "--key-file", world.new], path.read_bytes())) == world.plain[name]
        else:
            assert records[name]["status"] == "error" and done.returncode == 1


# --- encpipe-migrate --------------------------------------------------------------------------


def migrate_victim(tmp_path, directory, name, new_key_file):
    """An encpipe file under the new key, of exactly the plaintext size the legacy file has."""
    size = os.path.getsize(directory / name) - 64
    content = ok(run(["seal", "--key-file", new_key_file], b"v" * size))
    return SealedVictim(tmp_path / "victim.enc", content)


def test_migrate_refuses_a_directory_every_user_can_write(tmp_path, migrate_keys):
    directory = tmp_path / "backups"
    make_backups(directory, FEW)
    os.chmod(directory, 0o777)
    before = snapshot(directory)
    status, lines, err = migrate(directory, keys=migrate_keys)
    assert (status, lines) == (73, [])
    assert "encpipe-migrate: error: " in err and "--allow-shared-dir" in err
    assert snapshot(directory) == before


@pytest.mark.parametrize("allow", [False, True])
def test_migrate_as_root_in_a_postgres_directory_with_a_racing_swap(tmp_path, migrate_keys, allow):
    directory = tmp_path / "backups"
    make_backups(directory, FEW, python_made=False)
    hand_to_postgres(directory)
    legacy = sorted(n for n in os.listdir(directory) if n.endswith(".sql.enc"))[0]
    victim = migrate_victim(tmp_path, directory, legacy, migrate_keys["new_key"])
    with Racer(directory, lambda n: n.endswith(".migrate-tmp"), victim):
        status, lines, err = migrate(directory, *["--allow-shared-dir"] * allow, keys=migrate_keys)
    victim.assert_untouched()
    if not allow:
        assert status == 73, err
    for line in lines:
        assert line["status"] in ("failed", "skipped", "migrated"), line
        if line["status"] == "migrated":
            assert not os.path.islink(directory / line["file"])


@pytest.mark.parametrize("what", ["temp", "final"])
@pytest.mark.parametrize("step", STEPS)
def test_migrate_swap_at_each_step(tmp_path, migrate_keys, step, what):
    directory = tmp_path / "backups"
    make_backups(directory, {"a.sql.enc": FEW[sorted(FEW)[0]]}, python_made=False)
    hand_to_postgres(directory)
    victim = migrate_victim(tmp_path, directory, "a.sql.enc", migrate_keys["new_key"])
    marker, env = swap_env(tmp_path, victim, step, what)
    status, lines, err = migrate(directory, "--allow-shared-dir", keys=migrate_keys, env=env)
    assert marker.exists(), "the swap did not happen"
    victim.assert_untouched()
    (line,) = [line for line in lines if line["file"] == "a.sql.enc"]
    if line["status"] == "migrated":
        assert not os.path.islink(directory / "a.sql.enc")
    else:
        assert line["status"] == "failed" and status != 0, (line, err)


# --- encpipe-backup ---------------------------------------------------------------------------


@pytest.mark.parametrize("allow", [False, True])
def test_backup_as_root_into_a_postgres_directory_with_a_racing_swap(pg, tools, key_file, tmp_path, allow):
    db = f"shared_{int(allow)}"
    pg.createdb(db)
    directory = tmp_path / "backups"
    directory.mkdir()
    hand_to_postgres(directory)
    victim = Victim(tmp_path / "victim")
    options = ["--key-file", key_file] + ["--allow-shared-dir"] * allow
    with Racer(directory, lambda n: n.startswith(".encpipe-tmp."), victim) as racer:
        done = backup(pg, tools, str(directory), db, *options, check=False)
    victim.assert_untouched()
    if not allow:  # refused before anything is created there
        assert done.returncode == 73, done.stderr
        assert (done.stdout, os.listdir(directory)) == (b"", [])
    else:  # the race was run: the temporary file was swapped for a link at least once
        assert racer.swapped, done.stderr
    for name in os.listdir(directory):  # a backup made despite the swaps is a real file
        assert name.startswith(".") or not os.path.islink(directory / name)


@pytest.fixture(scope="module")
def key_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("keys") / "backup.key"
    subprocess.run([sys.executable, "-m", "encpipe", "keygen", "-o", str(path)], check=True)
    return str(path)



def test_rotate_a_subdirectory_swapped_for_a_link_during_the_walk(tmp_path):
    """Once the walk has listed sub/, it becomes a link to a directory outside: the
    encpipe file there (rotatable, root-only) is not touched."""
    world = World(tmp_path)
    world.mixed()
    hand_to_postgres(world.dir)
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = SealedVictim(outside / "b-old-other.enc", (world.dir / "sub" / "b-old-other.enc").read_bytes())
    sub = world.dir / "sub"
    hook = (f'[ "$1" = created ] && [ ! -L {sub} ] && mv {sub} {world.dir}/.moved && ln -s {outside} {sub}; '
            "exit 0")
    done = rotate(["--allow-shared-dir", *world.args()], env=rotate_env(ENCPIPE_TEST_HOOK=hook))
    assert sub.is_symlink()
    victim.assert_untouched()
    records = {r["file"]: r for r in map(json.loads, done.stdout.decode().splitlines())}
    assert records and not any(name.startswith(str(sub) + "/") for name in records)


@pytest.fixture(scope="module")
def steps_db(pg):
    pg.createdb("shared_steps")
    return "shared_steps"


@pytest.mark.parametrize("what", ["temp", "final"])
@pytest.mark.parametrize("step", STEPS)
def test_backup_swap_at_each_step(pg, steps_db, tools, key_file, tmp_path, step, what):
    db = steps_db
    directory = tmp_path / "backups"
    directory.mkdir()
    hand_to_postgres(directory)
    victim = Victim(tmp_path / "victim")
    marker, env = swap_env(tmp_path, victim, step, what)
    done = backup(pg, tools, str(directory), db, "--key-file", key_file, "--allow-shared-dir", env_extra=env,
                  check=False)
    assert marker.exists(), "the swap did not happen"
    victim.assert_untouched()
    finals = [n for n in os.listdir(directory) if not n.startswith(".")]
    if done.returncode == 0:
        assert len(finals) == 2, finals  # the dump and its run's globals file
        for final in finals:
            assert not os.path.islink(directory / final)
            assert ok(run(["inspect", "--verify", "--key-file", key_file], (directory / final).read_bytes()))
    else:  # nothing of ours under a final name: at most the link the attacker planted there
        assert all(os.path.islink(directory / n) for n in finals), done.stderr
