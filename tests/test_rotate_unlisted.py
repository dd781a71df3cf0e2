"""encpipe-rotate says which directory under DIR it could not list, and exits 1.

Its walk opened each subdirectory by its path and, as os.walk, passed over in
silence one it could not open or list: a tree nested deeper than a path can name
(PATH_MAX, 4096 bytes: ENAMETOOLONG) had its files left under the old key, not
reported, and rotate exited 0, which says that every encpipe file is now under
the new keys: the routine then retires the old key, and those files are lost.
Now such a directory is an `error` line (step `list`, exit 66) and the run's
status is 1; a directory gone meanwhile is still passed over."""

import errno
import os
from contextlib import contextmanager

from test_rotate import World, lines, rotate

from encpipe import dirwalk

LEVELS = 2100  # "d/" each: past PATH_MAX from any temporary directory


def nest(top, levels, name, content):
    """top/d/d/.../d/name, made through descriptors (its path is too long to name)."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(levels):
            os.mkdir("d", dir_fd=fd)
            inner = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = inner
        out = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600, dir_fd=fd)
        os.write(out, content)
        os.close(out)
    finally:
        os.close(fd)


def unnest(top):
    """Remove top/d/d/... one level at a time (shutil.rmtree recurses once a level)."""
    level = os.path.join(top, "d")
    while os.path.isdir(level):
        for name in os.listdir(level):
            if name != "d":
                os.unlink(os.path.join(level, name))
        if os.path.isdir(os.path.join(level, "d")):
            os.rename(os.path.join(level, "d"), os.path.join(top, "next"))
            os.rmdir(level)
            os.rename(os.path.join(top, "next"), level)
        else:
            os.rmdir(level)


def deepest(top):
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(LEVELS):
            inner = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = inner
        out = os.open("deep.enc", os.O_RDONLY, dir_fd=fd)
        try:
            return os.read(out, 1 << 20)
        finally:
            os.close(out)
    finally:
        os.close(fd)


def test_a_directory_too_deep_to_open_by_its_path_is_an_error_not_passed_over(tmp_path):
    world = World(tmp_path)
    world.add("a.enc", "--key-file", world.old_a)
    original = world.originals["a.enc"]
    try:
        nest(str(world.dir), LEVELS, "deep.enc", original)
        done = rotate(world.args(), timeout=300)
        records = [line for line in done.stdout.decode().splitlines()]
        got = lines(done)
        assert got["a.enc"]["status"] == "rotated"
        [failed] = [r for r in got.values() if r["status"] == "error"]
        assert (failed["step"], failed["exit"]) == ("list", 66), failed
        assert failed["error"] == "cannot list it: File name too long"
        assert failed["file"].startswith(os.path.join(str(world.dir), "d", "d"))
        assert done.returncode == 1, done.stderr
        assert done.stderr.decode() == "encpipe-rotate: error: 1 file(s) could not be rotated\n"
        assert len(records) == len(got)
        assert deepest(str(world.dir)) == original  # left as it was, and said
    finally:
        unnest(str(world.dir))


@contextmanager
def listed_top(tmp_path):
    """(TOP, the walk of TOP after its first step, which listed TOP/sub): TOP's
    descriptor closed afterwards."""
    top = tmp_path / "top"
    (top / "sub").mkdir(parents=True)
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        walk = dirwalk.tree(str(top), fd)
        assert next(walk)[3] == ["sub"]
        yield top, walk
    finally:
        os.close(fd)


def test_a_subdirectory_gone_before_it_is_opened_is_passed_over(tmp_path):
    """Not an error: nothing under DIR was left unrotated by it."""
    with listed_top(tmp_path) as (top, walk):
        os.rmdir(top / "sub")
        assert list(walk) == []


def test_a_subdirectory_that_cannot_be_opened_is_yielded_with_its_error(tmp_path, monkeypatch):
    real_open = os.open

    def refusing(path, *args, **kwargs):
        if str(path).endswith("/sub"):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    with listed_top(tmp_path) as (top, walk):
        monkeypatch.setattr(os, "open", refusing)
        try:
            [(directory, sub_fd, error, subdirs, names)] = list(walk)
        finally:
            monkeypatch.undo()
        assert (directory, sub_fd, subdirs, names) == (str(top / "sub"), None, None, None)
        assert isinstance(error, PermissionError)


def test_a_subdirectory_replaced_by_a_file_is_not_the_one_listed(tmp_path):
    """Not an error either: what is there now is not a directory of DIR's listing."""
    with listed_top(tmp_path) as (top, walk):
        os.rmdir(top / "sub")
        (top / "sub").write_bytes(b"a file now")
        assert list(walk) == [(str(top / "sub"), None, None, None, None)]


def test_a_subdirectory_replaced_by_a_link_that_cannot_be_followed_is_not_the_one_listed(tmp_path):
    """A link to itself (ELOOP) put in its place: what cannot be opened is not a
    directory of DIR's listing, as a link to a file is not; before, it was
    reported as a directory rotate could not list (exit 1)."""
    with listed_top(tmp_path) as (top, walk):
        os.rmdir(top / "sub")
        os.symlink("sub", top / "sub")
        assert list(walk) == [(str(top / "sub"), None, None, None, None)]
