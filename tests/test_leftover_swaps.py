"""encpipe-rotate and encpipe-migrate remove the temporary files a killed run left,
and work in DIR as they locked it: a writer of DIR (or of the directory above it)
who swaps DIR, or a subdirectory, for a link to a directory outside, between the
listing and the removal (or between the lock and the listing), makes them remove
or rewrite nothing outside. Each race is won deterministically: by the tools'
$ENCPIPE_TEST_HOOK (encpipe.safefile.hook), by an $ENCPIPE that swaps and then
runs the real one, or, for migrate (which starts no child between its lock and its
listing), by the lock itself, wrapped in process."""

import json
import os
import stat

import pytest

from cliutil import ok, run
from encpipe import dirlock
from shared_dir import Victim
from test_migrate import FEW, ENCPIPE as MIGRATE_ENCPIPE, make_backups
from test_rotate import ENCPIPE, World, rotate, rotate_env

STALE_ROTATE = ".encpipe-rotate.0011223344556677.tmp"


def behind_a_link(tmp_path, directory):
    """(`directory` named through a link in a directory of its own, an empty
    directory "outside" beside them)."""
    links = tmp_path / "links"
    links.mkdir()
    named = links / "backups"
    os.symlink(directory, named)
    outside = tmp_path / "outside"
    outside.mkdir()
    return named, outside


def test_rotate_removes_no_file_outside_for_a_stale_name_in_a_subdirectory_swapped_for_a_link(tmp_path):
    """sub/ holds a killed run's temporary file, listed after sub's first file
    ("+a.enc" sorts before "."): the writer of DIR swaps sub/ for a link to a
    directory outside while rotate rewrites that first file. The temporary file
    was then unlinked by a path through the link: the file of that name outside
    (another rotate's file in flight there, say) was removed."""
    world = World(tmp_path)
    world.add("sub/+a.enc", "--key-file", world.old_a, size=100)
    sub = world.dir / "sub"
    (sub / STALE_ROTATE).write_bytes(b"half written")
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = Victim(outside / STALE_ROTATE)
    hook = (f'[ "$1" = created ] && [ "$2" = {sub} ] && [ "$4" = +a.enc ] && '
            f'mv {sub} {world.dir}/.moved && ln -s {outside} {sub}; exit 0')
    done = rotate(["--allow-shared-dir", *world.args()], env=rotate_env(ENCPIPE_TEST_HOOK=hook))
    assert sub.is_symlink(), done.stderr  # the race was run
    victim.assert_untouched()
    records = {r["file"]: r for r in map(json.loads, done.stdout.decode().splitlines())}
    assert records[f"{sub}/{STALE_ROTATE}"] == {"file": f"{sub}/{STALE_ROTATE}", "status": "removed",
                                                "reason": "temporary file of an interrupted run"}
    assert os.listdir(world.dir / ".moved") == ["+a.enc"]  # removed from the directory listed


def test_rotate_lists_no_directory_outside_for_a_subdirectory_swapped_for_a_link_before_it_is_listed(tmp_path):
    """sub/ is listed by DIR's listing, then, while rotate rewrites a file of DIR, swapped
    for a link to a directory outside before rotate lists it: the link was followed, the
    files outside rotated and a temporary-named file there removed. Now a subdirectory
    that is not the one DIR's listing found is reported and left."""
    world = World(tmp_path)
    world.add("a.enc", "--key-file", world.old_a, size=100)
    world.add("sub/b.enc", "--key-file", world.old_a, size=100)
    sub = world.dir / "sub"
    outside = tmp_path / "outside"
    outside.mkdir()
    sealed = ok(run(["seal", "--key-file", world.old_a], b"root's data"))
    victim = type("Sealed", (Victim,), {"CONTENT": sealed})(outside / "a-old.enc")
    stale = Victim(outside / STALE_ROTATE)
    hook = (f'[ "$1" = created ] && [ "$2" = {world.dir} ] && [ "$4" = a.enc ] && '
            f'mv {sub} {world.dir}/.moved && ln -s {outside} {sub}; exit 0')
    done = rotate(world.args(), env=rotate_env(ENCPIPE_TEST_HOOK=hook))
    assert sub.is_symlink(), done.stderr  # the race was run
    victim.assert_untouched()
    stale.assert_untouched()
    assert (done.returncode, done.stderr) == (0, b"")
    records = {r["file"]: r for r in map(json.loads, done.stdout.decode().splitlines())}
    assert records[str(sub)] == {"file": str(sub), "status": "ignored", "reason": "not a directory under DIR any more"}
    assert sorted(records) == [str(world.dir / "a.enc"), str(sub)]  # .moved came after DIR was listed
    assert records[str(world.dir / "a.enc")]["status"] == "rotated"

