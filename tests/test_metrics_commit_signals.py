"""encpipe-backup signalled just after its --metrics-file is renamed into place.

The metrics file is the run's record (node_exporter reads it): once it says how
the run went, a signal must not make the run say otherwise. A stored run's record
comes after the backup's own commit, whose status stands (0, the JSON line).
A failed run's record, though, was no commit: a signal right after its rename
was noted and ended the run with 143 (130, 129) beside its line `backup of DB
failed (status 1)`, a record of a failure and a line naming one status and an
exit with another. Now the record is a commit point as the others
(safefile.write_atomically's `committed`): the run's status, the one its line
names, stands.

The signal comes right after the rename (a sitecustomize.py on PYTHONPATH, as
in tests/test_signal_commits.py)."""

import json
import os

import pytest

from test_backup_faults import _fake_pg_dump, _with_path_first
from test_backup_monitoring import samples
from test_backup_restore import BACKUP, ensure_small, script_env
from test_signal_commits import IDS, SIGNALS, run, signalled, signalled_env

RECORDED = "args[1] == 'encpipe.prom'"  # os.rename(temp, name, ...): the metrics file's


@pytest.mark.parametrize("sig", SIGNALS, ids=IDS)
def test_a_stored_run_signalled_just_after_its_record_exits_0(pg, tools, key_file, tmp_path, sig):
    db = ensure_small(pg, "metrics_commit", rows=10)
    directory, prom = tmp_path / "b", tmp_path / "m" / "encpipe.prom"
    prom.parent.mkdir()
    env = signalled_env(tmp_path, "rename", RECORDED, sig, script_env(pg, tools))
    done = run([BACKUP, "--dir", str(directory), "--no-globals", "--key-file", key_file, "--metrics-file", str(prom),
                db], env)
    assert signalled(tmp_path)
    assert (done.returncode, done.stderr) == (0, b"")
    line = json.loads(done.stdout)
    assert sorted(os.listdir(directory)) == [".encpipe-cluster", line["filename"]]
    assert samples(prom)[("encpipe_backup_last_attempt_success", db)] == 1
    assert sorted(os.listdir(prom.parent)) == ["encpipe.prom", "encpipe.prom.lock"]


@pytest.mark.parametrize("sig", SIGNALS, ids=IDS)
def test_a_failed_run_signalled_just_after_its_record_keeps_its_status(pg, tools, key_file, tmp_path, sig):
    directory, prom = tmp_path / "b", tmp_path / "m" / "encpipe.prom"
    prom.parent.mkdir()
    env = _with_path_first(script_env(pg, tools), _fake_pg_dump(tmp_path, "exit 1\n"))
    env = signalled_env(tmp_path, "rename", RECORDED, sig, env)
    done = run([BACKUP, "--dir", str(directory), "--no-globals", "--key-file", key_file, "--metrics-file", str(prom),
                "anydb"], env)
    assert signalled(tmp_path)
    assert (done.returncode, done.stdout) == (1, b"")
    assert done.stderr.decode() == ("encpipe-backup: error: backup of anydb failed (status 1): pg_dump exited with "
                                    "status 1; nothing was stored\n")
    assert samples(prom)[("encpipe_backup_last_attempt_success", "anydb")] == 0
    assert sorted(os.listdir(prom.parent)) == ["encpipe.prom", "encpipe.prom.lock"]
    assert not directory.exists() or os.listdir(directory) == []
