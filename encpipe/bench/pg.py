"""PostgreSQL: scripts/encpipe-backup and encpipe-restore against the same pipelines
through cat, and pg_dump | encpipe seal, encpipe open | psql, in a throwaway cluster."""

import json
import os
import shlex
import subprocess
import sys

from .. import pgstream
from ..sigdefer import held
from . import pgreport
from .measure import BenchError, Row, human, measure_rounds, run, warm

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
DB = "bench"
ZSTD = ["zstd", "-q", "-c", "-3", "-T1"]  # what encpipe-backup runs by default
SYNCED = 'cat > "$1" && sync "$1"'  # fsync, as encpipe-backup does before it renames its file
# (variant, encpipe-backup options, label)
BACKUPS = (
    ("none", ["--compress", "none"], "--compress none"),
    ("zstd", [], "(plain, default zstd -3 -T1)"),
    ("custom", ["--format", "custom"], "--format custom"),
)


class PgRow(Row):
    """A row of this section: `base` is the row through cat it is paired with; `kind`
    is backup or restore; `out_size` the size of the file it writes (or reads). Its CPU
    and peak RSS are those of every stage (the table's, and so the JSON's)."""

    def __init__(self, label, stages, stdin=None, stdout=None, base=None, kind=None, variant=None, **kw):
        super().__init__("pg", label, stages, stdin, stdout, **kw)
        self.base, self.kind, self.variant, self.out_size = base, kind, variant, None
        self.durable = None  # for a backup: the pipeline through cat that also syncs its file, as the backup does

    def cpu_of(self, result):
        """CPU seconds of every stage of the pipeline (its clients; the server's is not counted):
        encpipe-backup is one process where the pipeline through cat is two or three."""
        return sum(result.cpu)

    @property
    def peak_rss(self):
        """The largest process of any stage, in any round (a peak that could not be read counts 0)."""
        return max((rss or 0 for r in self.results for rss in r.rss), default=0)

    def as_json(self):
        document = super().as_json()
        document.update(file_bytes=self.out_size, paired_with=self.base.label if self.base else None,
                        paired_ratios=[a.wall / b.wall for a, b in zip(self.results, self.base.results)]
                        if self.base else None)
        if self.durable:
            document.update(synced_with=self.durable.label,
                            synced_ratios=[a.wall / b.wall for a, b in zip(self.results, self.durable.results)])
        return document


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
        with held():  # its directory made (PgCluster's mkdtemp) and `cluster` set, for _stop, in one step
            cluster = PgCluster(parent_dir=ctx.opts.workdir)  # beside the bench's own (None: $TMPDIR)
    except PgClusterError as e:
        ctx.sections.append(("PostgreSQL", [f"skipped: {str(e).splitlines()[0]}"]))
        return
    ctx.say("PostgreSQL: starting a throwaway cluster")
    try:
        _postgresql(ctx, cluster.start())
    except PgClusterError as e:
        raise BenchError(str(e)) from None
    finally:
        _stop(cluster)


def _stop(cluster):
    """Stop the cluster and remove its directory, however the section ended. A start cut
    short (SIGTERM while pg_ctl waited for the server to accept connections) leaves the
    server running, yet the cluster not marked so (and `with` would not stop it: its
    __exit__ runs only once __enter__ has returned): the server's postmaster.pid says so."""
    if os.path.exists(os.path.join(cluster.datadir, "postmaster.pid")):
        cluster.running = True
    cluster.stop()


