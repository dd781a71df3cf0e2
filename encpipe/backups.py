USAGE = """encpipe-backups: list, prune and verify a directory of encrypted backups.

Usage:
  encpipe-backups list [--stats] [--dir DIR | DIR]
  encpipe-backups prune --keep N [--max-age DAYS] [--dry-run] [--dir DIR | DIR]
  encpipe-backups verify [--threads N]
               [--key-file FILE]... [--key-command CMD]... [--identity FILE]...
               [--passphrase-file FILE]... [--passphrase-fd N]... [--passphrase-command CMD]...
               [-p] [--dir DIR | PATH...]
  encpipe-backups (-h | --help)

Run as `python3 -m encpipe.backups`, or through scripts/encpipe-list,
scripts/encpipe-prune and scripts/encpipe-verify. Every command prints JSON.

Commands:
  list      Describe every file in the backup directory, from its name and its
            header; no key needed, nothing decrypted. --stats adds totals.
  prune     Remove old backups: keep the N newest per database, remove those
            older than DAYS, never the newest valid backup of a database.
  verify    Authenticate every chunk of each backup (needs a key); no
            plaintext is written anywhere.

Options:
  --dir DIR                  The backup directory; without it and without DIR,
                             $ENCPIPE_BACKUP_DIR, else ./backups.
  --stats                    Add counts, sizes, oldest and newest backup.
  --keep N                   Keep the N newest backups of each database.
  --max-age DAYS             Also remove backups older than DAYS days.
  --dry-run                  Say what would be removed; remove nothing.
  --threads N                Worker threads [default: auto].
  --key-file FILE            As for encpipe: keys, one per line.
  --key-command CMD          As for encpipe.
  --identity FILE            As for encpipe.
  --passphrase-file FILE     As for encpipe.
  --passphrase-fd N          As for encpipe.
  --passphrase-command CMD   As for encpipe.
  -p, --passphrase           Prompt for a passphrase on the terminal.
  -h, --help                 Show this text.
  Without a key option, ENCPIPE_KEY and ENCPIPE_PASSPHRASE are used.

Exit status:
  0 success; 64 usage error; 66 the directory cannot be read; 74 prune could
  not remove a file; 78 no key configured (verify). verify exits with the
  encpipe status of the first file that failed (65 invalid, 66 unreadable,
  74 I/O error, 77 no key opens it).
"""
__doc__ = USAGE  # a plain constant too, so that python -OO keeps the usage text

import os
import re
import stat
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from docopt import DocoptExit, docopt

from . import commands, envelope
from .cli import Io, report_errors
from . import format as fmt
from .errors import EncpipeError, InputUnavailable, InvalidStream, NoKeyConfigured, UsageError

ENV_BACKUP_DIR = "ENCPIPE_BACKUP_DIR"
DEFAULT_BACKUP_DIR = "./backups"

# <db>_<YYYYmmddTHHMMSSZ>.sql.enc or .dump.enc; the db name may hold underscores.
_BACKUP_NAME = re.compile(r"^(?P<db>.+)_(?P<ts>[0-9]{8}T[0-9]{6}Z)\.(?P<kind>sql|dump)\.enc$")
# The previous tool: <db>_backup_YYYY-mm-dd_HH-MM-SS-mmmZ.sql[.enc].
_LEGACY_NAME = re.compile(
    r"^(?P<db>.+)_backup_(?P<ts>[0-9]{4}-[0-9]{2}-[0-9]{2}_[0-9]{2}-[0-9]{2}-[0-9]{2}-[0-9]{3})Z"
    r"\.sql(?P<enc>\.enc)?$"
)
# Temp files: encpipe-backup's, and those of `encpipe rewrap --in-place`.
_PARTIAL_NAME = re.compile(r"^\.encpipe-(tmp\..*|.*\.tmp)$")
_DUMP_FORMATS = {"sql": "plain", "dump": "custom"}
LEGACY_MIN_BYTES = 64  # salt 32 | iv 16 | tag 16
_SNIFF_BYTES = 4096

ERROR_CLASSES = {
    64: "usage",
    65: "invalid_stream",
    66: "input_unavailable",
    70: "internal",
    74: "io_failure",
    77: "no_matching_key",
    78: "no_key_configured",
}


# --- one file --------------------------------------------------------------


