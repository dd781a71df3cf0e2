"""Throwaway PostgreSQL clusters for the test suite.

``PgCluster`` runs ``initdb`` + ``pg_ctl`` from the installed PostgreSQL
server binaries in a fresh temporary directory (initdb once per process: each
later cluster starts from a copy of that data directory).  The server listens on a
Unix socket only (``listen_addresses = ''``) and trusts every local
connection, so clients need nothing but :attr:`PgCluster.env`::

    with PgCluster() as pg:
        subprocess.run(["pg_dump", "mydb"], env=pg.env, check=True)

PostgreSQL refuses to run as root.  When the tests run as root (as CI
does), the server processes run as the ``postgres`` system user and the
temporary directory is handed over to that user; clients keep running as
root and connect as a ``root`` superuser role.

``seed_awkward_database`` fills a database with data that tends to break
naive byte handling (newlines, tabs, backslashes, non-ASCII, bytea, NULLs,
multi-megabyte rows) plus the plaintext canaries listed in ``MARKERS``.
"""

from __future__ import annotations

import atexit
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
import time

__all__ = ["PgCluster", "PgClusterError", "MARKERS", "seed_awkward_database"]

PG_MAJOR = "15"
DEFAULT_BINDIR = f"/usr/lib/postgresql/{PG_MAJOR}/bin"
SERVER_OS_USER_WHEN_ROOT = "postgres"
BOOTSTRAP_ROLE = "postgres"

# Distinctive plaintext strings planted in the seeded data.  A plain
# (``pg_dump -Fp``) dump contains each of them verbatim; an encrypted file
# must contain none of them.  They are ASCII-only and free of characters
# that COPY or SQL would escape, so they appear byte-for-byte in dumps.
MARKERS = [
    "MARKER-7f3a-plaintext-canary",
    "MARKER-c91e-schema-two-secret",
    "MARKER-04bd-inside-large-row",
    "MARKER-e5d2-multiline-value",
    "MARKER-2a68-unicode-neighbour",
]

_port_counter = itertools.count()
_template_datadirs = {}  # PgCluster._template's, by encoding

# All a server and its clients get of the caller's environment, so that no secret of
# the tests (ENCPIPE_*, PGPASSWORD, RCLONE_*, ...) reaches a test server or its psql.
# PYTHONPATH (clients only) lets the scripts the tests run find this encpipe.
KEPT_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "GOGC", "GOMEMLIMIT")  # Go's: conftest.py


def _minimal_env(*also) -> dict:
    env = {name: os.environ[name] for name in KEPT_ENV + also if name in os.environ}
    env.setdefault("PATH", os.defpath)
    return env


def _remove_in(pid, path):
    """Remove `path` at exit of process `pid` only (not of a child forked from it)."""
    if os.getpid() == pid:
        shutil.rmtree(path, ignore_errors=True)


class PgClusterError(RuntimeError):
    """Raised when the PostgreSQL cluster cannot be set up or used."""


def _find_bindir(explicit=None) -> str:
    candidates = [explicit] if explicit else []
    pg_config = shutil.which("pg_config")
    if pg_config and not explicit:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True
            ).stdout.strip()
            candidates.append(out)
        except (OSError, subprocess.CalledProcessError):
            pass
    if not explicit:
        candidates.append(DEFAULT_BINDIR)
    needed = ("initdb", "pg_ctl", "postgres")
    for d in candidates:
        if d and all(os.access(os.path.join(d, b), os.X_OK) for b in needed):
            return d
    raise PgClusterError(
        "PostgreSQL %s server binaries (initdb, pg_ctl, postgres) not found in %s; "
        "install the postgresql-%s package" % (PG_MAJOR, " or ".join(candidates), PG_MAJOR)
    )


def _pick_port() -> int:
    # The server listens on a Unix socket in its own private directory, so
    # the port only names the socket file (.s.PGSQL.<port>) and cannot clash
    # with another cluster.  Still vary it per process/cluster so that log
    # lines and `ps` output of parallel clusters are easy to tell apart.
    return 20000 + (os.getpid() * 31 + next(_port_counter)) % 40000


