"""Behaviours of encpipe-backup's steps, its unit and encpipe-check that a mutation
review of encpipe/backup/ found no test pinned: the metrics file replaced, never
written through another of its names; no stale size after a failed read back; a
fractional --timeout's line; $ and % in the unit; the sandbox's hidden
directories; a custom archive's time window."""

import io
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone

from encpipe.backup import job, label, metrics, unit
from encpipe.backup.job import main as job_main
from encpipe.errors import InputUnavailable
from test_backup_dir import ROOT, make_valid, stamp
from test_backup_label import _archive
from test_check_plugin import CHECK, HANG
from test_child_start_gaps import none_left
from test_systemd_unit import SCRIPT, directives, exec_start

NAME = "shop_20260101T000000Z.sql.enc"


def _sealed(tmp_path):
    key = tmp_path / "k.key"
    key.write_text("ab" * 32 + "\n")
    return subprocess.run([sys.executable, "-m", "encpipe", "seal", "--key-file", str(key)], input=b"SELECT 1;\n",
                          capture_output=True, check=True, env={**os.environ, "PYTHONPATH": ROOT}).stdout


def _commit(tmp_path, prom, name=NAME):
    """(status, stdout, stderr) of `job commit` of a sealed file into tmp_path/b as `name`."""
    (tmp_path / "b").mkdir(exist_ok=True)
    (tmp_path / "b" / ".encpipe-tmp.x").write_bytes(_sealed(tmp_path))
    out, err = io.BytesIO(), io.StringIO()
    code = job_main(["commit", "--dir", str(tmp_path / "b"), "--database", "shop", "--started", "1", "--kind", "sql",
                     "--metrics-file", str(prom), ".encpipe-tmp.x", name], stdout=out, stderr=err, env={})
    return code, out.getvalue(), err.getvalue()


def test_the_metrics_file_is_replaced_never_written_through_another_name_of_it(tmp_path):
    """A run replaces the metrics file (a new file renamed over it), never writes into the file its name held."""
    (tmp_path / "b").mkdir()
    prom, other = tmp_path / "encpipe.prom", tmp_path / "other.prom"
    before = metrics.render({"crm": {"encpipe_backup_last_attempt_success": 1}}).encode()
    prom.write_bytes(before)
    os.link(prom, other)
    out, err = io.BytesIO(), io.StringIO()
    code = job_main(["abort", "--dir", str(tmp_path / "b"), "--database", "shop", "--started", "1",
                     "--metrics-file", str(prom), ".encpipe-tmp.x"], stdout=out, stderr=err, env={})
    assert (code, out.getvalue(), err.getvalue()) == (0, b"", "")
    assert other.read_bytes() == before
    assert os.stat(prom).st_ino != os.stat(other).st_ino
    assert metrics.read(str(prom))["shop"]["encpipe_backup_last_attempt_success"] == 0


def test_a_stored_backup_that_cannot_be_read_back_leaves_no_earlier_size_in_the_metrics(tmp_path, monkeypatch):
    """A stored backup whose read back fails records success with no size, not the previous run's size."""
    prom = tmp_path / "encpipe.prom"
    assert _commit(tmp_path, prom)[0] == 0
    assert "encpipe_backup_last_size_bytes" in metrics.read(str(prom))["shop"]

    def unreadable(store, name, renamed, written=None):
        raise InputUnavailable("cannot read it: Connection reset by peer")
    monkeypatch.setattr(job, "read_back", unreadable)
    code, out, err = _commit(tmp_path, prom, "shop_20260102T000000Z.sql.enc")
    assert (code, err) == (1, f"encpipe-backup: error: backup written, but cannot read "
                              f"{tmp_path / 'b' / 'shop_20260102T000000Z.sql.enc'} back: cannot read it: "
                              "Connection reset by peer\n")
    recorded = metrics.read(str(prom))["shop"]
    assert recorded["encpipe_backup_last_attempt_success"] == 1
    assert "encpipe_backup_last_size_bytes" not in recorded


