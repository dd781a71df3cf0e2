"""encpipe-backup --metrics-file (a node_exporter textfile) and encpipe-check."""

import fcntl
import io
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import pytest
from prometheus_client.parser import text_string_to_metric_families

from encpipe.backup import checkcmd, metrics
from encpipe.backup.cli import main
from cliutil import plugin_text
from test_backup_dir import make_truncated, make_valid, stamp
from test_backup_faults import _fake_pg_dump, _with_path_first
from test_backup_made_dir import env as made_dir_env
from test_backup_restore import (
    BACKUP,
    REPO,
    backup,
    ensure_small,
    make_key,
    script_env,
)
from test_backup_restore import run as run_process


def samples(path):
    """{(metric, database): value}, parsed by Prometheus' own text parser."""
    with open(path) as f:
        families = list(text_string_to_metric_families(f.read()))
    assert {f.name for f in families} == set(metrics.METRICS)
    assert all(f.type == "gauge" and f.documentation for f in families)
    return {(s.name, s.labels["database"]): s.value for f in families for s in f.samples}


def test_metrics_file_records_success_and_failure_per_database(pg, tools, key_file, tmp_path):
    db = ensure_small(pg, "bk_metrics")
    prom = str(tmp_path / "textfile" / "encpipe.prom")
    os.makedirs(os.path.dirname(prom))
    before = time.time()
    path, report = backup(pg, tools, str(tmp_path / "b"), db, "--key-file", key_file, "--metrics-file", prom)
    after = time.time()
    got = samples(prom)
    assert before <= got[("encpipe_backup_last_success_timestamp_seconds", db)] <= after
    assert got[("encpipe_backup_last_attempt_timestamp_seconds", db)] == \
        got[("encpipe_backup_last_success_timestamp_seconds", db)]
    assert got[("encpipe_backup_last_attempt_success", db)] == 1
    assert 0 < got[("encpipe_backup_last_duration_seconds", db)] <= after - before
    assert got[("encpipe_backup_last_size_bytes", db)] == os.path.getsize(path) == report["bytes"]
    assert oct(os.stat(prom).st_mode & 0o777) == "0o644"
    assert [n for n in os.listdir(os.path.dirname(prom)) if not n.endswith(".lock")] == ["encpipe.prom"]

    # A failing run of another database: its own samples, db's kept.
    fake = _fake_pg_dump(tmp_path, "echo 'CREATE TABLE t (x int);'\nexit 1\n")
    env = _with_path_first(script_env(pg, tools), fake)
    proc = run_process([BACKUP, "--dir", tmp_path / "b", "--key-file", key_file, "--metrics-file", prom,
                        'other "db"\\x'], env)
    assert proc.returncode == 1
    failed = samples(prom)
    assert failed[("encpipe_backup_last_attempt_success", 'other "db"\\x')] == 0
    assert ("encpipe_backup_last_success_timestamp_seconds", 'other "db"\\x') not in failed
    assert {k: v for k, v in failed.items() if k[1] == db} == {k: v for k, v in got.items() if k[1] == db}

    # encpipe-check: db's backup is fresh, but the metrics say other's last attempt failed.
    check = run_process([sys.executable, REPO / "scripts" / "encpipe-check", "--max-age", "24",
                         "--metrics-file", prom, "--database", db, tmp_path / "b"], script_env(pg, tools))
    lines = plugin_text(check.stdout.decode()).splitlines()
    assert check.returncode == 2  # other "db"\x has no backup at all
    assert lines[0] == 'CRITICAL: other "db"\\\\x: no backup; the last backup attempt failed'  # the worst first; a backslash shown doubled
    assert lines[1].startswith(f"OK: {db}: newest backup {os.path.basename(path)} is 0.0 h old")


