"""Key files that another user could replace: refused, as ssh's StrictModes
refuses an authorized_keys file in a directory others can write.

A key file (a key, an identity, a passphrase, a recipient list, a signing key, a
signer file) named by a path is read only when no user but the caller and root
can change what that path reads: the file is owned by one of them and others
cannot write it (group write only when every member of the group is one of
them, as writers.other_writer says), and neither can they write its directory
or a directory above it (a sticky one excepted: there only a name's owner can
replace it), nor the directory holding a name a `..` leaves (the working
directory's too: that is where the .. leads). Each symbolic link on the way is judged as the file is by where it
lives and whom it belongs to (one in a directory others can write can be
pointed elsewhere); the file and the directories judged are the ones the path
really leads to. A character or block device is judged by its owner only
(writing /dev/null replaces nothing). `-`, /dev/stdin and /dev/fd/N are not
paths of a file but the caller's own descriptors: never refused here. A path
that leads nowhere is left to its reader (66), unless a directory others can
write is where it would be made.

Refused: UnsafeDirectory (73), before any key is read; `--allow-shared-dir`
(the flag that lets seal -o write in such a directory) lets it be read.
"""

import os
import stat

from . import pathwalk
from .errors import UnsafeDirectory
from .keyargs import FD_PATH, SECRET_FILES
from .keys import STDIN_PATHS
from .textform import shown_name
from .writers import ALLOW_FLAG, _owners, _user_name, first_other_writer, left_writer, other_writer, owner_writer


def refuse_replaceable(given, options=SECRET_FILES, allow_shared=False):
    """UnsafeDirectory (73) for the first path given to one of `options` (`given`:
    {option: [path...]}, docopt-style) that a user other than the caller or root
    could replace; nothing with `allow_shared`."""
    if allow_shared:
        return
    for option in options:
        for path in given.get(option) or []:
            refuse_if_replaceable(path, option)


def refuse_if_replaceable(path, option):
    if not path or path in STDIN_PATHS or FD_PATH.fullmatch(path):
        return
    found = replacer(path)
    if found:
        what, writer = found
        shown = shown_name(path) if option == "FILE" else f"{option} {shown_name(path, secret_file=True)}"
        missing = not os.path.lexists(path)  # a mistyped name, most likely: said so first
        if what.startswith("the file ") and writer.endswith("(its owner)"):  # chmod would change nothing
            hint = f"run this as its owner, or give {_user_name(os.geteuid())} a copy of its own, or pass {ALLOW_FLAG}"
        else:
            hint = f"keep it where only {_owners()} can write (chmod go-w), or pass {ALLOW_FLAG}"
        raise UnsafeDirectory(
            f"{shown}: {'no such file, and ' if missing else ''}{what} can be written by {writer}"
            f"{', who could make it' if missing else ''}; refusing to read a key from it", hint=hint)


def replacer(path):
    """(what, who): the first thing on the way to the file `path` names (the file,
    a symbolic link, a directory) that a user other than the caller or root can
    change, and who; None when there is none."""
    for kind, where, name, info in pathwalk.steps(path):
        if kind == pathwalk.UP:
            found = left_writer(where)
        elif kind == pathwalk.LINK:
            found = _link_writer(name, info, where)
        elif kind == pathwalk.MISSING:  # nothing there (yet): who could put it there? (a sticky one's writers too)
            return _directory_writer(where, sticky=False)
        else:  # REACHED
            return _reached_writer(path, where)
        if found:
            return found


def _reached_writer(path, real):
    """replacer's answer for `real`, where the walk of `path` ended: the file, else its directory."""
    try:
        info = os.lstat(real)  # what the last name (or a `..`) led to
    except OSError:
        return _directory_writer(os.path.dirname(real), sticky=False)
    return _file_writer(pathwalk.absolute(path), real, info) or _directory_writer(os.path.dirname(real))


def _file_writer(absolute, real, info):
    if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode):
        writer = owner_writer(info)  # by its owner: 0666 is /dev/tty's, whose writers change nothing it gives
    else:
        writer = other_writer(info, sticky_ok=False, where=real)
    if not writer:
        return None
    return ("the file itself" if real == os.path.normpath(absolute) else f"the file it leads to, {real},"), writer


def _link_writer(link, info, directory):
    writer = owner_writer(info)  # a link's own mode is always 0777: only its owner (or its directory) can change it
    if writer:
        return f"its symbolic link {link}", writer
    found = _directory_writer(directory)
    return (f"{found[0]}, holding its symbolic link {link}", found[1]) if found else None


def _directory_writer(directory, sticky=True):
    """(what, who) for real `directory` or one above it, when another user can write
    it; a sticky `directory` is not (only if `sticky`: for a name that is there)."""
    found = first_other_writer(directory, sticky_here=sticky)
    if not found:
        return None
    where, writer = found
    return (f"its directory {where}" if where == directory else where), writer
