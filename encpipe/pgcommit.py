"""encpipe-restore's steps that commit on the server, said as the server made them.

The swap (DBNAME renamed to its `_pre_restore_` copy and the scratch database to
DBNAME, in one transaction) and each DROP DATABASE (the scratch database's on
failure, `--drop-old`'s, an old copy's) run as a pgclient.Step: psql in a process
group of its own, so that a Ctrl-C or a hangup, which a terminal sends to its
whole foreground group, is the restore's only (it holds it meanwhile), not
psql's, which cancelled the step or died of it. When the step's psql fails all
the same (killed, its connection lost), the server is asked what it holds, its
session of the step ended first (a COMMIT received is committed without its
client): "unchanged" or "could not drop" only when true. Before, a psql that
died once the server had swapped made the restore say DBNAME was unchanged.
The role steps (the globals file's missing roles created, and dropped again when
the restore fails) are such steps too, their outcome the roles the server has;
but not when the server refused one of their statements (an ERROR: the transaction
rolled back), whose outcome is the roles as they were. Before, a role that another
session created meanwhile, on which the restore's CREATE ROLE failed, was taken
for the restore's own, and dropped by its undo.
A psql that could not connect sent nothing: the step was not made, said so
without asking (a server that refused psql most often refuses the look too).
"""

import re

from .pgcli import Failure
from .pgclient import LOCK_TIMEOUT, PgError, Step, conninfo, ident, literal, value

_OID_OF = "SELECT oid FROM pg_catalog.pg_database WHERE datname = %s"  # the oid of database %s (an SQL text)
OID_SQL = "\n" + _OID_OF + ";"  # its one row: the database's oid
# psql's line when it could not connect: libpq (14 and later) starts so only the error of a
# connection it could not make; a session's lost connection reads otherwise (`server closed
# the connection unexpectedly`, psql's `connection to server was lost`). Translated, it does
# not match, and the server is asked, as for any other failure.
_NOT_CONNECTED = re.compile(r"psql: error: connection to server (on socket|at) .* failed: ")


def _unsent(error):
    """Whether the step's psql failed before it connected: nothing of it reached the server."""
    return bool(_NOT_CONNECTED.match(str(error)))


def _refused(error):
    """Whether the server refused a statement of the step (its first error an ERROR, not a
    FATAL nor psql's own): a step run as one transaction was then rolled back, whatever
    the server holds now. A message in another language than English is not recognised
    here: the server is asked, as for any other failure."""
    return str(error).startswith("ERROR:")


def _attempt(maintenance_db, sql, look, fields=None, **options):
    """Runs `sql` as a Step: None when psql succeeded. Else (psql's PgError, what the
    server holds now: the rows of `look`, asked once no session of the step is left;
    None when psql never connected, so nothing was sent; or the PgError of asking)."""
    step = Step(maintenance_db)
    try:
        step.run(sql, **options)
        return None
    except PgError as e:
        error = e
    if _unsent(error):
        return error, None
    try:
        return error, step.outcome(look, fields)
    except PgError as asked:
        return error, asked


def swap(maintenance_db, sql, temp, temp_oid, db, hint, say, existed=True):
    """Runs the swap's `sql` (one transaction): returns once DBNAME (`db`) is the
    restored database `temp` (whose oid is `temp_oid`), even when psql failed after
    the server committed (then said in a warning). Else a Failure: `db` unchanged
    (not created, when it had not `existed`; its hint `hint(error)`, of psql's PgError),
    or (the server not answering) not known, and where to look."""
    failed = _attempt(maintenance_db, sql, "SELECT datname FROM pg_catalog.pg_database WHERE oid = %s;" % temp_oid,
                      fields=1, single_transaction=True)
    if not failed:
        return
    error, rows = failed
    if rows is None:  # nothing sent: unchanged, whether or not the server would answer now
        now, why = temp, None
    elif isinstance(rows, PgError):
        now, why = None, "asking the server: %s" % rows
    else:
        now = rows[0][0] if rows else None
        why = "the scratch database is %s" % ("now " + now if rows else "gone")
    if now == temp:
        raise Failure("restored into %s but could not swap it in (%s); %s" % (temp, error, as_it_was(db, existed)),
                      1, hint(error))
    if now != db:
        raise Failure("restored into %s, but cannot tell whether it was swapped in (%s; %s); see whether "
                      "database %s is the restored one" % (temp, error, why, db), 1)
    say("psql failed (%s) once the server had swapped it in" % error, "warning")


def as_it_was(db, existed):
    """What a restore that failed before its swap left of DBNAME (`db`): a database
    that `existed` is unchanged; one that did not was not created."""
    return "database %s %s" % (db, "is unchanged" if existed else "was not created")


