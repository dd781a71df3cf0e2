"""The metrics file and its lock against a user who can write their directory:
FIFOs, links, directories, garbage and huge files, for encpipe-check (which
reads the file) and encpipe-backup (which rewrites it under the lock). A hang
or a traceback is the failure.
"""

import io
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from encpipe.backup import metrics
from encpipe.argwords import joined
from encpipe.backup import job
from encpipe.backup.job import main as job_main
from encpipe.pgbackup import Backup
from cliutil import plugin_text
from test_backup_dir import ROOT, make_valid
from test_backup_dir_hostile import hours_ago, script


# --- the metrics file and its lock -----------------------------------------------------


def test_check_does_not_hang_on_a_fifo_for_the_metrics_file(tmp_path):
    make_valid(tmp_path, f"shop_{hours_ago(2)}.sql.enc")
    os.mkfifo(tmp_path / "encpipe.prom")
    done = script("check", "--max-age", "24", "--metrics-file", tmp_path / "encpipe.prom", tmp_path, timeout=20)
    assert done.returncode == 2 and done.stderr == b""
    assert done.stdout.decode() == f"CRITICAL: cannot read the metrics file: {tmp_path}/encpipe.prom is not a regular file\n"


def _bad_metrics(tmp_path, kind):
    path = tmp_path / "encpipe.prom"
    if kind == "directory":
        path.mkdir()
    elif kind == "link":
        (tmp_path / "elsewhere.prom").write_text("")
        path.symlink_to(tmp_path / "elsewhere.prom")
    elif kind == "not utf-8":
        path.write_bytes(b'encpipe_backup_last_attempt_success{database="\xff"} 1\n')
    elif kind == "not a number":
        path.write_text('encpipe_backup_last_attempt_success{database="shop"} one\n')
    elif kind == "huge":
        with open(path, "wb") as f:
            f.truncate(metrics.MAX_BYTES + 1)
    return path


BAD_METRICS = {
    "directory": "is not a regular file",
    "link": "cannot open {path}: Too many levels of symbolic links",
    "not utf-8": "{path} is not UTF-8 text",
    "not a number": "{path}, line 1: not a number: 'one'",
    "huge": "{path} is over 4 MiB",
}


@pytest.mark.parametrize("kind", BAD_METRICS)
def test_check_fails_closed_on_a_metrics_file_it_cannot_read(tmp_path, kind):
    make_valid(tmp_path, f"shop_{hours_ago(2)}.sql.enc")
    path = _bad_metrics(tmp_path, kind)
    done = script("check", "--max-age", "24", "--metrics-file", path, tmp_path)
    assert done.returncode == 2 and done.stderr == b"", done.stderr
    lines = done.stdout.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("CRITICAL: cannot read the metrics file: "), lines
    assert BAD_METRICS[kind].format(path=path) in lines[0]


def test_check_quotes_at_most_the_start_of_a_long_sample_that_is_not_a_number(tmp_path):
    """Before: a sample of 3 MB that is not a number (planted by whoever can write the
    metrics file's directory) was quoted whole: one plugin line of 3 MB."""
    make_valid(tmp_path, f"shop_{hours_ago(2)}.sql.enc")
    path = tmp_path / "encpipe.prom"
    path.write_text('encpipe_backup_last_attempt_success{database="shop"} ' + "x" * (3 << 20) + "\n")
    done = script("check", "--max-age", "24", "--metrics-file", path, tmp_path)
    assert (done.returncode, done.stderr) == (2, b"")
    assert done.stdout.decode() == f"CRITICAL: cannot read the metrics file: {path}, line 1: not a number: " \
                                   f"'{'x' * 32}...'\n"


def _abort(tmp_path, prom):
    out, err = io.BytesIO(), io.StringIO()
    code = job_main(["abort", "--dir", str(tmp_path / "b"), "--database", "shop", "--started", "1",
                     "--metrics-file", str(prom), ".encpipe-tmp.x"], stdout=out, stderr=err, env={})
    assert out.getvalue() == b""
    return code, err.getvalue()


