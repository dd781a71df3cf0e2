"""encpipe-rotate leaves a file as it is when it cannot keep its owner or group.

A sticky backup directory passes rotate's check (other users can add names, not
replace the backups), so a local user can plant a file there: a copy of a removed
backup (from the off-site copy, say) under a newer name, theirs, with the modification
time they like. Prune and check never count such a file for a custom archive or an
unlabelled dump (its owner is not trusted: tests/test_planted_archives.py). Rotate, run
as the directory's owner, rewrapped it as any other (its raw key authenticates it),
could not give the new file to the planter (only root can give a file away; the
refusal was passed over), and renamed it over theirs: the planted file became the
caller's, with the planter's time and one second, and counted from then on as the
backup its name says; with --sign-key, signed as well. Now a file owned by a user other
than the caller and root is an `error` (step `owner`, 73) and left as it is, unless
rotate runs as root, which keeps every file's owner.

Rotate runs in this process as a user who is not root (os.geteuid), for whom
os.fchown to another user fails as the kernel's does; the tests run as root, which
chowns the planter's file."""

import os

import pytest

from encpipe import rotate as rotate_module
from notroot import OPERATOR, PLANTER, READERS
from test_rotate import World, lines

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the planter is another user: root chowns their files")

@pytest.fixture
def world(tmp_path):
    world = World(tmp_path)
    world.add("shop_20250101T020000Z.dump.enc", "--key-file", world.old_a)
    planted = world.add("shop_20250301T020000Z.dump.enc", "--key-file", world.old_a, mode=0o644)
    os.chown(world.dir, OPERATOR, OPERATOR)
    os.chmod(world.dir, 0o1777)  # sticky: others add names, replace none
    os.chown(world.dir / "shop_20250101T020000Z.dump.enc", OPERATOR, OPERATOR)
    os.chown(planted, PLANTER, PLANTER)
    os.utime(planted, (1740794400, 1740794400))  # 2025-03-01T02:00:00Z: the time its name says
    return world


def run_rotate(args, capsys):
    code = rotate_module.main(args)
    out, err = capsys.readouterr()
    return code, out, err


class Done:
    def __init__(self, out):
        self.stdout = out.encode()


@pytest.mark.parametrize("mode", ["rotation", "escrow only"])
def test_a_file_another_user_planted_is_left_theirs_and_as_it_was(world, as_operator, capsys, mode):
    if mode == "rotation":
        args = world.args()
    else:  # the key unchanged: the escrow key added to the backups made before it
        world.new = world.old_a
        args = ["--new-key-file", world.old_a, "--escrow-recipient", world.escrow_pub, str(world.dir)]
    code, out, err = run_rotate(args, capsys)
    got = lines(Done(out))
    planted = world.dir / "shop_20250301T020000Z.dump.enc"
    assert got[planted.name]["status"] == "error", (got[planted.name], os.stat(planted).st_uid)
    assert got["shop_20250101T020000Z.dump.enc"]["status"] == "rotated", got
    assert (got[planted.name]["status"], got[planted.name]["step"], got[planted.name]["exit"]) == \
        ("error", "owner", 73), got
    assert got[planted.name]["error"] == ("owned by uid 4242, not by the user running rotate: rotated, it would be "
                                          "yours (only root keeps another user's file theirs); left alone")
    assert (code, err) == (1, "encpipe-rotate: error: 1 file(s) could not be rotated\n")
    assert planted.read_bytes() == world.originals[planted.name]
    info = os.stat(planted)
    assert (info.st_uid, info.st_mtime) == (PLANTER, 1740794400)
    assert os.stat(world.dir / "shop_20250101T020000Z.dump.enc").st_uid == OPERATOR


def test_dry_run_says_so_too(world, as_operator, capsys):
    code, out, err = run_rotate(["--dry-run", *world.args()], capsys)
    got = lines(Done(out))
    assert got["shop_20250101T020000Z.dump.enc"]["status"] == "would-rotate"
    assert (got["shop_20250301T020000Z.dump.enc"]["status"], code) == ("error", 1)


