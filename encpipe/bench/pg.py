"""PostgreSQL pipelines: pg_dump and psql through encpipe and through cat, in a throwaway cluster."""

import os
import sys

from .measure import BenchError, MiB, Row, human, measure_rounds, run

PG_SCHEMA = """
CREATE TABLE accounts (id integer PRIMARY KEY, name text NOT NULL, opened date NOT NULL);
INSERT INTO accounts
    SELECT g, 'account ' || md5(g::text), date '2000-01-01' + g % 9000 FROM generate_series(1, 100000) g;
CREATE TABLE events (
    id bigint PRIMARY KEY,
    at timestamptz NOT NULL,
    account integer NOT NULL,
    kind text NOT NULL,
    amount numeric(12, 2),
    note text
);
"""

PG_EVENTS = """
INSERT INTO events
    SELECT g, timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second', 1 + (g::bigint * 7919) % 100000,
           (ARRAY['deposit', 'withdrawal', 'transfer', 'fee'])[1 + g % 4], ((g::bigint * 37) % 1000000) / 100.0,
           md5(g::text) || ' ' || md5((g + 1)::text)
    FROM generate_series({first}, {last}) g;
"""
PG_EVENT_ROW_BYTES = 120  # about, in a plain dump
PG_EVENTS_PER_INSERT = 500_000


def postgresql(ctx):
    ctx.pg_rows = None
    if ctx.opts.no_pg:
        ctx.sections.append(("PostgreSQL", ["skipped (--no-pg)"]))
        return
    sys.path.insert(0, os.path.join(ctx.repo, "tests"))
    try:
        from pgcluster import PgCluster, PgClusterError
    except ImportError as e:
        ctx.sections.append(("PostgreSQL", [f"skipped: cannot import tests/pgcluster.py ({e})"]))
        return
    try:
        cluster = PgCluster()
    except PgClusterError as e:
        ctx.sections.append(("PostgreSQL", [f"skipped: {str(e).splitlines()[0]}"]))
        return
    ctx.say("PostgreSQL: starting a throwaway cluster")
    try:
        with cluster as pg:
            _postgresql(ctx, pg)
    except PgClusterError as e:
        raise BenchError(str(e)) from None


def _generate(ctx, pg):
    """The database to dump: pgbench's at --pgbench-scale, else generated rows."""
    if ctx.opts.pgbench_scale:
        ctx.say(f"PostgreSQL: pgbench -i -s {ctx.opts.pgbench_scale}")
        pg.createdb("bench")
        run([([pg.bin("pgbench"), "-i", "-q", "-s", str(ctx.opts.pgbench_scale), "bench"], pg.env)], rss=False)
        return "pgbench_accounts", f"pgbench scale {ctx.opts.pgbench_scale}"
    rows_wanted = max(1000, ctx.opts.pg_size // PG_EVENT_ROW_BYTES)
    ctx.say(f"PostgreSQL: generating ~{human(ctx.opts.pg_size)} of dump ({rows_wanted} rows)")
    pg.createdb("bench")
    pg.psql(PG_SCHEMA, db="bench")
    for first in range(1, rows_wanted + 1, PG_EVENTS_PER_INSERT):
        last = min(rows_wanted, first + PG_EVENTS_PER_INSERT - 1)
        pg.psql(PG_EVENTS.format(first=first, last=last), db="bench")
    pg.psql("VACUUM ANALYZE", db="bench")
    return "events", f"generated database ({rows_wanted} + 100000 rows)"


def _postgresql(ctx, pg):
    env = pg.env
    table, what = _generate(ctx, pg)
    ctx.pg_what = what
    pg_dump = ([pg.bin("pg_dump"), "-d", "bench"], env)
    plain, sealed = ctx.path("dump.sql"), ctx.path("dump.sql.enc")
    run([pg_dump], None, plain)
    run([ctx.enc("seal")], plain, sealed)
    dump_size = os.path.getsize(plain)
    expected = pg.psql(f"SELECT count(*) FROM {table}", db="bench").strip()

    def restore_stage(db):
        return ([pg.bin("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db], env)

    def fresh(row, db):
        def before():
            pg.createdb(db)

        def after():
            if not row.checked:
                got = pg.psql(f"SELECT count(*) FROM {table}", db=db).strip()
                if got != expected:
                    raise BenchError(f"{row.label}: restored {got} rows, expected {expected}")
                row.checked = True
            pg.dropdb(db)

        row.before, row.after, row.checked = before, after, False
        return row

    cipher = ctx.ciphers[0]
    cat = (["cat"], ctx.base_env)
    rows = [
        Row("pg", "pg_dump db | cat > f", [pg_dump, cat], None, ctx.path("out.sql"), size=dump_size, tool="pg_dump"),
        Row("pg", "pg_dump db | encpipe seal > f", [pg_dump, ctx.enc("seal", cipher=cipher)], None,
            ctx.path("out.enc"), size=dump_size, stage=1, cipher=cipher),
        fresh(Row("pg", "cat < dump.sql | psql", [cat, restore_stage("restore_plain")], plain, size=dump_size,
                  tool="psql"), "restore_plain"),
        fresh(Row("pg", "encpipe open < dump.enc | psql", [ctx.enc("open", cipher=cipher),
                  restore_stage("restore_enc")], sealed, size=dump_size, stage=0, cipher=cipher), "restore_enc"),
    ]
    ctx.say(f"PostgreSQL: dump {human(dump_size)}, {len(rows)} commands x {ctx.opts.rounds} rounds")
    measure_rounds(rows, ctx.opts.rounds)
    ctx.pg_rows = rows
    lines = [f"{what}, plain dump of {human(dump_size)}; "
             f"median of {ctx.opts.rounds} round(s); restores go into a fresh database",
             f"{'command':44} {'cipher':12} {'median s':>9} {'MiB/s':>8} {'encpipe RSS':>11}  {'x plain':>8}  "
             f"{'spread x plain':>15}"]
    for row, base in ((rows[0], rows[0]), (rows[1], rows[0]), (rows[2], rows[2]), (rows[3], rows[2])):
        rss = f"{row.peak_rss / MiB:7.1f} MiB" if row in (rows[1], rows[3]) else f"{'':11}"
        ratios = sorted(a.wall / b.wall for a, b in zip(row.results, base.results))
        lines.append(f"{row.label:44} {row.cipher or '':12} {row.median:9.3f} {dump_size / MiB / row.median:8.0f} "
                     f"{rss}  {row.median / base.median:8.3f}  {ratios[0]:6.3f}..{ratios[-1]:6.3f}")
    ctx.sections.append(("PostgreSQL", lines))