class PgCluster:
    """A throwaway PostgreSQL cluster (Unix socket only, trust auth).

    Constructor arguments (all optional):

    ``port``
        Port number; it only names the socket file.  Chosen automatically.
    ``bindir``
        Directory with ``initdb``/``pg_ctl``/``postgres``/``psql``.  Found
        via ``pg_config --bindir`` or ``/usr/lib/postgresql/15/bin``.
    ``parent_dir``
        Where to create the temporary directory (default: ``tempfile``'s).
    ``settings``
        Extra ``postgresql.conf`` settings, e.g. ``{"work_mem": "'8MB'"}``
        (values are written verbatim).
    ``timeout``
        Seconds to wait for start/stop.
    ``encoding``
        initdb's ``--encoding`` (locale C): ``"SQL_ASCII"`` for a cluster whose
        names may hold any byte.
    ``own_initdb``
        Run initdb for this cluster rather than copy the process's template:
        a system identifier of its own (the copies all share the template's).

    Attributes: ``base_dir``, ``datadir``, ``socket_dir`` (== ``host``),
    ``logfile``, ``port``, ``user`` (role the clients connect as),
    ``dbname`` (``"postgres"``), ``bindir``, ``env``, ``running``.
    """

    def __init__(self, port=None, bindir=None, parent_dir=None, settings=None, timeout=60, encoding="UTF8",
                 own_initdb=False):
        self.encoding, self.own_initdb = encoding, own_initdb
        self.bindir = _find_bindir(bindir)
        self.port = int(port) if port is not None else _pick_port()
        self.timeout = timeout
        self.settings = dict(settings or {})
        self.dbname = "postgres"
        self.user = pwd.getpwuid(os.geteuid()).pw_name
        self._as_root = os.geteuid() == 0
        if self._as_root:
            try:
                pw = pwd.getpwnam(SERVER_OS_USER_WHEN_ROOT)
            except KeyError:
                raise PgClusterError(
                    "running as root but there is no %r system user to run the "
                    "PostgreSQL server as" % SERVER_OS_USER_WHEN_ROOT
                ) from None
            self._server_uid, self._server_gid = pw.pw_uid, pw.pw_gid
        else:
            self._server_uid, self._server_gid = os.geteuid(), os.getegid()

        self.base_dir = tempfile.mkdtemp(prefix="encpipe-pg-", dir=parent_dir)
        self.datadir = os.path.join(self.base_dir, "data")
        self.socket_dir = os.path.join(self.base_dir, "sock")
        self.logfile = os.path.join(self.base_dir, "server.log")
        self.running = False
        self._initialized = False

    # ------------------------------------------------------------------ env
    @property
    def host(self) -> str:
        return self.socket_dir

    @property
    def env(self) -> dict:
        """A fresh minimal environment (KEPT_ENV and PYTHONPATH of os.environ)
        pointing libpq clients at this cluster."""
        env = _minimal_env("PYTHONPATH")
        env.update(
            PGHOST=self.socket_dir,
            PGPORT=str(self.port),
            PGUSER=self.user,
            PGDATABASE=self.dbname,
        )
        return env

    def bin(self, name: str) -> str:
        """Absolute path of a PostgreSQL program (psql, pg_dump, ...)."""
        return os.path.join(self.bindir, name)

    # ------------------------------------------------------------ lifecycle
    def _server_cmd(self, args, **kw):
        """Run a server-side program (initdb, pg_ctl) as the server user."""
        kw.setdefault("cwd", self.base_dir)
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        kw.setdefault("timeout", self.timeout + 30)
        env = _minimal_env()
        env.setdefault("LC_ALL", "C")
        if self._as_root:
            kw.update(user=self._server_uid, group=self._server_gid, extra_groups=[])
            env["HOME"] = self.base_dir
            env["USER"] = env["LOGNAME"] = SERVER_OS_USER_WHEN_ROOT
        return subprocess.run(args, env=env, **kw)

    def _fail(self, what, proc=None):
        msg = ["PgCluster: %s failed" % what]
        if proc is not None:
            msg.append("exit status %s" % proc.returncode)
            msg.append("stdout:\n%s" % (proc.stdout or "").strip())
            msg.append("stderr:\n%s" % (proc.stderr or "").strip())
        try:
            with open(self.logfile, errors="replace") as f:
                msg.append("server log (tail):\n" + "".join(f.readlines()[-30:]))
        except OSError:
            pass
        raise PgClusterError("\n".join(msg))

    def _init(self):
        os.mkdir(self.datadir, 0o700)
        os.mkdir(self.socket_dir, 0o755)
        if self._as_root:
            for p in (self.base_dir, self.datadir, self.socket_dir):
                os.chown(p, self._server_uid, self._server_gid)
            # The server user must be able to reach the temp dir.
            probe = self._server_cmd(["test", "-w", self.base_dir])
            if probe.returncode != 0:
                raise PgClusterError(
                    "user %r cannot write to %s (is a parent directory not "
                    "traversable? set TMPDIR or pass parent_dir)"
                    % (SERVER_OS_USER_WHEN_ROOT, self.base_dir)
                )
        # A copy of this process's one initdb'd data directory: the same files
        # initdb would write, in a fraction of its time (and the same system identifier).
        if self.own_initdb:
            proc = self._server_cmd(self._initdb_argv(self.datadir))
            if proc.returncode != 0:
                self._fail("initdb", proc)
        else:
            proc = self._server_cmd(["cp", "-a", "--", os.path.join(self._template(), "."), self.datadir])
            if proc.returncode != 0:
                self._fail("copying the initdb template", proc)
        conf = {
            "listen_addresses": "''",
            "port": str(self.port),
            "unix_socket_directories": "'%s'" % self.socket_dir,
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "40",
            "shared_buffers": "32MB",
            "max_wal_size": "1GB",
            "logging_collector": "off",
            "log_min_messages": "warning",
        }
        conf.update(self.settings)
        with open(os.path.join(self.datadir, "postgresql.conf"), "a") as f:
            f.write("\n# throwaway test cluster\n")
            for k, v in conf.items():
                f.write("%s = %s\n" % (k, v))
        self._initialized = True

    def _template(self) -> str:
        """The data directory initdb made, once per process, for every cluster to copy
        (removed when the process exits)."""
        known = _template_datadirs.get(self.encoding)
        if known and os.path.isdir(known):
            return known
        base = tempfile.mkdtemp(prefix="encpipe-pg-template-", dir=os.path.dirname(self.base_dir))
        atexit.register(_remove_in, os.getpid(), base)
        datadir = os.path.join(base, "data")
        if self._as_root:
            os.chown(base, self._server_uid, self._server_gid)
        proc = self._server_cmd(self._initdb_argv(datadir), cwd=base)
        if proc.returncode != 0:
            shutil.rmtree(base, ignore_errors=True)
            self._fail("initdb", proc)
        _template_datadirs[self.encoding] = datadir
        return datadir

    def _initdb_argv(self, datadir):
        return [self.bin("initdb"), "-D", datadir, "--username", BOOTSTRAP_ROLE, "--auth", "trust",
                "--encoding", self.encoding, "--locale", "C", "--no-sync"]

    def start(self) -> "PgCluster":
        """initdb (first time only), start the server and wait until ready."""
        if self.running:
            return self
        t0 = time.monotonic()
        if not self._initialized:
            self._init()
        proc = self._server_cmd([
            self.bin("pg_ctl"), "start", "-w", "-t", str(self.timeout),
            "-D", self.datadir, "-l", self.logfile,
        ])
        if proc.returncode != 0:
            self._fail("pg_ctl start", proc)
        self.running = True
        if self.user != BOOTSTRAP_ROLE:
            self.psql(
                'CREATE ROLE "%s" SUPERUSER LOGIN' % self.user.replace('"', '""'),
                user=BOOTSTRAP_ROLE,
            )
        self.startup_seconds = time.monotonic() - t0
        return self

    def stop(self) -> None:
        """Stop the server (fast shutdown) and delete the temporary directory."""
        try:
            if self.running:
                proc = self._server_cmd([
                    self.bin("pg_ctl"), "stop", "-w", "-m", "fast",
                    "-t", str(self.timeout), "-D", self.datadir,
                ])
                if proc.returncode != 0:
                    self._server_cmd([
                        self.bin("pg_ctl"), "stop", "-w", "-m", "immediate",
                        "-D", self.datadir,
                    ])
                self.running = False
        finally:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def __del__(self):
        # Last-resort cleanup if a test forgot stop(); never raise here.
        try:
            if os.path.isdir(getattr(self, "base_dir", "")):
                self.stop()
        except Exception:
            pass

    # -------------------------------------------------------------- clients
    def psql(self, sql: str, db: str | None = None, user: str | None = None,
             check: bool = True) -> str:
        """Run SQL (may be several statements) with psql; return stdout.

        Output is unaligned, tuples only (``psql -X -A -t -q``), so
        ``pg.psql("select 1")`` returns ``"1\\n"``.  Any SQL error raises
        PgClusterError (ON_ERROR_STOP) unless ``check=False``.
        """
        env = self.env
        if user is not None:
            env["PGUSER"] = user
        proc = subprocess.run(
            [self.bin("psql"), "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1",
             "-d", db or self.dbname, "-f", "-"],
            input=sql, env=env, capture_output=True, text=True,
            timeout=self.timeout + 300,
        )
        if check and proc.returncode != 0:
            raise PgClusterError(
                "psql failed (exit %d) on db %r:\n%s\nSQL: %.500s"
                % (proc.returncode, db or self.dbname, proc.stderr.strip(), sql)
            )
        return proc.stdout

    def createdb(self, dbname: str) -> None:
        self.psql('CREATE DATABASE "%s"' % dbname.replace('"', '""'))

    def dropdb(self, dbname: str) -> None:
        self.psql('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % dbname.replace('"', '""'))

    def __repr__(self):
        return "<PgCluster %s port=%d %s>" % (
            self.socket_dir, self.port, "running" if self.running else "stopped")


# ---------------------------------------------------------------- seeding

_SEED_SQL = r"""
CREATE SCHEMA app;
CREATE SCHEMA "Weird Schema";
CREATE SCHEMA archive;

CREATE SEQUENCE app.ticket_seq START 1000 INCREMENT 7;

CREATE TABLE app.notes (
    id      integer PRIMARY KEY DEFAULT nextval('app.ticket_seq'),
    title   text NOT NULL,
    body    text,
    payload bytea,
    created timestamptz DEFAULT '2024-01-02 03:04:05+00'
);
CREATE INDEX notes_title_idx ON app.notes (lower(title));

INSERT INTO app.notes (title, body, payload) VALUES
  ('newlines',   E'line one\nline two\r\nline three\n', '\x000102ff'::bytea),
  ('tabs',       E'col1\tcol2\t\tcol4', E'\\x09090909'::bytea),
  ('backslash',  E'C:\\Users\\x\\ and \\. and \\N and \\\\', '\x5c5c5c'::bytea),
  ('unicode',    'Straße, 日本語, emoji 🐘🔐, combining é, RTL שלום', convert_to('日本 🐘', 'UTF8')),
  ('nulls',      NULL, NULL),
  ('empty',      '', ''::bytea),
  ('copy-end',   E'\\.\nlooks like end of COPY data\n\\.', '\x5c2e0a'::bytea),
  ('marker-1',   'MARKER-7f3a-plaintext-canary', convert_to('MARKER-7f3a-plaintext-canary', 'UTF8')),
  ('marker-ml',  E'before\nMARKER-e5d2-multiline-value\nafter', NULL),
  ('marker-uni', 'ß日本🐘 MARKER-2a68-unicode-neighbour 🔐日本ß', NULL),
  ('all bytes',  NULL, (SELECT string_agg(set_byte('\x00'::bytea, 0, i), ''::bytea)
                        FROM generate_series(0, 255) AS i));

CREATE TABLE "Weird Schema"."Mixed Case Table" (
    "Key"   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    "value; DROP" text,
    flag    boolean,
    amount  numeric(20, 6),
    tags    text[],
    doc     jsonb
);
INSERT INTO "Weird Schema"."Mixed Case Table" ("value; DROP", flag, amount, tags, doc) VALUES
  ('MARKER-c91e-schema-two-secret', true, 12345.678901, ARRAY['a,b', 'c"d', NULL],
   '{"k": "v\nw", "ß": [1, null, "日本"]}'),
  (NULL, NULL, NULL, NULL, NULL),
  (E'quote '' and "double" and \\', false, -0.000001, '{}', '[]');

CREATE TABLE archive.blobs (
    id   integer PRIMARY KEY,
    big  text,
    blob bytea
);
-- Large rows: ~1.5 MB of hex text (poorly compressible) and ~1 MB of bytea.
INSERT INTO archive.blobs (id, big, blob)
SELECT 1,
       (SELECT string_agg(md5(i::text), '') FROM generate_series(1, 24000) AS i)
         || ' MARKER-04bd-inside-large-row '
         || (SELECT string_agg(md5((-i)::text), '') FROM generate_series(1, 24000) AS i),
       (SELECT string_agg(decode(md5(i::text), 'hex'), ''::bytea)
          FROM generate_series(1, 65536) AS i);
INSERT INTO archive.blobs (id, big, blob)
SELECT 2, repeat(E'tab\there\nnewline\\backslash ß ', 60000), NULL;
INSERT INTO archive.blobs (id, big, blob)
SELECT g, 'row ' || g, int4send(g) FROM generate_series(3, 2000) AS g;

CREATE VIEW app.note_summary AS
    SELECT id, title, length(body) AS body_len, payload IS NULL AS no_payload
    FROM app.notes;

CREATE FUNCTION app.shout(t text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $fn$
BEGIN
    IF t IS NULL THEN
        RETURN NULL;
    END IF;
    RETURN upper(t) || E'!\n';
END;
$fn$;

COMMENT ON TABLE app.notes IS E'Notes with awkward text: ß, 日本, 🐘, tab\there';
"""


def seed_awkward_database(cluster: PgCluster, dbname: str) -> None:
    """Create database ``dbname`` in ``cluster`` and fill it with awkward data.

    Objects created: schemas ``app``, ``"Weird Schema"``, ``archive``;
    tables ``app.notes``, ``"Weird Schema"."Mixed Case Table"``,
    ``archive.blobs`` (rows of ~1.5 MB and ~1.4 MB text, ~1 MB bytea);
    sequence ``app.ticket_seq``; index ``app.notes_title_idx``; view
    ``app.note_summary``; plpgsql function ``app.shout(text)``.  Every
    string in ``MARKERS`` is stored somewhere in the data.
    """
    cluster.createdb(dbname)
    cluster.psql(_SEED_SQL, db=dbname)


def waiting_until(condition: str, seconds: int = 60) -> bytes:
    """SQL to put first in a dump that a test restores: it waits until `condition` (a
    boolean SQL expression, on pg_stat_activity, say) holds, at most `seconds`, then the
    dump goes on. A wait for what the test does meanwhile, not a fixed pg_sleep: the
    statistics snapshot is cleared each time, since the dump may run in one transaction."""
    return ("DO $$BEGIN WHILE NOT (%s) AND clock_timestamp() < statement_timestamp() + interval '%d s' LOOP "
            "PERFORM pg_stat_clear_snapshot(); PERFORM pg_sleep(0.02); END LOOP; END$$;\n"
            % (condition, seconds)).encode()
