"""Where backups live: a local directory (localstore.Local) or an rclone remote
(rclonestore.Rclone), behind one interface.

    list() -> [Item]          every file directly in the location, by name
    stat(name) -> Item        one file (unreadable when missing)
    head(name) -> Item        the same, of a file this run has just written (a remote: asked
                              of the object, not read from a listing that may lag behind)
    open(item) -> reader      a binary stream of the stored bytes
    tail(item, size) -> bytes its last `size` bytes (a v2 trailer), the rest not read
    writer(name) -> w         w.write(bytes)..., w.close(): a new file `name`; w.abort(): given up
                              (what may be left of it, a sentence, else None)
    rename(name, final) -> r  give a complete upload its final name
    take_back(final, r)       undo a rename: remove `final` if it is still that file
    remove(item)              delete one file
    discard(name)             remove a failed run's file, if there (Rclone: what is left, else None)
    unfinished                [what write_new said may be left: an upload's rclone killed]
    unremoved                 {name: why the last discard() of it (through discard()) left it}
    where(name) -> str        how to name it in messages

Uploads always go to a temporary name first and are renamed only when complete,
so no file or object exists under a backup's final name until it is whole.
"""

from datetime import datetime, timedelta, timezone

from ..errors import InputUnavailable, IOFailure
from ..format import SALT_AT, SALT_LEN
from ..sigdefer import held
from .localstore import CHUNK, Local
from .names import temp_started
from .remotes import is_remote, refuse_credentials


def open_location(location, env=None, option="the remote"):
    refuse_credentials(location, option)  # the scripts refuse it first, naming their option
    if not is_remote(location):
        return Local(location)
    from .rclonestore import Rclone  # here: a local directory loads no subprocess, json nor shutil (4 ms)

    return Rclone(location, env)


def upload(stores, name, src, final=None):
    """Copy src into a new file `name` (to become `final`) in every store at once; the byte count."""
    total = 0

    def copy(out):
        nonlocal total
        while True:
            block = src.read(CHUNK)
            if not block:
                return
            out.write(block)
            total += len(block)

    write_new(stores, name, copy, final)
    return total


def write_new(stores, name, write, final=None):
    """Call write(out): what it writes to `out` goes into a new file `name` (to
    become `final`) in every store at once. On any failure (the first is raised)
    every other store's write is ended unfinished (an `rclone rcat` stopped before
    its input ends, so that it stores nothing and aborts its partial upload) and
    the files this made are removed again. What may be left is kept, a sentence
    each, for the run's one error line (pgbackup): an upload whose rclone had to be
    killed in the store's `unfinished`, a file that cannot be removed in its
    `unremoved` (discard: until a later try removes it). Each writer
    is made and recorded in one step (sigdefer.held): a signal never leaves an
    upload's rclone, in a process group of its own, unstopped."""
    writers = []
    try:
        for store in stores:
            with held():  # started and recorded in one step: a signal meanwhile stops it (below)
                writers.append(store.writer(name, final or name))
        fanout = _Fanout(writers)
        write(fanout)
        for writer in writers:
            writer.close()
        for store in stores:  # what read_back compares the file stored under its final name with
            store.written[name] = fanout.written()
    except BaseException as e:
        for store, writer in zip(stores, writers):  # only the files this upload created
            try:
                note = writer.abort()
            except BaseException:  # interrupted again: what its abort, cut short, may have left
                store.unfinished += [note for note in (getattr(writer, "left", None),) if note]
                raise
            store.unfinished += [note] if note else []
            discard(store, name)
        if isinstance(e, OSError):
            raise IOFailure(f"cannot store {name}: {e.strerror or e}") from None
        raise


def discard(store, name):
    """store.discard(name): what is left (a sentence), else None; kept in store.unremoved
    until a later try (`job abort`'s) removes it: what the run says is the last try's."""
    try:
        note = store.discard(name)
    except OSError as e:
        note = f"{store.where(name)} not removed: {e.strerror or e}"
    if note:
        store.unremoved[name] = note
    else:
        store.unremoved.pop(name, None)
    return note


class _Fanout:
    """One writer for several: every block goes to each (a stream for envelope.seal)."""

    def __init__(self, writers):
        self.writers, self.head, self.size = writers, b"", 0

    def write(self, block):
        for writer in self.writers:
            writer.write(block)
        if len(self.head) < _SALT_END:
            self.head += bytes(block[: _SALT_END - len(self.head)])
        self.size += len(block)
        return len(block)

    def written(self):
        """(payload salt, bytes) of what went through: a sealed file's salt (README "Layout":
        bytes 12 to 44), random per file, tells this file from any other."""
        return self.head[_SALT_END - SALT_LEN : _SALT_END], self.size

    def flush(self):
        pass


def named(store):
    """How a location is named in a message or a report: its directory, or REMOTE:PATH."""
    return getattr(store, "directory", None) or store.location


_SALT_END = SALT_AT + SALT_LEN
STALE = timedelta(days=1)  # a run's temporary object older than this is a killed run's


def read_back(store, final, renamed, written=None):
    """(the Entry of `final` in `store` as it reads back, None), or (None, why it is not
    the file stored: gone, not a sealed file, not the size its temporary file had as
    it was renamed, `renamed` being what store.rename gave, or, `written` being the
    (payload salt, bytes) write_new wrote, another file: a writer of the location may
    have put one under the temporary name before it was renamed); a read that cannot be
    made (rclone failing) raises: the backup counts as stored."""
    from .listing import examine  # imported by encpipe-backup while pg_dump starts

    item = store.head(final)
    if item.error:
        return None, item.error
    head = examine(store, item)
    if head.status == "unreadable":
        raise InputUnavailable(head.error)
    if head.status != "sealed":
        return None, f"{final}: {head.error or head.status}"
    stored = getattr(renamed, "size", getattr(renamed, "st_size", None))
    if stored is not None and head.bytes != stored:
        return None, f"{final} is {head.bytes} bytes, {stored} were stored"
    if written and (head.fingerprint != ("sealed", written[0]) or head.bytes != written[1]):
        return None, f"{final} is not the file this run wrote (another file was put under its temporary name)"
    return head, None


def remove_stale_temps(store, now=None):
    """Temporary objects of runs killed more than STALE ago (a remote has no
    lock to tell a running upload from a dead one; no run lasts that long).
    One listed unreadable is left: a name holding a NUL cannot be given to
    rclone (its deletefile was a ValueError, the stored backup's run a 70),
    and of several under one name, which one a removal reaches is not known."""
    cutoff = (now or datetime.now(timezone.utc)) - STALE
    for item in store.list():
        started = temp_started(item.name)
        if started and started < cutoff and not item.unreadable:
            store.discard(item.name)
