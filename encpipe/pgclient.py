"""Talking to PostgreSQL through its own clients (psql), for the restore tools.

No driver: every statement goes through `psql -X -w`, whose environment holds
none of encpipe's secrets, and which never asks for a password: it takes the one
in PGPASSWORD or a password file (~/.pgpass, PGPASSFILE's). Before, one that
asked read the terminal, then the next one did; without a terminal, it read its
standard input, and took the first line of its SQL (or of the dump) for it.
Values are quoted here (`ident`, `literal`) for a session with
standard_conforming_strings on, which `run_sql` sets first, with a search_path
of pg_catalog only and a lock_timeout.
"""

import os
import re
import subprocess

from . import sigthreads
from .childenv import child_env

_FIELD, _RECORD = "\x1f", "\x00"
FIELD = _FIELD  # what run_sql splits a row's fields on: a caller of `fields` splits the rest
# Run as a superuser, in a database whose owner may set its search_path (or where others
# may create in public): only pg_catalog resolves a name, so that no function of theirs
# stands in for one the statements call (a public.shobj_description(oid, text) is a
# better match for a quoted literal than pg_catalog's (oid, name)).
# And no lock is waited for without end: the owner of a database may keep its row
# locked in an open transaction, and the swap, holding the live database renamed in its
# own, waited for ever (now it fails, and rolls back).
LOCK_TIMEOUT = "10s"
# Nor do a role's or a database's own timeouts (ALTER ROLE/DATABASE ... SET) hold for the
# run's sessions, as pg_dump's and pg_dumpall's turn them off for theirs: a statement_timeout
# failed a backup's reads and the swap, and an idle_session_timeout (14 and later) ended the
# session that holds a restore's lock while the dump loads. Each one the server has, set to 0
# (OFFSET 0: the names are chosen before set_config runs); no row is printed.
NO_TIMEOUTS = ("SELECT 1 FROM (SELECT name FROM pg_catalog.pg_settings WHERE name IN ('statement_timeout', "
               "'idle_in_transaction_session_timeout', 'idle_session_timeout') OFFSET 0) AS s "
               "WHERE pg_catalog.set_config(s.name, '0', false) IS NULL;")
# statement_timeout first, and as a plain SET (as pg_dump does): a database's or role's of a
# millisecond cancelled NO_TIMEOUTS itself, a scan of pg_settings, and every backup failed.
SESSION_SETUP = ("SET statement_timeout = 0;\nSET search_path = pg_catalog;\nSET standard_conforming_strings = on;\n"
                 "SET client_min_messages = warning;\nSET lock_timeout = '%s';\n%s" % (LOCK_TIMEOUT, NO_TIMEOUTS))
# Nor, in a restore's, a default_transaction_read_only of the maintenance database or the role
# (pg_dumpall's output turns it off too): its CREATE ROLE and CREATE DATABASE failed. A backup's
# sessions keep it: they only read, and a backup role may be made read-only on purpose.
READ_WRITE = "SET default_transaction_read_only = off;"
# A restore's sessions speak UTF-8 whatever the server's encoding (pgencoding), but for a
# SQL_ASCII server, whose bytes are of no encoding (as UTF-8, a name's 0xff was refused);
# no row is printed. A backup's read as the server gives them (pgprops).
UTF8_SESSIONS = ("SELECT 1 FROM (SELECT 1 WHERE pg_catalog.current_setting('server_encoding') <> 'SQL_ASCII' "
                 "OFFSET 0) AS s WHERE pg_catalog.set_config('client_encoding', 'UTF8', false) IS NULL;")
