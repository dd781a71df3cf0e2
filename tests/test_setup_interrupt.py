"""Ctrl-C while scripts/encpipe-demo or scripts/test sets itself up
(scripts/lib/venv.bash) ends the script, even when the child it was waiting
for (compileall, pip) takes SIGINT as an ordinary failure and exits 1."""

import errno
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from spies import python_head

VENV_BASH = Path(__file__).resolve().parent.parent / "scripts" / "lib" / "venv.bash"


def interrupted(script, root, fifo, env):
    """bash -c `script` (venv.bash as $1, `root` as $2) in a process group of its own,
    Ctrl-C'd (SIGINT to the whole group) once its stand-in opened `fifo`: (the
    process, its standard output, its standard error). The stand-in then sleeps in
    a loop, where Python handles a SIGINT at once: held in a read of the FIFO, a
    SIGINT that came between its open and its read was handled only after the read,
    which never ended (a CI run under load timed out)."""
    proc = subprocess.Popen(["bash", "-c", script, "t", str(VENV_BASH), str(root)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:  # opens once the stand-in opened it: the step is under way; held open,
            try:  # so that its read waits (for the signal), not ends at once
                writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError as e:  # ENXIO: no reader yet; a script that never gets there fails the test
                if e.errno != errno.ENXIO or proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the stand-in never read {fifo}: {proc.communicate(timeout=60)}")
                time.sleep(0.01)
        try:
            os.killpg(proc.pid, signal.SIGINT)
            out, err = proc.communicate(timeout=60)
        finally:
            os.close(writer)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc, out, err

def test_ctrl_c_while_the_checkout_compiles_ends_the_set_up(tmp_path):
    """compile_checkout's `python -m compileall` catches KeyboardInterrupt and exits 1
    (as pip does), which `|| true` took for a compile error: the demo went on with its
    whole tour, exit 0. The venv's python here is a stand-in that does the same, held
    in a read of a FIFO until SIGINT comes."""
    root, fifo = tmp_path / "checkout", tmp_path / "stall"
    (root / ".venv" / "bin").mkdir(parents=True)
    os.mkfifo(fifo)
    stand_in = root / ".venv" / "bin" / "python"
    stand_in.write_text(f"{python_head()}\n"
                        "import sys, time\n"
                        "try:\n"
                        f"    held = open({str(fifo)!r}, 'rb')\n"
                        "    while True:  # not a read: a SIGINT come before it began would never end it\n"
                        "        time.sleep(0.05)\n"
                        "except KeyboardInterrupt:\n"
                        "    sys.exit(1)  # compileall's main(): '[interrupted]', False\n")
    stand_in.chmod(0o755)
    proc, out, err = interrupted('PROG=t; . "$1"; compile_checkout "$2"; echo went on', root, fifo, None)
    assert (proc.returncode, out) == (-signal.SIGINT, b""), err


def test_ctrl_c_while_the_venv_is_made_shows_no_traceback(tmp_path):
    """`python3 -m venv` takes SIGINT as Python does: a traceback (venv, ensurepip,
    subprocess), then death by the signal. The set-up showed it, twenty lines under
    `installing encpipe ... (once)`. Its output now shows only when it failed on its
    own (Debian's word that python3-venv is missing). The stand-in python3 here
    does the same as venv, held in a read of a FIFO until SIGINT comes."""
    root, fifo, bindir = tmp_path / "checkout", tmp_path / "stall", tmp_path / "bin"
    root.mkdir()
    bindir.mkdir()
    for name in ("setup.cfg", "pyproject.toml"):
        (root / name).write_text("")
    os.mkfifo(fifo)
    stand_in = bindir / "python3"
    stand_in.write_text(f"{python_head()}\n"
                        "import os, signal, sys, time\n"
                        "try:\n"
                        f"    held = open({str(fifo)!r}, 'rb')\n"
                        "    while True:  # not a read: a SIGINT come before it began would never end it\n"
                        "        time.sleep(0.05)\n"
                        "except KeyboardInterrupt:\n"
                        "    print('Traceback (most recent call last):\\nKeyboardInterrupt', file=sys.stderr)\n"
                        "    signal.signal(signal.SIGINT, signal.SIG_DFL)\n"
                        "    os.kill(os.getpid(), signal.SIGINT)\n")
    stand_in.chmod(0o755)
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "ENCPIPE_VENV_PYTHON": str(stand_in)}
    proc, out, err = interrupted('PROG=t; . "$1"; checkout_venv "$2" ""; echo went on', root, fifo, env)
    assert (proc.returncode, out) == (-signal.SIGINT, b""), err
    assert err == f"t: installing encpipe and its dependencies into {root}/.venv (once)\n".encode()
