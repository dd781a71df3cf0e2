"""encpipe-backup's own signal handler (pgbackup.Backup._interrupt) raises
Interrupted, which only Backup.run knew: a run that failed with an error its
caller says (report_errors), signalled while that line was said, let Interrupted
escape as a traceback, exit 1. It now dies of the signal, the line said whole
(README "Exit status")."""

import os
import signal
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CODE = """
import os, signal, sys
from encpipe import pgbackup
from encpipe.cli import catch_signal, run_script

def run(self):  # the run under way (its handler set, nothing committed), then a failure for report_errors
    self.pending = None
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        catch_signal(signum, self._interrupt)
    raise OSError(5, "Input/output error")

class Signalling:  # standard error: the signal comes as the line is written
    def __init__(self, stream):
        self.stream = stream
    def write(self, text):
        os.kill(os.getpid(), SIGNUM)
        return self.stream.write(text)
    def flush(self):
        self.stream.flush()

pgbackup.Backup.run = run
pgbackup.Backup.__init__ = lambda self, o, passphrases, io: setattr(io, "stderr", Signalling(io.stderr)) or None
raise SystemExit(run_script("encpipe-backup", "encpipe.pgbackup", ["encpipe-backup", "--dir", DIR, "shop"]))
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=["SIGTERM", "SIGINT", "SIGHUP"])
def test_a_signal_as_the_runs_failure_is_said_is_death_by_it(tmp_path, sig):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCPIPE")}
    env.update(PYTHONPATH=ROOT, ENCPIPE_KEY="11" * 32)
    code = f"SIGNUM = {int(sig)}\nDIR = {str(tmp_path / 'b')!r}\n" + CODE
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, stdin=subprocess.DEVNULL,
                          timeout=60)
    assert (done.returncode, done.stdout, b"Traceback" in done.stderr) == (-sig, b"", False), done.stderr
    assert done.stderr == b"encpipe-backup: error: cannot write output: Input/output error\n"
