"""Spies: stand-ins for the programs a script runs. Each records what it was
given (its arguments, environment and open descriptors; with `parent`, its
parent's command line and environment too) as one JSON line in a log, then
runs the real program in its place."""

import json
import shlex
import stat
import sys


def python_head(*flags):
    """The #! line of a stand-in written in Python that runs it with this Python
    (and `flags`). The kernel splits a #! line at its first space, so a line that
    names a Python whose path has one (a checkout at '/tmp/a b') cannot run; env -S
    splits the rest as a shell would (the path quoted), then execs this Python on
    the file with the stand-in's arguments: no shell in between, which would add
    to the environment (PWD) that the stand-ins record or pass on."""
    return "#!/usr/bin/env -S " + shlex.join([sys.executable, *flags])


SPY = '''%(head)s
import json, os, sys
def read(pid, name):
    with open("/proc/%%s/%%s" %% (pid, name), "rb") as f:
        return [v.decode("utf-8", "replace") for v in f.read().split(b"\\0") if v]
fds = {}
for fd in os.listdir("/proc/self/fd"):
    try:
        fds[fd] = os.readlink("/proc/self/fd/" + fd)
    except OSError:
        pass  # the directory being listed, closed again
fds = {fd: target for fd, target in fds.items() if not target.startswith("/proc/")}
record = {"tool": %(tool)r, "argv": sys.argv[1:], "env": read("self", "environ"), "fds": fds}
if %(parent)r:
    record.update(parent=read(os.getppid(), "cmdline"), parent_env=read(os.getppid(), "environ"))
with open(%(log)r, "a") as log:
    log.write(json.dumps(record) + "\\n")
os.execv(%(run)r[0], %(run)r + sys.argv[1:])
'''


def install(directory, reals, log, parents=()):
    """A spy in `directory` for each {tool: real program} of `reals`, logging to
    `log`; the tools in `parents` record their parent too."""
    directory.mkdir(exist_ok=True)
    for tool, real in reals.items():
        write(directory / tool, tool, [real], log, tool in parents)


def write(path, tool, run, log, parent=False):
    """A spy at `path` that logs as `tool`, then runs the argv `run` with its own arguments."""
    path.write_text(SPY % {"head": python_head("-S"), "tool": tool, "log": str(log), "run": list(run),
                           "parent": parent})
    path.chmod(stat.S_IRWXU)


def records(log):
    return [json.loads(line) for line in log.read_text().splitlines()]
