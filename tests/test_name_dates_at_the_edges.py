"""Backup names dated at the ends of what a name can say (year 1), files last written at
times a date cannot hold, and the longest --max-age: the tools compute with them and
never fail on them (README, "Listing, pruning and verifying backups").

Before, a file planted as `db_00010101T000000Z.sql.enc` (anything in it) made
encpipe-prune, and encpipe-backup's own pruning, end in a traceback
(OverflowError: a year-1 time less an hour), nothing pruned; sealed, it made
encpipe-check end in one with status 1, a WARNING, whatever the backups' age. So
did a planted file whose modification time its owner set past year 9999 (tmpfs,
btrfs and NFS keep such a time), and `encpipe-prune --max-age 1000000`, a value
the option takes. encpipe-check, a plugin, now says CRITICAL of any bug it meets,
and of a metrics file whose read fails (README, "Monitoring").
"""

import os
from datetime import datetime, timezone

from encpipe.backup.listing import Entry, older_than_its_name
from encpipe.backup.names import iso, parse_name
from encpipe.backup.records import Item
from test_backup_dir import ENV, make_valid, run, write
from test_backup_dir_hostile import hours_ago, script

YEAR_ONE = "db_00010101T000000Z.sql.enc"


def test_prune_leaves_a_junk_file_named_for_year_one_and_prunes_the_rest(tmp_path):
    names = [f"db_{hours_ago(h)}.sql.enc" for h in (48, 24)]
    for name in names:
        make_valid(tmp_path, name)
    write(tmp_path, YEAR_ONE, b"planted\n")
    proc = script("prune", "--keep-last", "1", str(tmp_path), env=ENV)
    assert proc.returncode == 65, proc.stderr
    assert b"Traceback" not in proc.stderr
    assert sorted(os.listdir(tmp_path)) == sorted([YEAR_ONE, names[1]])


def test_check_counts_the_newest_backup_past_a_sealed_file_named_for_year_one(tmp_path):
    make_valid(tmp_path, YEAR_ONE)
    make_valid(tmp_path, f"db_{hours_ago(2)}.sql.enc")
    proc = script("check", "--max-age", "24", str(tmp_path), env=ENV)
    assert (proc.returncode, proc.stderr) == (0, b"")
    assert proc.stdout.startswith(b"OK: db: newest backup db_")


def test_list_gives_a_year_one_name_s_time_in_iso_8601(tmp_path):
    make_valid(tmp_path, YEAR_ONE)
    code, listing, _ = run("list", str(tmp_path))
    assert code == 0 and listing[0]["created"] == "0001-01-01T00:00:00Z"


def _entry(name, mtime):
    said = parse_name(name)
    return Entry(name, name, Item(name, 1, mtime=mtime), database=said.database, created=said.created)


def test_a_modification_time_no_date_can_hold_is_compared_not_converted():
    recent = f"db_{hours_ago(2)}.sql.enc"
    assert older_than_its_name(_entry(recent, 2.0 ** 40)) is None  # year 36812: written after its name
    assert older_than_its_name(_entry(recent, -(2.0 ** 40))) == (
        f"older than its name says (last written at Unix time {-(2 ** 40)})")
    assert older_than_its_name(_entry(recent, 0.0)) == "older than its name says (last written 1970-01-01T00:00:00Z)"
    assert older_than_its_name(_entry(YEAR_ONE, -62135596800.0)) is None  # 0001-01-01T00:00:00Z itself
    assert older_than_its_name(_entry(YEAR_ONE, -62135596800.0 - 3601)) is not None


def test_iso_writes_four_digits_of_year():
    assert iso(datetime(1, 1, 1, tzinfo=timezone.utc)) == "0001-01-01T00:00:00Z"
    assert iso(datetime(999, 12, 31, 23, 59, 59, 5000, tzinfo=timezone.utc)) == "0999-12-31T23:59:59.005Z"


def test_prune_with_the_largest_max_age_keeps_everything(tmp_path):
    names = [f"db_{hours_ago(h)}.sql.enc" for h in (48, 24)]
    for name in names:
        make_valid(tmp_path, name)
    code, report, err = run("prune", "--max-age", "1000000", str(tmp_path))
    assert (code, err) == (0, "")
    assert sorted(k["filename"] for k in report["kept"]) == sorted(names) and report["removed"] == []


def test_prune_max_age_removes_what_is_older_than_it(tmp_path):
    old, new = f"db_{hours_ago(24 * 3)}.sql.enc", f"db_{hours_ago(1)}.sql.enc"
    make_valid(tmp_path, old)
    make_valid(tmp_path, new)
    code, report, _ = run("prune", "--max-age", "2", str(tmp_path))
    assert code == 0 and [r["filename"] for r in report["removed"]] == [old]