def test_check_ok_warning_critical(tmp_path):
    now = datetime.now(timezone.utc)
    make_valid(tmp_path, f"shop_{stamp(now - timedelta(hours=30))}.sql.enc")
    make_valid(tmp_path, f"shop_{stamp(now - timedelta(hours=2))}.sql.enc")
    make_valid(tmp_path, f"crm_{stamp(now - timedelta(hours=5))}.dump.enc")
    make_valid(tmp_path, "crm_29990101T000000Z.dump.enc")  # the future proves nothing
    code, out = _check("--max-age", "24", str(tmp_path))
    assert code == 0
    assert out == ["OK: crm: newest backup crm_%s.dump.enc is 5.0 h old" % stamp(now - timedelta(hours=5)),
                   "OK: shop: newest backup shop_%s.sql.enc is 2.0 h old" % stamp(now - timedelta(hours=2))]
    code, out = _check("--max-age", "24", "--warn-age", "4", str(tmp_path))
    assert code == 1 and [line.split(":")[0] for line in out] == ["WARNING", "OK"]
    code, out = _check("--max-age", "3", "--database", "new", str(tmp_path))
    assert code == 2 and [line.split(":")[0] for line in out] == ["CRITICAL", "CRITICAL", "OK"]
    assert out[1] == "CRITICAL: new: no backup"
    # A newer file under a backup's name that is not a whole sealed file: warning.
    make_truncated(tmp_path, f"shop_{stamp(now - timedelta(hours=1))}.sql.enc")
    code, out = _check("--max-age", "24", str(tmp_path))
    # the worst first (Nagios shows the first line as the status text), then by name
    assert code == 1 and out[0].startswith("WARNING: shop: newest backup shop_") and out[0].endswith("is damaged")
    assert out[1].startswith("OK: crm: ")
    code, out = _check("--max-age", "24", str(tmp_path / "missing"))
    assert code == 2 and out[0].startswith("CRITICAL: cannot list")


def test_an_age_never_reads_as_a_threshold_it_passed_nor_under_one_it_failed(tmp_path, monkeypatch):
    """Ages were shown rounded to 0.1 h: a backup 23.97 h old was "OK ... 24.0 h old" at
    --max-age 24, one 24.03 h old "CRITICAL ... 24.0 h old, over --max-age 24 h". Now an
    age is rounded down or up where the nearest 0.1 h would read as the threshold."""
    now = datetime(2026, 1, 2, tzinfo=timezone.utc)

    class Fixed(datetime):
        @classmethod
        def now(cls, tz=None):
            return now

    monkeypatch.setattr(checkcmd, "datetime", Fixed)
    names = {}
    for db, hours, minutes in (("almost", 23, 58), ("late", 24, 2), ("over", 12, 2), ("under", 11, 58), ("two", 2, 0)):
        names[db] = f"{db}_{stamp(now - timedelta(hours=hours, minutes=minutes))}.sql.enc"
        make_valid(tmp_path, names[db])
    code, out = _check("--max-age", "24", str(tmp_path))
    assert code == 2 and out == [f"CRITICAL: late: newest backup {names['late']} is 24.1 h old, over --max-age 24 h",
                                 f"OK: almost: newest backup {names['almost']} is 23.9 h old",
                                 f"OK: over: newest backup {names['over']} is 12.0 h old",
                                 f"OK: two: newest backup {names['two']} is 2.0 h old",
                                 f"OK: under: newest backup {names['under']} is 12.0 h old"]
    code, out = _check("--max-age", "24", "--warn-age", "12", str(tmp_path))
    assert code == 2 and out == [
        f"CRITICAL: late: newest backup {names['late']} is 24.1 h old, over --max-age 24 h",
        f"WARNING: almost: newest backup {names['almost']} is 23.9 h old, over --warn-age 12 h",
        f"WARNING: over: newest backup {names['over']} is 12.1 h old, over --warn-age 12 h",
        f"OK: two: newest backup {names['two']} is 2.0 h old",
        f"OK: under: newest backup {names['under']} is 11.9 h old"]


