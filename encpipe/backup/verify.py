"""Authenticating stored backups: every chunk, no plaintext written anywhere."""

import io
from collections import defaultdict

from .. import commands, envelope
from ..format import read_exactly
from ..errors import EncpipeError, InputUnavailable, InvalidStream, IOFailure, NoKeyConfigured, NotSigned, ran_out
from ..keyargs import no_key_hint
from .label import ARCHIVE_MAGIC, HEAD_BYTES, after_line, found, mismatch
from .names import CLUSTER_DUMP, stamp
from .listing import LEGACY_IV, LEGACY_MIN_BYTES, Rejoined, cannot_read
from .retention import FAILED, LATE_UNLABELLED_REASON, OK, UNAUTHENTICATED, archived_earlier, named_late

ERROR_CLASSES = {
    64: "usage",
    65: "invalid_stream",
    66: "input_unavailable",
    67: "not_signed",
    70: "internal",
    74: "io_failure",
    77: "no_matching_key",
    78: "no_key_configured",
}


def verify_entry(store, entry, keys, workers, named=False):
    """A result dict for one listed entry; `ok` is True, False, or None (not checked).
    `sender_authenticated`, for a file that verified: whether its maker is known (a v2
    file opened by a raw key or passphrase whose slot authenticator checked, or signed
    by a required --signer; a file of the previous tool, which has one secret only),
    False when anyone with the public key, or for a v1 file any slot holder, could
    have made it."""
    result = {
        "filename": entry.filename,
        "path": entry.path,
        "status": entry.status,
        "ok": None,
        "plaintext_bytes": None,
        "chunks": None,
        "error": None,
        "exit_code": None,
        "error_class": None,
        "note": None,
        "sender_authenticated": None,
        "label": None,
    }
    backup_named = entry.naming == "encpipe"
    try:
        if entry.status == "sealed":
            ends = Ends(tails=entry.dump_format == "globals")
            with store.open(entry.item) as src:
                sealed = read_head(entry, envelope.read_header, src)
                as_examined(entry, ("sealed", sealed.header.payload_salt))
                info = envelope.open_sealed(sealed, src, None, keys.encpipe(), threads=workers, signers=keys.signers(),
                                            peek=ends)
            cluster = after_line(ends.head).startswith(CLUSTER_DUMP)  # past a label: a globals file's is a dump's
            if backup_named and entry.dump_format in ("plain", "custom") and cluster:
                raise InvalidStream("holds pg_dumpall's dump of a cluster (a globals file under a dump's name?), "
                                    "not a database's dump")
            if backup_named and entry.dump_format == "globals":
                _globals_of(entry, cluster, ends)
            if backup_named and entry.dump_format in ("plain", "custom"):
                result["label"] = labelled(entry, ends.head)
                entry.archived = found(ends.head).at if result["label"] == "archive" else None
            result.update(ok=True, plaintext_bytes=info.plaintext_bytes, chunks=info.chunks,
                          sender_authenticated=info.provenance.sender_authenticated)
        elif entry.status == "legacy":
            if backup_named and entry.dump_format == "globals":  # a restore opens it as encpipe's: 65
                raise InvalidStream("holds a file of the previous tool, which made no globals file (another backup "
                                    "under a globals file's name?)")
            if backup_named and entry.dump_format == "custom":  # a restore runs pg_restore, which refuses SQL
                raise InvalidStream("holds a file of the previous tool, which made plain dumps only: not a custom "
                                    "archive (its name's kind)")
            _verify_legacy(store, entry, keys, result)
        elif entry.status == "partial" and named:  # named on the command line, it must be a backup
            raise InvalidStream("partial: named as a backup still being written, or left by an interrupted one, "
                                "which is never read as a backup")
        elif entry.status == "partial":
            result["note"] = "partial: a backup still being written, or left by an interrupted one"
        elif entry.status in ("foreign", "plaintext") and not (named or backup_named):
            result["note"] = f"{entry.status}: not an encrypted backup ({entry.error})"
        elif entry.status == "unreadable":
            raise InputUnavailable(entry.error)
        else:  # damaged, or a foreign file under a backup's name or named on the command line
            raise InvalidStream(entry.error or "not an encpipe file")
    except EncpipeError as e:
        fail(result, e.exit_code, str(e))
    except Exception as e:
        if ran_out(e):  # out of memory or descriptors: the run's failure, not this file's (nothing pruned)
            raise
        if isinstance(e, OSError):
            fail(result, 66, f"cannot read {entry.filename}: {e.strerror or e}")
        else:  # a bug; report it for this file and go on with the others
            fail(result, 70, internal_error(e))
    return result


