"""The local backup store's writer: a file larger than its writeback window
(WRITEBACK, where it starts writeback and drops written pages from the page
cache) arrives byte for byte, fsync'd, under its temporary name only."""

import io
import os

from encpipe.backup import storage


def test_a_file_past_the_writeback_window_arrives_byte_for_byte(tmp_path):
    data = os.urandom(2 * storage.WRITEBACK + 12345)
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
