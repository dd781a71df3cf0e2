"""Running and timing child pipelines: wall time, CPU time, peak RSS."""

import contextlib
import hashlib
import math
import os
import re
import statistics
import subprocess
import tempfile
import time

from ..proctree import kill_tree
from ..sigdefer import held

MiB, GiB = 1 << 20, 1 << 30


class BenchError(Exception):
    pass


# --- units -------------------------------------------------------------------


def parse_size(text):
    match = re.fullmatch(r"\s*([0-9]+)\s*([KMGT]?)(I?B)?\s*", text.upper())
    if not match:
        import argparse

        raise argparse.ArgumentTypeError(f"cannot read size {text!r}; use e.g. 64M, 1G")
    return int(match.group(1)) << (10 * " KMGT".index(match.group(2) or " "))


def parse_sizes(text):
    return [parse_size(part) for part in text.split(",") if part.strip()]


def human(n):
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            value = n / (1 << shift)
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{n} B"


# --- one run -------------------------------------------------------------------


def _gnu_time():
    """/usr/bin/time if it is GNU time (it reports its child's own peak RSS)."""
    path = "/usr/bin/time"
    try:
        ok = subprocess.run([path, "-f", "%M", "-o", os.devnull, "true"], capture_output=True).returncode == 0
    except OSError:
        ok = False
    return path if ok else None


GNU_TIME = _gnu_time()


class Result:
    """One run: wall seconds, and per stage peak RSS (bytes) and CPU seconds."""

    def __init__(self, wall, rss, cpu):
        self.wall, self.rss, self.cpu = wall, rss, cpu


_WARM_BUFFER = bytearray(8 * MiB)


def warm(path):
    """Read `path` through, so a timed run finds it in the page cache."""
    if not path or not os.path.isfile(path):
        return
    view = memoryview(_WARM_BUFFER)
    with open(path, "rb", buffering=0) as f:
        while f.readinto(view):
            pass


def run(stages, stdin=None, stdout=None, rss=True):
    """Run a pipeline of (argv, env) stages, stdin/stdout being paths; time it.

    Wall time is perf_counter from before the first fork to the last exit.
    CPU time is user + system from os.wait4 on each stage: the stage and every
    process below it that it waited for (GNU time, a shell, helpers).
    Peak RSS: a child started by this (large) Python process inherits its RSS
    high-water mark across exec, so ru_maxrss is at least this process's own
    peak; GNU time forks from a small process and reports the command's own,
    so stages run under `/usr/bin/time -f %M` when it exists (about a
    millisecond per run, the same for every command)."""
    with contextlib.ExitStack() as files:
        with held():  # each file closed (a named one removed) however the run ends: a signal waits for all
            errors = [files.enter_context(tempfile.TemporaryFile()) for _ in stages]
            rss_files = [files.enter_context(tempfile.NamedTemporaryFile(prefix="rss-")) for _ in stages] \
                if rss and GNU_TIME else []
            source = files.enter_context(open(stdin or os.devnull, "rb"))
            sink = files.enter_context(open(stdout or os.devnull, "wb"))
        wall, statuses = _timed(stages, source, sink, errors, [f.name for f in rss_files])
        source.close()
        sink.close()
        for (proc, _, _), err in zip(statuses, errors):
            if proc.returncode != 0:
                err.seek(0)
                message = err.read().decode("utf-8", "replace").strip()
                raise BenchError(f"{' '.join(map(str, proc.args))} exited {proc.returncode}: {message}")
        peaks = [rss for _, rss, _ in statuses]
        for i, f in enumerate(rss_files):
            lines = f.read().decode("ascii", "replace").split()
            peaks[i] = int(lines[-1]) * 1024 if lines and lines[-1].isdigit() else None
    return Result(wall, peaks, [cpu for _, _, cpu in statuses])


def _timed(stages, source, sink, errors, rss_names):
    """Start the stages, each reading the one before, and wait for every one: the wall
    time, and (Popen, peak RSS, CPU seconds) of each stage from os.wait4."""
    procs = []
    try:
        start = time.perf_counter()
        upstream = source.fileno()
        for i, (argv, env) in enumerate(stages):
            if rss_names:
                argv = [GNU_TIME, "-f", "%M", "-o", rss_names[i]] + list(argv)
            last = i == len(stages) - 1
            if last:
                out = sink.fileno()
            else:
                read_end, out = os.pipe()
            try:
                with held():  # a signal's exception never falls between the fork and the child's record
                    procs.append(subprocess.Popen(argv, stdin=upstream, stdout=out, stderr=errors[i], env=env))
            finally:
                if upstream != source.fileno():
                    os.close(upstream)
                if not last:
                    os.close(out)
                    upstream = read_end
        statuses = []
        for proc in procs:
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            statuses.append((proc, usage.ru_maxrss * 1024, usage.ru_utime + usage.ru_stime))
        return time.perf_counter() - start, statuses
    except BaseException:
        end_all(procs)
        raise


def end_all(procs):
    """Kill each stage (Popen) still running with every process below it (GNU time's
    command, a shell's, a script's pg_dump), then reap it: a pipeline cut short (SIGTERM,
    SIGINT: the bench is stopping) leaves nothing running on in the directory the bench
    then removes, nor connected to the cluster it then stops."""
    for proc in procs:
        if proc.returncode is None:
            kill_tree(proc.pid, os.getpid())
    for proc in procs:
        if proc.returncode is None:
            proc.wait()