class Ends:
    """A file's plaintext as verify keeps it, in memory, while its chunks authenticate
    (envelope.open_sealed's peek): the start of the first, the end of the last two."""

    HEAD, TAIL = HEAD_BYTES, 64 << 10  # a dump's label, or pg_dumpall's first line

    def __init__(self, tails=True):
        self.head, self.tails, self.keep_tails = b"", (b"", b""), tails

    def __call__(self, counter, data):
        if counter == 0:
            self.head = bytes(data[: self.HEAD])
        if self.keep_tails:  # a globals file's: a dump's would be copied for nothing
            self.tails = (self.tails[1], bytes(data[-self.TAIL:]))

    def last_line(self):
        """The plaintext's last line (its final newline left out), if it ends within TAIL bytes."""
        end = self.tails[1] if len(self.tails[1]) >= self.TAIL else b"".join(self.tails)
        return end.rstrip(b"\n").rpartition(b"\n")[2].decode("utf-8", "replace")


def _globals_of(entry, cluster, ends):
    """Refuse a file under a globals file's name that is not the globals file of the
    database and run its name gives: a database's dump (it does not start as
    pg_dumpall's output, past its label), another database's globals file, another
    run's (its label says so, as a dump's; for one without a label, made by an
    earlier version, its properties line, which encpipe-backup ends it with, when
    it is within Ends.TAIL; one without that line, or without a run in it, is not
    refused). Any of them, renamed a second after a series' newest, counted as its
    newest globals file, and --keep-last 1 removed the real ones."""
    if not cluster:
        raise InvalidStream("does not hold pg_dumpall's dump of a cluster (a database's dump under a globals "
                            "file's name?)")
    labelled(entry, ends.head)
    from .. import pgprops  # here: a listing or a dump's verification loads no PostgreSQL client (json, subprocess)

    props = pgprops.parse_line(ends.last_line()) or {}
    if "name" in props and props["name"] != entry.database:
        raise InvalidStream(f"holds the globals of database {props['name']}, not of {entry.database} (another "
                            "database's globals file under this name?)")
    run = entry.filename[: -len(".globals.sql.enc")]
    if props.get("run") is not None and props["run"] != run:
        raise InvalidStream(f"was made by run {props['run']} (another run's globals file under this name?)")


# What a label or an archive header says a dump is, and what it is not: a plain dump's label
# under a custom archive's name, or an archive under a plain dump's, counted in the other series
# (its database and time agree) and made --keep-last remove that series' real backups.
_HOLDS = {"label": ("plain", "a plain dump", "a custom archive"),
          "archive": ("custom", "a custom archive", "a plain dump")}


def labelled(entry, head):
    """What a dump's plaintext, starting with `head`, says of the backup it is (README,
    "The backup's label"): "label" or "archive" when it agrees with the file's name
    (database, time, and series: a label is a plain dump's, a header an archive's),
    "unlabelled" when it says nothing; InvalidStream when it names another, or when
    a file under a custom archive's name holds none (not PGDMP first)."""
    said = found(head)
    why = mismatch(said, entry.database, stamp(entry.created))
    series, holds, named = _HOLDS.get(said.source, (None, None, None))
    if not why and series and entry.dump_format in ("plain", "custom") and entry.dump_format != series:
        why = f"holds {holds}, not {named} (its name's kind)"
    if not why and entry.dump_format == "custom" and not head.startswith(ARCHIVE_MAGIC):
        # unlabelled, it counted as a custom archive made before labels; every one starts so, labels or not
        why = f"holds no custom archive (its name's kind): it does not start with {ARCHIVE_MAGIC.decode()}"
    if why:
        raise InvalidStream(why + ": a copy of another backup put under this name?")
    return said.source or "unlabelled"


