"""A globals file cannot switch psql to an encoding in which its role statements read otherwise.

encpipe-restore decodes a globals file by its first `SET client_encoding` and
checks each statement it keeps (pgglobals.refuse_unplain) as one statement of
pg_dumpall's. It kept every `SET client_encoding = '...'` of the file, though,
and sent it to psql as written. A second one naming SJIS (BIG5, GBK, GB18030,
UHC and JOHAB alike: client encodings in which the second byte of a character
may be a backslash) made psql read the rest of the file as SJIS: a byte 0x81
before the backslash of `E'\x81\\'; ...'` is, for psql, one character with
it, so the quote after it ends the string, where refuse_unplain read an
escaped quote and a string that ran on past the `;`. The SQL behind it ran as
the restoring superuser: ALTER ROLE mallory SUPERUSER, exit 0. pg_dumpall
writes one `SET client_encoding`; a file with another is refused (65) before
anything is touched.
"""

import pytest

from encpipe import pgglobals
from encpipe.pgfetch import globals_name
from test_backup_restore import backup, encpipe, ensure_small, restore

SWITCH = (b"CREATE ROLE smug_new;\nSET client_encoding = 'SJIS';\n"
          b"COMMENT ON ROLE smug_new IS E'\x81\\'; ALTER ROLE mallory SUPERUSER; --\\'';\n")


def refused_before_anything(pg, tools, key_file, tmp_path, added):
    """A restore of a backup whose genuine globals file has `added` after it (sealed
    with the key, given with --globals): 65, nothing on stdout, no role changed (mallory
    no superuser), no database made."""
    source = ensure_small(pg, "mal_source")
    path, _ = backup(pg, tools, str(tmp_path / "b"), source, "--key-file", key_file, "--format", "custom")
    genuine = encpipe(["open", "--key-file", key_file, globals_name(path)], check=True).stdout
    planted = tmp_path / "crafted.globals.sql.enc"
    planted.write_bytes(encpipe(["seal", "--key-file", key_file], input=genuine + added, check=True).stdout)
    pg.psql("DROP ROLE IF EXISTS smug_new;")
    roles = pg.psql("SELECT rolname, rolsuper, rolconfig FROM pg_roles ORDER BY 1")
    try:
        proc = restore(pg, tools, path, "mal_target", "--key-file", key_file, "--globals", str(planted))
        assert pg.psql("SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory'").strip() == "f"
        assert (proc.returncode, proc.stdout) == (65, b""), proc.stderr.decode()
        assert pg.psql("SELECT rolname, rolsuper, rolconfig FROM pg_roles ORDER BY 1") == roles
        assert "mal_target" not in pg.psql("SELECT datname FROM pg_database").split()
    finally:
        pg.psql("DROP ROLE IF EXISTS smug_new;")


def test_a_second_client_encoding_is_refused_before_psql_reads_anything(pg, tools, key_file, tmp_path, mallory):
    refused_before_anything(pg, tools, key_file, tmp_path, SWITCH)


@pytest.mark.parametrize("encoding", ["SJIS", "BIG5", "GBK", "GB18030", "UHC", "JOHAB"])
def test_a_globals_file_that_switches_encoding_halfway_is_refused(encoding):
    raw = b"SET client_encoding = 'UTF8';\n" + SWITCH.replace(b"SJIS", encoding.encode())
    with pytest.raises(pgglobals.Failure) as caught:
        pgglobals.checked(raw, "g", None, lambda *said: None)
    assert caught.value.status == 65