def test_root_keeps_the_planters_file_theirs(world, capsys):
    """As root, the owner is kept: the planted file stays the planter's, and prune's
    rule about it still holds; rotate rotates it (in a directory of root's: in another
    user's, root is refused, 73)."""
    os.chown(world.dir, 0, 0)
    code, out, err = run_rotate(world.args(), capsys)
    assert (code, err) == (0, ""), out
    planted = world.dir / "shop_20250301T020000Z.dump.enc"
    assert lines(Done(out))[planted.name]["status"] == "rotated"
    assert os.stat(planted).st_uid == PLANTER


@pytest.mark.parametrize("owner, group, error", [
    ((OPERATOR, READERS), "READERS", "in group 4244, which the user running rotate is not in: rotated, it would "
     "lose that group (only root keeps it); left alone"),
    ((0, 0), "root", "owned by user root, not by the user running rotate: rotated, it would be yours (only root keeps "
     "another user's file theirs); left alone"),
])
def test_a_file_whose_owner_or_group_rotate_cannot_keep_is_left_as_it_was(world, as_operator, capsys, owner, group,
                                                                           error):
    """A backup kept 0640 for a group of readers (an off-site sync user, given it by
    root's chgrp), or one root made: rotate, not root, could not give the new file
    that group or owner back (the fchown refusal was passed over) and renamed it over
    the original all the same: the group's readers could read it no more, the
    caller's own group could. It is left as it was, an error (owner, 73), as the
    README's re-seal recipe leaves a file whose chown fails."""
    name = "shop_20250201T020000Z.dump.enc"
    path = world.add(name, "--key-file", world.old_a, mode=0o640)
    os.chown(path, *owner)
    before = os.stat(path)
    code, out, err = run_rotate(["--dry-run", *world.args()], capsys)
    assert (lines(Done(out))[name]["status"], code) == ("error", 1)
    code, out, err = run_rotate(world.args(), capsys)
    got = lines(Done(out))
    assert got["shop_20250101T020000Z.dump.enc"]["status"] == "rotated", got
    if group == "root":  # the user's name as the system gives it
        error = error.replace("user root", __import__("encpipe.backup.listing").backup.listing.user_name(0))
    assert (got[name]["status"], got[name]["step"], got[name]["exit"], got[name]["error"]) == \
        ("error", "owner", 73, error), got
    assert (code, err) == (1, "encpipe-rotate: error: 2 file(s) could not be rotated\n")
    assert path.read_bytes() == world.originals[name]
    after = os.stat(path)
    assert (after.st_ino, after.st_uid, after.st_gid, after.st_mode, after.st_mtime_ns) == \
        (before.st_ino, *owner, before.st_mode, before.st_mtime_ns)
    assert sorted(os.listdir(world.dir)) == sorted(world.originals)


def test_a_group_the_directory_gives_is_kept(world, as_operator, capsys):
    """A set-group-ID directory gives each file made in it its group, READERS, which
    OPERATOR is not in: rotate's new file gets it too, so the file is rotated."""
    os.chown(world.dir, OPERATOR, READERS)
    os.chmod(world.dir, 0o2750)
    name = "shop_20250201T020000Z.dump.enc"
    path = world.add(name, "--key-file", world.old_a, mode=0o640)
    os.chown(path, OPERATOR, READERS)
    os.chown(world.dir / "shop_20250301T020000Z.dump.enc", OPERATOR, READERS)
    code, out, err = run_rotate(world.args(), capsys)
    assert (code, err) == (0, ""), out
    assert lines(Done(out))[name]["status"] == "rotated"
    info = os.stat(path)
    assert (info.st_uid, info.st_gid, oct(info.st_mode & 0o7777)) == (OPERATOR, READERS, "0o640")