def is_labelled(entry, result):
    """For a file under a dump's name as encpipe-backup names it (plain or custom) that
    verified: whether it carries a label (a custom archive's header counts as one);
    False also for a file of the previous tool under such a name. None for anything
    else (a globals file carries none; the previous tool's names are not judged)."""
    if not result["ok"] or entry.naming != "encpipe" or entry.dump_format not in ("plain", "custom"):
        return None
    return result["label"] in ("label", "archive")


def refuse_late_unlabelled(entries, results):
    """`results` (Kept verify_entry results, one per entry of `entries`), with each
    unlabelled dump that verified but is named no earlier than a labelled one of its
    series (a custom archive's own header counts as a label) that verified with
    its maker authenticated (as prune counts one without --count-unauthenticated:
    a label anyone with the public key can seal proves nothing), failed (65):
    encpipe-backup labels every dump it makes, so a genuine unlabelled
    one is older than the first labelled one; later, it is an old backup (another
    database's, perhaps) copied under a new name. Judged once every file has been
    verified, whatever order they were listed or read in."""
    first = {}
    for entry, result in zip(entries, results):
        if standing(result) == OK and is_labelled(entry, result):
            first[entry.series] = min(entry.created, first.get(entry.series, entry.created))
    refused = []
    for entry, result in zip(entries, results):
        if is_labelled(entry, result) is False and named_late(entry.created, first.get(entry.series)):
            result = result.to_json()
            fail(result, 65, LATE_UNLABELLED_REASON)
            result = Kept(result)
        refused.append(result)
    return refused


def refuse_archived_earlier(entries, results):
    """`results` (Kept, one per entry of `entries`, of a remote: no owner vouches for a
    name), each custom archive that verified but was made (its header's time) before one
    of its series named earlier that verified with its maker authenticated failed (65,
    retention.ARCHIVED_EARLIER): an older archive copied under a newer name."""
    counted = defaultdict(list)
    for entry, result in zip(entries, results):
        if entry.archived is not None and standing(result) == OK:
            counted[entry.series].append((entry.filename, entry.created, entry.archived))
    refused = []
    for entry, result in zip(entries, results):
        why = result["ok"] and archived_earlier(entry.created, entry.archived, counted[entry.series])
        if why:
            result = result.to_json()
            fail(result, 65, why)
            result = Kept(result)
        refused.append(result)
    return refused


class Kept:
    """A verify_entry result as a run keeps it until its report is printed: the values
    alone (a dict per file is most of a run's memory over many files); r[key] reads
    one, to_json() makes the dict again, its keys in their order."""

    __slots__ = ("keys", "values")

    def __init__(self, result):
        self.keys, self.values = _KEYS.setdefault(tuple(result), tuple(result)), tuple(result.values())

    def __getitem__(self, key):
        return self.values[self.keys.index(key)]

    def to_json(self):
        return dict(zip(self.keys, self.values))


_KEYS = {}  # each order of keys once, shared by every Kept result


def read_head(entry, read, src):
    """read(src), the file's header: a read that fails is the file unreadable (66), as
    the listing says of it, not encpipe's `cannot read input` (74)."""
    try:
        return read(src)
    except IOFailure as e:
        raise InputUnavailable(cannot_read(entry.filename, e)) from None


def as_examined(entry, fingerprint):
    """Refuse a file whose fingerprint (payload salt, legacy IV) is not the one read
    when it was examined: rewritten in place since (same inode, same size), what
    authenticates would be a file never compared with the others (listing.copies)."""
    if fingerprint != entry.fingerprint:
        raise OSError(f"{entry.filename} changed since it was listed")


