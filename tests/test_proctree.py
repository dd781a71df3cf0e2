"""proctree.kill_tree stops a process, walks its descendants (each stopped, walked
and killed in turn), then kills it. Whatever happens between the stop and the kill (a
signal's exception in the caller, as a second Ctrl-C or a supervisor's SIGTERM while a
key command's tree is ended; a file of /proc that cannot be read for want of memory),
the process is killed: before, it was left stopped for ever, deaf to every signal but
SIGKILL and SIGCONT, its own children waiting on it."""

import signal
import subprocess
import time

import pytest

from procs import alive

from encpipe import proctree


@pytest.mark.parametrize("raised", [KeyboardInterrupt, MemoryError])
def test_a_process_stopped_is_killed_even_when_the_walk_of_its_children_raises(monkeypatch, raised):
    child = subprocess.Popen(["sleep", "60"])

    def failing(path):  # the walk of its children, after the stop
        raise raised()

    try:
        monkeypatch.setattr(proctree, "_listdir", failing)
        with pytest.raises(raised):
            proctree.kill_tree(child.pid)
        assert child.wait(timeout=5) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_a_tree_is_killed_whole():
    child = subprocess.Popen(["sh", "-c", "sleep 60 & echo $!; wait"], stdout=subprocess.PIPE)
    grandchild = int(child.stdout.readline())
    child.stdout.close()
    proctree.kill_tree(child.pid)
    assert child.wait(timeout=5) == -signal.SIGKILL
    deadline = time.monotonic() + 5
    while alive(grandchild):  # killed; reaped by whoever took it in
        assert time.monotonic() < deadline, f"{grandchild} still runs"
        time.sleep(0.01)