def test_a_read_back_the_system_refuses_is_said_by_its_reason_alone(tmp_path, monkeypatch):
    """An OSError reading a stored backup back is said as every other: its reason, no `[Errno N]`."""
    prom = tmp_path / "encpipe.prom"

    def failing(store, name, renamed, written=None):
        raise OSError(5, "Input/output error")
    monkeypatch.setattr(job, "read_back", failing)
    code, out, err = _commit(tmp_path, prom)
    assert (code, err) == (1, f"encpipe-backup: error: backup written, but cannot read "
                              f"{tmp_path / 'b' / NAME} back: Input/output error\n"), err


def test_a_timeout_in_tenths_of_a_second_is_said_as_given(tmp_path):
    """encpipe-check -t 0.5 that expires says "timed out after 0.5 s", CRITICAL (2)."""
    make_valid(tmp_path, f"shop_{stamp(datetime.now(timezone.utc))}.sql.enc")
    argv = ["-t", "0.5", "--max-age", "24", "--verify", "--key-command", f"{HANG} {tmp_path}; echo never",
            str(tmp_path)]
    with none_left(tmp_path):
        done = subprocess.run([CHECK, *argv], env={"PATH": os.environ["PATH"], "PYTHONPATH": ROOT},
                              capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout, done.stderr) == (2, "CRITICAL: timed out after 0.5 s reading the keys\n", "")


def test_a_dollar_sign_in_an_option_of_the_unit_reaches_the_run_as_one():
    """A literal $ in a unit's option is written $$ in ExecStart= (systemd's escape), kept as it is in ReadWritePaths=."""
    text = unit.render(SCRIPT, ["--dir", "/srv/pay$day", "--key-file", "/etc/encpipe/backup.key"])
    assert directives(text, "ExecStart") == [f'{SCRIPT} --dir "/srv/pay$$day" --key-file /etc/encpipe/backup.key -- %I']
    assert exec_start(text, "shop")[1:3] == ["--dir", "/srv/pay$day"]
    assert directives(text, "ReadWritePaths") == ['"/srv/pay$day"']


def test_a_percent_sign_in_a_writable_path_that_needs_no_quotes_is_escaped():
    """ReadWritePaths= of a path with a % and nothing to quote writes it %% (no specifier)."""
    text = unit.render(SCRIPT, ["--dir", "/srv/50%off", "--key-file", "/etc/encpipe/backup.key"])
    assert directives(text, "ReadWritePaths") == ["/srv/50%%off"]
    assert directives(text, "ExecStart") == [f"{SCRIPT} --dir /srv/50%%off --key-file /etc/encpipe/backup.key -- %I"]


def test_a_path_that_only_starts_like_tmp_or_home_is_not_hidden_by_the_sandbox():
    """/tmpfiles, /homes, /var/tmpx are not below /tmp, /home or /var/tmp: the unit takes them."""
    for top in ("/tmpfiles", "/homes", "/var/tmpx", "/rootfs"):
        text = unit.render(SCRIPT, ["--dir", f"{top}/b", "--key-file", "/etc/encpipe/backup.key"])
        assert directives(text, "ReadWritePaths") == [f"{top}/b"]
        assert unit.hidden(f"{top}/b") is None


def test_a_custom_archive_dated_over_16_hours_after_its_name_does_not_hold_that_backup():
    """An archive's header time may be 13 h before to 16 h after its name's, not a second more."""
    named = datetime(2026, 1, 1, 12, 0, 0)
    stamp_ = "20260101T120000Z"
    for delta, fits in [(timedelta(hours=16), True), (timedelta(hours=16, seconds=1), False),
                        (timedelta(hours=-13), True), (timedelta(hours=-13, seconds=-1), False)]:
        said = label.mismatch(label.Found("archive", b"shop", named + delta), "shop", stamp_)
        if fits:
            assert said is None
        else:
            at = named + delta
            assert said == (f"holds an archive pg_dump made at {at:%Y-%m-%d %H:%M:%S} (its local time), not near "
                            f"{stamp_} (its name's time)")


def test_an_archive_header_naming_a_database_longer_than_postgresql_allows_names_none():
    """A custom archive's header names a database of at most 63 bytes (NAMEDATALEN - 1); a longer one is no name."""
    assert label.archive_header(_archive(b"d" * 63)) == (b"d" * 63, datetime(2024, 1, 1, 0, 0, 0))
    assert label.archive_header(_archive(b"d" * 64)) is None
    assert label.found(_archive(b"d" * 64)).source is None
