"""What each stored file is, from its name, its header and (v2) its trailer; never its payload."""

import io
from collections import Counter, defaultdict, deque
from datetime import datetime, timedelta, timezone

from .. import envelope, sigthreads
from .. import format as fmt
from .. import provenance
from ..errors import InputUnavailable, InvalidStream, IOFailure, reason
from .names import MARKER, is_partial, iso, parse_name
from .records import record

LEGACY_MIN_BYTES = 64  # salt 32 | iv 16 | tag 16
# How many remote files are examined at once: each is an `rclone cat` (then a
# second for a v2 trailer, never both at once) that mostly waits for a process to
# start and a round trip. 8 is rclone's own default for such small requests
# (--checkers), a load a backend is made to take; each one holds a process (some
# tens of MB) and a header, no more.
REMOTE_AT_ONCE = 8
# How much earlier than the time its name says a file may have been last written: a
# backup is written after its run started, so never earlier on one clock; this much
# for a file server's clock behind the backup host's (NFS sets the time).
WRITTEN_SLACK = timedelta(hours=1)
LEGACY_IV = slice(32, 48)
_SNIFF_BYTES = 4096


@record
class Entry:
    """What the name and the header (never the payload) say about one file."""

    filename: str
    path: str
    item: object = None  # the records.Item it was listed as
    status: str = "foreign"
    bytes: int = None
    version: int = None
    database: str = None
    dump_format: str = None
    kind: str = None
    created: datetime = None
    naming: str = None  # "encpipe", "legacy" or None
    key_ids: tuple = ()  # as lists in JSON
    slots: tuple = ()
    signers: list = None  # a v2 file's signature key ids, unverified; None when it cannot have any
    plaintext_bytes: int = None
    chunks: int = None
    error: str = None
    # what a copy of it shares: a sealed file's payload salt (its file key), the IV of a file
    # that may be the previous tool's (authenticated by its tag); None for a file too short
    fingerprint: tuple = None
    # a sealed file's header has what can authenticate its maker (format v2, with a raw-key or
    # passphrase slot or a signature); False: anyone with the public key, or a v1 slot, can make one
    maker_checkable: bool = None
    # a custom archive's header's time (pg_dump's local time, naive), once verify has read its plaintext
    archived: datetime = None

    @property
    def series(self):
        return (self.database, self.dump_format)

    def to_json(self):
        return {
            "filename": self.filename,
            "status": self.status,
            "bytes": self.bytes,
            "sealed": self.status == "sealed",
            "version": self.version,
            "database": self.database,
            "dump_format": self.dump_format,
            "created": iso(self.created),
            "key_ids": self.key_ids,
            "slots": self.slots,
            "signers": self.signers,
            "plaintext_bytes": self.plaintext_bytes,
            "chunks": self.chunks,
            "error": self.error,
        }


def examine(store, item, signers=False):
    """An Entry for one listed item (with `signers`, a v2 file's trailer read too). Never
    raises for a bad file: what is wrong goes into the entry."""
    name = parse_name(item.name)
    entry = Entry(item.name, store.where(item.name), item, naming=name.naming, database=name.database,
                  dump_format=name.series, kind=name.kind, created=name.created, bytes=item.size)
    if item.unreadable:
        entry.status, entry.error = "unreadable", item.error
        return entry
    if item.error:
        entry.error = item.error
        return entry
    if is_partial(item.name):
        entry.status = "partial"
        return entry
    if item.name == MARKER:  # the location's cluster marker: never read as a sealed file here
        entry.status = "marker"
        return entry
    try:
        with store.open(item) as src:
            sealed = _examine_content(entry, src)
        if signers and sealed:  # who signed it, as `encpipe inspect` says: read, not verified. Read once
            # the header's download is closed: one rclone at a time per file (a large file's may still run)
            entry.signers = provenance.trailer_signers(sealed, store.tail(item, sealed.trailer_len))
    except (OSError, IOFailure, InputUnavailable) as e:  # InputUnavailable: not the object listed (rclonepipe)
        entry.status, entry.error = "unreadable", cannot_read(item.name, e)
    return entry


def cannot_read(name, e):
    """What is said of a file whose read failed: `e` an OSError, or fmt.read_exactly's
    IOFailure ("cannot read input"), whose cause says why."""
    cause = e.__context__ if isinstance(e, IOFailure) and isinstance(e.__context__, OSError) else e
    return f"cannot read {name}: {reason(cause)}"