def test_rotate_passes_over_a_subdirectory_gone_before_it_is_listed(tmp_path):
    """a/ and b/ are in DIR's listing; b/ is moved away while rotate rewrites a file in
    a/: a directory that cannot be opened any more is passed over (at most reported as
    ignored), never the end of the run, which succeeds."""
    world = World(tmp_path)
    world.add("a/x.enc", "--key-file", world.old_a, size=100)
    world.add("b/y.enc", "--key-file", world.old_a, size=100)
    hook = (f'[ "$1" = created ] && [ "$2" = {world.dir / "a"} ] && [ "$4" = x.enc ] && '
            f'mv {world.dir / "b"} {tmp_path / "gone"}; exit 0')
    done = rotate(world.args(), env=rotate_env(ENCPIPE_TEST_HOOK=hook))
    assert (tmp_path / "gone").is_dir(), done.stderr  # the race was run
    assert (done.returncode, done.stderr) == (0, b"")
    records = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert [(r["file"], r["status"]) for r in records][0] == (str(world.dir / "a" / "x.enc"), "rotated")
    assert [(r["file"], r["status"]) for r in records][1:] in ([], [(str(world.dir / "b"), "ignored")])
    assert (tmp_path / "gone" / "y.enc").read_bytes() == world.originals["b/y.enc"]


# An encpipe that, at its first call after rotate took its lock (keyid of the new
# key: the old key's comes first), swaps DIR for a link to OUTSIDE, then runs.
SWAPPING_ENCPIPE = """#!/bin/sh
if [ "$1" = keyid ] && [ -e {state}/old-done ] && [ ! -e {state}/swapped ]; then
  mv {dir} {dir}.moved && ln -s {outside} {dir} && touch {state}/swapped
fi
[ "$1" = keyid ] && touch {state}/old-done
exec {real} "$@"
"""


def test_rotate_works_in_the_directory_it_locked_not_one_a_link_put_in_its_place(tmp_path):
    """DIR (here named through a link in a directory of its own, which rotate's
    check of DIR does not look at: it follows the link) is swapped, once rotate
    holds its lock, for a link to a directory outside. The walk stat'ed and listed
    DIR anew by name, so it rotated the files outside (a root-only file there lost
    its old-key slot) and removed a temporary-named file there."""
    world = World(tmp_path)
    world.small()
    named, outside = behind_a_link(tmp_path, world.dir)
    sealed = ok(run(["seal", "--key-file", world.old_a], b"root's data"))
    victim = type("Sealed", (Victim,), {"CONTENT": sealed})(outside / "a-old.enc")
    stale = Victim(outside / STALE_ROTATE)
    state = tmp_path / "state"
    state.mkdir()
    wrapper = tmp_path / "encpipe-swapping"
    wrapper.write_text(SWAPPING_ENCPIPE.format(state=state, dir=named, outside=outside, real=ENCPIPE))
    wrapper.chmod(0o755)
    env = rotate_env(ENCPIPE=str(wrapper))
    args = world.args()
    done = rotate([*args[:-1], str(named)], env=env)
    assert os.readlink(named) == str(outside), done.stderr  # the race was run
    victim.assert_untouched()
    stale.assert_untouched()
    assert done.returncode == 0, done.stderr
    records = {os.path.basename(r["file"]): r["status"] for r in map(json.loads, done.stdout.decode().splitlines())}
    assert records == {"a-old.enc": "rotated", "b-old.enc": "rotated", "c-new.enc": "skipped",
                       "notes.txt": "foreign"}
    world.assert_all_rotated()