def _commit(tmp_path, prom):
    """(the sealed file, status, stdout, stderr) of `job commit` of a backup that
    worked, in tmp_path/b, with --metrics-file `prom`."""
    key = tmp_path / "k.key"
    key.write_text("ab" * 32 + "\n")
    sealed = subprocess.run([sys.executable, "-m", "encpipe", "seal", "--key-file", str(key)], input=b"SELECT 1;\n",
                            capture_output=True, check=True, env={**os.environ, "PYTHONPATH": ROOT}).stdout
    (tmp_path / "b" / ".encpipe-tmp.x").write_bytes(sealed)
    out, err = io.BytesIO(), io.StringIO()
    code = job_main(["commit", "--dir", str(tmp_path / "b"), "--database", "shop", "--started", "1", "--kind", "sql",
                     "--metrics-file", str(prom), ".encpipe-tmp.x", "shop_20260101T000000Z.sql.enc"],
                    stdout=out, stderr=err, env={})
    return sealed, code, out, err


def test_a_clock_stepped_back_during_a_run_gives_no_negative_duration(tmp_path, monkeypatch, capfdbinary):
    """Durations were wall-clock differences: a clock stepped back an hour during a run
    (NTP, an operator) made its JSON line and metrics say it took -3600 s. Now they are
    measured on the monotonic clock; the timestamps stay Unix time, as documented."""
    wall = [1_800_000_000.0]
    monkeypatch.setattr(time, "time", lambda: wall[0])
    (tmp_path / "b").mkdir()
    prom = tmp_path / "encpipe.prom"
    run = Backup({"db": "shop", "dir": str(tmp_path / "b"), "to": None, "shared": [], "ext": "sql", "policy": [],
                  "open": [], "signers": {}, "unauthenticated": [],
                  "metrics": joined({"--metrics-file": [str(prom)]})}, [], None)
    key = tmp_path / "k.key"
    key.write_text("ab" * 32 + "\n")
    sealed = subprocess.run([sys.executable, "-m", "encpipe", "seal", "--key-file", str(key)], input=b"SELECT 1;\n",
                            capture_output=True, check=True, env={**os.environ, "PYTHONPATH": ROOT}).stdout
    (tmp_path / "b" / ".encpipe-tmp.x").write_bytes(sealed)
    run.temp, run.final = ".encpipe-tmp.x", "shop_20260101T000000Z.sql.enc"
    wall[0] -= 3600
    assert run.commit() == 0
    out, err = capfdbinary.readouterr()
    assert err == b""
    assert 0 <= json.loads(out)["duration_seconds"] < 600
    got = {f.name: f.samples[0].value for f in text_string_to_metric_families(prom.read_text())}
    assert 0 <= got["encpipe_backup_last_duration_seconds"] < 600
    assert got["encpipe_backup_last_attempt_timestamp_seconds"] == wall[0]
    assert got["encpipe_backup_last_success_timestamp_seconds"] == wall[0]
    # a run that fails before it dumps (a key file refused) is recorded so too
    run.clock -= 5
    assert job.record_failed_run(run.job_opts, run.clock) is None
    assert 5 <= metrics.read(str(prom))["shop"]["encpipe_backup_last_duration_seconds"] < 600


def test_a_run_never_creates_a_file_through_a_lock_link(tmp_path):
    """Before: FILE.lock was opened by name with O_CREAT, following links, before the
    directory was checked: a link planted there made encpipe-backup create the
    file it points to (say /etc/nologin)."""
    (tmp_path / "b").mkdir()
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "encpipe.prom.lock").symlink_to(tmp_path / "nologin")
    code, err = _abort(tmp_path, tmp_path / "m" / "encpipe.prom")
    assert code == 74 and not os.path.lexists(tmp_path / "nologin")
    assert err == f"encpipe-backup: error: cannot open {tmp_path}/m/encpipe.prom.lock: Too many levels of " \
        "symbolic links\n"


