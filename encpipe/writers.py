"""Who besides the caller and root can write a file or a directory: ssh's
StrictModes, for the directories encpipe writes in (safefile.check_directory)
and the key files it reads (keyplace). Loads grp and pwd only to name a writer
or to look into a group: inspect and keyid, which judge key files, start
without them. A POSIX access ACL counts: the group bits are then its mask, and
g+w lets each user and group it names with w write."""

import errno
import os
import stat
import struct

from . import pathwalk
from .errors import IOFailure

ALLOW_FLAG = "--allow-shared-dir"


def first_other_writer(path, trusted=None, sticky_here=True, missing_ok=False):
    """(where, who) for the first of directory `path` and its ancestors that a user
    outside `trusted` (uids; default the caller and root) can write, a sticky one
    excepted (`path` itself only if `sticky_here`); None if there is none. With
    `missing_ok`, directories not there are skipped (the first there counts as `path`)."""
    real = os.path.realpath(path)
    current, first = real, True
    while True:
        try:
            info = os.stat(current)
        except FileNotFoundError:
            if not missing_ok:
                raise IOFailure(f"cannot examine {current}: No such file or directory") from None
            info = None
        except OSError as e:
            raise IOFailure(f"cannot examine {current}: {e.strerror or e}") from None
        writer = info and other_writer(info, trusted, sticky_ok=sticky_here or not first, where=current)
        if writer:
            return (path if current == real else f"{current} (above {path})"), writer
        first = first and info is None
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current = parent


def way_writer(path, trusted=None, directory_only=False):
    """(the directory `path` (with `directory_only`, its directory) really leads to, as
    the kernel resolves it, a `..` after a link included; (where, who) for the first
    symbolic link on the way that a user outside `trusted` (default the caller and
    root) could point elsewhere: its owner, or a writer of the directory holding it
    (not sticky); or for the place of a directory a `..` leaves (left_writer); else
    None). Judging only where the path really leads let such a user lead a link, or
    swap it between checks and use, to a directory of their own (the metrics file's;
    `seal -o`, `keygen -o` and the scripts' directories: check_directory)."""
    trusted = {0, os.geteuid()} if trusted is None else trusted
    for kind, where, name, info in pathwalk.steps(path, directory_only=directory_only):
        if kind == pathwalk.MISSING:  # not there: nor is anything below it (first_other_writer's missing_ok)
            return name, None
        if kind == pathwalk.REACHED:
            return where, None
        if kind == pathwalk.UP:
            found = left_writer(where, trusted)
            if found:
                return where, found
            continue
        owner = owner_writer(info, trusted)
        if owner:
            return where, (f"the symbolic link {name}", owner)
        found = first_other_writer(where, trusted)  # sticky: only the link's owner can replace it there
        if found:
            return where, (f"{found[0]}, holding the symbolic link {name},", found[1])


def left_writer(directory, trusted=None):
    """(what, who) when a user outside `trusted` (uids; default the caller and root)
    could change where a `..` leaving `directory` leads: a writer of the directory
    holding its name or of one above it (a sticky one excepted), or, that one
    sticky, the owner of `directory`, who can still move it there (who may write
    into `directory` cannot: a `..` leaves it for the directory holding it). Used
    by keyplace and backup.metrics, which judge every `..` on the way to a file."""
    parent = os.path.dirname(directory)
    if parent == directory:
        return None
    found = first_other_writer(parent, trusted)
    if not found:
        try:
            sticky, info = os.stat(parent).st_mode & stat.S_ISVTX, os.lstat(directory)
        except OSError as e:
            raise IOFailure(f"cannot examine {directory}: {e.strerror or e}") from None
        if sticky:
            writer = owner_writer(info, trusted)
            found = writer and (directory, writer)
    return (f"{found[0]}, where a .. on the way turns back,", found[1]) if found else None


def owner_writer(info, trusted=None):
    """"user NAME (its owner)" when the owner of what `info` describes is outside `trusted`
    (uids; default the caller and root), else None: who can always chmod or move it."""
    if info.st_uid not in ({os.geteuid(), 0} if trusted is None else trusted):
        return f"user {_user_name(info.st_uid)} (its owner)"
    return None


def _owners():
    me = os.geteuid()
    return "root" if me == 0 else f"{_user_name(me)} or root"


def other_writer(info, trusted=None, sticky_ok=True, where=None):
    """Who, besides the caller and root (or the uids `trusted`), can write the file
    or directory `info` describes: a phrase such as "user postgres (its owner)", or
    None. A sticky directory's writers cannot replace another's name in it: none
    when `sticky_ok`. `where` (its path, or a descriptor) lets its ACL be read."""
    trusted = {os.geteuid(), 0} if trusted is None else trusted
    owner = owner_writer(info, trusted)  # the owner can always chmod, sticky or not
    if owner:
        return owner
    sticky = sticky_ok and info.st_mode & stat.S_ISVTX
    if sticky:
        return None
    if info.st_mode & stat.S_IWOTH:
        return "every user (mode o+w, not sticky)" if sticky_ok else "every user (mode o+w)"
    if info.st_mode & stat.S_IWGRP and not _group_within(info.st_gid, trusted):
        return f"group {_group_name(info.st_gid)} (mode g+w{', not sticky' if sticky_ok else ''})"
    if info.st_mode & stat.S_IWGRP and where is not None:
        return _acl_writer(where, trusted)
    return None


def _acl_writer(where, trusted):
    """Who an access ACL on `where` (a path or a descriptor) lets write it. With an
    ACL the group bits are its mask: g+w lets each user or group it names write."""
    try:
        acl = os.getxattr(where, "system.posix_acl_access", follow_symlinks=False) if isinstance(where, str) \
            else os.getxattr(where, "system.posix_acl_access")
    except OSError as e:
        if e.errno in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP):  # no ACL, or none possible there
            return None
        raise IOFailure(f"cannot examine {where}: {e.strerror or e}") from None
    for offset in range(4, len(acl) - 7, 8):
        tag, perm, ident = struct.unpack_from("<HHI", acl, offset)
        if perm & 2 and (tag == 0x02 and ident not in trusted or tag == 0x08 and not _group_within(ident, trusted)):
            name = f"user {_user_name(ident)}" if tag == 0x02 else f"group {_group_name(ident)}"
            return f"{name} (its ACL, mode g+w)"
    return None


def _group_within(gid, uids):
    """True when every user in group `gid` is one of `uids`."""
    import grp  # here: only a group-writable file or directory needs it
    import pwd

    try:
        group = grp.getgrgid(gid)
        if any(pwd.getpwnam(member).pw_uid not in uids for member in group.gr_mem):
            return False
    except KeyError:
        return False
    return all(entry.pw_uid in uids for entry in pwd.getpwall() if entry.pw_gid == gid)


def _user_name(uid):
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group_name(gid):
    import grp

    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)