@pytest.mark.parametrize("when", ["after the lock", "after the checks"])
def test_migrate_removes_no_leftover_outside_when_dir_becomes_a_link_once_it_is_locked(
        tmp_path, monkeypatch, migrate_keys, capsys, when):
    """DIR (named through a link) is swapped for a link to a directory outside just
    after migrate took its lock (or, later, once it has checked DIR again): the
    listing and the removal of leftovers went by name, through the link: a file
    outside named like a leftover was removed. Now a DIR replaced before the checks
    after the lock is refused (66), and one replaced after them is listed and
    cleaned through the descriptor locked."""
    from encpipe import migrate as migrate_module

    directory = tmp_path / "backups"
    make_backups(directory, FEW, python_made=False)
    named, outside = behind_a_link(tmp_path, directory)
    leftover = directory / ".a_backup.sql.enc.0011.migrate-tmp"
    leftover.write_bytes(b"half written")
    victim = Victim(outside / leftover.name)

    def swap():
        os.unlink(named)
        os.symlink(outside, named)

    if when == "after the lock":
        real_lock = dirlock.locked_now
        monkeypatch.setattr(dirlock, "locked_now", lambda fd: (real_lock(fd), swap())[0])
    else:
        real_run = migrate_module.Migration.run
        monkeypatch.setattr(migrate_module.Migration, "run", lambda self, fd: (swap(), real_run(self, fd))[1])
    monkeypatch.setenv("ENCPIPE", MIGRATE_ENCPIPE)
    for name in [n for n in os.environ if n.startswith("ENCPIPE_") or n == "BACKUP_ENCRYPTION_KEY"]:
        monkeypatch.delenv(name)
    code = migrate_module.main(["--legacy-key-file", migrate_keys["old_key"], "--legacy-passphrase-file",
                                migrate_keys["old_pass"], "--key-file", migrate_keys["new_key"], str(named)])
    out, err = capsys.readouterr()
    assert os.readlink(named) == str(outside)  # the race was run
    victim.assert_untouched()
    if when == "after the lock":
        assert (code, out) == (66, "")
        assert err == f"encpipe-migrate: error: {named} was replaced while encpipe-migrate started\n"
        assert leftover.read_bytes() == b"half written"
        return
    assert not leftover.exists()  # the leftover in DIR, the directory locked, is removed
    records = {r["file"]: r for r in map(json.loads, out.splitlines())}
    assert code == 0, err
    assert {n: r["status"] for n, r in records.items()} == {
        "a_backup.sql.enc": "migrated", "already-new.sql.enc": "skipped", "b_backup.sql.enc": "migrated",
        "link.sql.enc": "skipped", "nested.sql.enc": "skipped"}


@pytest.mark.parametrize("tool", ["rotate", "migrate"])
def test_a_non_regular_file_named_like_a_leftover_is_left(tmp_path, tool, migrate_keys):
    """A FIFO (or other non-regular file) named like a temporary file is not one of
    ours: left where it is, as migrate leaves a directory of that name."""
    if tool == "rotate":
        world = World(tmp_path)
        world.small()
        fifo = world.dir / STALE_ROTATE
        os.mkfifo(fifo)
        for dry_run in ([], ["--dry-run"]):  # a dry run says so too (it said "stale")
            done = rotate([*dry_run, *world.args()])
            records = {os.path.basename(r["file"]): r for r in map(json.loads, done.stdout.decode().splitlines())}
            assert records[STALE_ROTATE]["status"] == "ignored", records
    else:
        from test_migrate import migrate
        directory = tmp_path / "backups"
        make_backups(directory, FEW, python_made=False)
        fifo = directory / ".a_backup.sql.enc.0011.migrate-tmp"
        os.mkfifo(fifo)
        status, lines, err = migrate(directory, keys=migrate_keys)
        assert status == 0 and "not a regular file" in err, err
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)



def test_rotate_refuses_a_dir_replaced_between_its_lock_and_its_check(tmp_path, monkeypatch, capsys):
    """DIR (named through a link) swapped for a link to a directory outside just
    after rotate locked it: the directory checked and walked would not be the one
    locked. Refused (66), nothing outside changed."""
    from encpipe import rotate as rotate_module

    world = World(tmp_path)
    world.small()
    named, outside = behind_a_link(tmp_path, world.dir)
    victim = type("Sealed", (Victim,), {"CONTENT": ok(run(["seal", "--key-file", world.old_a], b"data"))})(
        outside / "a-old.enc")
    real_lock = dirlock.locked_now

    def lock_then_swap(fd):
        locked = real_lock(fd)
        os.unlink(named)
        os.symlink(outside, named)
        return locked

    monkeypatch.setattr(dirlock, "locked_now", lock_then_swap)
    monkeypatch.setenv("ENCPIPE", ENCPIPE)
    for name in [n for n in os.environ if n.startswith("ENCPIPE_")]:
        monkeypatch.delenv(name)
    code = rotate_module.main([*world.args()[:-1], str(named)])
    out, err = capsys.readouterr()
    victim.assert_untouched()
    assert (code, out) == (66, "")
    assert err == f"encpipe-rotate: error: {named} was replaced while encpipe-rotate started\n"
    assert world.names() == sorted(world.originals) and world.temps() == []


