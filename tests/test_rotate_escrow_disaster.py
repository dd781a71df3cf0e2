"""The disaster drill, for real: a host's backups (plain and custom, each with its
globals file, signed), the escrow key added to them afterwards with encpipe-rotate
(the data key unchanged: no --old-key-file), then the operations key gone. The
escrow identity and the signer's verify key alone restore each backup, its
globals file included, into a new database."""

import os

import pytest

from test_backup_restore import backup, encpipe, restore
from test_rotate import rotate


@pytest.mark.parametrize("fmt", ["plain", "custom"])
def test_backups_made_before_the_escrow_key_are_restored_with_it_alone(pg, tools, tmp_path, fmt):
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    ops, sign, escrow = keys / "backup.key", keys / "backup.sign", keys / "escrow.id"
    encpipe(["keygen", "-o", ops], check=True)
    verify = encpipe(["keygen", "--sign", "-o", sign], check=True).stdout.decode().strip()
    escrow_pub = encpipe(["keygen", "--x25519", "-o", escrow], check=True).stdout.decode().strip()
    db = f"drill_{fmt}"
    pg.dropdb(db)
    pg.psql(f'CREATE DATABASE "{db}"')
    pg.psql("CREATE TABLE t (n int); INSERT INTO t SELECT generate_series(1, 500);", db=db)
    directory = tmp_path / "backups"
    path, report = backup(pg, tools, str(directory), db, "--format", fmt, "--key-file", ops, "--sign-key", sign)
    assert report["key_ids"] == encpipe(["keyid", "--key-file", ops], check=True).stdout.decode().split()

    done = rotate(["--new-key-file", str(ops), "--escrow-recipient", escrow_pub, str(directory)])
    assert (done.returncode, done.stderr) == (0, b"")
    assert done.stdout.decode().count('"status": "rotated"') == 2  # the dump and its globals file

    os.unlink(ops)  # the operations key is gone
    target = f"drill_{fmt}_back"
    pg.dropdb(target)
    proc = restore(pg, tools, path, target, "--identity", escrow, "--signer", verify)
    assert proc.returncode == 0, proc.stderr.decode()
    assert pg.psql("SELECT count(*), sum(n) FROM t", db=target) == "500|125250\n"
    # the globals file the restore read beside it opens with the escrow identity too
    opened = encpipe(["open", "--identity", escrow, "--signer", verify, directory / report["globals"]], check=True)
    assert b"PostgreSQL database cluster dump" in opened.stdout
    pg.dropdb(target)
    pg.dropdb(db)
