"""encpipe-rotate under a directory it may list but not search (read, no execute:
what `chmod -R 600` makes of a subdirectory the backups were moved to).

Listing such a directory works (its names and their kinds come with the list),
but nothing in it can be looked at: its files could not be examined, and were
reported `ignored` ("not a regular file"); a directory in it could not be looked
at either, and was passed over without a line. Rotate then exited 0, which says
that every encpipe file is now under the new keys: the routine retires the old
key, and those files are lost. Now such a file is an `error` line (step `read`,
exit 66), and such a directory one too (step `list`, exit 66), and the run's
status is 1. Tests run as root, whom no mode stops: the kernel's refusals are
made here (every look-up of a name in that directory is EACCES)."""

import argparse
import errno
import json
import os

import pytest

from encpipe import dirwalk, rotatewalk
from encpipe.rotate import Rotation


def denied(name):
    return PermissionError(errno.EACCES, "Permission denied", name)


class Entry:
    """A DirEntry of the unsearchable directory: its name and kind (from the list), no stat."""

    def __init__(self, entry):
        self.entry, self.name, self.path = entry, entry.name, entry.path

    def is_dir(self, **kwargs):
        return self.entry.is_dir(**kwargs)

    def is_symlink(self):
        return self.entry.is_symlink()

    def stat(self, **kwargs):
        raise denied(self.name)


@pytest.fixture
def unsearchable(tmp_path, monkeypatch):
    """TOP holding A, which holds f.enc and B (B holding g.enc); A listable, not searchable."""
    top = tmp_path / "top"
    (top / "a" / "b").mkdir(parents=True)
    (top / "a" / "f.enc").write_bytes(b"ENCPIPE under the old key")
    (top / "a" / "b" / "g.enc").write_bytes(b"ENCPIPE under the old key")
    a = os.stat(top / "a")

    def inside(dir_fd):
        return dir_fd is not None and dirwalk.safefile.same_file(os.fstat(dir_fd), a)

    real_lstat, real_stat, real_open, real_scandir = os.lstat, os.stat, os.open, os.scandir

    def lstat(path, *, dir_fd=None):
        if inside(dir_fd):
            raise denied(path)
        return real_lstat(path, dir_fd=dir_fd)

    def stat_(path, *, dir_fd=None, follow_symlinks=True):
        if inside(dir_fd):
            raise denied(path)
        return real_stat(path, dir_fd=dir_fd, follow_symlinks=follow_symlinks)

    def open_(path, flags, mode=0o777, *, dir_fd=None):
        if inside(dir_fd) or str(path).startswith(str(top / "a") + os.sep):
            raise denied(path)
        return real_open(path, flags, mode, dir_fd=dir_fd)

    def scandir(path="."):
        if isinstance(path, int) and inside(path):
            return iter([Entry(e) for e in real_scandir(path)])
        return real_scandir(path)

    for name, fake in (("lstat", lstat), ("stat", stat_), ("open", open_), ("scandir", scandir)):
        monkeypatch.setattr(os, name, fake)
    return top


class Keys:
    """An Encpipe of key ids only: nothing under A is ever inspected."""

    def key_ids(self, files, option="--key-file"):
        return [f"{abs(hash(f)) % (1 << 64):016x}" for f in files]

    def recipient_ids(self, public_keys):
        return {}


def rotation(monkeypatch):
    monkeypatch.delenv("ENCPIPE_SIGNER", raising=False)
    options = argparse.Namespace(old_key_file=["old.key"], new_key_file=["new.key"], escrow_recipient=[],
                                 sign_key=[], signer=[], signer_file=[], dry_run=False, progress=False,
                                 allow_shared_dir=False)
    return Rotation(options, Keys())


def test_a_file_and_a_directory_it_cannot_look_at_are_errors_not_ignored_or_passed_over(unsearchable, monkeypatch,
                                                                                       capsys):
    done = rotation(monkeypatch)
    fd = os.open(unsearchable, os.O_RDONLY | os.O_DIRECTORY)
    try:
        rotatewalk.walk(str(unsearchable), fd, done, dry_run=False)
    finally:
        os.close(fd)
    out = capsys.readouterr().out
    got = {os.path.relpath(r["file"], unsearchable): r for r in map(json.loads, out.splitlines())}
    a = os.path.join(str(unsearchable), "a")
    assert got == {
        "a/f.enc": {"file": os.path.join(a, "f.enc"), "status": "error", "step": "read", "exit": 66,
                    "error": f"cannot open {os.path.join(a, 'f.enc')}: Permission denied"},
        "a/b": {"file": os.path.join(a, "b"), "status": "error", "step": "list", "exit": 66,
                "error": "cannot list it: Permission denied"},
    }
    assert done.errors == 2  # the run's status: 1


def test_the_walk_yields_a_directory_it_cannot_look_at_with_its_error(unsearchable):
    fd = os.open(unsearchable, os.O_RDONLY | os.O_DIRECTORY)
    try:
        walked = [(d, error) for d, _, error, subdirs, _ in dirwalk.tree(str(unsearchable), fd) if subdirs is None]
    finally:
        os.close(fd)
    [(directory, error)] = walked
    assert directory == os.path.join(str(unsearchable), "a", "b")
    assert isinstance(error, PermissionError)