def _check(*argv):
    out, err = io.BytesIO(), io.StringIO()
    code = main(["check", *argv], stdout=out, stderr=err, env={})
    return code, plugin_text(out.getvalue().decode()).splitlines()


def test_check_reads_each_file_a_bounded_number_of_times():
    """check groups the files by database in one pass: with one file for each of N
    databases, the files' attributes are read O(N) times, not N x N."""
    from encpipe.backup.listing import Entry
    from encpipe.backup.records import Item
    reads = [0]

    class Counted(Entry):
        __slots__ = ()

        def __getattribute__(self, name):
            reads[0] += 1
            return object.__getattribute__(self, name)

    now = datetime(2026, 1, 2, tzinfo=timezone.utc)
    count = 300
    entries = [Counted(f"db{i:03}_x.sql.enc", f"/d/db{i:03}_x.sql.enc", Item(f"db{i:03}_x.sql.enc"), "sealed", database=f"db{i:03}",
                       dump_format="plain", created=now - timedelta(hours=1), naming="encpipe",
                       fingerprint=(i,), maker_checkable=True) for i in range(count)]
    status, rows = metrics.check(entries, [], {}, now, 24, None)
    assert status == 0 and len(rows) == count
    assert rows[7] == ("OK: db007: newest backup db007_x.sql.enc is 1.0 h old", ("db007", 3600, 1))
    assert reads[0] < 40 * count, reads[0]  # 26 a file; 325 a file when each database read them all


@pytest.mark.parametrize("fault, status", [("DIR is a file", 74), ("DIR is shared", 73), ("DIR's lock is held", 75),
                                           ("the key file is shared", 73), ("--passphrase-fd is closed", 66)])
