"""encpipe-check's output stays within what Nagios keeps of a plugin's (8 KiB in
Nagios 4): at most plugin.MAX_LINES lines and MAX_BYTES bytes, the exit status
as it was, the first line (the status text) as it was unless it alone is too
long (then cut, ending ` ...`), and a last line `... and N more` for the lines
left out, when there are any. Before, thousands of databases with no backup were
a CRITICAL line each, all printed. The performance data (after ` | ` on the first
line) is that of the databases whose lines are printed, within the same bounds."""

import io
from datetime import datetime, timedelta, timezone

import pytest

from encpipe.backup.cli import main
from encpipe.backup.plugin import MAX_BYTES, MAX_LINES, output
from test_backup_dir import ENV, make_corrupt, make_valid, stamp
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


def test_newer_files_that_fail_authentication_are_a_bounded_first_line(tmp_path):
    """Each newer file that fails --verify is a note on its database's line: a writer of
    the location who planted sixty made that line, the first, 8 KB (and with more, as
    long as they liked), printed whole after a `... and 0 more`. The first line's text
    is cut to fit, ending `...`, its performance data whole after it, and no line says
    nothing was left out."""
    now = datetime.now(timezone.utc)
    good = f"shop_{stamp(now - timedelta(hours=5))}.sql.enc"
    make_valid(tmp_path, good)
    planted = [f"shop_{stamp(now - timedelta(hours=1, seconds=i))}.sql.enc" for i in range(60)]
    for name in planted:
        make_corrupt(tmp_path, name)
    out, err = io.BytesIO(), io.StringIO()
    code = main(["check", "--max-age", "24", "--verify", str(tmp_path)], stdout=out, stderr=err, env=dict(ENV))
    assert (code, err.getvalue()) == (1, "")
    assert len(out.getvalue()) <= MAX_BYTES
    lines, data = split_output(out.getvalue().decode())
    assert len(lines) == 1
    assert lines[0].startswith(f"WARNING: shop: newest backup {good} is 5.0 h old; newest file {planted[0]} failed "
                               f"authentication: chunk 1 failed authentication: ")
    assert lines[0].endswith(" ...") and len(out.getvalue()) > MAX_BYTES - 100
    assert list(data) == ["shop_age", "shop_backups"]


def test_a_first_line_over_the_bound_is_cut_and_the_lines_left_out_still_counted():
    rows = [("WARNING: " + "x" * 5000, None), ("OK: a", None), ("OK: b", None)]
    shown = output(rows, 24, None, max_lines=100, max_bytes=300)
    assert shown[1:] == ["... and 2 more"]
    assert shown[0].startswith("WARNING: xxx") and shown[0].endswith("x ...")
    assert sum(len(line) + 1 for line in shown) <= 300
    assert output([("é" * 400, None)], 24, None, max_bytes=300) == ["é" * 147 + " ..."]  # between characters
    rows = [("WARNING: " + "x" * 5000, ("db", 3600, 2)), ("OK: a", ("a", 60, 1))]
    shown = output(rows, 24, None, max_bytes=300)  # the text cut; the performance data of its database whole
    assert shown[0].startswith("WARNING: xxx") and shown[0].endswith("x ... | 'db_age'=3600s;;86400;0 'db_backups'=2;;;0")
    assert shown[1:] == ["... and 1 more"] and sum(len(line) + 1 for line in shown) == 300
    # a first database's performance data that alone leaves the text no room: none, the bound held
    assert output([("CRITICAL: " + "x" * 500, ("d" * 300, None, 0))], 24, None, max_bytes=300) == [
        "CRITICAL: " + "x" * 285 + " ..."]
