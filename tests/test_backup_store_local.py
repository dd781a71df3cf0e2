"""The local backup store's writer: a file larger than its writeback window
(WRITEBACK, where it starts writeback and drops written pages from the page
cache) arrives byte for byte, fsync'd, under its temporary name only. Its
rename (localstore.Local.rename): never over a file under the final name, never
of a temporary file replaced meanwhile (a second link, a symbolic link, another
user's file), never left on a file put under the final name as it is renamed;
and a temporary name already there is never written into."""

import io
import os

import pytest

from encpipe import safefile
from encpipe.backup import localstore, storage
from encpipe.errors import Changed, IOFailure


def test_a_file_past_the_writeback_window_arrives_byte_for_byte(tmp_path):
    data = os.urandom(2 * localstore.WRITEBACK + 12345)
    store = storage.Local(str(tmp_path))
    assert storage.upload([store], ".encpipe-tmp.test", io.BytesIO(data), "db_x.sql.enc") == len(data)
    assert os.listdir(tmp_path) == [".encpipe-tmp.test"]
    with open(tmp_path / ".encpipe-tmp.test", "rb") as f:
        assert f.read() == data
    assert os.stat(tmp_path / ".encpipe-tmp.test").st_mode & 0o777 == 0o600


def test_a_file_is_fsynced_before_it_is_renamed_and_the_rename_made_durable(tmp_path, monkeypatch):
    """The temporary file's data reach the disk before it gets its final name (its
    writer's close), and the rename itself (the directory's fsync): a crash never
    leaves a backup's name on a file whose end is missing."""
    synced, real = [], os.fsync

    def spy(fd):
        info = os.fstat(fd)
        synced.append((info.st_dev, info.st_ino))
        return real(fd)
    monkeypatch.setattr(os, "fsync", spy)
    store = storage.Local(str(tmp_path))
    storage.upload([store], ".encpipe-tmp.test", io.BytesIO(b"sealed bytes"), "db_x.sql.enc")
    written = os.stat(tmp_path / ".encpipe-tmp.test")
    assert (written.st_dev, written.st_ino) in synced
    del synced[:]
    store.rename(".encpipe-tmp.test", "db_x.sql.enc")
    directory = os.stat(tmp_path)
    assert (directory.st_dev, directory.st_ino) in synced
    assert os.listdir(tmp_path) == ["db_x.sql.enc"]


def _uploaded(tmp_path, data=b"sealed bytes"):
    store = storage.Local(str(tmp_path))
    storage.upload([store], ".encpipe-tmp.test", io.BytesIO(data), "db_x.sql.enc")
    return store


def test_a_rename_never_replaces_a_file_under_the_final_name(tmp_path):
    store = _uploaded(tmp_path)
    (tmp_path / "db_x.sql.enc").write_bytes(b"a backup already there")
    with pytest.raises(IOFailure, match="already exists"):
        store.rename(".encpipe-tmp.test", "db_x.sql.enc")
    assert (tmp_path / "db_x.sql.enc").read_bytes() == b"a backup already there"
    assert (tmp_path / ".encpipe-tmp.test").read_bytes() == b"sealed bytes"


@pytest.mark.parametrize("swap", ["a second link", "a symbolic link", "another user's file"])
def test_a_temporary_file_replaced_while_it_was_written_is_not_renamed(tmp_path, swap):
    """Only the file this upload made, a regular file of this user with one link, gets
    the backup's name: else one whose other link a writer of the directory keeps
    (and may write through later), or a file of theirs, became the backup."""
    store = _uploaded(tmp_path)
    temp = tmp_path / ".encpipe-tmp.test"
    if swap == "a second link":
        os.link(temp, tmp_path / "kept")
    elif swap == "a symbolic link":
        os.rename(temp, tmp_path / "kept")
        temp.symlink_to("kept")
    else:
        os.chown(temp, 65534, 65534)
    with pytest.raises(Changed, match="was replaced while it was written; not stored"):
        store.rename(".encpipe-tmp.test", "db_x.sql.enc")
    assert not os.path.lexists(tmp_path / "db_x.sql.enc")


def test_a_file_put_under_the_final_name_as_it_is_renamed_is_not_kept(tmp_path, monkeypatch):
    """A file renamed over the backup's name between the rename and its check (the
    hook `renamed`) is removed, and the run fails: the name is never left on it."""
    store = _uploaded(tmp_path)
    (tmp_path / "other").write_bytes(b"planted")
    monkeypatch.setenv(safefile.TEST_HOOK, '[ "$1" = renamed ] && mv "$2/other" "$2/$4"; true')
    with pytest.raises(Changed, match="was replaced while it was renamed; not stored"):
        store.rename(".encpipe-tmp.test", "db_x.sql.enc")
    assert not os.path.lexists(tmp_path / "db_x.sql.enc")


def test_a_temporary_name_already_there_is_never_written_into(tmp_path):
    (tmp_path / ".encpipe-tmp.test").write_bytes(b"planted")
    store = storage.Local(str(tmp_path))
    with pytest.raises(IOFailure, match="cannot store .encpipe-tmp.test: File exists"):
        storage.upload([store], ".encpipe-tmp.test", io.BytesIO(b"sealed bytes"), "db_x.sql.enc")
    assert (tmp_path / ".encpipe-tmp.test").read_bytes() == b"planted"
