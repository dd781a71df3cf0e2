"""A failed encpipe-backup run with globals is recorded once.

It ran `job abort` twice, once for the globals file's temporary file and once for the
dump's: --metrics-file was written twice for one failed run, and the first write's
error went nowhere. One abort now removes both temporary files and records the run.
The run fails as pg_dump and pg_dumpall find no server; a sitecustomize on the run's
PYTHONPATH counts the calls of metrics.record."""

import os
import subprocess

import pytest

from test_backup_dir import ROOT
from test_metrics_hostile import unwritable_metrics

COUNTER = '''import os
from encpipe.backup import metrics
_record = metrics.record
def record(path, *args, **kwargs):
    with open(os.environ["RECORD_COUNT"], "a") as f:
        f.write("record %s\\n" % path)
    return _record(path, *args, **kwargs)
metrics.record = record
'''


def _failed_run(tmp_path, prom):
    """encpipe-backup of shop, with globals, and no server: (its status, stdout, stderr, the records)."""
    (tmp_path / "b").mkdir()
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(COUNTER)
    count = tmp_path / "count"
    key = tmp_path / "k.key"
    key.write_text("ab" * 32 + "\n")
    key.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENCPIPE_", "PG"))}
    env.update(PYTHONPATH=os.pathsep.join([str(tmp_path / "site"), ROOT]), PGHOST="/nonexistent",
               RECORD_COUNT=str(count))
    done = subprocess.run([os.path.join(ROOT, "scripts", "encpipe-backup"), "--dir", tmp_path / "b", "--key-file", key,
                           "--metrics-file", prom, "shop"], capture_output=True, timeout=60, env=env,
                          stdin=subprocess.DEVNULL)
    records = count.read_text().splitlines() if count.exists() else []
    return done.returncode, done.stdout, done.stderr.decode(), records


def test_a_failed_run_with_globals_is_recorded_once(tmp_path):
    """Before: two records of the one failed run."""
    prom = tmp_path / "encpipe.prom"
    status, out, err, records = _failed_run(tmp_path, prom)
    assert (status, out) != (0, b"") and out == b"", err
    assert records == [f"record {prom}"], err
    assert "encpipe_backup_last_attempt_success{database=\"shop\"} 0\n" in prom.read_text()
    assert os.listdir(tmp_path / "b") == [], err  # both temporary files removed
    assert err.count("encpipe-backup: error: backup of shop failed") == 1, err


@pytest.mark.parametrize("kind", ["directory", "missing directory"])
def test_a_failed_run_with_globals_whose_metrics_cannot_be_written_says_so_once(tmp_path, kind):
    """The write tried once, its error the end of the run's one error line. Before:
    tried twice, the first error thrown away."""
    prom, why = unwritable_metrics(tmp_path, kind)
    status, out, err, records = _failed_run(tmp_path, prom)
    assert out == b"" and status != 0, err
    assert records == [f"record {prom}"], err
    errors = [line for line in err.splitlines() if line.startswith("encpipe-backup: error: ")]
    assert len(errors) == 1 and errors[0].startswith("encpipe-backup: error: backup of shop failed"), err
    assert errors[0].endswith(f"; nothing was stored; metrics not written: {why}"), err
    assert err.count("metrics not written") == 1, err
    assert os.listdir(tmp_path / "b") == [], err


def test_job_abort_alone_removes_temp_and_gtemp_and_records_once(tmp_path):
    """`job abort` as a script calls it: --globals-temp removes GTEMP beside TEMP, one record."""
    from encpipe.backup import metrics
    from encpipe.backup.job import main as job_main

    (tmp_path / "b").mkdir()
    temp, gtemp = (tmp_path / "b" / f".encpipe-tmp.20260101T000000Z_1_{n}" for n in (1, 2))
    temp.write_bytes(b"x")
    gtemp.write_bytes(b"y")
    prom, calls, record = tmp_path / "encpipe.prom", [], metrics.record
    metrics.record = lambda *a, **k: calls.append(a) or record(*a, **k)
    try:
        status = job_main(["abort", "--dir", str(tmp_path / "b"), "--database", "shop", "--started", "0",
                           "--metrics-file", str(prom), "--globals-temp", gtemp.name, temp.name])
    finally:
        metrics.record = record
    assert status == 0 and len(calls) == 1
    assert os.listdir(tmp_path / "b") == []
    assert "encpipe_backup_last_attempt_success{database=\"shop\"} 0\n" in prom.read_text()
