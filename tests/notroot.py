"""The process of encpipe-rotate or encpipe-migrate, run in the test's own, as a user
who is not root, for tests that run as root (which chowns the files of other users).

OPERATOR runs the tool, in group OPERATOR only; PLANTER is another user, who puts
files in a sticky directory; READERS is a group OPERATOR is not in."""

import os

OPERATOR, PLANTER, READERS = 4243, 4242, 4244


def operating(monkeypatch):
    """os.geteuid and the groups OPERATOR's; os.fchown to another user, or to a group
    OPERATOR is not in, refused (as the kernel's); umask 022 for the test's own files."""
    real_fchown = os.fchown

    def fchown(fd, uid, gid):
        if uid not in (-1, OPERATOR) or gid not in (-1, OPERATOR, os.fstat(fd).st_gid):
            raise PermissionError(1, "Operation not permitted")
        real_fchown(fd, uid, gid)

    monkeypatch.setattr(os, "geteuid", lambda: OPERATOR)
    monkeypatch.setattr(os, "getegid", lambda: OPERATOR)
    monkeypatch.setattr(os, "getgroups", lambda: [OPERATOR])
    monkeypatch.setattr(os, "fchown", fchown)
    umask = os.umask(0o022)
    yield
    os.umask(umask)