def standing(result, count_unauthenticated=False):
    """What a verify_entry result counts as for retention and `check --verify`: OK (it
    verified and its maker is authenticated, or `count_unauthenticated`),
    UNAUTHENTICATED (it verified, but anyone with the public key, or for a v1 file
    any slot holder, could have made it) or FAILED (`error` says why)."""
    if not result["ok"]:
        return FAILED
    return OK if result["sender_authenticated"] or count_unauthenticated else UNAUTHENTICATED


def internal_error(e):
    """A bug's message: its class and its own words, not its repr() (a name in it is
    escaped once, where the message is shown: shown.printable)."""
    words = " ".join(map(str, e.args))
    return f"internal error: {type(e).__name__}{': ' + words if words else ''}"


def fail(result, code, message):
    result.update(ok=False, exit_code=code, error_class=ERROR_CLASSES.get(code, "internal"), error=message)


def _verify_legacy(store, entry, keys, result):
    if keys.signers():
        raise NotSigned("not signed by a trusted signer: files of the previous tool carry no signature")
    legacy_keys = keys.legacy()
    if legacy_keys is None:
        result["note"] = "legacy: not verified (this encpipe cannot read the previous format)"
        return
    from ..legacy import open_legacy

    with store.open(entry.item) as src:
        head = read_head(entry, lambda f: read_exactly(f, LEGACY_MIN_BYTES), src)
        as_examined(entry, ("legacy", head[LEGACY_IV]) if len(head) == LEGACY_MIN_BYTES else None)
        info = open_legacy(io.BufferedReader(Rejoined(head, src)), None, legacy_keys)
    result.update(ok=True, plaintext_bytes=info.plaintext_bytes, note=f"legacy: authenticated with {info.key_label}",
                  sender_authenticated=True)  # one secret only: whoever made it holds the key


class KeyRing:
    """The keys verify opens files with, read once from the encpipe key options (and,
    for files of the previous tool, its BACKUP_ENCRYPTION_KEY setting too)."""

    def __init__(self, sources, identities, missing, env, signers=()):
        self.sources, self.identities, self.missing, self.env = sources, identities, missing, env
        self._signers = list(signers)
        self._legacy = self._legacy_error = None

    @classmethod
    def from_args(cls, args, io):
        sources = commands.key_sources(args)
        trusted = commands.signers(args, io)  # a bad --signer fails before any file is read
        try:
            ring = cls(sources, commands.loader(args, io).load(sources, sealing=False), None, io.env, trusted)
        except NoKeyConfigured as e:
            ring = cls(sources, [], e, io.env, trusted)
            try:
                old_files_only = ring.legacy() is not None  # BACKUP_ENCRYPTION_KEY alone
            except NoKeyConfigured:
                old_files_only = False
            if not old_files_only:  # no key at all: fail before reading any file, with encpipe's hint first
                raise NoKeyConfigured(str(e), hint=f"{no_key_hint(args)}; for files of the previous tool, "
                                      "BACKUP_ENCRYPTION_KEY as it had it") from None
        return ring

    def signers(self):
        """The verify keys of --signer and --signer-file, else of ENCPIPE_SIGNER: when
        there are any, files must be signed by one of them (67)."""
        return self._signers

    def encpipe(self):
        if self.missing:
            raise self.missing
        return self.identities

    def load(self, sources, sealing):  # the KeyLoader interface, for legacy.load_keys
        return self.encpipe()

    def legacy(self):
        """Candidate keys for legacy files; None when encpipe cannot read them."""
        if self._legacy is None and self._legacy_error is None:
            try:
                from ..legacy import load_keys
            except ImportError:
                return None
            try:
                self._legacy = load_keys(self, self.sources, self.env)
            except NoKeyConfigured as e:
                self._legacy_error = e
        if self._legacy_error:
            raise self._legacy_error
        return self._legacy
