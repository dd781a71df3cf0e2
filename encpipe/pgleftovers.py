"""Databases restores leave behind: scratch databases of killed runs, old copies.

Each restore holds a session-level advisory lock named after its scratch
database (`encpipe_restore_<UTC time>_<pid>`) from before it creates it until
it ends; the lock goes when its session does, however the run died. A later
restore drops a scratch database only when it can take that lock itself (no
run owns it), its name is older than its own, and no session is connected to
it (DROP DATABASE without FORCE refuses otherwise).

`<db>_pre_restore_<UTC time>` copies are listed with their age and size, and
dropped past an age on request; once one is dropped, a signal waits for the
others and the line that names them (sigdefer.hold_for_good).
"""

import re
from datetime import datetime, timedelta, timezone

from .backup.names import STAMP, iso
from .pgcli import Failure
from .pgcommit import drop, drop_scratch
from .pgclient import PgError, Session, ident, literal, run_sql, starts_with
from .sigdefer import held, hold_for_good
from .textform import NAME_MAX_BYTES, shown_value  # a longer name PostgreSQL cuts, a character's bytes kept whole
from .workers import decimal_number

LOCK_CLASS = 0x656E63  # "enc": the first key of encpipe's advisory locks
TEMP_PREFIX = "encpipe_restore_"
_TEMP_NAME = re.compile(r"^encpipe_restore_([0-9]{8}T[0-9]{6}Z)_[0-9]+\Z")
_PRE_RESTORE = re.compile(r"^(?P<db>.+)_pre_restore_(?P<ts>[0-9]{8}T[0-9]{6}Z)\Z", re.S)  # a name may hold a newline


def stamp(moment=None):
    return (moment or datetime.now(timezone.utc)).strftime(STAMP)


def _lock_sql(function, name):
    """A query printing one word: 't' or 'f'."""
    return "SELECT pg_catalog.%s(%d, pg_catalog.hashtext(%s));" % (function, LOCK_CLASS, literal(name))


def _held_elsewhere_sql(name):
    """How many other sessions hold the lock of scratch database `name`, in any database:
    advisory locks are each database's own, and a run of another --maintenance-db holds its
    lock there (pg_locks shows every database's; a key of two ints: key1 is classid, key2
    objid, as an unsigned number)."""
    return ("SELECT count(*) FROM pg_catalog.pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2 "
            "AND classid = %d AND objid = (pg_catalog.hashtext(%s)::bigint & 4294967295)::text::oid "
            "AND pid <> pg_catalog.pg_backend_pid();" % (LOCK_CLASS, literal(name)))


def is_scratch_name(name):
    """True for a name of the form restores give their scratch databases."""
    return bool(_TEMP_NAME.match(name))


def is_pre_restore_name(name):
    """True for a name of the form restores give the database they replaced."""
    return bool(_PRE_RESTORE.match(name))


def refuse_reserved(db):
    """Failure (64) for a DBNAME of either form: a later restore, or --drop-pre-restore-older-than, would drop it;
    and for one PostgreSQL cannot hold: the restored database would have another name than the one given."""
    if len(db.encode()) > NAME_MAX_BYTES:
        raise Failure("database name %s is longer than PostgreSQL's %d bytes; nothing was changed"
                      % (db, NAME_MAX_BYTES), 64)
    if is_scratch_name(db):
        raise Failure("%s is named like a scratch database of a restore; choose another name" % db, 64)
    if is_pre_restore_name(db):
        raise Failure("%s is named like a copy a restore keeps of the database it replaced; "
                      "choose another name" % db, 64)


class RunLock:
    """The advisory lock of one restore's scratch database, in its own session."""

    def __init__(self, maintenance_db, temp_name):
        self.session, self.maintenance_db, self.temp_name = Session(maintenance_db), maintenance_db, temp_name

    def take(self):
        """The lock taken, its session started: inside the `with` block whose end closes it."""
        maintenance_db, temp_name = self.maintenance_db, self.temp_name
        self.session.start()
        # not waited for: the name is this run's own, and any role may take any advisory
        # lock, so one that took it (a time and a pid guessed) would make the run wait for ever
        got = self.session.ask(_lock_sql("pg_try_advisory_lock", temp_name))
        if got != "t":
            self.session.close()
            if got == "f":
                raise PgError("another session holds the lock of this run's scratch database %s; nothing was "
                              "changed" % temp_name, 75)
            raise PgError("cannot take an advisory lock in database %s" % maintenance_db)

    def clean(self, maintenance_db):
        """Drops the scratch databases of dead runs; returns (dropped, [(name, why) left])."""
        dropped, busy = [], []
        rows = run_sql(maintenance_db, "SELECT datname FROM pg_catalog.pg_database WHERE datname LIKE %s;"
                       % starts_with(TEMP_PREFIX), fields=1)
        mine = _TEMP_NAME.match(self.temp_name)[1]
        for (name,) in rows:
            match = _TEMP_NAME.match(name)
            if not match or name == self.temp_name or match[1] > mine:
                continue
            if self.session.ask(_lock_sql("pg_try_advisory_lock", name)) != "t":
                continue  # a live run owns it
            try:
                if self.session.ask(_held_elsewhere_sql(name)) != "0":
                    continue  # a live run of another --maintenance-db owns it (its lock is that database's)
                drop_scratch(maintenance_db, name,
                             lambda: run_sql(maintenance_db, "DROP DATABASE IF EXISTS %s;" % ident(name)))
                dropped.append(name)
            except PgError as e:  # in use, or not the restoring role's to drop: the server's words say which
                busy.append((name, str(e)))
            finally:
                self.session.ask(_lock_sql("pg_advisory_unlock", name))
        return dropped, busy

    def __enter__(self):
        return self

    def __exit__(self, kind, *_):
        """Its session closed; killed, not waited for, on a signal (a psql that hangs, or its server)."""
        self.session.close(stop=kind is not None and not issubclass(kind, Exception))


