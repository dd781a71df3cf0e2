"""Options, and the order of the measurements."""

import argparse
import os
import shutil
import signal
import sys
import tempfile

from ..cli import Terminated, catch_signal
from ..proctree import children, kill_tree
from ..sigdefer import held
from . import __doc__ as DOC
from . import formats, pg, report, rows
from .context import CIPHERS, Context
from .measure import BenchError, parse_size, parse_sizes

SECTIONS = ("throughput", "formats", "startup", "memory", "pg")
FULL = dict(size="1G", rounds=5, rss_sizes="64M,4G", pg_size="256M", pgbench_scale=30, pg_rounds=3, startup_reps=10)
QUICK = dict(size="1M", rounds=1, rss_sizes="1M,8M", pg_size="2M", pgbench_scale=1, pg_rounds=1, startup_reps=1)


def _list(text):
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="scripts/bench", description=DOC.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=parse_size, help=f"random input for throughput rows [{FULL['size']}]")
    parser.add_argument("--rounds", type=int, help=f"rounds; medians are reported [{FULL['rounds']}]")
    parser.add_argument("--rss-sizes", type=parse_sizes, help=f"inputs streamed for peak RSS [{FULL['rss_sizes']}]")
    parser.add_argument("--rss-chunks", type=_list, default=["16K", "auto", "16M"],
                        help="chunk sizes for the peak RSS rows [16K,auto,16M]")
    parser.add_argument("--pg-size", type=parse_size,
                        help=f"approximate size of the generated dump, with --pgbench-scale 0 [{FULL['pg_size']}]")
    parser.add_argument("--pgbench-scale", type=int,
                        help=f"scale of the pgbench database dumped [{FULL['pgbench_scale']}; --quick: "
                             f"{QUICK['pgbench_scale']}]; 0: rows generated to about --pg-size")
    parser.add_argument("--pg-rounds", type=int, help=f"rounds of the PostgreSQL rows [{FULL['pg_rounds']}]")
    parser.add_argument("--only", type=_list, default=list(SECTIONS),
                        help=f"run only these sections [{','.join(SECTIONS)}]")
    parser.add_argument("--startup-reps", type=int, help=f"start-up runs per round [{FULL['startup_reps']}]")
    parser.add_argument("--chunk-sizes", type=_list, default=["64K", "auto", "16M"],
                        help="encpipe --chunk-size values for the throughput rows [64K,auto,16M]")
    parser.add_argument("--ciphers", type=_list, default=list(CIPHERS),
                        help=f"cipher libraries to measure [{','.join(CIPHERS)}]")
    parser.add_argument("--no-pg", action="store_true", help="skip the PostgreSQL rows")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke run: {QUICK['size']} input, 1 round, pgbench scale {QUICK['pgbench_scale']}")
    parser.add_argument("--json", metavar="FILE", help="also write all samples as JSON (- for stdout)")
    parser.add_argument("--package-dir", metavar="DIR", help="benchmark the encpipe package in DIR [this tree]")
    parser.add_argument("--workdir", metavar="DIR",
                        help="where to make the temporary directories, the bench's and the PostgreSQL cluster's "
                             "(run as root, the server runs as postgres: DIR must be reachable by it) [$TMPDIR]")
    opts = parser.parse_args(argv)
    profile = QUICK if opts.quick else FULL
    for name, default in profile.items():
        if getattr(opts, name) is None:
            value = default
            if name in ("size", "pg_size"):
                value = parse_size(value)
            elif name == "rss_sizes":
                value = parse_sizes(value)
            setattr(opts, name, value)
    if opts.rounds < 1 or opts.pg_rounds < 1 or opts.startup_reps < 1 or not opts.rss_sizes or opts.size < 1:
        parser.error("--rounds, --pg-rounds, --startup-reps, --size and --rss-sizes must be positive")
    if opts.pgbench_scale < 0:
        parser.error("--pgbench-scale must be 0 or more")
    if "auto" not in opts.chunk_sizes:
        opts.chunk_sizes.insert(0, "auto")
    if set(opts.only) - set(SECTIONS):
        parser.error(f"--only: choose from {', '.join(SECTIONS)}")
    unknown = set(opts.ciphers) - set(CIPHERS)
    if unknown:
        parser.error(f"--ciphers: unknown {', '.join(sorted(unknown))}; choose from {', '.join(CIPHERS)}")
    return opts


def _terminated(signum, _frame):
    raise Terminated(signum)


def main(argv=None, repo=None):
    """The bench's exit status: 0, or 1 when a section failed. SIGTERM and SIGHUP (unless
    ignored when the bench started, as nohup's SIGHUP) raise Terminated, as SIGINT raises
    KeyboardInterrupt, so that every finally and with on the way out runs: the pipeline's
    children killed, the PostgreSQL cluster stopped, the temporary directory removed.
    Then the bench exits 128 + the signal's number: an exit, not its death by the signal,
    for atexit's handlers run only at an exit (one removes the cluster's initdb template)."""
    for signum in (signal.SIGTERM, signal.SIGHUP):
        catch_signal(signum, _terminated)
    try:
        return _bench(parse_args(argv), repo)
    except Terminated as e:
        signum = e.args[0]
        print(f"bench: stopped by {signal.Signals(signum).name}; its files removed", file=sys.stderr)
        return 128 + signum


def _end_children():
    """Kill each child still running, with every process below it, and reap it: one whose
    Popen the signal's exception cut short (after the fork, before Popen returned, as in
    subprocess.run) has no owner to end it, and would write on (a Python's bytecode cache)
    into the directory about to be removed. The cluster's server, a daemon, is not a child."""
    found = children()
    for pid in found:
        kill_tree(pid, os.getpid())
    for pid in found:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:  # reaped already (by its Popen)
            pass


def _bench(opts, repo):
    work = ctx = None
    status = 0
    try:
        with held():  # the directory made and its removal armed in one step: a signal waits for both
            work = tempfile.mkdtemp(prefix="encpipe-bench-", dir=opts.workdir)
        ctx = Context(opts, work, repo)
        ctx.prepare_inputs()
        for section in ("throughput", "startup", "memory"):
            if section in opts.only:
                getattr(rows, section)(ctx)
        for section, title, run, attribute in (("formats", "Format v1 and v2", formats.formats, "format_rows"),
                                               ("pg", "PostgreSQL", pg.postgresql, "pg_rows")):
            try:
                if section in opts.only:
                    run(ctx)
            except BenchError as e:  # keep the other results
                setattr(ctx, attribute, None)
                ctx.sections.append((title, [f"FAILED: {e}"]))
                status = 1
        report.goals(ctx)
        report.report(ctx)
        return status
    except BenchError as e:
        print(f"bench: error: {e}", file=sys.stderr)
        return 1
    except BaseException:  # stopped (Terminated, KeyboardInterrupt)
        _end_children()
        raise
    finally:
        if ctx:
            ctx.cleanup()
        if work:
            shutil.rmtree(work, ignore_errors=True)