def test_a_run_does_not_hang_on_a_fifo_for_the_lock(tmp_path):
    (tmp_path / "b").mkdir()
    os.mkfifo(tmp_path / "encpipe.prom.lock")
    done = subprocess.run(
        [sys.executable, "-m", "encpipe.backup", "abort", "--dir", tmp_path / "b", "--database", "shop",
         "--started", "1", "--metrics-file", tmp_path / "encpipe.prom", ".encpipe-tmp.x"],
        capture_output=True, timeout=20, env={**os.environ, "PYTHONPATH": ROOT})
    assert done.returncode == 74 and done.stdout == b""
    assert done.stderr.decode() == f"encpipe-backup: error: {tmp_path}/encpipe.prom.lock is not a regular file\n"


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("flock"), reason="needs root (to run flock as nobody)")
def test_another_user_cannot_hold_the_lock_and_hang_every_run(tmp_path):
    """Before: FILE.lock was made mode 0644 (node_exporter's directory is readable by
    all): any local user could open it read-only and hold flock on it, and every
    encpipe-backup then waited for ever to record its run, holding its directory's
    lock. Now the lock is its owner's only, 0600 (one an earlier run made 0644 too)."""
    (tmp_path / "b").mkdir()
    shared = tempfile.mkdtemp()  # under the sticky /tmp: every user can reach it, none but root write it
    try:
        os.chmod(shared, 0o755)
        prom, lock = os.path.join(shared, "encpipe.prom"), os.path.join(shared, "encpipe.prom.lock")
        with open(lock, "wb"):
            os.chmod(lock, 0o644)  # as an earlier run made it
        assert _abort(tmp_path, prom) == (0, "")
        assert stat.S_IMODE(os.stat(lock).st_mode) == 0o600
        holder = subprocess.run(["flock", "--nonblock", "--exclusive", lock, "true"], user=65534,
                                capture_output=True, timeout=20)  # it would hold it for as long as it liked
        assert holder.returncode != 0 and b"Permission denied" in holder.stderr, holder
        os.unlink(lock)
        assert _abort(tmp_path, prom) == (0, "")
        assert stat.S_IMODE(os.stat(lock).st_mode) == 0o600
    finally:
        shutil.rmtree(shared)


def test_a_run_refuses_a_metrics_directory_others_can_write_before_making_its_lock(tmp_path):
    (tmp_path / "b").mkdir()
    shared = tmp_path / "m"
    shared.mkdir()
    shared.chmod(0o777)
    code, err = _abort(tmp_path, shared / "encpipe.prom")
    assert code == 73 and os.listdir(shared) == []
    assert err.startswith(f"encpipe-backup: error: {shared} can be written by every user")


def test_a_run_replaces_a_garbled_metrics_file_with_its_own_samples(tmp_path):
    (tmp_path / "b").mkdir()
    prom = tmp_path / "encpipe.prom"
    prom.write_bytes(b'encpipe_backup_last_attempt_success{database="\xff"} one\n'
                     b'encpipe_backup_last_attempt_success{database="crm"} 1\n')
    assert _abort(tmp_path, prom) == (0, "")
    now = time.time()
    assert metrics.read(str(prom)) == {
        "crm": {"encpipe_backup_last_attempt_success": 1.0},
        "shop": {"encpipe_backup_last_attempt_timestamp_seconds": pytest.approx(now, abs=60),
                 "encpipe_backup_last_attempt_success": 0.0,
                 "encpipe_backup_last_duration_seconds": pytest.approx(now, abs=60)}}


@pytest.mark.parametrize("content", [b"ab" * 32 + b"\n", b"correct horse battery staple\n",
                                     b"-- PostgreSQL database dump\n" + b"x" * (metrics.MAX_BYTES + 10)],
                         ids=["key file", "passphrase file", "huge dump"])
def test_a_run_never_replaces_a_file_that_is_not_a_metrics_file(tmp_path, content):
    """Before: --metrics-file naming a file of something else (the key file, one
    word off in a crontab line) had it replaced by a 0644 metrics file: the key
    lost. A file with no line of Prometheus' text format is now left as it is,
    and the run says so (a garbled metrics file is still rewritten: above)."""
    (tmp_path / "b").mkdir()
    prom = tmp_path / "backup.key"
    prom.write_bytes(content)
    prom.chmod(0o600)
    why = f"{prom} holds no line of Prometheus' text format (not a metrics file?); not replaced"
    assert _abort(tmp_path, prom) == (65, f"encpipe-backup: error: {why}\n")  # a failed run
    assert prom.read_bytes() == content and stat.S_IMODE(prom.stat().st_mode) == 0o600
    sealed, code, out, err = _commit(tmp_path, prom)  # a run that worked: stored, said, 1
    assert (code, err.getvalue()) == (1, f"encpipe-backup: error: backup written, but metrics not written: {why}\n")
    assert json.loads(out.getvalue())["filename"] == "shop_20260101T000000Z.sql.enc"
    assert prom.read_bytes() == content and stat.S_IMODE(prom.stat().st_mode) == 0o600


