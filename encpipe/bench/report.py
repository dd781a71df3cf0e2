"""The goals of README "Performance", checked against the rows, and the report."""

import json
import os
import sys

from . import formats, pgreport
from .measure import GiB, MiB, paired
from .rows import FLOOR_LABEL

FAST = "cryptography"
PUBLIC_KEY = "like for like (public key, as age)"  # tags the goal lines of the --recipient/--identity rows
GOAL_CPU_X_AGE = 0.7
GOAL_CPU_X_CTR = 1.0
GOAL_WALL_X_AGE = 0.6
GOAL_GIB_S = 3.0
PYCRYPTODOME_BEFORE = {"seal": 0.53, "open": 0.47}  # s/GiB at auto, the release before the fast cipher
PYCRYPTODOME_ALLOWED = 1.05  # "no regression": at most this x the figures before
GOAL_AUTO_WALL = 1.05  # goal 4's "never slower" than --threads 1: the spread of identical commands on this machine
GOAL_AUTO_CPU = 1.1
GOAL_RSS_MIB = 48
GOAL_STARTUP = {"inspect": 2.0, "keyid": 2.0, "seal": 3.0, "open": 3.0, "open-x25519": 3.0}


def _find(rows, **want):
    return next((r for r in rows if all(getattr(r, k) == v for k, v in want.items())), None)


def _against_peers(rows, goal, pairs, tag):
    """Goals 1 and 2: each encpipe row of `pairs` against age's and openssl ctr's row of the same operation."""
    for op, peer_op, where in pairs:
        mine = _find(rows, op=op, tool="encpipe", cipher=FAST, **where)
        age, ctr = _find(rows, op=peer_op, tool="age"), _find(rows, op=peer_op, tool="openssl-ctr")
        name = f"{mine.label} [{FAST}]" + (f", {tag}" if tag else "")
        if age:
            cpu, wall = paired(mine, age, cpu=True), paired(mine, age)
            goal(1, cpu <= GOAL_CPU_X_AGE, f"{name}: CPU {cpu:.2f} x age (<= {GOAL_CPU_X_AGE})")
            goal(2, wall <= GOAL_WALL_X_AGE, f"{name}: wall {wall:.2f} x age (<= {GOAL_WALL_X_AGE})")
        if ctr:
            cpu = paired(mine, ctr, cpu=True)
            goal(1, cpu <= GOAL_CPU_X_CTR, f"{name}: CPU {cpu:.2f} x openssl ctr (<= {GOAL_CPU_X_CTR})")


def _default_threads_encpipe(ctx, argv):
    """Whether a stage runs encpipe at its default threads: the CLI (ctx.encpipe), or the
    stub that runs the CLI's code to write format v1; not with --threads other than auto.
    The scripts (encpipe-backup, encpipe-restore) are not: their peak is their largest
    child's (pg_dump, psql) as much as theirs."""
    argv = [str(a) for a in argv]
    cli = argv[:len(ctx.encpipe)] == [str(a) for a in ctx.encpipe] or argv[1:3] == ["-c", formats.V1_SEAL]
    threads = argv[argv.index("--threads") + 1] if "--threads" in argv[:-1] else "auto"
    return cli and threads == "auto"


def encpipe_peaks(ctx):
    """(peak RSS or None, row) of each encpipe stage at default threads in each run of every
    row measured for memory (not the start-up rows: run without GNU time, each run's peak
    would be this script's): throughput, formats, memory, --legacy and PostgreSQL rows."""
    rows = ctx.rows + (ctx.format_rows or []) + ctx.rss_rows + ctx.legacy_rows + (ctx.pg_rows or [])
    return [(result.rss[i], row) for row in rows if row.rss
            for i, (argv, _) in enumerate(row.stages) if _default_threads_encpipe(ctx, argv)
            for result in row.results]


def _goal_5(ctx, goal):
    """Goal 5 over every encpipe process at default threads; a peak GNU time did not report
    (None) fails it: an unread peak is not a small one."""
    peaks = encpipe_peaks(ctx)
    if not peaks:
        goal(5, None, "no row measured encpipe's peak RSS")
        return
    read = [(peak, row) for peak, row in peaks if peak is not None]
    unread = sorted({row.label for peak, row in peaks if peak is None})
    text = f"peak RSS of every encpipe process at default threads ({len(peaks)} peaks; one not read fails the goal): "
    if read:
        worst, row = max(read, key=lambda found: found[0])
        text += f"{worst / MiB:.1f} MiB ({row.label}{f' [{row.cipher}]' if row.cipher else ''})"
    else:
        text += "none read"
    text += f" (<= {GOAL_RSS_MIB})"
    if unread:
        text += f"; not read: {len(peaks) - len(read)} ({', '.join(unread)})"
    goal(5, bool(read) and not unread and worst <= GOAL_RSS_MIB * MiB, text)