def test_a_bug_met_by_check_is_critical_not_a_warning(tmp_path, monkeypatch):
    """A Python traceback exits 1, which Nagios reads as WARNING: the year-1 name made
    check say so whatever the backups' age. A bug check meets is now CRITICAL (2), one
    plugin line, whatever it is (here a deliberate one)."""
    from io import BytesIO, StringIO

    from encpipe.backup import metrics
    from encpipe.backup.cli import main

    make_valid(tmp_path, f"db_{hours_ago(2)}.sql.enc")

    def broken(*args, **kwargs):
        raise OverflowError("date value\nout of range")

    monkeypatch.setattr(metrics, "check", broken)
    out, err = BytesIO(), StringIO()
    assert main(["check", "--max-age", "24", str(tmp_path)], stdout=out, stderr=err, env=ENV) == 2
    assert (out.getvalue(), err.getvalue()) == (
        b"CRITICAL: internal error: OverflowError: date value\\nout of range\n", "")


def test_a_metrics_file_that_fails_to_read_is_critical_not_a_failed_output(tmp_path):
    """Reading /proc/self/mem from its start fails with EIO, as a metrics file on a
    failing disk does. Before, the OSError reached the scripts' handler of a failing
    standard output: `cannot write output: Input/output error`, 74, nothing on
    standard output (a plugin status Nagios reads as UNKNOWN, with the wrong cause)."""
    make_valid(tmp_path, f"db_{hours_ago(2)}.sql.enc")
    proc = script("check", "--max-age", "24", "--metrics-file", "/proc/self/mem", str(tmp_path), env=ENV)
    assert (proc.returncode, proc.stderr) == (2, b"")
    assert proc.stdout == (b"CRITICAL: cannot read the metrics file: cannot read /proc/self/mem: "
                           b"Input/output error\n")


def test_an_os_error_check_meets_is_critical_not_a_failed_output(tmp_path, monkeypatch):
    """One that no step expects (here a deliberate one) is a bug: CRITICAL, as any other."""
    from io import BytesIO, StringIO

    from docopt import docopt

    from encpipe.backup import checkcmd, metrics
    from encpipe.backup.cli import USAGE
    from encpipe.backup.usagetext import for_docopt
    from encpipe.cli import Io

    make_valid(tmp_path, f"db_{hours_ago(2)}.sql.enc")

    def broken(*args, **kwargs):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(metrics, "check", broken)
    out, err = BytesIO(), StringIO()  # checkcmd.run itself: before, the OSError went on to main's handler
    args = docopt(for_docopt(USAGE), argv=["check", "--max-age", "24", str(tmp_path)])
    assert checkcmd.run(args, Io(None, out, err, ENV), str(tmp_path), 24, None) == 2
    assert (out.getvalue(), err.getvalue()) == (b"CRITICAL: internal error: OSError: 5 Input/output error\n", "")


def test_a_backup_named_before_year_1000_is_judged_by_its_name_s_four_digit_year(tmp_path):
    """A name's time before year 1000 was written back by strftime without its leading
    zeros (`10101T000000Z` for 0001-01-01): an archive (any genuine one, copied or renamed
    under such a name) then failed as an internal error, `ValueError` (encpipe-verify 70,
    a bug's status), and a dump whose label agreed with its name failed as holding
    another time. Now the archive fails as any archive far from its name's time (65),
    and the label's dump verifies."""
    from test_backup_label import SQL, _archive, _prefix, _sealed

    archives = ["db_00010101T000000Z.dump.enc", "db_09991231T000000Z.dump.enc"]
    for name in archives:
        _sealed(tmp_path, name, _archive(b"db", made=(0, 0, 2, 5, 11, 126, 0)))  # 2026-12-05 02:00:00
    _sealed(tmp_path, YEAR_ONE, _prefix("none", "db", "00010101T000000Z") + SQL)
    code, report, err = run("verify", str(tmp_path))
    results = {r["filename"]: r for r in report["results"]}
    assert (code, results[YEAR_ONE]["ok"], results[YEAR_ONE]["label"]) == (65, True, "label")
    assert err == "".join(
        f"encpipe-verify: error: {tmp_path / name}: holds an archive pg_dump made at 2026-12-05 02:00:00 (its local"
        f" time), not near {name[3:19]} (its name's time): a copy of another backup put under this name?\n"
        for name in archives)
    assert [results[name]["exit_code"] for name in archives] == [65, 65]


def test_an_archive_header_dated_before_year_1000_is_shown_with_four_digits():
    """A custom archive's header time in a refusal line: strftime wrote year 5 as `5`."""
    from encpipe.backup.label import Found, mismatch

    said = mismatch(Found("archive", b"db", datetime(5, 1, 2, 3, 4, 5)), "db", "20260101T000000Z")
    assert said == "holds an archive pg_dump made at 0005-01-02 03:04:05 (its local time), not near " \
                   "20260101T000000Z (its name's time)"