def test_a_database_name_that_is_not_utf8_gets_a_label_that_is(tmp_path):
    """Before: a run for a database whose name (from argv) is not UTF-8 ended in a
    traceback writing the metrics file. Now its label is UTF-8 (\\xff as text),
    the same at every run, and encpipe-check finds its samples."""
    (tmp_path / "b").mkdir()
    prom = tmp_path / "encpipe.prom"
    name = os.fsdecode(b"b\xffd")
    for _ in range(2):
        out, err = io.BytesIO(), io.StringIO()
        code = job_main(["abort", "--dir", str(tmp_path / "b"), "--database", name, "--started", "1",
                         "--metrics-file", str(prom), ".encpipe-tmp.x"], stdout=out, stderr=err, env={})
        assert (code, out.getvalue(), err.getvalue()) == (0, b"", "")
    text = prom.read_bytes().decode("utf-8")
    assert text.count('encpipe_backup_last_attempt_success{database="b\\\\xffd"} 0\n') == 1
    parsed = {s.labels["database"] for f in text_string_to_metric_families(text) for s in f.samples}
    assert parsed == {"b\\xffd"}  # Prometheus' own parser takes it
    when = hours_ago(2)
    make_valid(tmp_path / "b", os.fsdecode(b"b\xffd_" + when.encode() + b".sql.enc"))
    done = script("check", "--max-age", "24", "--metrics-file", prom, tmp_path / "b")
    assert done.returncode == 1 and done.stderr == b""
    assert plugin_text(done.stdout.decode()) == (f"WARNING: b\\xffd: newest backup b\\xffd_{when}.sql.enc is 2.0 h old; "
                                    "the last backup attempt failed\n")


@pytest.mark.parametrize("breaker", ["\r", "\x0b", "\x0c", "\x1c", "\x85", "\u2028"],
                         ids=["CR", "VT", "FF", "FS", "NEL", "LS"])
def test_a_failed_run_of_a_database_whose_name_holds_a_line_break_other_than_newline_is_seen(tmp_path, breaker):
    """Before: the file was read back split at every character Python takes as a line
    break (CR, VT, FF, FS, NEL, U+2028...), which a label holds as it is, so a run of
    a database named with one wrote a sample no later read found: encpipe-check said
    OK although its last backup attempt had failed (and the next run dropped it).
    Now lines end at newlines only, as in Prometheus' text format."""
    (tmp_path / "b").mkdir()
    prom = tmp_path / "encpipe.prom"
    name = f"shop{breaker}x"
    when = hours_ago(2)
    make_valid(tmp_path / "b", f"{name}_{when}.sql.enc")
    out, err = io.BytesIO(), io.StringIO()
    code = job_main(["abort", "--dir", str(tmp_path / "b"), "--database", name, "--started", "1",
                     "--metrics-file", str(prom), ".encpipe-tmp.x"], stdout=out, stderr=err, env={})
    assert (code, out.getvalue(), err.getvalue()) == (0, b"", "")
    assert metrics.read(str(prom))[name]["encpipe_backup_last_attempt_success"] == 0
    done = script("check", "--max-age", "24", "--metrics-file", prom, tmp_path / "b")
    assert (done.returncode, done.stderr) == (1, b""), done.stdout
    assert plugin_text(done.stdout.decode()).endswith(" is 2.0 h old; the last backup attempt failed\n")


# --- a failed run whose metrics file cannot be written: still one line --------------------


def unwritable_metrics(tmp_path, kind):
    """(a --metrics-file that cannot be written, why): a directory, or a file in a directory not there."""
    prom = tmp_path / "encpipe.prom"
    if kind == "directory":
        prom.mkdir()
        return prom, f"{prom} is not a regular file"
    prom = tmp_path / "gone" / "encpipe.prom"
    return prom, f"cannot examine {tmp_path}/gone: No such file or directory"


@pytest.mark.parametrize("kind", ["directory", "missing directory"])
def test_a_failed_backup_whose_metrics_cannot_be_written_is_one_line(tmp_path, kind):
    """Before: the run's line, then `job abort`'s own error line for the metrics file
    (two errors for one run). Now the run's one line says both; its status is the run's.
    The run fails inside, before pg_dump is run (a --sign-key that cannot be read)."""
    (tmp_path / "b").mkdir()
    prom, why = unwritable_metrics(tmp_path, kind)
    key = tmp_path / "k.key"
    key.write_text("ab" * 32 + "\n")
    key.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCPIPE_")}
    done = subprocess.run([os.path.join(ROOT, "scripts", "encpipe-backup"), "--no-globals", "--dir", tmp_path / "b",
                           "--key-file", key, "--sign-key", tmp_path / "missing.sign", "--metrics-file", prom, "shop"],
                          capture_output=True, timeout=60, env={**env, "PYTHONPATH": ROOT, "PGHOST": "/nonexistent"},
                          stdin=subprocess.DEVNULL)
    assert (done.returncode, done.stdout) == (66, b""), done.stderr
    assert done.stderr.decode() == (
        f"encpipe-backup: error: backup of shop failed (status 66): cannot read {tmp_path}/missing.sign: No such file "
        f"or directory; nothing was stored; metrics not written: {why}\n")
    assert os.listdir(tmp_path / "b") == []


