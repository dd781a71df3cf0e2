"""The new file of an in-place rewrite (encpipe-rotate, encpipe-migrate) is given
its owner and group before any permission beyond its owner's.

write_atomically creates the hidden file 0600, in the group the directory gives it
(the caller's, or a set-group-ID directory's group), then gave it the old file's mode
and access ACL, and only then its group: meanwhile the hidden file was readable by
a group the old file was not (the directory's), whose members could open it and keep
it open after the rename (its ciphertext, which the old file's mode kept from them).
Each step is watched through the descriptor as it is taken (os.fchmod, os.setxattr
and os.fchown wrapped): no exact timing."""

import os
import stat

import pytest

from encpipe import safefile
from notroot import PLANTER, READERS

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="gives files to other groups: root")


def test_the_group_is_set_before_the_mode_opens_the_file_to_it(tmp_path, monkeypatch):
    directory = tmp_path / "backups"
    directory.mkdir()
    os.chown(directory, 0, PLANTER)
    os.chmod(directory, 0o2750)  # set-group-ID: each new file's group is PLANTER
    target = directory / "shop_20250101T020000Z.dump.enc"
    target.write_bytes(b"old")
    os.chown(target, 0, READERS)
    os.chmod(target, 0o640)  # READERS may read it, PLANTER not
    states = []

    def watched(function):
        def step(fd, *args):
            result = function(fd, *args)
            info = os.fstat(fd)
            states.append((function.__name__, stat.S_IMODE(info.st_mode), info.st_gid))
            return result
        return step

    for name in ("fchmod", "setxattr", "fchown"):
        monkeypatch.setattr(os, name, watched(getattr(os, name)))
    safefile.write_atomically(str(target), lambda out: out.write(b"new"), mode=0o640, owner=(0, READERS),
                              replaces=os.stat(target), allow_shared=True)
    assert target.read_bytes() == b"new"
    assert [state for state in states if state[1] & 0o077 and state[2] != READERS] == []  # before: fchmod's
    assert (stat.S_IMODE(target.stat().st_mode), target.stat().st_gid) == (0o640, READERS)
