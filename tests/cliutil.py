"""Drive encpipe in-process (fast) or as a real process (signals, pipes, RSS)."""

import errno
import io
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

from encpipe.cli import main

KEY_A = "a" * 64
KEY_B = "0123456789abcdef" * 4
FAST_SCRYPT = ["--work-factor", "10"]
# What `open` says, with status 0, of every version 1 file (README "Format v2").
V1_WARNING = ("encpipe: warning: a version 1 file: the holder of any of its keys can make such a file\n"
              "encpipe: hint: re-seal a file you trust (open | seal): a version 2 file says who made it\n")


class Result(NamedTuple):
    code: int
    stdout: bytes
    stderr: str


def run(args, stdin=b"", env=None):
    """encpipe in this process: exit code, stdout bytes, stderr text."""
    out, err = io.BytesIO(), io.StringIO()
    code = main(list(args), stdin=io.BytesIO(stdin), stdout=out, stderr=err, env=dict(env or {}))
    return Result(code, out.getvalue(), err.getvalue())


def ok(result):
    """The standard output of a run that must have succeeded."""
    assert result.code == 0, result.stderr
    return result.stdout


def key_env(key=KEY_A):
    return {"ENCPIPE_KEY": key}


def seal(data, env=None, args=()):
    result = run(["seal", *args], data, env if env is not None else key_env())
    assert result.code == 0, result.stderr
    return result.stdout


def seal_v1(data, key=KEY_A, chunk_log2=14):
    """A version 1 file (what encpipe sealed before format v2): for the tests of the
    STREAM layer, whose v1 behaviour (a prefix of good chunks, then the error) stays."""
    from encpipe.envelope import seal as seal_stream
    from encpipe.slots import RawKey

    out = io.BytesIO()
    seal_stream(io.BytesIO(data), out, [RawKey(bytes.fromhex(key))], chunk_log2=chunk_log2, version=1)
    return out.getvalue()


def spawn(args, **kwargs):
    """encpipe as a child process (python -m, to skip any launcher shim)."""
    kwargs.setdefault("env", {**os.environ})
    return subprocess.Popen([sys.executable, "-m", "encpipe", *args], **kwargs)


def run_process(args, stdin=b"", env=None, **kwargs):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("ENCPIPE_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "encpipe", *args], input=stdin, capture_output=True, env=full_env, **kwargs
    )


def a_new_second():
    """Sleep into the next second of the clock (at most about one second): a backup
    started after this has a name later than one that ended before it."""
    time.sleep(1.02 - time.time() % 1)


def plugin_text(out):
    """encpipe-check's output (bytes or text) less its performance data, which
    follows ` | ` on its first line; its status lines as they were before."""
    bar = b" | " if isinstance(out, bytes) else " | "
    first, newline, rest = out.partition(b"\n" if isinstance(out, bytes) else "\n")
    return first.partition(bar)[0] + newline + rest


def assert_one_line_error(stderr, prog="encpipe"):
    """One `PROG: error:` line, at most one `PROG: hint:` line, never a traceback."""
    text = stderr.decode() if isinstance(stderr, bytes) else stderr
    lines = text.strip().splitlines()
    assert lines and lines[0].startswith(f"{prog}: error: "), text
    assert all(line.startswith(f"{prog}: hint: ") for line in lines[1:]), text
    assert len(lines) <= 2 and "Traceback" not in text, text


def write_secret(path, content, mode=0o600):
    """Write a key or passphrase file (str or bytes) readable by its owner only."""
    path = Path(path)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    path.chmod(mode)
    return str(path)


def secret_file(directory, name, content, mode=0o600):
    return write_secret(Path(directory) / name, content, mode)


_MEASURE = """
import os, sys
report, argv = sys.argv[1], sys.argv[2:]
pid = os.fork()
if pid == 0:
    os.execvp(argv[0], argv)
_, status, usage = os.wait4(pid, 0)
with open(report, "w") as f:
    f.write(f"{os.waitstatus_to_exitcode(status)} {usage.ru_maxrss}")
"""


def reader_opened(path, stop):
    """The FIFO `path` opened for writing (not blocking) once a reader has opened it;
    None once `stop` (a threading.Event) is set."""
    while not stop.is_set():
        try:
            return os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as e:
            assert e.errno == errno.ENXIO  # no reader yet
            time.sleep(0.02)
    return None


def measure_peak_rss(argv, report_path, **popen_kwargs):
    """Run `argv`, return (exit code, peak RSS in KiB). The child is forked from a
    small interpreter, not from pytest: Linux counts the pages a child inherits
    at fork in its peak RSS, and pytest itself grows large during a session."""
    subprocess.run([sys.executable, "-c", _MEASURE, str(report_path), *argv], check=True, **popen_kwargs)
    code, rss = open(report_path).read().split()
    return int(code), int(rss)


def descendants(root):
    """`root` and every process below it, from /proc."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = read_proc(int(entry), "stat")
            if stat:
                ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
                children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def read_proc(pid, name):
    """/proc/PID/NAME as bytes, or None once the process is gone."""
    try:
        with open(f"/proc/{pid}/{name}", "rb") as f:
            return f.read()
    except OSError:
        return None


def argvs_while_running(child, interval=0.002):
    """The command lines of `child` and all its descendants, sampled until it exits."""
    seen = set()
    while child.poll() is None:
        for pid in descendants(child.pid):
            cmdline = read_proc(pid, "cmdline")
            if cmdline:
                seen.add(cmdline)
        time.sleep(interval)
    return seen
