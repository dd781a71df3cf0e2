"""Whose backups a location holds: the marker of the PostgreSQL cluster that writes there.

Backup names carry a database's name and a time, not the server's: two servers whose
databases share a name, given one location, made one series, and one's retention
removed the other's backups. A location (a --dir, a --to) holds a marker, MARKER, one
line naming the cluster (its system identifier, pg_control_system(): initdb's, kept by
a standby and a copy of the data directory, a new one after a new initdb or a
pg_upgrade):

    encpipe-cluster v1 system_identifier=7412345678901234567

encpipe-backup reads the identifier before it dumps (check()): a marker of another
cluster, or one that cannot be taken at its word (garbled, too large, not a regular
file, a directory too, a local one owned by a user other than the caller, root and
the directory's owner), refuses the run (73) before anything is dumped or removed;
--new-cluster takes the location over (a directory is never removed). With no marker,
the run that stores a backup writes one (claim(), the way a backup is written: a
temporary name, then a rename that refuses an existing name). An identifier that
cannot be read is a warning: the run goes on unguarded.

It guards against a mistake, not against a writer of the location, who can remove or
replace the marker as any file there (a planted one stops the backups, one line each,
and removes nothing).
"""

import re

from ..errors import EncpipeError, InputUnavailable, IOFailure, UnsafeDirectory, ran_out, reason
from ..shown import printable
from .names import MARKER
from .storage import Local, named, write_new

MAX_BYTES = 256
_IDENTIFIER = "-?[0-9]{1,20}"  # a bigint's digits, as the server gives it
_LINE = re.compile(rb"encpipe-cluster v1 system_identifier=(%s)\n?" % _IDENTIFIER.encode())
# ` paused` after it: a standby whose WAL replay is paused (pg_wal_replay_pause(), or a
# recovery_target_action = 'pause' reached), whose data stays as of then, however new the run;
# ` unlogged`: a standby, from which pg_dump leaves out the data of the database's unlogged tables and sequences
QUERY = ("SELECT system_identifier || CASE WHEN pg_catalog.pg_is_in_recovery() AND "
         "pg_catalog.pg_is_wal_replay_paused() THEN ' paused' ELSE '' END || CASE WHEN "
         "pg_catalog.pg_is_in_recovery() AND EXISTS (SELECT FROM pg_catalog.pg_class WHERE relpersistence = 'u' "
         "AND relkind IN ('r', 'S')) THEN ' unlogged' ELSE '' END FROM pg_catalog.pg_control_system();")
PAUSED = ("the server is a standby whose WAL replay is paused: this backup holds its data as of when replay "
          "stopped, not as of now (resume it with pg_wal_replay_resume(), or back up another server)")
UNLOGGED = ("the server is a standby, from which pg_dump leaves out the data of unlogged tables and sequences "
            "(their definitions are kept): this database has some; back up its primary to keep it")
TAKE_OVER_HINT = ("give each server a location of its own; if this server is to take it over (a restore onto a new "
                  "server), run once with --new-cluster")


def line(identifier):
    """The marker's content for a cluster."""
    return f"encpipe-cluster v1 system_identifier={identifier}\n".encode()


def system_identifier(db):
    """(the cluster's system identifier (a string of digits), None, the warnings of a standby
    (PAUSED, UNLOGGED)), read connected to `db` as pg_dump connects, never asking for a
    password (pgclient's psql -w: before, a terminal was asked for it, then again by pg_dump;
    without one, psql took its SQL's first line for it); (None, why, []) when it cannot be read."""
    from ..pgclient import PgError, conninfo, value

    try:
        found = value(conninfo(db), QUERY)
    except PgError as e:
        return None, str(e), []
    except OSError as e:
        return None, f"cannot run psql: {e.strerror or e}", []
    match = re.fullmatch(f"({_IDENTIFIER})( paused)?( unlogged)?", found or "")
    if not match:
        return None, "the server did not give one", []
    return match[1], None, [said for said, given in ((PAUSED, match[2]), (UNLOGGED, match[3])) if given]


def read(store):
    """The identifier the marker in `store` names; None when there is none; UnsafeDirectory
    (73) for a marker that cannot be taken at its word."""
    try:
        item = _listed(store)
    except (InputUnavailable, IOFailure) as e:  # no listing: the run's own steps say it, as before
        raise Unlisted(str(e)) from None
    if item is None and isinstance(store, Local):  # a directory (or a link to one) is listed as nothing
        item = store.stat(MARKER)
        if item.unreadable:  # nothing there
            return None
    if item is None:
        return None
    where = store.where(MARKER)
    if item.unreadable or item.error or item.link:
        why = "a symbolic link" if item.link and not item.error else item.error
        raise UnsafeDirectory(f"{where} cannot be read as a cluster marker: {why}", hint=_KEPT if item.error else _FIX)
    trusted = store.trusted_owners()
    if trusted is not None and item.uid not in trusted:
        from .listing import user_name

        raise UnsafeDirectory(f"{where} is owned by {user_name(item.uid)}, not the caller, root or the directory's "
                              "owner: not taken as this location's cluster marker", hint=_FIX)
    if item.size is None or item.size > MAX_BYTES:
        raise UnsafeDirectory(f"{where} is not a cluster marker (over {MAX_BYTES} bytes)", hint=_FIX)
    try:
        with store.open(item) as src:
            content = src.read(MAX_BYTES + 1)
    except (OSError, EncpipeError) as e:
        raise UnsafeDirectory(f"cannot read {where}: {reason(e)}", hint=_FIX) from None
    match = _LINE.fullmatch(content)
    if not match:
        raise UnsafeDirectory(f"{where} is not a cluster marker (not one line 'encpipe-cluster v1 "
                              "system_identifier=N')", hint=_FIX)
    return match[1].decode()