def goals(ctx):
    results = []

    def goal(number, ok, text, issue=16):
        results.append({"issue": issue, "goal": number, "met": ok, "text": text})

    rows = ctx.rows
    pairs = [("seal", "seal", dict(threads="auto", chunk="auto")), ("seal", "seal", dict(threads="1", chunk="auto")),
             ("open", "open", dict(threads="auto", chunk="auto")), ("open", "open", dict(threads="1", chunk="auto")),
             ("pipe-seal", "pipe-seal", {}), ("pipe-open", "pipe-open", {})]
    if not rows:
        goal(1, None, "throughput rows not run: goals 1-4 not measured")
    elif FAST in ctx.ciphers:
        _against_peers(rows, goal, pairs, None)
        # The same comparisons like for like: encpipe sealed to an X25519 public key, as age -r does.
        _against_peers(rows, goal, [(f"{op}-x25519", peer_op, where) for op, peer_op, where in pairs], PUBLIC_KEY)
        for op in ("seal", "open"):
            mine = _find(rows, op=op, tool="encpipe", cipher=FAST, threads="auto", chunk="auto")
            rate = ctx.opts.size / GiB / mine.median
            goal(3, rate >= GOAL_GIB_S, f"{mine.label} [{FAST}]: {rate:.2f} GiB/s (>= {GOAL_GIB_S})")
    else:
        goal(1, None, "cryptography not installed: goals 1-3 not measured")
    if rows and "pycryptodome" in ctx.ciphers:
        for op, before in PYCRYPTODOME_BEFORE.items():
            mine = _find(rows, op=op, tool="encpipe", cipher="pycryptodome", threads="auto", chunk="auto")
            per_gib = mine.per_gib(mine.median)
            goal(3, per_gib <= before * PYCRYPTODOME_ALLOWED,
                 f"{mine.label} [pycryptodome]: {per_gib:.3f} s/GiB (before: {before}, no regression: <= "
                 f"{PYCRYPTODOME_ALLOWED}x that)")
    for auto in (r for r in rows if r.tool == "encpipe" and r.threads == "auto" and r.group in ("seal", "open")):
        one = _find(rows, op=auto.op, tool="encpipe", cipher=auto.cipher, threads="1", chunk=auto.chunk)
        if one and "--progress" not in auto.label:
            wall, cpu = paired(auto, one), paired(auto, one, cpu=True)
            goal(4, wall <= GOAL_AUTO_WALL and cpu <= GOAL_AUTO_CPU,
                 f"{auto.op} {auto.chunk} chunks [{auto.cipher}]: auto / --threads 1 wall {wall:.2f} "
                 f"(<= {GOAL_AUTO_WALL}: never slower, allowing the spread of identical commands on this "
                 f"machine), CPU {cpu:.2f} (<= {GOAL_AUTO_CPU})")
    _goal_5(ctx, goal)
    if not ctx.startup_rows:
        goal(6, None, "start-up rows not run")
    floor = _find(ctx.startup_rows, label=FLOOR_LABEL)
    floor = f"; the parser alone: {paired(floor, ctx.startup_rows[0]):.2f} x" if floor else ""
    for row in ctx.startup_rows:
        limit = GOAL_STARTUP.get(row.op)
        if limit:
            ratio = paired(row, ctx.startup_rows[0])
            goal(6, ratio <= limit, f"{row.label}{f' [{row.cipher}]' if row.cipher else ''}: {ratio:.2f} x "
                                    f"python3 -I -c pass (<= {limit}{floor})")
    formats.goals(ctx, goal)
    pgreport.goals(ctx, goal)
    ctx.goal_results = results
    shown = {True: "met", False: "NOT met", None: "-"}
    lines = [f"#{g['issue']} goal {g['goal']} [{shown[g['met']]:7}] {g['text']}" for g in results]
    if any(PUBLIC_KEY in g["text"] for g in results):
        lines.append("(goals 1 and 2: the lines without a tag are encpipe with a raw key, where format v2 adds that "
                     "key's authenticator, a GMAC pass over the ciphertext; the lines tagged \"" + PUBLIC_KEY +
                     "\" are encpipe sealing with --recipient and opening with --identity, as age -r and age -d -i do)")
    if ctx.opts.quick:
        lines.append("(--quick: sizes too small for the timings to mean anything)")
    ctx.sections.append(("Goals", lines))


def report(ctx):
    facts = ctx.facts
    facts["load_average_end"] = os.getloadavg()
    out = ["encpipe benchmark",
           f"  command:  {' '.join(sys.argv)}",
           f"  encpipe:  {ctx.encpipe_how}",
           f"  machine:  {facts['cpus']} CPUs ({facts['cpus_usable']} usable), {facts['cpu_model']}, "
           f"Linux {facts['kernel']}",
           f"  python:   {facts['python']}, pycryptodome {facts['pycryptodome']}, cryptography "
           f"{facts['cryptography']}, {facts['openssl']}",
           "  load:     %.2f %.2f %.2f at start, %.2f %.2f %.2f at end (1, 5, 15 min)"
           % (*facts["load_average_start"], *facts["load_average_end"])]
    out += [f"  peers:    {p['name']}" for p in ctx.peers]
    out += [f"  note:     {n}" for n in ctx.notes]
    for title, lines in ctx.sections:
        out += ["", f"{title}"] + [f"  {line}" for line in lines]
    print("\n".join(out), flush=True)
    if ctx.opts.json:
        rows = (ctx.rows + (ctx.format_rows or []) + ctx.startup_rows + ctx.rss_rows + ctx.legacy_rows
                + (ctx.pg_rows or []))
        document = {"facts": facts, "notes": ctx.notes, "rows": [r.as_json() for r in rows],
                    "rss": [{"bytes": r.size, "chunk": r.chunk, "cipher": r.cipher, "seal_rss_bytes": r.results[0].rss[1],
                             "open_rss_bytes": r.results[0].rss[2]} for r in ctx.rss_rows],
                    "goals": ctx.goal_results}
        if ctx.opts.json == "-":
            json.dump(document, sys.stdout, indent=2)
            print()
        else:
            with open(ctx.opts.json, "w") as f:
                json.dump(document, f, indent=2)
