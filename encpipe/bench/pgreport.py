"""The PostgreSQL section's table, and its goals (issue 12 acceptance 4, issue 16 goal 7)."""

import statistics

from .measure import MiB, round_ratios

GOAL_ZSTD_WALL = 1.2  # plain/zstd at most this x the wall time of plain/none...
GOAL_ZSTD_SMALLER = 10  # ...and at least this many times smaller
GOAL_PIPELINE = 1.05  # encpipe-backup / encpipe-restore against the same pipeline through cat


def paired(row, base=None):
    """(median, lowest and highest) of the wall time ratios of row against its base (by
    default the pipeline through cat), round by round (measure.round_ratios)."""
    ratios = sorted(round_ratios(row, base or row.base))
    return statistics.median(ratios), ratios[0], ratios[-1]


def table(ctx):
    rows = ctx.pg_rows
    lines = [f"{ctx.pg_what}, plain dump of {ctx.pg_dump_size / MiB:.1f} MiB; median of {ctx.opts.pg_rounds} "
             f"round(s), each row paired round by round with the same pipeline through cat above it (x cat: "
             f"the median of the rounds' ratios, paired rounds: the lowest and highest); backups write into a "
             f"directory, restores go into a new database (the pipelines through cat run encpipe-restore's "
             f"clients and options: a custom archive through pg_restore -f - into psql); the file column is the "
             f"file written (backup) or read (restore); CPU: user + system of every client process (pg_dump, "
             f"psql, pg_restore, zstd, encpipe, the scripts), not the server's; RSS: the largest process; x "
             f"synced: a backup against the same pipeline through cat that then syncs its file (fsync), as the "
             f"backup does before it renames it, paired likewise",
             f"{'command':64} {'file MiB':>9} {'median s':>9} {'CPU s':>7} {'RSS MiB':>7} {'x cat':>6}  "
             f"{'paired rounds':>13}  {'x synced':>8}"]
    for row in rows:
        size = f"{row.out_size / MiB:9.2f}" if row.out_size is not None else f"{'':9}"
        spread = ""
        if row.base:
            ratio, low, high = paired(row)
            spread = f"{ratio:6.3f}  {low:.3f}..{high:.3f}"
        if getattr(row, "durable", None):
            spread += f"  {paired(row, row.durable)[0]:8.3f}"
        lines.append(f"{row.label:64} {size} {row.median:9.3f} {row.cpu_median:7.2f} {row.peak_rss / MiB:7.1f} "
                     f"{spread}")
    ctx.sections.append(("PostgreSQL", lines))


def _mine(rows, kind, variant):
    return next((r for r in rows if r.kind == kind and r.variant == variant and r.base), None)


def goals(ctx, goal):
    rows = ctx.pg_rows
    if not rows:
        goal(4, None, "PostgreSQL rows not run", issue=12)
        goal(7, None, "PostgreSQL rows not run")
        return
    none, zstd = _mine(rows, "backup", "none"), _mine(rows, "backup", "zstd")
    wall, smaller = paired(zstd, none)[0], none.out_size / zstd.out_size
    goal(4, wall <= GOAL_ZSTD_WALL and smaller >= GOAL_ZSTD_SMALLER,
         f"encpipe-backup plain/zstd: {wall:.3f} x the wall time of plain/none (<= {GOAL_ZSTD_WALL}), "
         f"{smaller:.1f} x smaller ({none.out_size / MiB:.2f} -> {zstd.out_size / MiB:.2f} MiB; >= "
         f"{GOAL_ZSTD_SMALLER}); {ctx.pg_what}", issue=12)
    for row in rows:
        if row.base and row.label.startswith("encpipe-"):
            ratio, low, high = paired(row)
            synced = f"; {paired(row, row.durable)[0]:.3f} x the same synced" if getattr(row, "durable", None) else ""
            goal(7, ratio <= GOAL_PIPELINE, f"{row.label}: {ratio:.3f} x {row.base.label} (<= {GOAL_PIPELINE}; "
                                            f"paired rounds {low:.3f}..{high:.3f}{synced}); {ctx.pg_what}")