def test_a_commit_that_fails_and_whose_metrics_cannot_be_written_is_one_line_with_its_status(tmp_path):
    """Before: the metrics file's error alone, with its status (66), in place of the
    failed rename's line and status (74)."""
    (tmp_path / "b").mkdir()
    (tmp_path / "encpipe.prom").mkdir()
    out, err = io.BytesIO(), io.StringIO()
    code = job_main(["commit", "--dir", str(tmp_path / "b"), "--database", "shop", "--started", "1", "--kind", "sql",
                     "--metrics-file", str(tmp_path / "encpipe.prom"), ".encpipe-tmp.x",
                     "shop_20260101T000000Z.sql.enc"], stdout=out, stderr=err, env={})
    assert (code, out.getvalue()) == (74, b"")
    assert err.getvalue() == (
        f"encpipe-backup: error: backup of shop failed (status 74): cannot rename {tmp_path}/b/.encpipe-tmp.x to "
        f"shop_20260101T000000Z.sql.enc: No such file or directory; nothing was stored; metrics not written: "
        f"{tmp_path}/encpipe.prom is not a regular file\n")


@pytest.mark.parametrize("kind", ["directory", "missing directory"])
def test_a_stored_backup_whose_metrics_cannot_be_written_says_so_prints_its_line_and_exits_1(tmp_path, kind):
    """Before: the metrics file's error alone (66), as if nothing was stored, and no
    JSON line for the backup that was. Now, as for the other steps after the rename
    (README: what fails after it does not undo it): `backup written, but metrics not
    written: <why>`, the JSON line, exit 1."""
    (tmp_path / "b").mkdir()
    if kind == "directory":
        prom = tmp_path / "encpipe.prom"
        prom.mkdir()
        why = f"{prom} is not a regular file"
    else:
        prom = tmp_path / "gone" / "encpipe.prom"
        why = f"cannot examine {tmp_path}/gone: No such file or directory"
    sealed, code, out, err = _commit(tmp_path, prom)
    assert (code, err.getvalue()) == (1, f"encpipe-backup: error: backup written, but metrics not written: {why}\n")
    line = json.loads(out.getvalue())
    assert (line["filename"], line["bytes"]) == ("shop_20260101T000000Z.sql.enc", len(sealed))
    assert os.listdir(tmp_path / "b") == ["shop_20260101T000000Z.sql.enc"]
    assert (tmp_path / "b" / "shop_20260101T000000Z.sql.enc").read_bytes() == sealed


@pytest.mark.parametrize("started", ["abc", "nan", "inf", ""])
def test_a_started_that_is_no_unix_time_is_a_usage_error(tmp_path, started):
    """`--started` of `python3 -I -m encpipe.backup commit/abort` (a script's) that is no
    finite number: 64 and one line, before anything is renamed or recorded. Before,
    a commit stored the backup and then failed with a traceback (status 1) on its
    JSON line's duration, and `nan` or `inf` was recorded as the duration."""
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / ".encpipe-tmp.x").write_bytes(b"not looked at")
    prom = tmp_path / "encpipe.prom"
    for argv in (["commit", "--kind", "sql", "--", ".encpipe-tmp.x", "shop_20260101T000000Z.sql.enc"],
                 ["abort", ".encpipe-tmp.x"]):
        out, err = io.BytesIO(), io.StringIO()
        code = job_main([argv[0], "--dir", str(tmp_path / "b"), "--database", "shop", f"--started={started}",
                         "--metrics-file", str(prom), *argv[1:]], stdout=out, stderr=err, env={})
        assert (code, out.getvalue()) == (64, b"")
        assert err.getvalue() == f"encpipe-backup: error: --started must be Unix time in seconds, not '{started}'\n" \
                                 "encpipe-backup: hint: see python3 -I -m encpipe.backup --help\n"
        assert sorted(os.listdir(tmp_path / "b")) == [".encpipe-tmp.x"] and not prom.exists()