@dataclass
class Entry:
    """What the name and the header (never the payload) say about one file."""

    filename: str
    path: str
    status: str = "foreign"
    bytes: int = None
    version: int = None
    database: str = None
    dump_format: str = None
    created: datetime = None
    naming: str = None  # "encpipe", "legacy" or None
    key_ids: list = field(default_factory=list)
    slots: list = field(default_factory=list)
    plaintext_bytes: int = None
    chunks: int = None
    error: str = None
    identity: tuple = None  # (st_dev, st_ino) from lstat, when a plain regular file

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
            "plaintext_bytes": self.plaintext_bytes,
            "chunks": self.chunks,
            "error": self.error,
        }


def iso(moment):
    if moment is None:
        return None
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond // 1000:03d}"
    return text + "Z"


def parse_name(name):
    """(naming, database, dump format, created) from a file name, or Nones."""
    match = _BACKUP_NAME.match(name)
    if match:
        created = _utc(match["ts"], "%Y%m%dT%H%M%SZ")
        if created:
            return "encpipe", match["db"], _DUMP_FORMATS[match["kind"]], created
    match = _LEGACY_NAME.match(name)
    if match:
        created = _utc(match["ts"] + "000", "%Y-%m-%d_%H-%M-%S-%f")
        if created:
            return "legacy", match["db"], "plain", created
    return None, None, None, None


def _utc(text, pattern):
    try:
        return datetime.strptime(text, pattern).replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def examine(directory, name, path=None):
    """An Entry for directory/name (found at `path`, if given); None for a directory.
    Never raises for a bad file: what is wrong goes into the entry."""
    path = path or os.path.join(directory, name)
    naming, database, dump_format, created = parse_name(name)
    entry = Entry(name, path, naming=naming, database=database, dump_format=dump_format, created=created)
    try:
        link = os.lstat(path)
        info = os.stat(path)
    except OSError as e:
        return _unreadable(entry, e)
    if stat.S_ISDIR(info.st_mode):
        return None
    if stat.S_ISREG(link.st_mode):
        entry.identity = (link.st_dev, link.st_ino)
    if not stat.S_ISREG(info.st_mode):
        entry.error = "not a regular file"
        return entry
    entry.bytes = info.st_size
    if _PARTIAL_NAME.match(name):
        entry.status = "partial"
        return entry
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # never block on a FIFO swapped in
    except OSError as e:
        return _unreadable(entry, e)
    with os.fdopen(fd, "rb") as src:
        try:
            if not stat.S_ISREG(os.fstat(src.fileno()).st_mode):
                entry.error = "not a regular file"
                return entry
            _examine_content(entry, src)
        except OSError as e:
            return _unreadable(entry, e)
    return entry


def _unreadable(entry, error):
    entry.status = "unreadable"
    entry.error = f"cannot read {entry.filename}: {error.strerror or error}"
    return entry


def _examine_content(entry, src):
    head = src.read(len(fmt.MAGIC))
    src.seek(0)
    if head and fmt.MAGIC.startswith(head):
        _examine_sealed(entry, src)
    elif entry.naming == "legacy" and not entry.filename.endswith(".enc"):
        entry.status = "plaintext"
        entry.error = "an unencrypted backup from the previous tool"
    elif looks_legacy(entry.filename, entry.bytes, src.read(_SNIFF_BYTES)):
        entry.status = "legacy"
    else:
        entry.error = "empty file" if not head else "not an encpipe file"


def _examine_sealed(entry, src):
    try:
        sealed = envelope.read_header(src)
    except InvalidStream as e:
        entry.status, entry.error = "damaged", str(e)
        return
    entry.version = sealed.header.version
    described = [slot.describe() for slot in sealed.slots]
    entry.slots = [d["type"] for d in described]
    entry.key_ids = [d["key_id"] for d in described if d.get("key_id")]
    payload = entry.bytes - sealed.size
    shape = envelope.payload_shape(payload, sealed.header.chunk_size)
    if not shape:
        entry.status = "damaged"
        entry.error = f"payload of {payload} bytes cannot be a complete stream (truncated?)"
        return
    entry.status = "sealed"
    entry.plaintext_bytes, entry.chunks = shape


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


def scan(directory):
    """Entries for every file in `directory` (subdirectories are not listed), by name."""
    try:
        names = sorted(os.listdir(directory))
    except OSError as e:
        raise InputUnavailable(f"cannot read backup directory {directory}: {e.strerror or e}") from None
    entries = (examine(directory, name) for name in names)
    return [e for e in entries if e is not None]


