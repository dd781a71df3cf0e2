"""A rotated file keeps the access ACL of the original.

A backup can be given to one more reader by an access ACL (`setfacl -m
u:offsite:r`), the owning group given nothing: the mode's group bits then show
the ACL's mask, not the group's entry. Rotate gave the new file the original's
mode and no ACL: the reader the ACL named could read it no more, and the
owning group, whose entry said ---, could read it through the group bits. The
new file now gets the original's ACL, through its own descriptor, before it
takes the name; one that cannot be set leaves the original as it was."""

import os
import stat
import struct

import pytest

from test_rotate import World, lines, rotate

ACL = "system.posix_acl_access"
READER = 4242


def access_acl(entries):
    """The xattr of an access ACL of (tag, permissions, id) entries (tags: 1 user::,
    2 user:ID, 4 group::, 0x10 mask::, 0x20 other::)."""
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *entry) for entry in entries)


# user::rw- user:READER:r-- group::--- mask::r-- other::---
READER_ONLY = access_acl([(0x01, 6, 0xFFFFFFFF), (0x02, 4, READER), (0x04, 0, 0xFFFFFFFF), (0x10, 4, 0xFFFFFFFF),
                          (0x20, 0, 0xFFFFFFFF)])


@pytest.fixture
def world(tmp_path):
    world = World(tmp_path)
    path = world.add("shop_20250101T020000Z.dump.enc", "--key-file", world.old_a)
    os.setxattr(path, ACL, READER_ONLY)
    world.add("shop_20250102T020000Z.dump.enc", "--key-file", world.old_a, mode=0o640)  # no ACL: none made
    return world


def test_a_rotated_file_keeps_its_access_acl(world):
    path = world.dir / "shop_20250101T020000Z.dump.enc"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640  # the mask as group bits
    done = rotate(world.args())
    assert (done.returncode, done.stderr) == (0, b""), done.stderr
    assert {name: line["status"] for name, line in lines(done).items()} == {
        "shop_20250101T020000Z.dump.enc": "rotated", "shop_20250102T020000Z.dump.enc": "rotated"}
    assert (os.getxattr(path, ACL), stat.S_IMODE(os.stat(path).st_mode)) == (READER_ONLY, 0o640)
    plain = world.dir / "shop_20250102T020000Z.dump.enc"
    assert (ACL in os.listxattr(plain), stat.S_IMODE(os.stat(plain).st_mode)) == (False, 0o640)


def test_a_directorys_default_acl_gives_the_new_file_no_reader_the_original_had_not(world):
    """A default ACL on the directory (user:READER:r) put after the backups were made:
    the new file, made there, inherited it, and the original's mode 0640 (its group
    bits, the ACL's mask then) let READER read it; the original had no ACL, and
    READER could not. The new file now has the original's access ACL, or none."""
    os.setxattr(world.dir, "system.posix_acl_default", READER_ONLY)
    done = rotate(world.args())
    assert (done.returncode, done.stderr) == (0, b""), done.stderr
    plain = world.dir / "shop_20250102T020000Z.dump.enc"
    assert lines(done)[plain.name]["status"] == "rotated"
    assert (ACL in os.listxattr(plain), stat.S_IMODE(os.stat(plain).st_mode)) == (False, 0o640)
