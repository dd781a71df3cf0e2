"""A backup stored whose JSON line cannot be written (standard output on a full disk):
its one line says the backup was written, as for every other step after the renames.
Before, `cannot write output: No space left on device` and 74, the status README gives
a run that stored nothing, beside a backup stored and recorded as a success."""

import subprocess

from test_backup_restore import BACKUP, dir_entries, ensure_small, script_env


def test_a_json_line_that_cannot_be_written_says_the_backup_was_written(pg, tools, key_file, tmp_path):
    db = ensure_small(pg, "bk_small")
    directory, metrics = tmp_path / "b", tmp_path / "m.prom"
    with open("/dev/full", "wb") as full:
        done = subprocess.run([str(BACKUP), "--dir", str(directory), "--metrics-file", str(metrics),
                               "--key-file", str(key_file), db], env=script_env(pg, tools), stdout=full,
                              stderr=subprocess.PIPE, timeout=300)
    assert done.stderr.decode().splitlines() == [
        "encpipe-backup: error: backup written, but cannot write output: No space left on device"]
    assert done.returncode == 74
    stored = [n for n in dir_entries(directory) if not n.startswith(".")]
    assert len(stored) == 2 and any(n.endswith(".globals.sql.enc") for n in stored)
    assert f'encpipe_backup_last_attempt_success{{database="{db}"}} 1' in metrics.read_text()