# Nor, in a restore's, a `role` the maintenance database sets for every session (ALTER DATABASE
# ... SET role, which its owner may run): the restore acted as her, made the scratch database
# hers while a superuser's dump loaded into it (she could connect and put objects in it), and
# the restored database too. One the login role has (ALTER ROLE ... SET role, for this database
# or all), or PGOPTIONS gives, is the operator's (tests/test_restore_swap_role.py): kept, as the
# server keeps it over the database's. Whatever the database's value says (the server acts on
# it cut to a name's 63 bytes, and keeps it whole: compared with CURRENT_USER, a longer one
# never matched).
DATABASE_ROLE = (
    "SELECT 1 FROM (SELECT 1 WHERE CURRENT_USER <> SESSION_USER AND EXISTS (SELECT 1 FROM "
    "pg_catalog.pg_db_role_setting AS d, pg_catalog.unnest(d.setconfig) AS c WHERE d.setrole = 0 AND "
    "d.setdatabase = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()) "
    "AND c LIKE 'role=%') AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_db_role_setting AS u, "
    "pg_catalog.unnest(u.setconfig) AS uc WHERE u.setrole = (SELECT oid FROM pg_catalog.pg_roles "
    "WHERE rolname = SESSION_USER) AND u.setdatabase IN (0, (SELECT oid FROM pg_catalog.pg_database "
    "WHERE datname = pg_catalog.current_database())) AND uc LIKE 'role=%') "
    "OFFSET 0) AS s WHERE pg_catalog.set_config('role', 'none', false) IS NULL;")
_OPTIONS_ROLE = re.compile(r"(?:^|\s)(?:-c\s*|--)role=")  # PGOPTIONS' `-c role=R`, `-crole=R`, `--role=R`
_more_setup = ""  # DATABASE_ROLE, UTF8_SESSIONS and READ_WRITE, once restoring() was called
# A backup's session that reads a database's own text (pgprops.comment_line) speaks the
# database's encoding, in which a restore reads it (pgencoding): before, it was the one
# PGCLIENTENCODING or a database's or role's client_encoding chose; the backup recorded
# a LATIN1 database's comment `café` as UTF-8 (restored `cafÃ©`, exit 0), or failed
# for a character the setting's encoding lacks.
SERVER_ENCODING = ("SELECT 1 WHERE pg_catalog.set_config('client_encoding', "
                   "pg_catalog.current_setting('server_encoding'), false) IS NULL;\n")


def restoring():
    """From now on, every session of run_sql and Session acts as the login role or the one it
    chose, not the maintenance database's (DATABASE_ROLE), speaks UTF-8 (UTF8_SESSIONS), and
    its transactions may write (READ_WRITE): a restore's."""
    global _more_setup
    chosen = _OPTIONS_ROLE.search(os.environ.get("PGOPTIONS", ""))
    _more_setup = "\n%s\n%s\n%s" % ("" if chosen else DATABASE_ROLE, UTF8_SESSIONS, READ_WRITE)

# psql 15.14, 16.10 and 17.6 brought \restrict (CVE-2025-8714); 18 has it.
RESTRICT_SINCE = {15: 14, 16: 10, 17: 6}


NO_PASSWORD = "fe_sendauth: no password supplied"  # libpq's, when the server wants one and -w gives none


def password_hint(said):
    """The hint for a client's error `said` (a string, or bytes) when a password was wanted, else None."""
    said = said.decode("utf-8", "replace") if isinstance(said, bytes) else str(said)
    if NO_PASSWORD in said:
        return ("encpipe-restore's clients never ask for a password: give it in PGPASSWORD or a password file "
                "(~/.pgpass, or the one PGPASSFILE names)")
    return None


def no_server_hint(said):
    """The hint for a client's error `said` when it could not reach the server at all
    (no socket there, a connection refused: libpq's second line, which the one-line
    error leaves out, asks whether the server runs), else None."""
    if re.search(r"connection to server .* failed: (No such file or directory|Connection refused)", str(said)):
        return ("is the server running? PGHOST and PGPORT (or PGSERVICE) say where the clients look for it; "
                "on Debian, pg_lsclusters lists the clusters and their ports")
    return None


# psql's answer to a query of run_sql (names and properties from the catalog) is read up
# to this, never whole: a server (or a psql) that answers without end fails the query;
# of its standard error, whose first ERROR line is the error, the start is kept.
PSQL_OUTPUT_MAX = 64 << 20
PSQL_ERR_KEPT = 64 << 10


class PgError(Exception):
    """A client failed; the message is for the user, `status` its exit status."""

    def __init__(self, message, status=1):
        super().__init__(message)
        self.status = status


def client_env(user=None):
    """os.environ less every secret but PGPASSWORD (childenv.child_env), for psql, pg_dump, pg_dumpall, pg_restore."""
    env = child_env(os.environ, needs=("libpq",))
    if user:
        env["PGUSER"] = user
    return env


def ident(name):
    return '"' + name.replace('"', '""') + '"'


def literal(text):
    if "\0" in text:
        raise PgError("a value holds a NUL byte")
    return "'" + text.replace("'", "''") + "'"


