"""Backup file names: <db>_<YYYYmmddTHHMMSSZ>.<kind>.enc, and the names of the previous tool.

A retention series is (database, series): every plain kind (sql, sql.zst, sql.gz)
is one series, the custom format (dump) another, the cluster globals a third.
"""

import re
from datetime import datetime, timezone

KINDS = {"sql": "plain", "sql.zst": "plain", "sql.gz": "plain", "dump": "custom", "globals.sql": "globals"}
STAMP = "%Y%m%dT%H%M%SZ"

# A database's name, so the <db> part, may hold a newline (re.S), as encpipe-backup
# writes it: else such a database's backups were `foreign`, never verified, counted
# nor pruned. A name that ends in one is no backup's (fullmatch).
_BACKUP_NAME = re.compile(
    r"^(?P<db>.+)_(?P<ts>[0-9]{8}T[0-9]{6}Z)\.(?P<kind>sql|sql\.zst|sql\.gz|dump|globals\.sql)\.enc$", re.S)
# The previous tool: <db>_backup_YYYY-mm-dd_HH-MM-SS-mmmZ.sql[.enc].
_LEGACY_NAME = re.compile(
    r"^(?P<db>.+)_backup_(?P<ts>[0-9]{4}-[0-9]{2}-[0-9]{2}_[0-9]{2}-[0-9]{2}-[0-9]{2}-[0-9]{3})Z"
    r"\.sql(?P<enc>\.enc)?$", re.S
)
# Unfinished files, never read, never counted: encpipe-backup's temporary files, those of
# `encpipe rewrap --in-place`, encpipe-rotate's, encpipe-migrate's (.NAME.<16 hex>.migrate-tmp: its
# lock, DIR's, is not list's nor verify's), and rclone's: `rclone copy`, `move` and `sync` write to a
# backend that takes partial uploads (local, sftp, ftp...) as NAME.<8 hex>.partial first
# (--partial-suffix, ".partial" by default), and `rclone serve s3` keeps an unfinished
# multipart upload's parts in .rclone_temp_multipart_<id> in the directory it serves. A
# killed rclone leaves them: read, the start of a backup they hold (its payload key) made
# the backup a copy that retention never counts, and a truncated one failed verify.
_PARTIAL_NAME = re.compile(r"^(\.encpipe-(tmp\..*|.*\.tmp)|\..*\.[0-9a-f]{16}\.migrate-tmp|\.rclone_temp_multipart_.*"
                           r"|.*\.partial)$", re.S)
# The location's cluster marker (backup.cluster): a line of text, never a backup, never read as one.
MARKER = ".encpipe-cluster"
# encpipe-backup's temporary names: .encpipe-tmp.<YYYYmmddTHHMMSSZ>_<pid>_<random>
_TEMP_NAME = re.compile(r"^\.encpipe-tmp\.(?P<ts>[0-9]{8}T[0-9]{6}Z)_")


# How pg_dumpall's output starts (pg_dump's says "database dump"): a run's globals file.
# Under a dump's name it authenticates as well (same key, same maker), but holds no database.
CLUSTER_DUMP = b"--\n-- PostgreSQL database cluster dump\n"


class Name:
    """What a file name says: naming ("encpipe", "legacy" or None), database, kind,
    series ("plain", "custom", "globals") and creation time (UTC)."""

    __slots__ = ("naming", "database", "kind", "series", "created")

    def __init__(self, naming=None, database=None, kind=None, series=None, created=None):
        self.naming, self.database, self.kind, self.series, self.created = (
            naming, database, kind, series, created)

    @property
    def dump_format(self):
        return self.series


def parse_name(name):
    """A Name for a file name; all None when it is not a backup's name."""
    match = _BACKUP_NAME.fullmatch(name)  # fullmatch: `$` alone lets a final newline through
    if match:
        created = _utc(match["ts"], STAMP)
        if created:
            kind = match["kind"]
            return Name("encpipe", match["db"], kind, KINDS[kind], created)
    match = _LEGACY_NAME.fullmatch(name)
    if match:
        created = _utc(match["ts"] + "000", "%Y-%m-%d_%H-%M-%S-%f")
        if created:
            return Name("legacy", match["db"], "sql", "plain", created)
    return Name()


def is_partial(name):
    return bool(_PARTIAL_NAME.match(name))


def temp_started(name):
    """When the run that made a temporary name started; None for other names."""
    match = _TEMP_NAME.match(name)
    return _utc(match["ts"], STAMP) if match else None


def stamp(moment):
    """A name's time as the name writes it (STAMP), its year in four digits: strftime's %Y
    writes year 1 as "1", and a name dated before year 1000 was compared as another time."""
    return f"{moment.year:04d}{moment:%m%dT%H%M%S}Z"


def iso(moment):
    if moment is None:
        return None
    text = f"{moment.year:04d}-{moment:%m-%dT%H:%M:%S}"  # strftime's %Y: "1" for year 1
    if moment.microsecond:
        text += f".{moment.microsecond // 1000:03d}"
    return text + "Z"


def _utc(text, pattern):
    try:
        return datetime.strptime(text, pattern).replace(tzinfo=timezone.utc)
    except ValueError:
        return None