def _generate(ctx, pg):
    """The database to dump: pgbench's at --pgbench-scale, else generated rows."""
    pg.createdb(DB)
    if ctx.opts.pgbench_scale:
        ctx.say(f"PostgreSQL: pgbench -i -s {ctx.opts.pgbench_scale}")
        run([([pg.bin("pgbench"), "-i", "-q", "-s", str(ctx.opts.pgbench_scale), DB], pg.env)], rss=False)
        return "pgbench_accounts", f"pgbench scale {ctx.opts.pgbench_scale}"
    rows_wanted = max(1000, ctx.opts.pg_size // PG_EVENT_ROW_BYTES)
    ctx.say(f"PostgreSQL: generating ~{human(ctx.opts.pg_size)} of dump ({rows_wanted} rows)")
    pg.psql(PG_SCHEMA, db=DB)
    for first in range(1, rows_wanted + 1, PG_EVENTS_PER_INSERT):
        last = min(rows_wanted, first + PG_EVENTS_PER_INSERT - 1)
        pg.psql(PG_EVENTS.format(first=first, last=last), db=DB)
    pg.psql("VACUUM ANALYZE", db=DB)
    return "events", f"generated database ({rows_wanted} + 100000 rows)"


def _script_env(ctx, pg, cipher):
    """The scripts' environment: the cluster's libpq variables, its binaries first on
    PATH (the same pg_dump, psql and pg_restore as the rows through cat), this
    interpreter and package, the raw key in ENCPIPE_KEY. The interpreter is found as
    `python3` on PATH, as an installed script finds the one beside it: ENCPIPE_PYTHON
    would cost each run one more Python start (the check that it can import encpipe)."""
    env = dict(ctx.base_env)
    for name in ("PGSERVICE", "PGSERVICEFILE", "PGPASSWORD", "PGPASSFILE", "PGHOSTADDR", "PGOPTIONS", "PGCLUSTER"):
        env.pop(name, None)
    env.update({k: pg.env[k] for k in ("PGHOST", "PGPORT", "PGUSER", "PGDATABASE")})
    python_dir = ctx.path("python-bin")
    if not os.path.isdir(python_dir):
        os.mkdir(python_dir, 0o700)
        os.symlink(ctx.python, os.path.join(python_dir, "python3"))
    env.update(PATH=os.pathsep.join([pg.bindir, python_dir, env.get("PATH", "/usr/bin:/bin")]),
               ENCPIPE_KEY=ctx.key, ENCPIPE_CIPHER=cipher)
    return env


def _backup_files(ctx, env, script):
    """One backup of each variant (untimed): the files the restore rows read."""
    directory, files = ctx.path("pg-backups"), {}
    os.mkdir(directory, 0o700)
    for variant, options, _ in BACKUPS:
        proc = subprocess.run([script, "--dir", directory, "--no-globals", *options, DB], env=env,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise BenchError(f"encpipe-backup {' '.join(options)} exited {proc.returncode}: {proc.stderr.strip()}")
        files[variant] = os.path.join(directory, json.loads(proc.stdout.splitlines()[-1])["filename"])
    return files


def _dump_files(ctx, pg):
    """The same dumps unsealed (untimed), for the restores through cat; and sealed by encpipe."""
    files = {v: ctx.path(f"dump.{v}") for v in ("none", "zstd", "custom")}
    run([([pg.bin("pg_dump"), "-d", DB], pg.env)], None, files["none"], rss=False)
    run([(ZSTD, ctx.base_env)], files["none"], files["zstd"], rss=False)
    run([([pg.bin("pg_dump"), "-Fc", "-d", DB], pg.env)], None, files["custom"], rss=False)
    files["sealed"] = ctx.path("dump.sql.enc")
    run([ctx.enc("seal")], files["none"], files["sealed"], rss=False)
    return files


def _hooks(row, before, after):
    """Set the row's untimed set-up and clean-up; after(ok) learns whether the run succeeded
    (after a failure, only clean up: the run's own error is the one to report)."""
    def run_before():
        row.started = len(row.results)
        before()

    row.before, row.after = run_before, lambda: after(len(row.results) > row.started)
    return row


def _sized(row, path=None, directory=None):
    """Record the size of the file the row wrote, then remove it (sealed backups pile up)."""
    def after(ok):
        found = [path] if path else [os.path.join(directory, n) for n in os.listdir(directory) if n.endswith(".enc")]
        found = [f for f in found if os.path.exists(f)]
        if ok and len(found) != 1:
            raise BenchError(f"{row.label}: {len(found)} files written, expected 1")
        if ok:
            row.out_size = os.path.getsize(found[0])
        for name in found:
            os.unlink(name)

    return _hooks(row, lambda: None, after)


def _restored(pg, row, db, table, expected, warm_file=None):
    """Restores go into database `db`, which must not exist before; checked once, then dropped."""
    def before():
        pg.dropdb(db)
        warm(warm_file)

    def after(ok):
        if ok and not row.checked:
            got = pg.psql(f"SELECT count(*) FROM {table}", db=db).strip()
            if got != expected:
                raise BenchError(f"{row.label}: restored {got} rows, expected {expected}")
            row.checked = True
        pg.dropdb(db)

    row.checked = False
    return _hooks(row, before, after)


def _backup_rows(ctx, pg, env, script, cipher):
    pg_dump = ([pg.bin("pg_dump"), "-d", DB], pg.env)
    cat = (["cat"], ctx.base_env)
    rows = []
    for variant, options, label in BACKUPS:
        dump = ([pg.bin("pg_dump"), "-Fc", "-d", DB], pg.env) if variant == "custom" else pg_dump
        stages = [dump, (ZSTD, ctx.base_env), cat] if variant == "zstd" else [dump, cat]
        out = ctx.path(f"out.{variant}")
        shown = {"none": "pg_dump db | cat > f", "zstd": "pg_dump db | zstd -3 -T1 | cat > f",
                 "custom": "pg_dump -Fc db | cat > f"}[variant]
        base = _sized(PgRow(shown, stages, None, out, kind="backup", variant=variant, tool="cat"), out)
        synced = ctx.path(f"out.{variant}.synced")  # the backup's durability: its file on disk before it exits
        durable = _sized(PgRow(f"{shown} && sync f", stages[:-1] + [(["sh", "-c", SYNCED, "sh", synced],
                                                                     ctx.base_env)], kind="backup-synced",
                               variant=variant, tool="cat"), synced)
        directory = ctx.path(f"backups-{variant}")
        os.mkdir(directory, 0o700)
        argv = [script, "--dir", directory, "--no-globals", *options, DB]
        mine = PgRow(f"encpipe-backup --no-globals {label}", [(argv, env)], base=base, kind="backup",
                     variant=variant, cipher=cipher)
        mine.durable = durable
        rows += [base, durable, _sized(mine, directory=directory)]
    sealed = ctx.path("out.sealed")
    rows.append(_sized(PgRow("pg_dump db | encpipe seal > f", [pg_dump, ctx.enc("seal", cipher=cipher)], None, sealed,
                             base=rows[0], kind="backup", variant="seal", cipher=cipher), sealed))
    return rows


def _restore_rows(ctx, pg, env, script, cipher, backups, dumps, table, expected):
    rows, client_env = [], {k: v for k, v in env.items() if not k.startswith("ENCPIPE")}

    def client(db, custom=False):
        """createdb, then psql from standard input as encpipe-restore runs it (pgstream): errors
        quiet, ON_ERROR_STOP, a plain dump in one transaction (-1), an archive's SQL (BEGIN and
        COMMIT its own) as it is. It runs restricted by the dump's own \\restrict line, where
        encpipe-restore gives it one of its own and drops the dump's (the filter is its cost)."""
        tool = shlex.join(["exec", *pgstream.psql_restore_args(db, custom)])
        return (["sh", "-c", f"createdb {db} && {tool}"], client_env)

    archive_to_sql = (list(pgstream.ARCHIVE_TO_SQL), client_env)  # the cluster's pg_restore, first on PATH
    cat = (["cat"], ctx.base_env)
    for variant, _, _ in BACKUPS:
        db = f"restore_{variant}"
        if variant == "custom":
            stages, shown = [cat, archive_to_sql, client(db, custom=True)], \
                "cat dump | pg_restore -1 -f - | (createdb && psql)"
        elif variant == "zstd":
            stages, shown = [cat, (["zstd", "-d", "-c", "-q"], client_env), client(db)], \
                "cat dump.zst | zstd -d | (createdb && psql -1)"
        else:
            stages, shown = [cat, client(db)], "cat dump.sql | (createdb && psql -1)"
        base = _restored(pg, PgRow(shown, stages, dumps[variant], kind="restore", variant=variant, tool="cat"),
                         db, table, expected)
        base.out_size = os.path.getsize(dumps[variant])
        kind = {"none": "plain", "zstd": "plain zstd", "custom": "custom"}[variant]
        argv = [script, "--no-globals", backups[variant], f"{db}_enc"]  # made without one (else 66)
        mine = PgRow(f"encpipe-restore FILE db ({kind} file)", [(argv, env)],
                     base=base, kind="restore", variant=variant, cipher=cipher)
        mine.out_size = os.path.getsize(backups[variant])
        rows += [base, _restored(pg, mine, f"{db}_enc", table, expected, warm_file=backups[variant])]
    opener = PgRow("encpipe open < dump.enc | (createdb && psql -1)", [ctx.enc("open", cipher=cipher),
                   client("restore_open")], dumps["sealed"], base=rows[0], kind="restore", variant="open",
                   cipher=cipher)
    opener.out_size = os.path.getsize(dumps["sealed"])
    rows.append(_restored(pg, opener, "restore_open", table, expected))
    return rows


def _postgresql(ctx, pg):
    table, what = _generate(ctx, pg)
    ctx.pg_what = what
    cipher = ctx.ciphers[0]
    env = _script_env(ctx, pg, cipher)
    scripts = os.path.join(ctx.package_dir, "scripts")
    expected = pg.psql(f"SELECT count(*) FROM {table}", db=DB).strip()
    ctx.say("PostgreSQL: one untimed backup of each kind, and the same dumps unsealed")
    backups = _backup_files(ctx, env, os.path.join(scripts, "encpipe-backup"))
    dumps = _dump_files(ctx, pg)
    rows = _backup_rows(ctx, pg, env, os.path.join(scripts, "encpipe-backup"), cipher)
    rows += _restore_rows(ctx, pg, env, os.path.join(scripts, "encpipe-restore"), cipher, backups, dumps, table,
                          expected)
    rounds = ctx.opts.pg_rounds
    ctx.say(f"PostgreSQL: plain dump {human(os.path.getsize(dumps['none']))}, {len(rows)} commands x {rounds} rounds")
    measure_rounds(rows, rounds, progress=ctx.say)
    ctx.pg_rows = rows
    ctx.pg_dump_size = os.path.getsize(dumps["none"])
    pgreport.table(ctx)