BUSY = ("its lock (flock on the directory) is held: a backup, a prune, a rotation or a migration works in it,"
        " or a user who can open it holds the lock; nothing was changed")


@pytest.mark.parametrize("tool", ["rotate", "migrate"])
def test_a_dir_locked_by_another_run_is_refused_at_once(tmp_path, tool, migrate_keys):
    """While another run holds DIR's lock, rotate and migrate wait for none: 75,
    one line naming DIR, nothing on stdout, nothing in DIR changed. The holder may
    be a backup, a rotation, a migration or any user who can open DIR (flock needs
    read access only): the line says so, not "another encpipe-rotate"."""
    import fcntl
    if tool == "rotate":
        world = World(tmp_path)
        world.small()
        directory = world.dir
    else:
        directory = tmp_path / "backups"
        make_backups(directory, FEW, python_made=False)
    before = sorted(os.listdir(directory))
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if tool == "rotate":
            done = rotate(world.args())
            status, out, err = done.returncode, done.stdout.decode(), done.stderr.decode()
            expected = f"encpipe-rotate: error: {directory}: {BUSY}\n"
        else:
            from test_migrate import migrate
            status, out, err = migrate(directory, keys=migrate_keys)
            expected = f"encpipe-migrate: error: {directory}: {BUSY}\n"
    finally:
        os.close(fd)
    assert (status, out, err) == (75, [] if tool == "migrate" else "", expected)
    assert sorted(os.listdir(directory)) == before


def test_rotate_leaves_a_leftover_name_another_user_owns(tmp_path):
    """A user who can add names to a sticky backup directory put a file there under
    the name of rotate's temporary file. Rotate, run as root, removed it (a file of
    another user's, which no run of root's made); run as the directory's owner, it
    could not (the sticky bit), and every run ended 1 on that file's `remove` error.
    It is left where it is, `ignored`: a killed run's temporary file is its user's."""
    world = World(tmp_path)
    world.small()
    planted = world.dir / STALE_ROTATE
    planted.write_bytes(b"not rotate's")
    os.chown(planted, 4242, 4242)
    mine = world.dir / ".encpipe-rotate.8899aabbccddeeff.tmp"
    mine.write_bytes(b"a killed run's")
    dry = rotate(["--dry-run", *world.args()])  # says what the run does, and changes nothing
    records = {os.path.basename(r["file"]): r for r in map(json.loads, dry.stdout.decode().splitlines())}
    assert (dry.returncode, records[STALE_ROTATE]["status"], records[mine.name]["status"]) == (0, "ignored", "stale")
    assert (planted.read_bytes(), mine.read_bytes()) == (b"not rotate's", b"a killed run's")
    done = rotate(world.args())
    assert (done.returncode, done.stderr) == (0, b""), done.stderr
    records = {os.path.basename(r["file"]): r for r in map(json.loads, done.stdout.decode().splitlines())}
    assert records[STALE_ROTATE] == {
        "file": str(planted), "status": "ignored",
        "reason": "named like a temporary file, but owned by uid 4242, not by the user running rotate"}, records
    assert records[mine.name]["status"] == "removed"
    assert (planted.read_bytes(), mine.exists()) == (b"not rotate's", False)


def test_migrate_leaves_a_leftover_name_another_user_owns(tmp_path, migrate_keys):
    """As for rotate: a file another user put under the name of migrate's temporary
    file in a sticky directory. Migrate, run as root, removed it, a file no run of
    root's made; it is left where it is, with a warning: a killed run's temporary
    file is its user's."""
    from test_migrate import migrate
    directory = tmp_path / "backups"
    make_backups(directory, FEW, python_made=False)
    planted = directory / ".a_backup.sql.enc.0011223344556677.migrate-tmp"
    planted.write_bytes(b"not migrate's")
    os.chown(planted, 4242, 4242)
    mine = directory / ".a_backup.sql.enc.8899aabbccddeeff.migrate-tmp"
    mine.write_bytes(b"a killed run's")
    status, lines, err = migrate(directory, keys=migrate_keys)
    assert err == (f"encpipe-migrate: warning: left {planted.name}: named like a temporary file of this tool, but "
                   "owned by uid 4242, not by the user running migrate\n"
                   f"encpipe-migrate: warning: removed {mine.name}, left by an interrupted run\n"), err
    assert (status, planted.read_bytes(), mine.exists()) == (0, b"not migrate's", False)