# --- list ------------------------------------------------------------------


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


def _age_key(entry):
    return entry.created, entry.filename


def _moment(entry):
    return None if entry is None else {"filename": entry.filename, "created": iso(entry.created)}


def cmd_list(args, io):
    entries = scan(backup_dir(args, io))
    listing = [e.to_json() for e in entries]
    io.print_json({"backups": listing, "stats": stats(entries)} if args["--stats"] else listing)
    return 0


# --- prune -----------------------------------------------------------------


def plan_prune(entries, keep, max_age_days, now):
    """(remove, kept, unprotected databases). remove holds (entry, reasons).

    Only regular files named <db>_<timestamp>.(sql|dump).enc are considered. Per
    database, newest first: a file is removed when it is not among the `keep`
    newest, or is older than `max_age_days`; but the newest *valid* one (header
    parses, payload length possible) is never removed, and a database without any
    valid backup is left alone entirely."""
    groups = defaultdict(list)
    for e in entries:
        if e.naming == "encpipe" and e.identity:
            groups[e.database].append(e)
    cutoff = None if max_age_days is None else now - timedelta(days=max_age_days)
    remove, kept, unprotected = [], [], []
    for database, group in sorted(groups.items()):
        group.sort(key=_age_key, reverse=True)
        valid = [e for e in group if e.status == "sealed"]
        if not valid:
            unprotected.append(database)
            kept += group
            continue
        for rank, e in enumerate(group):
            reasons = []
            if rank >= keep:
                reasons.append("keep")
            if cutoff is not None and e.created < cutoff:
                reasons.append("max-age")
            if reasons and e is not valid[0]:
                remove.append((e, reasons))
            else:
                kept.append(e)
    return remove, kept, unprotected


def cmd_prune(args, io):
    keep = _keep(args["--keep"])
    max_age = _days(args["--max-age"])
    directory = backup_dir(args, io)
    remove, kept, unprotected = plan_prune(scan(directory), keep, max_age, datetime.now(timezone.utc))
    for database in unprotected:
        io.warn(f"database {database} has no valid backup; none of its files were pruned")
    removed, errors = [], []
    for entry, reasons in remove:
        error = None if args["--dry-run"] else _remove(entry)
        if error:
            errors.append({"filename": entry.filename, "error": error})
            continue
        removed.append({
            "filename": entry.filename,
            "database": entry.database,
            "created": iso(entry.created),
            "bytes": entry.bytes,
            "status": entry.status,
            "reasons": reasons,
        })
    if removed and not args["--dry-run"]:
        commands.fsync_directory(directory)
    io.print_json({
        "directory": directory,
        "dry_run": args["--dry-run"],
        "keep": keep,
        "max_age_days": max_age,
        "removed": sorted(removed, key=lambda r: r["filename"]),
        "kept": [e.filename for e in sorted(kept, key=lambda e: e.filename)],
        "unprotected_databases": unprotected,
        "errors": errors,
    })
    for error in errors:
        io.error(error["error"])
    return 74 if errors else 0


def _keep(text):
    if not re.fullmatch(r"[0-9]{1,18}", text.strip()):
        raise UsageError(f"--keep must be a whole number from 0, not {text!r}")
    return int(text)


def _days(text):
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 1e6:
        raise UsageError(f"--max-age must be a number of days from 0, not {text!r}")
    return int(value) if value.is_integer() else value


def _remove(entry):
    """Unlink entry.path if it is still the very file examined; an error message or None."""
    try:
        now = os.lstat(entry.path)
        if (now.st_dev, now.st_ino) != entry.identity:
            return f"{entry.filename} changed while pruning; left in place"
        os.unlink(entry.path)
    except OSError as e:
        return f"cannot remove {entry.filename}: {e.strerror or e}"
    return None


# --- verify ----------------------------------------------------------------


def cmd_verify(args, io):
    paths = args["PATH"] or [backup_dir(args, io)]
    workers = commands.threads(args)
    keys = KeyRing.from_args(args, io)
    entries = []
    for path in paths:
        if os.path.isdir(path):
            entries += [(e, False) for e in scan(path)]
        else:
            entries.append((examine(os.path.dirname(path), os.path.basename(path), path), True))
    results = [_verify_one(entry, named, keys, workers) for entry, named in entries]
    failed = [r for r in results if r["ok"] is False]
    io.print_json({
        "ok": not failed,
        "files": len(results),
        "verified": sum(r["ok"] is True for r in results),
        "failed": len(failed),
        "not_verified": sum(r["ok"] is None for r in results),
        "results": results,
    })
    return failed[0]["exit_code"] if failed else 0


