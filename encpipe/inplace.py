"""What encpipe-rotate, encpipe-migrate and `encpipe rewrap --in-place`, which put a
new file in the place of one they read, keep of it, and which files they leave alone for it.

The new file gets the old one's mode, access ACL, owner and group (safefile's
write_atomically sets them through its descriptor, before the rename). Only root
can give a file to another user, or to a group the caller is not in: not run as
root, a tool leaves such a file as it was. A local user who can add names to a
sticky backup directory can put files there: one under a backup's name (its
time theirs), which would become the caller's, counted from then on as the
backup its name says; one under the name of a tool's temporary file, which no
run of the caller's made."""

import os
import stat

from .errors import UnsafeDirectory
from .pathwalk import absolute
from .safefile import NO_ACL, access_acl


def kept(fd, info):
    """write_atomically's mode, acl and owner for a new file in the place of the one
    open as `fd` (`info`, its os.fstat): no access ACL when it has none, not one a
    default ACL of the directory gives every new file (a reader the old one had not)."""
    return {"mode": stat.S_IMODE(info.st_mode), "acl": access_acl(fd) or NO_ACL, "owner": (info.st_uid, info.st_gid)}


def owner_not_kept(info, directory, tool, done):
    """Why `tool` ("rotate"), not run as root, leaves the file `info` (os.stat) in
    `directory` (its os.stat) as it was: its new version, `done` ("rotated"), could not
    have its owner or group (but for the group a set-group-ID directory gives each file
    made in it); else None."""
    if os.geteuid() == 0:
        return None
    if info.st_uid != os.geteuid():  # planted by another user (its time theirs), or root's
        from .backup.listing import user_name
        return (f"owned by {user_name(info.st_uid)}, not by the user running {tool}: {done}, it would be yours "
                "(only root keeps another user's file theirs); left alone")
    inherited = directory.st_gid if directory.st_mode & stat.S_ISGID else None
    if info.st_gid not in {os.getegid(), *os.getgroups(), inherited}:  # a group of readers, given by root
        import grp
        try:
            group = grp.getgrgid(info.st_gid).gr_name
        except KeyError:
            group = info.st_gid
        return (f"in group {group}, which the user running {tool} is not in: {done}, it would lose that group "
                "(only root keeps it); left alone")
    return None


def not_a_leftover(info, tool):
    """Why a file named like `tool`'s temporary file (its os.lstat) is none a killed
    run left: not a regular file, or another user's (never a run of this user's, nor
    one this user may remove from a sticky directory), else None."""
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file"
    if info.st_uid != os.geteuid():
        from .backup.listing import user_name
        return f"owned by {user_name(info.st_uid)}, not by the user running {tool}"
    return None


def rewrap_keeps(fd, info, path):
    """write_atomically's options for `rewrap --in-place` of `path` (open as `fd`, `info`
    its os.fstat): its mode, access ACL, owner and group, and its times with one second
    more, as rotate's; UnsafeDirectory (73), nothing written, where the caller could not
    keep its owner or group (rotate's rule). Before, FILE came out root's or the
    caller's, mode 0600, its time now: its owner and its group's readers lost it."""
    refused = owner_not_kept(info, os.stat(os.path.dirname(absolute(path))), "rewrap", "rewrapped")
    if refused:
        raise UnsafeDirectory(f"{path}: {refused}")
    return {**kept(fd, info), "times_ns": (info.st_atime_ns, info.st_mtime_ns + 1_000_000_000)}


def links_left(path, links, tool, kept=None):
    """The warning for a file with `links` hard links (its st_nlink) when that is more
    than one: the new file takes its name only, so the others keep the old one, with
    every slot `tool` removed from it (a retired key still opens them), or as `kept`
    says; else None."""
    others = links - 1
    if others < 1:
        return None
    return (f"{path}: {others} other hard link{'s' * (others > 1)} to it keep{'s' * (others == 1)} the file as it "
            f"was, {kept or f'with every slot {tool} removed'}: {tool} replaces this name only")
