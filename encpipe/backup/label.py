"""The label encpipe-backup seals at the start of a dump: its database and its name's time.

A file's name is not authenticated; its plaintext is. encpipe-backup puts

    encpipe-backup v1 db=<database, escaped> at=<YYYYmmddTHHMMSSZ>

first in a plain dump's plaintext, in a form the restore tools skip:

- zstd: a skippable frame: 50 2A 4D 18, the text's length (4 bytes, little-endian),
  the text; `zstd -d` writes nothing for it.
- gzip: an empty first member whose header holds the text as its comment (FCOMMENT):
  1F 8B 08 10, MTIME 0 (4 bytes), XFL 0, OS FF, the text, 00, an empty deflate block
  03 00, CRC32 0 and ISIZE 0 (4 bytes each); `gzip -d` writes nothing for it.
- no compression: the SQL comment line `-- ` + text + `\\n`; a globals file's
  (pg_dumpall --globals-only) too, whose label's time is its run's.

<database, escaped>: the database name of the file's name, as bytes, each byte
outside 21..7E (hexadecimal) and each `%` written %XX (two upper-case hex digits).
A custom archive (pg_dump -Fc) carries no label: its own header names its database
and its time (see archive_header). `found(head)` reads either from the first bytes of a
file's plaintext; verification compares them with the file's name (`mismatch`).
"""

import os
import re
from datetime import datetime, timedelta

from ..errors import InvalidStream

VERSION = b"encpipe-backup v1"
ZSTD_SKIPPABLE = b"\x50\x2a\x4d\x18"
GZIP_HEAD = b"\x1f\x8b\x08\x10\x00\x00\x00\x00\x00\xff"
GZIP_TAIL = b"\x00\x03\x00" + bytes(8)
SQL_HEAD = b"-- "
ARCHIVE_MAGIC = b"PGDMP"  # what a custom archive (pg_dump -Fc) starts with
MAX_TEXT = 256  # a database name of 63 bytes, all escaped, is 189
# pg_dump's local time (UTC since encpipe-backup runs it with TZ=UTC0; before, in any zone: UTC-12 to UTC+14,
# an hour more for summer time),
# a little after the name's (the keys load first): the widest a custom archive's time may be from its name's
ARCHIVE_EARLIEST, ARCHIVE_LATEST = timedelta(hours=-13), timedelta(hours=16)
HEAD_BYTES = 512  # what `found` needs of the plaintext (verify.Ends.HEAD)
_TEXT = re.compile(rb"encpipe-backup v1 db=([\x21-\x7e]{1,%d}) at=([0-9]{8}T[0-9]{6}Z)" % (3 * 63))


def escape(name):
    raw = os.fsencode(name)
    return b"".join(bytes([b]) if 0x21 <= b <= 0x7E and b != 0x25 else b"%%%02X" % b for b in raw)


def text(db, stamp):
    return VERSION + b" db=" + escape(db) + b" at=" + stamp.encode("ascii")


def after_line(head):
    """`head` past a leading label in its SQL comment form (a plain uncompressed dump's,
    a globals file's): what pg_dump or pg_dumpall wrote first."""
    if head.startswith(SQL_HEAD + VERSION + b" "):
        end = head.find(b"\n")
        return head[end + 1:] if end >= 0 else b""
    return head


def prefix(compress, db, stamp):
    """The bytes encpipe-backup seals before the dump; b"" for a custom archive."""
    label = text(db, stamp)
    if compress == "zstd":
        return ZSTD_SKIPPABLE + len(label).to_bytes(4, "little") + label
    if compress == "gzip":
        return GZIP_HEAD + label + GZIP_TAIL
    if compress == "none":
        return SQL_HEAD + label + b"\n"
    return b""


class Labelled:
    """`src` (a readinto reader) after `first`."""

    def __init__(self, first, src):
        self.first, self.src = first, src

    def readinto(self, view):
        if self.first:
            n = min(len(view), len(self.first))
            view[:n] = self.first[:n]
            self.first = self.first[n:]
            return n
        return self.src.readinto(view)


class Found:
    """What a file's plaintext says of itself: `db` (escaped, bytes) and `at` (bytes),
    `source` ("label" or "archive"; an archive's `at` is the naive datetime of its
    header, pg_dump's local time); or nothing (`source` None: unlabelled)."""

    def __init__(self, source=None, db=None, at=None):
        self.source, self.db, self.at = source, db, at