def output_digest(stages, stdin):
    """SHA-256 of a pipeline's output, streamed (for correctness checks, untimed)."""
    procs, upstream = [], open(stdin, "rb")
    errors = tempfile.TemporaryFile()  # warnings are expected (an X25519 file is forgeable), not shown
    try:
        for argv, env in stages:
            with held():
                procs.append(subprocess.Popen(argv, stdin=upstream, stdout=subprocess.PIPE, stderr=errors,
                                              env=env))
            upstream.close()
            upstream = procs[-1].stdout
        digest = hashlib.sha256()
        while block := upstream.read(MiB):
            digest.update(block)
    except BaseException:
        end_all(procs)
        raise
    finally:
        upstream.close()
    with errors:
        for proc in procs:
            if proc.wait() != 0:
                errors.seek(0)
                message = errors.read().decode("utf-8", "replace").strip()
                raise BenchError(f"{' '.join(proc.args)} exited {proc.returncode}: {message}")
    return digest.hexdigest()


def file_digest(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(MiB):
            digest.update(block)
    return digest.hexdigest()


def write_random(path, size):
    with open(path, "wb") as f:
        left = size
        while left:
            left -= f.write(os.urandom(min(left, 4 * MiB)))


def command_output(argv, env=None):
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
    except OSError:
        return ""
    return (proc.stdout or proc.stderr).strip()


# --- rows ----------------------------------------------------------------------


class Row:
    """A measured command: a list of Results, one per round. `stage` is the
    stage whose CPU time and peak RSS the row reports (the last by default)."""

    def __init__(self, group, label, stages, stdin=None, stdout=None, op=None, size=None, stage=-1, rss=True,
                 cipher=None, tool="encpipe", threads=None, chunk=None):
        self.group, self.label, self.stages, self.rss = group, label, stages, rss
        self.stdin, self.stdout, self.op, self.size, self.stage = stdin, stdout, op, size, stage
        self.cipher, self.tool, self.threads, self.chunk = cipher, tool, threads, chunk
        self.results = []
        self.before = self.after = None  # untimed set-up and clean-up, per run

    def measure(self):
        if self.before:
            self.before()
        # Warm every file the pipeline reads: the first stage's stdin, or the
        # file a `cat FILE` or `inspect FILE` stage names.
        warm(self.stdin)
        for argv, _ in self.stages:
            if len(argv) > 1 and os.path.isfile(str(argv[-1])):
                warm(argv[-1])
        try:
            self.results.append(run(self.stages, self.stdin, self.stdout, self.rss))
        finally:
            if self.after:
                self.after()

    @property
    def median(self):
        return statistics.median(r.wall for r in self.results)

    def cpu_of(self, result):
        """CPU seconds (user + system) of the reported stage in one run."""
        return result.cpu[self.stage]

    @property
    def cpu_median(self):
        return statistics.median(self.cpu_of(r) for r in self.results)

    def per_gib(self, seconds):
        return seconds * GiB / self.size if self.size else None

    @property
    def peak_rss(self):
        return max((r.rss[self.stage] or 0 for r in self.results), default=0) if self.rss else None

    def as_json(self):
        return {
            "group": self.group,
            "label": self.label,
            "cipher": self.cipher,
            "tool": self.tool,
            "op": self.op,
            "threads": self.threads,
            "chunk": self.chunk,
            "bytes": self.size,
            "median_s": self.median,
            "cpu_median_s": self.cpu_median,
            "walls_s": [r.wall for r in self.results],
            "cpu_s": [r.cpu for r in self.results],
            "rss_bytes": [r.rss for r in self.results] if self.rss else None,  # else wait4's, this script's too
            "peak_rss_bytes": self.peak_rss,
            "command": [" ".join(map(str, argv)) for argv, _ in self.stages],
        }


def _ratio(a, b):
    """a / b; infinite when b is 0 (a CPU time under the clock's tick), which no goal takes for met."""
    return a / b if b else math.inf


def round_ratios(row, base, cpu=False):
    """Each run of `row` over the same run of `base`: wall time, or with `cpu` each row's
    own CPU measure (Row.cpu_of). measure_rounds runs the rows of a section alternately,
    so run i of both met the same machine (its load, its clock); their ratio leaves that
    out, where a ratio of two medians may set one row's quiet round against the other's
    busy one."""
    if len(row.results) != len(base.results):
        raise BenchError(f"{row.label}: {len(row.results)} runs against {len(base.results)} of {base.label}: "
                         f"not paired")
    if cpu:
        return [_ratio(row.cpu_of(a), base.cpu_of(b)) for a, b in zip(row.results, base.results)]
    return [_ratio(a.wall, b.wall) for a, b in zip(row.results, base.results)]


def paired(row, base, cpu=False):
    """The median of the round_ratios: the ratio every table and goal shows."""
    return statistics.median(round_ratios(row, base, cpu))


def measure_rounds(rows, rounds, reps=1, progress=None):
    """Every row once per repetition, round after round, rotating the order."""
    for r in range(rounds):
        if progress:
            progress(f"round {r + 1}/{rounds}")
        for rep in range(reps):
            shift = (r * reps + rep) % len(rows)
            for row in rows[shift:] + rows[:shift]:
                row.measure()