def _examine_content(entry, src):
    """Fills in what the content says; a sealed v2 file's header (its trailer to read), else None."""
    head = fmt.read_exactly(src, _SNIFF_BYTES)
    if head and fmt.MAGIC.startswith(head[: len(fmt.MAGIC)]):
        return _examine_sealed(entry, io.BufferedReader(Rejoined(head, src)))
    if len(head) >= LEGACY_MIN_BYTES:  # whatever its name: a copy of the old tool's file may have any
        entry.fingerprint = ("legacy", head[LEGACY_IV])
    if entry.naming == "legacy" and not entry.filename.endswith(".enc"):
        entry.status = "plaintext"
        entry.error = "an unencrypted backup from the previous tool"
    elif looks_legacy(entry.filename, entry.bytes, head):
        entry.status = "legacy"
    else:
        entry.error = "empty file" if not head else "not an encpipe file"


class Rejoined(io.RawIOBase):
    """The bytes already read, then the rest of the stream."""

    def __init__(self, head, rest):
        self.head, self.rest = head, rest

    def readable(self):
        return True

    def readinto(self, buffer):
        if self.head:
            n = min(len(buffer), len(self.head))
            buffer[:n], self.head = self.head[:n], self.head[n:]
            return n
        block = self.rest.read(len(buffer))
        buffer[: len(block)] = block
        return len(block)


def _examine_sealed(entry, src):
    try:
        sealed = envelope.read_header(src)
    except InvalidStream as e:
        entry.status, entry.error = "damaged", str(e)
        return
    entry.version = sealed.header.version
    entry.maker_checkable = sealed.header.version >= 2 and bool(
        sealed.header.sig_count or provenance.authenticated_slots(sealed.header))
    described = [slot.describe() for slot in sealed.slots]
    entry.slots = tuple(d["type"] for d in described)
    entry.key_ids = tuple(d["key_id"] for d in described if d.get("key_id"))
    payload = entry.bytes - sealed.size - sealed.trailer_len
    shape = fmt.payload_shape(payload, sealed.header.chunk_size)
    if not shape:
        entry.status = "damaged"
        entry.error = (f"payload of {payload} bytes cannot be a complete stream (truncated?)" if payload >= 0 else
                       f"{entry.bytes} bytes, fewer than its header and trailer take ({entry.bytes - payload}): "
                       "truncated?")
        return
    entry.status = "sealed"
    # a copy is a whole file: a header alone (200 bytes of one, under any name) made the
    # file it came from a copy, never counted (before, set with the version, above)
    entry.fingerprint = ("sealed", sealed.header.payload_salt)
    entry.plaintext_bytes, entry.chunks = shape
    return sealed if sealed.header.version >= 2 else None


def looks_legacy(name, size, sample):
    """A file of the previous tool (salt|iv|tag|ciphertext) has no magic, so this is a
    guess: a binary `.enc` file of at least 64 bytes. Only a key can tell for sure."""
    return name.endswith(".enc") and size >= LEGACY_MIN_BYTES and not _is_text(sample)


def _is_text(sample):
    if b"\0" in sample:
        return False
    for cut in range(4):  # the sample may end inside a multi-byte character
        try:
            sample[: len(sample) - cut].decode("utf-8")
            return True
        except UnicodeDecodeError:
            continue
    return False


def scan(store, signers=False):
    """Entries for every file in the store (subdirectories are not listed), by name.
    A remote store's files are examined REMOTE_AT_ONCE at a time, a local one's in turn."""
    items = store.list()
    if not getattr(store, "remote", False) or len(items) < 2:
        return [examine(store, item, signers) for item in items]
    from concurrent.futures import ThreadPoolExecutor  # here: a backup's read-back does not scan

    pool = ThreadPoolExecutor(min(REMOTE_AT_ONCE, len(items)), thread_name_prefix="examine")
    try:  # a window of futures, not one per object (each holds a lock and a condition)
        entries, window = [], deque()
        for item in items:
            with sigthreads.blocked():  # the thread the pool may start for it leaves signals to this one
                window.append(pool.submit(examine, store, item, signers))
            while len(window) >= 2 * REMOTE_AT_ONCE:
                _settle(window, entries)
        while window:
            _settle(window, entries)
        return entries
    except BaseException:  # interrupted, or a bug: no examine goes on, no rclone is left
        pool.shutdown(wait=False, cancel_futures=True)
        store.children.stop()
        raise
    finally:
        pool.shutdown()
        store.children.resume()