def found(head):
    """The Found of a plaintext starting with `head` (at least HEAD_BYTES of it when
    it is longer). A label that does not read as one is InvalidStream."""
    body = None
    if head.startswith(ZSTD_SKIPPABLE):
        size = int.from_bytes(head[4:8], "little")
        body = head[8:8 + size] if size <= MAX_TEXT and len(head) >= 8 + size else head[8:]
    elif head.startswith(GZIP_HEAD):
        end = head.find(b"\x00", len(GZIP_HEAD))
        body = head[len(GZIP_HEAD):end] if end > 0 and head[end:end + len(GZIP_TAIL)] == GZIP_TAIL else head[10:]
    elif head.startswith(SQL_HEAD):
        end = head.find(b"\n")
        body = head[len(SQL_HEAD):end] if end > 0 else head[len(SQL_HEAD):]
    elif head.startswith(ARCHIVE_MAGIC):
        said = archive_header(head)
        return Found("archive", *said) if said else Found()
    if body is None or not body.startswith(VERSION + b" "):
        return Found()  # no label: made before labels, or by hand
    match = _TEXT.fullmatch(body)
    if not match or escape(os.fsdecode(_unescape(match[1]))) != match[1]:
        raise InvalidStream("its label (encpipe-backup's, before the dump) is malformed")
    return Found("label", _unescape(match[1]), match[2])


def mismatch(found_, db, stamp):
    """Why a file named for `db` at `stamp` does not hold that backup; None when it
    may (it agrees, or holds no label)."""
    if found_.source is None:
        return None
    if found_.db != os.fsencode(db):
        return "holds a backup of database %s, not of %s (its name's)" % (
            escape(os.fsdecode(found_.db)).decode("ascii"), escape(db).decode("ascii"))
    if found_.source == "label" and found_.at != stamp.encode("ascii"):
        return "holds the backup made at %s, not at %s (its name's time)" % (found_.at.decode("ascii"), stamp)
    if found_.source == "archive" and found_.at is not None:
        named = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ")
        if not ARCHIVE_EARLIEST <= found_.at - named <= ARCHIVE_LATEST:
            return "holds an archive pg_dump made at %s (its local time), not near %s (its name's time)" % (
                f"{found_.at.year:04d}-{found_.at:%m-%d %H:%M:%S}", stamp)  # year 5 as 0005, not 5
    return None


def _unescape(escaped):
    return re.sub(rb"%([0-9A-F]{2})", lambda m: bytes([int(m[1], 16)]), escaped)


def archive_header(head):
    """(database, time) a custom archive's header says: the database pg_dump
    connected to (PQdb), as bytes, and when it started, a naive datetime in its
    local time (None if not a valid date); None when `head` does not hold them. PostgreSQL's pg_backup_archiver.c, WriteHead:
    "PGDMP", then bytes version major, minor, revision, intSize, offSize, format;
    the compression (an int before archive version 1.15, one byte from 1.15); the
    creation time as seven ints (sec, min, hour, mday, mon, year, isdst: pg_dump's
    local time); then strings: the database, the server's version, pg_dump's.
    An int is a sign byte (0 or 1) and intSize bytes, least significant first; a
    string is its length as an int (-1: none) and its bytes."""
    if len(head) < 11:
        return None
    major, minor, int_size = head[5], head[6], head[8]
    if (major, minor) < (1, 10) or not 1 <= int_size <= 8:  # before 1.10 no database name
        return None
    pos = 11
    pos += 1 if (major, minor) >= (1, 15) else 1 + int_size
    if len(head) < pos + 8 * (1 + int_size):  # the seven ints of its time, the database's length
        return None
    fields = [int.from_bytes(head[p + 1:p + 1 + int_size], "little") * (-1 if head[p] else 1)
              for p in range(pos, pos + 7 * (1 + int_size), 1 + int_size)]
    pos += 7 * (1 + int_size)
    sec, minute, hour, mday, mon, year = fields[:6]
    try:
        made = datetime(year + 1900, mon + 1, mday, hour, minute, min(sec, 59))
    except (ValueError, OverflowError):
        made = None
    sign, length = head[pos], int.from_bytes(head[pos + 1:pos + 1 + int_size], "little")
    pos += 1 + int_size
    if sign not in (0, 1) or sign or length > 63 or len(head) < pos + length:
        return None
    return head[pos:pos + length], made
