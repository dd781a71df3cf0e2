"""A remote may list an object under another name than the one it was written
under: `rclone serve s3` (here, the suite's S3 server) lists a key holding a
control character or U+201B under rclone's encoding of it (`a\\nb` as `a␊b`, a tab
as `␉`, DEL as `␡`, `‛` as `‛‛`), and `rclone cat` of either name reaches it. A
database whose name holds a newline (which encpipe-backup writes, README
"Monitoring") then has its remote backups stored, exit 0, under a name no
listing shows: never counted for its series nor pruned, `encpipe-check
--database` says none, and a restore of the name the run's JSON line gives is
`no such object`. Not fixed: the test states what is wanted."""

import io
import os

import pytest

from encpipe.backup.rclonestore import Rclone
from encpipe.backup.storage import upload


@pytest.mark.xfail(strict=True, reason="the remote lists a newline's object as ␊: a backup of a database whose name "
                                       "holds one is stored under a name no listing of it shows")
def test_an_object_written_under_a_name_with_a_newline_is_listed_under_that_name(s3):
    store = Rclone(s3.location + "/listed-as-written", {**os.environ, **s3.env})
    name = "a\nb_20250101T000000Z.sql.enc"
    upload([store], ".encpipe-tmp.x", io.BytesIO(b"x" * 10))
    store.rename(".encpipe-tmp.x", name)
    assert store.head(name).size == 10  # stored, as the run's read-back finds it
    assert [item.name for item in store.list()] == [name]
