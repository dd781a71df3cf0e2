"""Format v1 next to v2: seal and open of the --size input through the CLI, in one
interleaved run. The CLI writes only v2; the v1 rows run the same CLI (`cli.run`,
so the same key loading, chunk size and thread choice) with `envelope.seal`
called with version=1, which is what the library offers for the old format."""

import json
import os

from .measure import BenchError, GiB, MiB, Row, command_output, human, measure_rounds, paired, run

# `encpipe seal ...` as the CLI runs it, writing format v1.
V1_SEAL = """
import sys
sys.meta_path[:] = [f for f in sys.meta_path if not type(f).__module__.startswith("__editable__")]
sys.path.insert(0, sys.argv.pop(1))
from encpipe import cli, envelope
v2_seal = envelope.seal
def seal_v1(*args, **kwargs):
    return v2_seal(*args, **dict(kwargs, version=1))
envelope.seal = seal_v1
sys.argv[0] = "encpipe"
cli.run()
"""

# (name, seal row, open row, seal options, open options)
VARIANTS = (
    ("v1", "seal v1, raw key (the CLI's code, envelope.seal(version=1))", "open v1 file, raw key", [], []),
    ("v2", "seal v2, raw key", "open v2 file, raw key", [], []),
    ("v2-signed", "seal v2, raw key, --sign-key", "open v2 signed file, raw key", ["--sign-key", "SIGN"], []),
    ("v2-x25519", "seal v2, X25519 --recipient only", "open v2 X25519 file, --identity", ["--recipient", "RECIPIENT"],
     ["--identity", "IDENTITY"]),
    # The common escrow setup: a raw key for the operators and an X25519 recipient.
    ("v2-escrow", "seal v2, raw key and an X25519 escrow recipient", "open v2 raw key + escrow file, raw key",
     ["--key-file", "RAWKEY", "--recipient", "RECIPIENT"], ["--key-file", "RAWKEY"]),
)
SLOTS = {"v2-x25519": ["x25519"], "v2-escrow": ["raw-key", "x25519"]}


def _keys(ctx):
    """The signing key and X25519 identity files, and their public keys."""
    found = {}
    for name, flag in (("SIGN", "--sign"), ("IDENTITY", "--x25519"), ("RAWKEY", None)):
        path = ctx.path(f"formats-{name.lower()}.key")
        argv, env = ctx.enc("keygen", *[flag] if flag else [], "-o", path)
        public = command_output(argv, env).splitlines()
        if not os.path.exists(path) or (flag and not public):
            raise BenchError(f"encpipe keygen {flag or ''} failed: {' '.join(public)}")
        found[name] = path
        if flag:
            found["RECIPIENT" if name == "IDENTITY" else "SIGNER"] = public[0].strip()
    return found


def _stage(ctx, name, args, cipher):
    """An encpipe stage: the CLI, or for v1 the stub; a raw key only where the row uses one."""
    argv, env = ctx.enc(*args, cipher=cipher)
    if {"--recipient", "--identity", "--key-file"} & set(args):
        env = {k: v for k, v in env.items() if k != "ENCPIPE_KEY"}
    if name == "v1" and args[0] == "seal":
        argv = [ctx.python, "-c", V1_SEAL, ctx.package_dir] + list(args)
    return argv, env


def _prepare(ctx, keys, cipher):
    """Seal the input once in each format; check the version and that it opens to the input."""
    sealed = {}
    for name, label, _, seal_opts, open_opts in VARIANTS:
        path = ctx.path(f"formats-{name}.enc")
        seal = ["seal"] + [keys.get(a, a) for a in seal_opts]
        run([_stage(ctx, name, seal, cipher)], ctx.data, path, rss=False)
        argv, env = _stage(ctx, name, ["inspect", "--json", path], cipher)
        try:
            found = json.loads(command_output(argv, env))
            shape = (found["version"], [slot["type"] for slot in found["slots"]], len(found.get("signers") or []))
        except (ValueError, KeyError, TypeError):
            raise BenchError(f"encpipe inspect --json {label}: no version, slots or signers") from None
        wanted = (int(name[1]), SLOTS.get(name, ["raw-key"]), int(name == "v2-signed"))
        if shape != wanted:
            raise BenchError(f"{label}: the file is format v{shape[0]} with slots {shape[1]} and {shape[2]} "
                             f"signature(s), not v{wanted[0]} with {wanted[1]} and {wanted[2]}")
        opener = ["open"] + [keys.get(a, a) for a in open_opts]
        ctx.check(f"encpipe open ({label})", [_stage(ctx, name, opener, cipher)], path)
        sealed[name] = path
    return sealed


