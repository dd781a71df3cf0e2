"""encpipe-restore's three forms (a restore; --list-pre-restore; --drop-pre-restore-older-than
DAYS [DBNAME]) given together: README's synopsis names each alone."""

import pytest

from encpipe import pgleftovers, pgrestore


@pytest.mark.parametrize("args", [["shop_20250101T020000Z.sql.zst.enc", "shop"], ["--drop-pre-restore-older-than", "0"]])
def test_list_pre_restore_with_another_form_is_a_usage_error(monkeypatch, capsys, args):
    """Before, it listed (exit 0) and restored, or dropped, nothing, unsaid: a script that
    added it to a restore, or to the drops, took that for done."""
    monkeypatch.setattr(pgleftovers, "pre_restore_copies", lambda *_: [])
    status = pgrestore.main(["--list-pre-restore", *args])
    out, err = capsys.readouterr()
    assert (status, out) == (64, ""), (status, out, err)
    assert err == ("encpipe-restore: error: --list-pre-restore lists only: it takes no FILE, DBNAME or "
                   "--drop-pre-restore-older-than\nencpipe-restore: hint: see encpipe-restore --help\n")
