"""A directory tree walked as os.walk walks it, top-down, but every directory
listed through a descriptor of its own, checked to be the one its parent listed:
a writer who swaps a directory for a link to elsewhere meanwhile gets it
reported, not walked, and what is done with the descriptor a walk hands out
(encpipe-rotate's removal of its temporary files) happens in the directory
listed, whatever its name leads to by then."""

import os
import stat

from . import safefile


def tree(top, top_fd):
    """(directory, its descriptor, its stat, subdirs, names) as os.walk(top), top-down, each
    directory listed through a descriptor (top's is `top_fd`, the one locked: never one a
    link put in its place since), links to directories listed but not followed, with a
    stack of its own (Python 3.11's recursed once a level: a writer of DIR could nest
    directories past the recursion limit, a traceback); `subdirs` None for a directory
    that is not the one listed any more (replaced by a link to elsewhere), and then
    its stat is the OSError that kept it from being listed, if one did (or from
    being looked at in its parent: one listed but not searchable, r without x) (unlike
    os.walk, which passes such a directory over in silence: a walk that means to
    reach every file must say which it could not reach). A directory gone meanwhile
    (ENOENT) is passed over; one replaced by something else is not the one listed."""
    stack = [(top, None)]
    while stack:
        directory, listed = stack.pop()
        if isinstance(listed, OSError):  # listed in its parent, but not to be looked at (no search right there)
            yield directory, None, listed, None, None
            continue
        try:
            fd = top_fd if listed is None else os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        except NotADirectoryError:  # replaced by a file, or by a link to one
            yield directory, None, None, None, None
            continue
        except OSError as e:  # unless what is there now is another (a link that loops, to a closed directory)
            yield directory, None, None if _replaced(directory, listed) else e, None, None
            continue
        try:
            yield from _listed(directory, fd, listed, stack)
        finally:
            if fd != top_fd:
                os.close(fd)


def _listed(directory, fd, listed, stack):
    try:
        now = os.fstat(fd)
        if listed is not None and not safefile.same_file(now, listed):
            yield directory, None, None, None, None
            return
        entries = list(os.scandir(fd))  # stat()s relative to fd
    except FileNotFoundError:
        return
    except OSError as e:
        yield directory, None, e, None, None
        return
    found = {e.name: e for e in entries if _is_dir(e)}
    subdirs = list(found)
    yield directory, fd, now, subdirs, [e.name for e in entries if e.name not in found]
    for name in reversed(subdirs):
        try:
            if not found[name].is_symlink():
                stack.append((os.path.join(directory, name), found[name].stat(follow_symlinks=False)))
        except FileNotFoundError:  # gone meanwhile
            pass
        except OSError as e:  # a directory listed but not searchable (r, no x): its names, never their files
            stack.append((os.path.join(directory, name), e))


def _replaced(directory, listed):
    """Whether `directory`'s name no longer leads to the directory listed (`listed`, its stat)."""
    try:
        now = os.lstat(directory)
        return listed is not None and not (stat.S_ISDIR(now.st_mode) and safefile.same_file(now, listed))
    except OSError:  # cannot even be looked at (a path too long): the error stands
        return False


def _is_dir(entry):
    try:
        return entry.is_dir()
    except OSError:
        return False
