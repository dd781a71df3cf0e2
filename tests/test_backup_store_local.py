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