def test_a_run_that_fails_before_it_dumps_is_recorded_as_failed(tmp_path, fault, status):
    """A run that fails before it dumps anything, at DIR (a file in its place, a
    directory others can write, its lock held past ENCPIPE_LOCK_WAIT) or at a key
    (a key file others can write, a closed descriptor), is a failed attempt too:
    before, it was not recorded, and the metrics file (and encpipe-check) went on
    saying the last attempt succeeded. No server is needed: these come before pg_dump."""
    prom = tmp_path / "textfile" / "encpipe.prom"
    prom.parent.mkdir()
    metrics.record(str(prom), "db", ok=True, finished=1010.0, duration=10.0, size=5)
    directory, key = tmp_path / "backups", make_key(tmp_path / "backup.key")
    if fault == "DIR is a file":
        directory.write_bytes(b"")
    else:
        directory.mkdir()
        directory.chmod(0o777 if fault == "DIR is shared" else 0o700)
    if fault == "the key file is shared":
        os.chmod(key, 0o666)
    extra = ["--passphrase-fd", "9"] if fault == "--passphrase-fd is closed" else []
    fd = os.open(directory, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        done = subprocess.run([BACKUP, "--dir", str(directory), "--key-file", key, *extra, "--metrics-file", str(prom),
                               "db"], env={**made_dir_env(tmp_path), "ENCPIPE_LOCK_WAIT": "0"}, capture_output=True,
                              timeout=60)
    finally:
        os.close(fd)
    assert (done.returncode, done.stdout) == (status, b""), done.stderr
    assert "metrics not written" not in done.stderr.decode() and "Traceback" not in done.stderr.decode()
    got = samples(prom)
    assert got[("encpipe_backup_last_attempt_success", "db")] == 0
    assert got[("encpipe_backup_last_attempt_timestamp_seconds", "db")] > 1010
    assert got[("encpipe_backup_last_success_timestamp_seconds", "db")] == 1010  # the last success kept
    assert got[("encpipe_backup_last_size_bytes", "db")] == 5


@pytest.mark.parametrize("where", ["offsite:bucket/x", "offsite:bucket/x/", "offsite:bucket/x//"])
def test_a_remote_that_cannot_be_listed_is_one_critical_line_saying_so_once(tmp_path, where):
    """The plugin's status text: before, `CRITICAL: cannot list R: cannot list R:
    rclone lsjson: ...`, the location and its prefix said twice; and still so for a
    REMOTE:PATH given with a trailing `/`, which the remote's own message leaves out
    (`cannot list offsite:bucket/x/: cannot list offsite:bucket/x: ...`)."""
    rclone = tmp_path / "rclone"
    rclone.write_text("#!/bin/sh\necho 'Failed to create file system: AccessDenied' >&2\nexit 1\n")
    rclone.chmod(0o755)
    done = subprocess.run([sys.executable, REPO / "scripts" / "encpipe-check", "--max-age", "24", where],
                          env={**os.environ, "RCLONE": str(rclone)}, capture_output=True, timeout=60)
    assert (done.returncode, done.stderr) == (2, b"")
    assert done.stdout.decode() == (f"CRITICAL: cannot list {where}: rclone lsjson: "
                                    "Failed to create file system: AccessDenied\n")


@pytest.mark.parametrize("mistake", [["--keep-daily", "x"], ["--passphrase-fd", "0", "--key-file", "/dev/stdin"],
                                     ["--passphrase-fd", "{fd}", "--passphrase-fd", "{fd}"]],
                         ids=["a bad value", "stdin read twice", "one descriptor twice"])
def test_a_mistake_in_the_options_is_not_a_failed_attempt(tmp_path, mistake):
    """A usage error (64) is the command line's mistake, found before the run
    begins, not a backup attempt: the metrics file is left as it was, whichever
    check finds it (README: "a mistake found there, 64, ... is not recorded").
    Before, one found after the options were parsed (standard input named for two
    secrets, one --passphrase-fd given twice) was recorded as a failed attempt."""
    prom = tmp_path / "textfile" / "encpipe.prom"
    prom.parent.mkdir()
    metrics.record(str(prom), "db", ok=True, finished=1010.0, duration=10.0, size=5)
    before = prom.read_bytes()
    (tmp_path / "backups").mkdir(mode=0o700)
    key = make_key(tmp_path / "backup.key")
    read, write = os.pipe()  # an open descriptor, for --passphrase-fd
    try:
        done = subprocess.run([BACKUP, "--dir", str(tmp_path / "backups"), "--key-file", key,
                               *(word.format(fd=read) for word in mistake), "--metrics-file", str(prom), "db"],
                              env=made_dir_env(tmp_path), capture_output=True, stdin=subprocess.DEVNULL,
                              pass_fds=(read,), timeout=60)
    finally:
        os.close(read)
        os.close(write)
    assert (done.returncode, done.stdout) == (64, b""), done.stderr
    assert len(done.stderr.decode().splitlines()) <= 2 and "metrics not written" not in done.stderr.decode()
    assert prom.read_bytes() == before


def test_the_module_run_as_a_program_records_a_run_that_fails_before_it_dumps(tmp_path):
    """`python -m encpipe.pgbackup SCRIPT ...` (the module's own entry point) runs
    main() where the module is read: the function that records a run failing
    before Backup was defined below it, and such a run ended in a NameError."""
    prom = tmp_path / "textfile" / "encpipe.prom"
    prom.parent.mkdir()
    (tmp_path / "backups").mkdir(mode=0o700)
    key = make_key(tmp_path / "backup.key")
    done = subprocess.run([sys.executable, "-m", "encpipe.pgbackup", str(BACKUP), "--dir", str(tmp_path / "backups"),
                           "--key-file", key, "--passphrase-fd", "1000", "--metrics-file", str(prom), "db"],
                          env=made_dir_env(tmp_path), capture_output=True, stdin=subprocess.DEVNULL, timeout=60)
    assert (done.returncode, done.stdout) == (66, b""), done.stderr
    assert b"Error" not in done.stderr and len(done.stderr.splitlines()) <= 2
    assert samples(prom)[("encpipe_backup_last_attempt_success", "db")] == 0
