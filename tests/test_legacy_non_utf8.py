"""A previous tool's passphrase that is not UTF-8. Node reads BACKUP_ENCRYPTION_KEY
as UTF-8, each invalid sequence one U+FFFD, and PBKDF2 hashes that string's UTF-8
bytes: the same setting, given to encpipe as the same bytes, must make the same key.
The expected key was computed by Node (pbkdf2Sync on process.env.BACKUP_ENCRYPTION_KEY
set to the bytes below), not by this project's code."""

import io
import os

from encpipe import cli, legacy
from encpipe.keys import KeyLoader, KeySources

SETTING = b"caf\xe9 \xf0\x9f\x98"  # Latin-1 e-acute, then a 4-byte sequence cut short
NODE_KEY = bytes.fromhex("6990ddf51c53be40e594b7eac8787c0d1b806efd5596a56745edccd37c6a70cc")
PLAINTEXT = b"-- PostgreSQL database dump\n"


def old_file():
    out = io.BytesIO()
    legacy.seal_legacy(io.BytesIO(PLAINTEXT), out, NODE_KEY)
    return out.getvalue()


def test_a_setting_that_is_not_utf8_makes_nodes_key():
    assert legacy.key_from_setting(os.fsdecode(SETTING)).key == NODE_KEY


def test_a_passphrase_that_is_not_utf8_makes_nodes_key_from_any_source():
    loader = KeyLoader(env={"ENCPIPE_PASSPHRASE": os.fsdecode(SETTING)}, warn=lambda *a, **k: None)
    keys = legacy.load_keys(loader, KeySources(), {})
    assert [k.key for k in keys] == [NODE_KEY]


def test_open_legacy_reads_a_file_made_under_such_a_setting():
    out, err = io.BytesIO(), io.StringIO()
    status = cli.main(["open", "--legacy", "-"], stdin=io.BytesIO(old_file()), stdout=out, stderr=err,
                      env={"BACKUP_ENCRYPTION_KEY": os.fsdecode(SETTING)})
    assert (status, out.getvalue(), err.getvalue()) == (0, PLAINTEXT, "")
