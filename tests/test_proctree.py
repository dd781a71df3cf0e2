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

from procs import alive, ended_afterwards

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



def _state(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rpartition(")")[2].split()[0]


def test_a_pid_listed_as_a_child_that_is_another_process_by_now_is_left_alone(monkeypatch):
    """encpipe-check's deadline thread lists this process's children and kills each, while
    the main thread may reap one meanwhile: its pid is then free for another's process.
    A pid kill_tree is told is a child of this process is left alone once it is not (here
    a grandchild, as a pid taken by another's process would be); before, it was stopped
    and killed."""
    import os

    from encpipe.backup import deadline

    shell = subprocess.Popen(["sh", "-c", "sleep 60 & echo $!; wait"], stdout=subprocess.PIPE)
    with ended_afterwards(shell) as started:
        other = int(shell.stdout.readline())
        started.append(other)
        shell.stdout.close()
        proctree.kill_tree(other, os.getpid())
        monkeypatch.setattr(deadline, "children", lambda: [other])
        deadline.stop_children()
        time.sleep(0.05)
        assert alive(other) and _state(other) == "S"
        proctree.kill_tree(other, shell.pid)  # its parent's: stopped, then killed
        deadline_at = time.monotonic() + 5
        while alive(other):
            assert time.monotonic() < deadline_at, f"{other} still runs"
            time.sleep(0.01)


def test_a_process_taken_and_since_reaped_gets_no_signal_by_its_pid(monkeypatch):
    """Signals go by a pidfd to the process that was taken: once it is gone, nothing
    is sent to its pid, which may be another's by then."""
    child = subprocess.Popen(["sleep", "60"])
    with proctree._Process(child.pid) as proc:
        assert proc.signal(0) is True
        child.kill()
        child.wait()  # reaped: its pid is free
        sent = []
        monkeypatch.setattr(proctree.os, "kill", lambda *args: sent.append(args))
        assert proc.signal(signal.SIGSTOP) is False and sent == []


def test_a_timed_out_check_returns_only_after_the_sweep_under_way(monkeypatch):
    """encpipe-check's deadline thread is a daemon: gone when the process exits. When the
    time expired while the run was ending on its own, the main thread returned (and the
    process exited) while that thread could be between a child's stop and its kill,
    which left the child stopped for ever. The main thread now sweeps after it."""
    import threading

    from encpipe.backup import deadline

    said, sweeping, release = [], threading.Event(), threading.Event()

    def stop_children():
        if threading.current_thread() is threading.main_thread():
            said.append("main")
            return
        said.append("thread's sweep begins")
        sweeping.set()
        release.wait(5)
        said.append("thread's sweep ends")

    monkeypatch.setattr(deadline, "stop_children", stop_children)
    monkeypatch.setattr(deadline, "adopt_orphans", lambda: None)
    monkeypatch.setattr(deadline, "GRACE", 0)
    handler = signal.getsignal(deadline.SIGNAL)
    timer = threading.Timer(0.3, release.set)
    timer.start()
    try:
        status, _ = deadline.Deadline(0.01).run(lambda: (sweeping.wait(5), (0, []))[1])
        returned = list(said)
    finally:
        timer.cancel()
        release.set()
        for thread in threading.enumerate():
            if thread.name == "deadline":
                thread.join(5)  # its SIGNAL to this thread came, or never will: the handler can go
        signal.signal(deadline.SIGNAL, handler)
    assert status == deadline.CRITICAL
    assert returned == ["thread's sweep begins", "thread's sweep ends", "main"]