def _verify_one(entry, named, keys, workers):
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
    }
    try:
        if entry.status == "sealed":
            info = _authenticate(entry.path, keys.encpipe(), workers)
            result.update(ok=True, plaintext_bytes=info.plaintext_bytes, chunks=info.chunks)
        elif entry.status == "legacy":
            _verify_legacy(entry.path, keys, result)
        elif entry.status == "partial":
            result["note"] = "partial: a backup still being written, or left by an interrupted one"
        elif entry.status in ("foreign", "plaintext") and not named:
            result["note"] = f"{entry.status}: not an encrypted backup ({entry.error})"
        elif entry.status == "unreadable":
            raise InputUnavailable(entry.error)
        else:  # damaged, or a foreign or plaintext file named on the command line
            raise InvalidStream(entry.error or "not an encpipe file")
    except EncpipeError as e:
        _fail(result, e.exit_code, str(e))
    except OSError as e:
        _fail(result, 66, f"cannot read {entry.filename}: {e.strerror or e}")
    except Exception as e:  # a bug; report it for this file and go on with the others
        _fail(result, 70, f"internal error: {e!r}")
    return result


def _fail(result, code, message):
    result.update(ok=False, exit_code=code, error_class=ERROR_CLASSES.get(code, "internal"), error=message)


def _authenticate(path, identities, workers):
    """Authenticate every chunk of `path`; the plaintext goes nowhere (dst=None)."""
    with open(path, "rb") as src:
        sealed = envelope.read_header(src)
        return envelope.open_sealed(sealed, src, None, identities, threads=workers)


def _verify_legacy(path, keys, result):
    legacy_keys = keys.legacy()
    if legacy_keys is None:
        result["note"] = "legacy: not verified (this encpipe cannot read the previous format)"
        return
    from .legacy import open_legacy

    with open(path, "rb") as src:
        info = open_legacy(src, None, legacy_keys)
    result.update(ok=True, plaintext_bytes=info.plaintext_bytes, note=f"legacy: authenticated with {info.key_label}")


class KeyRing:
    """The keys verify opens files with, read once from the encpipe key options (and,
    for files of the previous tool, its BACKUP_ENCRYPTION_KEY setting too)."""

    def __init__(self, sources, identities, missing, env):
        self.sources, self.identities, self.missing, self.env = sources, identities, missing, env
        self._legacy = self._legacy_error = None

    @classmethod
    def from_args(cls, args, io):
        sources = commands.key_sources(args)
        try:
            ring = cls(sources, commands.loader(args, io).load(sources, sealing=False), None, io.env)
        except NoKeyConfigured as e:
            ring = cls(sources, [], e, io.env)
            if ring.legacy() is None:  # no key at all: fail before reading any file
                raise
        return ring

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
                from .legacy import load_keys
            except ImportError:
                return None
            try:
                self._legacy = load_keys(self, self.sources, self.env)
            except NoKeyConfigured as e:
                self._legacy_error = e
        if self._legacy_error:
            raise self._legacy_error
        return self._legacy


# --- command line ----------------------------------------------------------


def backup_dir(args, io):
    return args["--dir"] or args.get("DIR") or io.env.get(ENV_BACKUP_DIR) or DEFAULT_BACKUP_DIR


COMMANDS = {"list": cmd_list, "prune": cmd_prune, "verify": cmd_verify}


def main(argv=None, *, stdout=None, stderr=None, env=None):
    """Run one command; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    name = argv[0] if argv and argv[0] in COMMANDS else "backups"
    io = Io(None, stdout or sys.stdout.buffer, stderr or sys.stderr, os.environ if env is None else env,
            prog=f"encpipe-{name}")
    try:
        args = docopt(USAGE, argv=argv, default_help=True)
    except DocoptExit as e:
        message = str(e).strip().splitlines()
        io.error(message[0] if message else "bad usage", hint="see --help")
        return 64
    except SystemExit as e:  # --help
        return e.code or 0
    return report_errors(io, lambda: COMMANDS[name](args, io))


if __name__ == "__main__":
    raise SystemExit(main())
