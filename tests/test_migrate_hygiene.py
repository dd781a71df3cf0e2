"""Issue 7, secrets hygiene for encpipe-migrate: no old or new key, and no old
passphrase, ever appears on the command line of anything it runs."""

import os
import subprocess
import sys

from cliutil import argvs_while_running
from test_migrate import ENCPIPE, FEW, HEX_KEY, MIGRATE, NEW_KEY, PASSPHRASE, make_backups


def test_no_secret_on_any_argv(tmp_path, keys):
    directory = tmp_path / "backups"
    make_backups(directory, FEW)
    child = subprocess.Popen(
        [sys.executable, MIGRATE, "--legacy-key-file", keys["old_key"], "--legacy-passphrase-file",
         keys["old_pass"], "--key-file", keys["new_key"], str(directory)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={"PATH": os.environ["PATH"], "PYTHONPATH": os.path.dirname(os.path.dirname(MIGRATE)), "ENCPIPE": ENCPIPE},
    )
    seen = argvs_while_running(child)
    out, err = child.communicate()
    assert child.returncode == 0, err
    assert any(b"--legacy" in argv for argv in seen) and any(b"seal" in argv for argv in seen), seen
    secrets = [s.encode() for s in (HEX_KEY, HEX_KEY.upper(), NEW_KEY, PASSPHRASE)]
    for argv in seen:
        for secret in secrets:
            assert secret not in argv, argv
    for secret in secrets:
        assert secret not in out and secret not in err


def test_a_key_file_others_can_read_is_one_warning_of_migrate_not_one_per_file(tmp_path, keys):
    """Before: each encpipe migrate ran (open, seal and inspect, for every file) warned
    of the key files itself, two lines each time; a run that then failed buried its
    one error among them. Now encpipe-migrate warns once per file given, on one line."""
    directory = tmp_path / "backups"
    make_backups(directory, FEW)
    for name in ("old_key", "new_key"):
        os.chmod(keys[name], 0o644)
    done = subprocess.run(
        [sys.executable, MIGRATE, "--legacy-key-file", keys["old_key"], "--legacy-passphrase-file",
         keys["old_pass"], "--key-file", keys["new_key"], str(directory)], capture_output=True, timeout=120,
        env={"PATH": os.environ["PATH"], "PYTHONPATH": os.path.dirname(os.path.dirname(MIGRATE)), "ENCPIPE": ENCPIPE})
    assert done.returncode == 0, done.stderr
    assert done.stderr.decode().splitlines() == [
        f"encpipe-migrate: warning: {keys[name]} is readable by group or others: chmod 600 {keys[name]}"
        for name in ("old_key", "new_key")]
