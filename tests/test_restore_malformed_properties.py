"""A globals file whose properties line is well-formed JSON but holds values of the
wrong kind is refused as a globals file that cannot be read (65), never a bug (70).

The properties line (`-- encpipe-database-properties: {...}`) is taken from the
decrypted globals file and used as it is: an encoding, collation, owner, comment,
connection limit or settings of another JSON type than encpipe-backup writes made
encpipe-restore end in `internal error: TypeError at pgclient.py:106 (a bug of
encpipe's...)`, exit 70, where an ACL item that cannot be read is 65 (README,
"Restoring": exit status). Such a file comes from a maker the restore
authenticated (a raw key's holder) or one given with --globals FILE and
--allow-unauthenticated: it is a hostile file, and a hostile file is one error
line with a documented status.
"""

import json

import pytest

from encpipe.pgfetch import globals_name
from test_backup_restore import backup, encpipe, ensure_small, restore

PREFIX = b"-- encpipe-database-properties: "
WRONG = {"encoding": 5, "owner": ["postgres"], "comment": 5, "connlimit": "x", "settings": "x", "collate": None}


@pytest.mark.parametrize("field", WRONG, ids=list(WRONG))
def test_a_property_of_the_wrong_kind_is_refused_as_unreadable(pg, tools, key_file, tmp_path, field):
    source = ensure_small(pg, "props_source")
    path, _ = backup(pg, tools, str(tmp_path / "b"), source, "--key-file", key_file)
    genuine = encpipe(["open", "--key-file", key_file, globals_name(path)], check=True).stdout
    lines = genuine.split(b"\n")
    [at] = [i for i, line in enumerate(lines) if line.startswith(PREFIX)]
    props = json.loads(lines[at][len(PREFIX):])
    props[field] = WRONG[field]
    lines[at] = PREFIX + json.dumps(props).encode()
    planted = tmp_path / "odd.globals.sql.enc"
    planted.write_bytes(encpipe(["seal", "--key-file", key_file], input=b"\n".join(lines), check=True).stdout)
    pg.dropdb("props_target")
    proc = restore(pg, tools, path, "props_target", "--key-file", key_file, "--globals", str(planted))
    assert "internal error" not in proc.stderr.decode(), proc.stderr.decode()
    assert (proc.returncode, proc.stdout) == (65, b""), proc.stderr.decode()
    assert "props_target" not in pg.psql("SELECT datname FROM pg_database").split()