def _size(samples):
    return len(metrics.render(samples).encode())


def _near_the_limit(room):
    """Samples of many databases whose file is between `room` and `room` + 5 bytes
    under MAX_BYTES."""
    one = {metric: 1796584141.195 for metric in metrics.METRICS}
    samples, step = {}, 400
    while step:
        batch = {f"db{len(samples) + i:06d}" + "x" * 40: dict(one) for i in range(step)}
        if _size({**samples, **batch}) > metrics.MAX_BYTES - room - 1000:
            step //= 8
        else:
            samples.update(batch)
    base = _size({**samples, "pad": dict(one)}) - _size(samples)  # a name's byte costs 5 (one a metric)
    samples["pad" + "y" * ((metrics.MAX_BYTES - room - _size(samples) - base) // 5)] = dict(one)
    assert metrics.MAX_BYTES - room - 5 <= _size(samples) <= metrics.MAX_BYTES - room
    return samples


def test_a_run_never_wipes_a_shared_metrics_file_over_4_mib(tmp_path):
    """Before: a run that found the file over 4 MiB (which encpipe-check refuses,
    CRITICAL) rewrote it with its own samples alone, exit 0: every other database's,
    their failed attempts too, gone, and check said OK the next morning. Now the run
    leaves it as it is and says so, as for a file that is not a metrics file."""
    (tmp_path / "b").mkdir()
    prom = tmp_path / "encpipe.prom"
    samples = _near_the_limit(0)
    samples["crm"] = {"encpipe_backup_last_attempt_success": 0}  # a failed attempt, which check must see
    content = metrics.render(samples).encode()
    assert len(content) > metrics.MAX_BYTES
    prom.write_bytes(content)
    why = f"{prom} is over 4 MiB: not a metrics file of encpipe-backup; not replaced"
    assert _abort(tmp_path, prom) == (65, f"encpipe-backup: error: {why}\n")
    assert prom.read_bytes() == content
    _, code, out, err = _commit(tmp_path, prom)
    assert (code, err.getvalue()) == (1, f"encpipe-backup: error: backup written, but metrics not written: {why}\n")
    assert prom.read_bytes() == content


def test_a_run_never_writes_a_metrics_file_that_check_would_not_read(tmp_path):
    """A file just under 4 MiB that one more database's samples would take over it:
    left as it was, the run says why and what to do (before, it was written, and
    encpipe-check said CRITICAL, and the next run wiped it)."""
    (tmp_path / "b").mkdir()
    prom = tmp_path / "encpipe.prom"
    samples = _near_the_limit(100)  # a failed attempt's three samples take 220 bytes
    content = metrics.render(samples).encode()
    prom.write_bytes(content)
    assert metrics.read(str(prom)) == samples
    code, err = _abort(tmp_path, prom)
    assert (code, err) == (65, f"encpipe-backup: error: {prom} would be over 4 MiB with {len(samples) + 1} "
                               "databases' samples, more than encpipe-check reads; not replaced\n"
                               "encpipe-backup: hint: give each database, or each group of them, a metrics file "
                               "of its own\n")
    assert prom.read_bytes() == content


def test_samples_are_written_in_their_shortest_form_and_the_duration_is_the_json_lines(tmp_path):
    """Before: 0.13600000000000001 for the 0.136 the JSON line said, and the metrics'
    duration was measured later than the JSON line's (after the prune)."""
    (tmp_path / "b").mkdir()
    prom = tmp_path / "encpipe.prom"
    metrics.record(str(prom), "crm", ok=True, finished=1796584141.195, duration=0.136, size=5)
    text = prom.read_text()
    assert 'encpipe_backup_last_duration_seconds{database="crm"} 0.136\n' in text
    assert 'encpipe_backup_last_success_timestamp_seconds{database="crm"} 1796584141.195\n' in text
    assert 'encpipe_backup_last_attempt_success{database="crm"} 1\n' in text
    assert 'encpipe_backup_last_size_bytes{database="crm"} 5\n' in text
    _, code, out, err = _commit(tmp_path, prom)
    assert (code, err.getvalue()) == (0, "")
    said = json.loads(out.getvalue())["duration_seconds"]
    assert metrics.read(str(prom))["shop"]["encpipe_backup_last_duration_seconds"] == said
    assert f'encpipe_backup_last_duration_seconds{{database="shop"}} {said}\n' in prom.read_text()