def starts_with(text):
    """A LIKE pattern (a literal) for the values that start with `text`: its \\, % and _ as themselves."""
    return literal(text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")


def conninfo(db):
    """A connection string naming database `db` and nothing else: given as is, psql and
    libpq take a name holding `=` (or starting postgresql://) for a connection string."""
    return "dbname='%s'" % db.replace("\\", "\\\\").replace("'", "\\'")


def restrict_key():
    """A fresh key for psql's \\restrict: only `\\unrestrict KEY` lifts it."""
    return os.urandom(24).hex()  # secrets.token_hex(24), without importing random


def psql_args(db, *extra):
    return ["psql", "-X", "-w", "-q", "-v", "ON_ERROR_STOP=1", "-d", db, *extra]


def run_sql(db, sql, user=None, single_transaction=False, restrict=False, step=None, fields=None):
    """Runs SQL in `db` (in restricted mode when `restrict`); returns the rows as lists of strings.
    `fields`: split each row into at most so many, the last taking the rest. A name
    (a database's, a role's: any role with CREATEDB or CREATEROLE makes one) may hold
    the byte rows are split on (0x1f; only NUL is out): a query of names puts them
    last and gives `fields`, else a name so made ended the run in a traceback.
    Bytes that are not UTF-8 (a name on a SQL_ASCII cluster) come back as surrogates, as
    os.listdir gives a file name's, and go back to the server as the same bytes.
    `step` (Step's): psql's session is named so, and psql runs in a process group of its own
    (where reading the terminal, for a password, would stop it: SIGTTIN; psql_args' -w asks none)."""
    extra = ["-A", "-t", "-F", _FIELD, "-0", "-f", "-"]
    text = "%s%s\n%s\n" % (SESSION_SETUP, _more_setup, sql)
    if single_transaction:  # one a default_transaction_read_only began read-only: made read-write first
        extra.insert(0, "--single-transaction")
        text = "SET TRANSACTION READ WRITE;\n" + text
    if restrict:
        text = "\\restrict %s\n%s" % (restrict_key(), text)
    env, own = client_env(user), {}
    if step:
        env["PGAPPNAME"], own = step, {"process_group": 0}
    try:
        proc = sigthreads.run(psql_args(db, *extra), input=text.encode("utf-8", "surrogateescape"), env=env,
                              limit=PSQL_OUTPUT_MAX, err_kept=PSQL_ERR_KEPT, **own)
    except sigthreads.TooLong as e:
        raise PgError(f"psql wrote {e}, more than any answer of the catalog") from None
    if proc.returncode != 0:
        raise PgError(_error_line(said_text(proc.stderr), proc.returncode))
    out = proc.stdout.decode("utf-8", "surrogateescape")
    return [record.split(_FIELD, (fields or 0) - 1) for record in out.split(_RECORD) if record.strip("\n")]


def said_text(stderr):
    """What psql wrote on standard error, as text: each line as UTF-8 when it is (a
    server's message comes in the database's encoding, most often UTF-8), else in the
    locale's charset, which psql translates its own messages into (the scripts run in
    UTF-8 mode whatever the locale: utf8mode); U+FFFD for a byte neither reads."""
    import codecs

    from .compat import locale_encoding

    charset = codecs.lookup(locale_encoding()).name  # the locale's, whatever the UTF-8 mode
    lines = []
    for line in stderr.splitlines(keepends=True):
        try:
            lines.append(line.decode("utf-8"))
        except UnicodeDecodeError:
            lines.append(line.decode("utf-8" if charset in ("utf-8", "ascii") else charset, "replace"))
    return "".join(lines)


def _error_line(stderr, status):
    """The line of psql's standard error that says what failed (ERROR, FATAL, `psql: error:`),
    not the DETAIL, HINT or CONTEXT lines after it; else the last line."""
    lines = [re.sub(r"^psql:<stdin>:[0-9]+: ", "", line).strip() for line in stderr.strip().splitlines()]
    errors = [line for line in lines if line.startswith(("ERROR:", "FATAL:", "psql: error:"))]
    if errors:
        return errors[0]
    return lines[-1] if lines else "psql exited %d" % status


class Step:
    """Statements that commit (the swap, a DROP DATABASE), whose outcome the run must know.

    Their psql runs in a process group of its own (as `rclone rcat` does: rclonestore):
    a Ctrl-C or a hangup, which the terminal sends to its whole foreground group,
    is the run's only, which holds it meanwhile; that psql cancelled the swap, or
    died of it, the server having committed or not. When psql fails all the same
    (killed, its connection lost), outcome() asks the server: the session of the
    step, named by its application_name, is ended first if the server still runs
    it (the server finishes a statement whose client is gone: a COMMIT too), and
    waited for: what it did is then all it will do."""

    def __init__(self, db):
        self.db, self.name = db, "encpipe " + os.urandom(8).hex()

    def run(self, sql, single_transaction=False, restrict=False):
        return run_sql(self.db, sql, single_transaction=single_transaction, restrict=restrict, step=self.name)

    def outcome(self, sql, fields=None):
        """The rows of `sql`, asked once no session of this step is left on the server
        (ended, waited for up to 10 s each); PgError when one is left, or on no answer."""
        # pg_stat_activity names a session by its login role (usename), which may act as another
        # from its start (ALTER ROLE ... SET role, PGOPTIONS -c role=...): matched by that
        # login role, acting as it (SET ROLE NONE), which may end its own sessions
        mine = ("FROM pg_catalog.pg_stat_activity WHERE application_name = %s AND usename = session_user "
                "AND pid <> pg_catalog.pg_backend_pid();" % literal(self.name))
        rows = run_sql(self.db, "SET ROLE NONE;\nSELECT count(pg_catalog.pg_terminate_backend(pid, 10000)) %s\n"
                       "SELECT count(*) %s\n%s" % (mine, mine, sql), step=self.name, fields=fields)
        if rows[1] != ["0"]:
            raise PgError("its session on the server did not end")
        return rows[2:]


def value(db, sql):
    rows = run_sql(db, sql)
    return rows[0][0] if rows else None


def psql_version():
    """(major, minor) of the psql on PATH (which reaches no server: no secret, not even PGPASSWORD)."""
    try:
        out = sigthreads.run(["psql", "--version"], text=True, env=child_env(os.environ)).stdout
    except OSError as e:
        raise PgError("cannot run psql: %s" % e) from None
    match = re.search(r"\b(\d+)(?:\.(\d+))?", out)
    if not match:
        raise PgError("cannot tell the version of psql from '%s'" % out.strip())
    return int(match[1]), int(match[2] or 0)


def psql_can_restrict(version):
    major, minor = version
    return major >= 18 or (major in RESTRICT_SINCE and minor >= RESTRICT_SINCE[major])


class Session:
    """A psql session held open (for an advisory lock): start() it inside the `try`
    whose end close()s it (stop=True: killed, not waited for: a signal, a server
    that no longer answers)."""

    def __init__(self, db):
        self.db, self.proc = db, None

    def start(self):
        with sigthreads.held():  # started and recorded in one step: a signal inside Popen never loses it
            self.proc = sigthreads.popen(psql_args(self.db, "-A", "-t"), stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=client_env())
        try:
            # held for the whole run: no idle timeout ends it; and its statements resolve names in
            # pg_catalog only (before, an operator `=` of the maintenance database's owner, her schema
            # first on a search_path she set for it, ran as the restoring superuser)
            self.proc.stdin.write((SESSION_SETUP + _more_setup).encode() + b"\n")
        except OSError:
            pass  # its psql gone: the first ask() says so

    def ask(self, sql):
        """One statement returning one value; None when the session died. Its answer is read up
        to PSQL_OUTPUT_MAX bytes, as run_sql's: a line past them is PgError, psql killed (before,
        read whole: a psql, or a server, that answered one line without end grew the run's memory)."""
        try:
            self.proc.stdin.write(sql.encode("utf-8", "surrogateescape") + b"\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline(PSQL_OUTPUT_MAX + 1)
        except (OSError, ValueError):  # ValueError: its pipes closed (close())
            return None
        if len(line) > PSQL_OUTPUT_MAX:
            self.close(stop=True)
            raise PgError(f"psql wrote more than {PSQL_OUTPUT_MAX} bytes, more than any answer of the catalog")
        return line.decode("utf-8", "surrogateescape").strip() or None

    def close(self, stop=False):
        if self.proc is not None and self.proc.poll() is None:
            if stop:
                self.proc.kill()
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            self.proc.wait()
