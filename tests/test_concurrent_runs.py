"""Runs beside one another in one backup directory.

encpipe-verify takes no lock (it changes nothing): a prune, or encpipe-backup's own
pruning, may remove a file it listed before it reads it. Before, such a file was a
failure of the verification (66, `cannot read NAME: No such file or directory`, "ok":
false): a verify timer that met the nightly backup's pruning reported backups as
failed that had only been pruned. Now a file gone from the directory since it was
listed is a note, as a file the listing never saw would be nothing.
"""

import pytest

from encpipe import safefile
from test_backup_dir import make_valid, run
from test_backup_dir_hostile import hours_ago


@pytest.mark.parametrize("when", ["listing", "verifying"])
def test_verify_notes_a_file_a_prune_removed_after_it_was_listed(tmp_path, monkeypatch, when):
    """`listing`: removed before its header is read (the scan); `verifying`: once read,
    before it is authenticated."""
    d = tmp_path / "b"
    d.mkdir()
    newest, gone = (f"shop_{hours_ago(h)}.sql.enc" for h in (1, 48))
    make_valid(d, newest)
    make_valid(d, gone)
    opened = []

    def hook(step, directory, name, *rest):  # names sorted: the older (gone) is listed, then read, first
        if step == "opening":
            opened.append(name)
            if (len(opened) == 1) if when == "listing" else (name == gone and newest in opened):
                (d / gone).unlink()  # as a prune that holds DIR's lock does

    monkeypatch.setattr(safefile, "hook", hook)
    code, report, err = run("verify", str(d))
    assert (code, err) == (0, "")
    results = {r["filename"]: r for r in report["results"]}
    assert (report["ok"], report["verified"], report["failed"], report["not_verified"]) == (True, 1, 0, 1)
    assert results[newest]["ok"] is True
    assert (results[gone]["ok"], results[gone]["error"]) == (None, None)
    assert results[gone]["note"] == "removed since it was listed (a prune, or another run, meanwhile)"