def formats(ctx):
    cipher, size = ctx.ciphers[0], ctx.opts.size
    keys = _keys(ctx)
    ctx.say(f"formats: sealing {human(size)} as v1 and v2")
    sealed = _prepare(ctx, keys, cipher)
    signer = ["--signer", keys["SIGNER"]]
    rows = []
    for name, label, _, seal_opts, _ in VARIANTS:
        seal = _stage(ctx, name, ["seal"] + [keys.get(a, a) for a in seal_opts], cipher)
        rows.append(Row("formats", label, [seal], ctx.data, op="seal", size=size, cipher=cipher,
                        threads="auto", chunk="auto", tool=name))
    cat = (["cat"], ctx.base_env)
    for how, op in (("", "open"), ("cat FILE | ", "pipe-open")):
        for name, _, label, _, open_opts in VARIANTS:
            opener = ["open"] + [keys.get(a, a) for a in open_opts]
            checks = [(label, opener)]
            if name == "v2-signed":
                checks.append((label.replace("open ", "open --signer ", 1), opener + signer))
            for shown, args in checks:
                stages = [_stage(ctx, name, args, cipher)]
                if how:
                    stages.insert(0, cat)
                rows.append(Row("formats", how + shown, stages, sealed[name], op=op, size=size,
                                cipher=cipher, threads="auto", chunk="auto", tool=name))
    ctx.say(f"formats: {len(rows)} commands x {ctx.opts.rounds} rounds on {human(size)}")
    try:
        measure_rounds(rows, ctx.opts.rounds, progress=ctx.say)
    finally:
        for path in sealed.values():  # more copies of the input: not kept for the later sections
            os.unlink(path)
    ctx.format_rows = rows
    lines = [f"{human(size)} of random data; encpipe at its defaults with {cipher}; open reads the file on "
             f"standard input, or through a pipe (cat FILE |); median of {ctx.opts.rounds} round(s); "
             f"x v1: this / the v1 row of the same operation, wall and CPU of encpipe as the median of the "
             f"rounds' ratios (each round over the same round of v1), peak RSS as the ratio of the peaks",
             f"{'command':64} {'wall s':>7} {'GiB/s':>6} {'CPU s/GiB':>9} {'RSS MiB':>7} "
             f"{'wall x v1':>9} {'CPU x v1':>8} {'RSS x v1':>8}"]
    for row in rows:
        base = v1_row(rows, row)
        lines.append(f"{row.label:64} {row.median:7.3f} {size / GiB / row.median:6.2f} "
                     f"{row.per_gib(row.cpu_median):9.3f} {row.peak_rss / MiB:7.1f} "
                     f"{paired(row, base):9.2f} {paired(row, base, cpu=True):8.2f} "
                     f"{_rss_ratio(row, base):8.2f}")
    ctx.sections.append(("Format v1 and v2", lines))


def _rss_ratio(row, base):
    """Peak RSS of row over base's; NaN (never "met") when a peak could not be read."""
    return row.peak_rss / base.peak_rss if row.peak_rss and base.peak_rss else float("nan")


def v1_row(rows, row):
    """The v1 row of the same operation as `row`."""
    return next(r for r in rows if r.tool == "v1" and r.op == row.op)


GOAL_X_V1 = 1.10  # issue 14, acceptance 6: wall, CPU and peak RSS against v1


def goals(ctx, goal):
    """Issue 14 goal 6: every v2 row at most 1.10x its v1 row in wall time, CPU and peak RSS."""
    if not ctx.format_rows:
        goal(6, None, "format v1/v2 rows not run", issue=14)
        return
    for row in ctx.format_rows:
        if row.tool == "v1":
            continue
        base = v1_row(ctx.format_rows, row)
        wall, cpu = paired(row, base), paired(row, base, cpu=True)
        rss = _rss_ratio(row, base)
        goal(6, all(x <= GOAL_X_V1 for x in (wall, cpu, rss)),  # NaN is never met
             f"{row.label} [{row.cipher}]: wall {wall:.2f}, CPU {cpu:.2f}, peak RSS {rss:.2f} x v1 (v2 at most "
             f"{GOAL_X_V1}x v1 wall and CPU, memory flat)", issue=14)
