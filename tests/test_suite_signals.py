"""The suite's children start with SIGINT and SIGQUIT at their default actions,
however the suite was started (tests/conftest.py): a suite started in the
background by a shell without job control inherits both ignored."""

import os
import signal
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def test_a_child_of_the_suite_has_sigint_and_sigquit_at_their_defaults():
    child = subprocess.run(["sh", "-c", "grep '^SigIgn:' /proc/$$/status"], capture_output=True, text=True,
                           check=True)
    mask = int(child.stdout.split()[1], 16)
    assert mask >> (signal.SIGINT - 1) & 1 == 0 and mask >> (signal.SIGQUIT - 1) & 1 == 0, child.stdout


def test_so_also_in_a_suite_started_with_both_ignored():
    def ignore():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGQUIT, signal.SIG_IGN)

    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "-p", "no:randomly",
         "test_suite_signals.py::test_a_child_of_the_suite_has_sigint_and_sigquit_at_their_defaults"],
        cwd=HERE, capture_output=True, text=True, preexec_fn=ignore, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