def untouched(db, existed):
    """How a refused restore's one line ends, of DBNAME (`db`): before it asked the
    server whether DBNAME exists (`existed` None), nothing was changed; after, a
    database that `existed` was not touched, and one that did not was not created."""
    if existed is None:
        return "nothing was changed"
    return "database %s %s" % (db, "was not touched" if existed else "was not created")


def drop(maintenance_db, name, sql=None):
    """DROP DATABASE `name` (or `sql`, which drops it): a PgError only when the server
    still has `name` (psql failed, and the server did not drop it; or psql did not
    connect), or cannot say.
    Before, a psql dead once the server had dropped it said "could not drop"."""
    failed = _attempt(maintenance_db, sql or "DROP DATABASE %s;" % ident(name),
                      "SELECT 1 FROM pg_catalog.pg_database WHERE datname = %s;" % literal(name))
    if not failed:
        return
    error, left = failed
    if isinstance(left, PgError):
        raise PgError("%s, and the server could not be asked whether it is gone (%s)" % (error, left),
                      error.status) from None
    if left is None or left:  # not sent, or not dropped: the database is there
        raise error


# A subscription keeps its database from being dropped (DROP DATABASE, FORCE too: "is being used
# by logical replication subscription"), and a dump's comes back with it, disabled (pg_dump writes
# connect = false) and naming the publisher's slot. Before, a scratch database that held one, the
# swap failed, stayed, with the restored data, and no later restore dropped it. Dropped here with
# no slot (slot_name = NONE), so that the publisher's, which the live database's subscription may
# use, is left as it is. Connected to the database itself: a subscription is dropped only there.
_OWN = "subdbid = (%s)" % (_OID_OF % "pg_catalog.current_database()")  # this one's: pg_subscription is shared
_DROP_SUBSCRIPTIONS = ("SELECT count(*) FROM pg_catalog.pg_subscription WHERE " + _OWN + """;
DO $$DECLARE s name; BEGIN
FOR s IN SELECT subname FROM pg_catalog.pg_subscription WHERE """ + _OWN + """ LOOP
  EXECUTE pg_catalog.format('ALTER SUBSCRIPTION %I DISABLE', s);
  EXECUTE pg_catalog.format('ALTER SUBSCRIPTION %I SET (slot_name = NONE)', s);
  EXECUTE pg_catalog.format('DROP SUBSCRIPTION %I', s);
END LOOP; END $$;""")
# A new session's start-up waits, with no lock_timeout yet, for a lock on its database's row:
# the owner of a database named like a scratch one kept it (an ALTER DATABASE left open) and
# the restore that had failed to drop it, connecting to look for subscriptions, waited for
# ever. Asked first from the maintenance database (pg_subscription is shared); and the one
# connection there is bounded by libpq (connect_timeout, as long as the lock_timeout).
_HAS_SUBSCRIPTIONS = "SELECT count(*) FROM pg_catalog.pg_subscription WHERE subdbid = (%s);" % _OID_OF
CONNECT_TIMEOUT = int(LOCK_TIMEOUT.rstrip("s"))


def drop_scratch(maintenance_db, name, attempt):
    """`attempt()`, which drops scratch database `name`: when that fails, and `name` held
    subscriptions, again once they are dropped (see _DROP_SUBSCRIPTIONS)."""
    try:
        attempt()
    except PgError:
        try:
            dropped = (value(maintenance_db, _HAS_SUBSCRIPTIONS % literal(name)) not in (None, "0")
                       and value("%s connect_timeout=%d" % (conninfo(name), CONNECT_TIMEOUT),
                                 _DROP_SUBSCRIPTIONS) not in (None, "0"))
        except PgError:  # not connected to (gone meanwhile, not the role's, busy): the first error says
            dropped = False
        if not dropped:
            raise
        attempt()


def roles(maintenance_db, sql, names, before, restrict=False):
    """Runs `sql` (one transaction creating or dropping the roles `names`, of which the
    server had `before`): None when psql succeeded. Else (psql's PgError, the roles of
    `names` the server has now: a set, or the PgError of asking it).
    Before, a psql dead once the server had committed was taken for nothing done."""
    failed = _attempt(maintenance_db, sql, "SELECT rolname FROM pg_catalog.pg_roles WHERE rolname IN (%s);"
                      % ", ".join(literal(name) for name in names), fields=1, single_transaction=True,
                      restrict=restrict)
    if not failed:
        return None
    error, rows = failed
    if rows is None or _refused(error):  # not sent, or rolled back: as they were (roles of `names` another
        return error, set(before)  # session made meanwhile, `role ... already exists`, are not the step's)
    return error, rows if isinstance(rows, PgError) else {row[0] for row in rows}
