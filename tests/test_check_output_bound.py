"""encpipe-check's output stays within what Nagios keeps of a plugin's (8 KiB in
Nagios 4): at most checkcmd.MAX_LINES lines and MAX_BYTES bytes, the first line
(the status text) and the exit status as they were, and a last line `... and N
more` for the lines left out. Before, thousands of databases with no backup were
a CRITICAL line each, all printed. The performance data (after ` | ` on the first
line) is that of the databases whose lines are printed, within the same bounds."""

import io
from datetime import datetime, timedelta, timezone

import pytest

from encpipe.backup.cli import main
from encpipe.backup.plugin import MAX_BYTES, MAX_LINES
from test_backup_dir import make_valid, stamp
from test_check_plugin import split_output


def _check(*argv):
    out, err = io.BytesIO(), io.StringIO()
    code = main(["check", "--max-age", "24", *argv], stdout=out, stderr=err, env={})
    assert err.getvalue() == ""
    return code, out.getvalue()


@pytest.mark.parametrize("width", [4, 60], ids=["short names: the line bound", "long names: the byte bound"])
def test_thousands_of_databases_with_no_backup_are_a_bounded_output(tmp_path, width):
    made = datetime.now(timezone.utc) - timedelta(hours=2)
    make_valid(tmp_path, f"shop_{stamp(made)}.sql.enc")
    names = [f"db{i:0{width}}" for i in range(3000)]
    code, out = _check(*(arg for name in names for arg in ("--database", name)), str(tmp_path))
    assert code == 2
    assert len(out.split(b"\n")) - 1 <= MAX_LINES and len(out) <= MAX_BYTES
    lines, data = split_output(out.decode())  # every line ends in a newline
    assert lines[0] == f"CRITICAL: {names[0]}: no backup"
    shown = lines[1:-1]
    assert shown == [f"CRITICAL: {name}: no backup" for name in names[1:len(shown) + 1]]
    total = len(names) + 1  # and the OK line of shop, last
    assert lines[-1] == f"... and {total - 1 - len(shown)} more"
    assert list(data) == [f"{name}_{what}" for name in names[:len(shown) + 1] for what in ("age", "backups")]
    assert len(out) > MAX_BYTES - 200  # as many as fit


def test_an_output_within_the_bounds_is_as_it_was(tmp_path):
    made = datetime.now(timezone.utc) - timedelta(hours=2)
    make_valid(tmp_path, f"shop_{stamp(made)}.sql.enc")
    names = [f"db{i:03}" for i in range(40)]  # 41 lines and their performance data: 3 KB
    code, out = _check(*(arg for name in names for arg in ("--database", name)), str(tmp_path))
    assert code == 2
    lines, data = split_output(out.decode())
    assert lines == [f"CRITICAL: {name}: no backup" for name in names] + \
        [f"OK: shop: newest backup shop_{stamp(made)}.sql.enc is 2.0 h old"]
    assert list(data) == [f"{name}_{what}" for name in names + ["shop"] for what in ("age", "backups")]