# pg_database_size() needs CONNECT on the database (or pg_read_all_stats' rights): a
# copy the role may not connect to is listed without its size, and sizes are asked
# only for the listing (before, another's copy ended a swap, after the whole load, and
# a drop: `permission denied for database ...`).
_SIZE = ("CASE WHEN pg_catalog.has_database_privilege(oid, 'CONNECT') OR pg_catalog.pg_has_role("
         "'pg_read_all_stats', 'USAGE') THEN pg_catalog.pg_database_size(oid) END")


def pre_restore_copies(maintenance_db, db=None, now=None, sizes=False):
    """[{name, database, created, age_days, bytes}] of the *_pre_restore_* databases
    (`bytes` None unless `sizes`, or when the role may not connect to it); a
    name dated on no day (`..._pre_restore_20241399T999999Z`, which any role that may
    create a database can make) is no copy a restore made: neither listed nor dropped."""
    now = now or datetime.now(timezone.utc)
    rows = run_sql(maintenance_db, "SELECT %s, datname FROM pg_catalog.pg_database WHERE datname ~ "
                   "'_pre_restore_[0-9]{8}T[0-9]{6}Z$' ORDER BY datname;" % (_SIZE if sizes else "NULL"), fields=2)
    copies = []
    for size, name in rows:
        match = _PRE_RESTORE.match(name)
        if not match or (db is not None and match["db"] != db):
            continue
        created = _created(name)
        if created is None:
            continue
        copies.append({"name": name, "database": match["db"], "created": iso(created),  # year 1 as 0001
                       "age_days": round((now - created).total_seconds() / 86400, 3),
                       "bytes": int(size) if size else None})
    return copies


def _created(name):
    """When a copy named `name` was made; None when its name is dated on no day."""
    try:
        return datetime.strptime(_PRE_RESTORE.match(name)["ts"], STAMP).replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def pre_restore_name(maintenance_db, db, now=None):
    """A free `<db>_pre_restore_<UTC time>` name: now, or the first later second
    that no copy has taken (two restores of `db` within one second)."""
    taken = {copy["name"] for copy in pre_restore_copies(maintenance_db, db)}
    moment = now or datetime.now(timezone.utc)
    while (name := "%s_pre_restore_%s" % (db, stamp(moment))) in taken:
        moment += timedelta(seconds=1)
    return name


def drop_pre_restore(maintenance_db, days, db=None):
    """Drops the copies at least `days` old (0: all, one dated in the future too); returns
    (dropped names, [(name, error)])."""
    dropped, failed = [], []
    now = datetime.now(timezone.utc)
    for copy in pre_restore_copies(maintenance_db, db, now):
        if not days or (now - _created(copy["name"])).total_seconds() >= days * 86400:
            try:
                with held():  # psql's answer waited for: a stop never leaves a drop unknown, nor unsaid
                    drop(maintenance_db, copy["name"])
                    hold_for_good()  # dropped: the rest, the line that says so and the status stand
                dropped.append(copy["name"])
            except PgError as e:
                failed.append((copy["name"], str(e)))
    return dropped, failed


def keep_days(text):
    """--drop-pre-restore-older-than's value (`text`, None when not given) as a number of days; Failure (64)."""
    days = None if text is None else decimal_number(text)
    if text is not None and (days is None or days > 1e6):
        raise Failure("--drop-pre-restore-older-than must be a number of days, not %s" % shown_value(text), 64)
    return days


def drop_said(maintenance_db, days, db, say):
    """drop_pre_restore, what it did said (say(text, kind=None)): the status, 1 when a copy could not be dropped."""
    dropped, failed = drop_pre_restore(maintenance_db, days, db)
    if dropped:
        say("dropped previous copies: %s" % ", ".join(dropped))
    for name, error in failed:
        say("could not drop %s: %s" % (name, error), "error")
    return 1 if failed else 0