def _settle(window, entries):
    """Wait for one more examine of `window` to end; one that raised, now, not after the
    others (also one that ended before this wait began); those done at its head go to
    `entries`, in order."""
    pending = [f for f in window if not f.done()]
    _raise_any(f for f in window if f not in pending)  # those ended before the wait
    if window[0] in pending:  # any that ends from now on ends the wait
        from concurrent.futures import FIRST_COMPLETED, wait

        wait(pending, return_when=FIRST_COMPLETED)
    _raise_any(f for f in window if f.done())
    while window and window[0].done():
        entries.append(window.popleft().result())


def _raise_any(done):
    for future in done:
        if future.exception():
            raise future.exception()


def stats(entries):
    usable = [e for e in entries if e.created and e.status in ("sealed", "legacy")]
    per_db = defaultdict(list)
    for e in usable:
        per_db[e.database].append(e)
    return {
        "count": len(entries),
        "bytes": sum(e.bytes or 0 for e in entries),
        "backups": len(usable),
        "backup_bytes": sum(e.bytes for e in usable),
        "oldest": _moment(min(usable, key=_age_key, default=None)),
        "newest": _moment(max(usable, key=_age_key, default=None)),
        "by_status": dict(sorted(Counter(e.status for e in entries).items())),
        "databases": {
            db: {
                "backups": len(group),
                "bytes": sum(e.bytes for e in group),
                "oldest": _moment(min(group, key=_age_key)),
                "newest": _moment(max(group, key=_age_key)),
            }
            for db, group in sorted(per_db.items())
        },
    }


def copies(entries):
    """{name: another name} for the files, among `entries` but symbolic links, that
    share their fingerprint with another (a sealed file's payload salt, so its file
    key; a legacy file's IV): copies (a file authenticates its content, not its
    name), none of which may count for a series, whatever the name says."""
    by_print = defaultdict(list)
    for entry in entries:
        if entry.fingerprint is not None and not (entry.item and entry.item.link):
            by_print[entry.fingerprint].append(entry.filename)
    return {name: next(other for other in names if other != name)
            for names in by_print.values() if len(names) > 1 for name in names}


def older_than_its_name(entry):
    """Why a local file cannot be the backup its name says, from its modification
    time: last written before the time its name says (more than WRITTEN_SLACK), it is
    an older file renamed (which a writer of the directory can do to a file it
    cannot change: only the owner can set a file's time back); else None."""
    mtime = getattr(entry.item, "mtime", None)
    if mtime is None or entry.created is None:
        return None
    # compared as numbers: a name may say year 1, less an hour no date, and a file's owner
    # may give it a time no date holds (tmpfs, btrfs, NFS keep one past year 9999)
    if int(mtime) >= entry.created.timestamp() - WRITTEN_SLACK.total_seconds():
        return None
    return f"older than its name says (last written {_when(int(mtime))})"


def owned_elsewhere(entry, label, trusted):
    """Why a local dump that verified (its `label`, verify's: "label", "archive",
    "unlabelled", or None for a file of the previous tool) cannot be the backup its
    name says, from its owner; else None. A dump whose content does not fix its name's
    time to the second (a custom archive's header gives it within hours, in a zone it
    does not name; an unlabelled one gives none) stands on its modification time
    (older_than_its_name), which says nothing of a file whose owner is not among
    `trusted` (the location's trusted_owners(); None: a remote, no owners): a user
    who can write the directory planted it, a copy of a removed backup under a newer
    name, with any time they like."""
    uid = getattr(entry.item, "uid", None)
    if trusted is None or uid is None or uid in trusted or entry.dump_format not in ("plain", "custom") \
            or label == "label":
        return None
    what = "a custom archive's header gives it within hours" if label == "archive" else "it has no label"
    return (f"owned by {user_name(uid)}, who can give it any modification time, and what it holds does not fix the time"
            f" its name says ({what})")


def user_name(uid):
    """`user NAME`, or `uid N` for a user of no name."""
    import pwd

    try:
        return f"user {pwd.getpwuid(uid).pw_name}"
    except KeyError:
        return f"uid {uid}"


def _when(seconds):
    try:
        return iso(datetime.fromtimestamp(seconds, timezone.utc))
    except (OverflowError, ValueError, OSError):
        return f"at Unix time {seconds}"


def _age_key(entry):
    return entry.created, entry.filename


def _moment(entry):
    return None if entry is None else {"filename": entry.filename, "created": iso(entry.created)}