_FIX = ("see whose backups the location holds (encpipe-list); remove the file, or run with --new-cluster to write "
        "this server's")
# what claim() never removes (a directory, a FIFO, several objects under the name): --new-cluster leaves it there
_KEPT = ("see whose backups the location holds (encpipe-list); move what is under that name out of the way: "
         "--new-cluster replaces a file or a link, never this")


def _listed(store):
    """The marker as `store` lists it, or None."""
    return next((i for i in store.list() if i.name == MARKER), None)


class Unlisted(Exception):
    """A location that cannot be listed: its marker is not known."""


def check(stores, identifier, take_over=False, warn=None):
    """Refuse (UnsafeDirectory, 73) a location whose marker names another cluster or cannot
    be read as one (unless `take_over`); the stores whose marker is to be written (claim).
    A location that cannot be listed is `warn(message)`'d and left unchecked: the backup's
    own steps fail there as they did (a remote that does not answer, listed again at the
    rename), or succeed."""
    unclaimed = []
    for store in stores:
        try:
            found = read(store)
        except Unlisted as e:
            if warn is None:
                raise IOFailure(str(e)) from None
            warn(f"{MARKER} not checked: {e}")
            continue
        except UnsafeDirectory:
            if not take_over:
                raise
            found = ""
        if found is None or (take_over and found != identifier):
            unclaimed.append(store)
        elif found != identifier:
            raise UnsafeDirectory(f"{printable(named(store))} holds the backups of PostgreSQL cluster {found} "
                                  f"(its {MARKER}), not of this server's, {identifier}", hint=TAKE_OVER_HINT)
    return unclaimed


def claim(stores, identifier, temp, take_over=False, claimed=None):
    """Write the marker of cluster `identifier` into each store (as `temp` first, then
    renamed); with `take_over`, one already there is replaced. A marker that another run
    wrote meanwhile is checked as check() does. Each written goes into `claimed` as
    (store, what its rename gave), for take_back()."""
    for store in stores:
        write_new([store], temp, lambda out: out.write(line(identifier)), MARKER)
        try:
            if take_over:
                old = _listed(store)
                if old is not None and not old.error:  # a FIFO stays: the rename refuses it, check() says why
                    store.remove(old)
            renamed = store.rename(temp, MARKER)
        except EncpipeError:
            store.discard(temp)
            if check([store], identifier):  # still none: the rename's own error
                raise
        except OSError:
            store.discard(temp)
            raise
        else:
            (claimed if claimed is not None else []).append((store, renamed))


def take_back(claimed):
    """Remove the markers claim() wrote, each if it is still that very file (a run that
    stores nothing leaves the location as it found it); what is left, a sentence each."""
    left = []
    while claimed:
        store, renamed = claimed.pop()
        try:
            store.take_back(MARKER, renamed)
        except (EncpipeError, OSError) as e:
            left.append(f"{store.where(MARKER)} not removed: {reason(e)}")
    return left


class Guard:
    """One backup run's guard of its locations (`stores`): check_stores() before
    anything is dumped, write() before the renames (with `take_over`, --new-cluster,
    once the backup is stored instead), undo() when the run stores nothing. What was
    not checked is said (`warn`) once there is a backup to store: else pg_dump, or the
    upload, says why."""

    def __init__(self, stores, take_over, warn):
        self.stores, self.take_over, self.warn = stores, take_over, warn
        self.identifier, self.unclaimed, self.unchecked, self.claimed = None, [], [], []

    def check_stores(self, db):
        """The location's cluster marker, before anything is dumped: another cluster's
        refuses the run (73); one that cannot be read as a marker too, unless
        `take_over`. A system identifier that cannot be read: a warning, no guard."""
        identifier, why, standby = system_identifier(db)
        for warning in standby:
            self.warn(warning)
        if identifier is None:
            self.unchecked.append(f"cannot read the cluster's system identifier ({why}); the location's "
                                  f"{MARKER} not checked")
            return
        self.unclaimed = check(self.stores, identifier, self.take_over, self.unchecked.append)
        self.identifier = identifier

    def write(self, temp_name, said, stored=False):
        """Write this cluster's marker where there is none, before the renames (as
        `temp_name()` first): 0, or 73 when another cluster's marker came meanwhile
        (`said.error`). With `take_over`, only once the backup is stored (`stored`): a
        run that stores nothing leaves the marker it found, another cluster's too. A
        marker that cannot be written for another reason is a warning: the backup is
        not given up for it; so is a marker not checked (check_stores)."""
        for unchecked in [] if stored else self.unchecked:
            self.warn(unchecked)
        if not self.unclaimed or self.take_over != stored:
            return 0
        try:
            claim(self.unclaimed, self.identifier, temp_name(), self.take_over, self.claimed)
        except UnsafeDirectory as e:
            if stored:  # the backup is there: its status stands
                self.warn(f"{MARKER} not written: {e}")
                return 0
            said.error(str(e), e.hint)
            return e.exit_code
        except Exception as e:  # an error of the store's, out of memory: said, the backup goes on
            if not isinstance(e, (EncpipeError, OSError)) and not ran_out(e):
                raise
            self.warn(f"{MARKER} not written: {ran_out(e) or reason(e)}")
        return 0

    def undo(self):
        """A run that stores nothing: the markers it wrote taken back."""
        for note in take_back(self.claimed):
            self.warn(note)
