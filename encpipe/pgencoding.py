"""The text of a globals file, and of the properties it records, in the encoding
PostgreSQL wrote them in.

pg_dumpall writes a globals file in the encoding of the database it read from, and
says which (`SET client_encoding = 'LATIN1';`): psql, fed the file, sends its bytes
as they are and the server converts them. Every session of a restore speaks UTF-8
(pgclient.restoring; a SQL_ASCII server's excepted), so it decodes the file by what it says and says
UTF-8 instead: before, a LATIN1 cluster's role `Jürgen` came back as `J\ufffdrgen`,
exit 0. An encoding whose text Python does not read as PostgreSQL does (EUC_JP's
wave dash, say) is refused when the file holds text that is not ASCII. The properties
(pgprops) are read connected to the database itself, and a shared catalog's text
(its comment, a setting, a role's name) comes as the server stored it: UTF-8 when it
is, else taken as the database's encoding (a LATIN1 database's comment `für` was
refused, `invalid byte sequence for encoding "UTF8"`, once the whole dump had loaded).
"""

import re

# PostgreSQL's encodings whose text Python's codecs read exactly as PostgreSQL converts
# it, and in which every ASCII byte is that character (no byte of a multi-byte character
# is ASCII): the others (EUC_JP, EUC_KR, SJIS, BIG5, ...) map some characters otherwise.
CODECS = {
    "UTF8": "utf-8", "LATIN1": "iso8859-1", "LATIN2": "iso8859-2", "LATIN3": "iso8859-3", "LATIN4": "iso8859-4",
    "LATIN5": "iso8859-9", "LATIN6": "iso8859-10", "LATIN7": "iso8859-13", "LATIN8": "iso8859-14",
    "LATIN9": "iso8859-15", "LATIN10": "iso8859-16", "ISO_8859_5": "iso8859-5", "ISO_8859_6": "iso8859-6",
    "ISO_8859_7": "iso8859-7", "ISO_8859_8": "iso8859-8", "KOI8R": "koi8-r", "KOI8U": "koi8-u",
    "WIN866": "cp866", "WIN874": "cp874", "WIN1250": "cp1250", "WIN1251": "cp1251", "WIN1252": "cp1252",
    "WIN1253": "cp1253", "WIN1254": "cp1254", "WIN1255": "cp1255", "WIN1256": "cp1256", "WIN1257": "cp1257",
    "WIN1258": "cp1258", "EUC_CN": "gb2312",
}
_CLIENT_ENCODING = re.compile(rb"^SET client_encoding = '([A-Za-z0-9_]+)';\r?$", re.M)
SET_UTF8 = "SET client_encoding = 'UTF8';"


class Unconverted(ValueError):
    """A globals file in an encoding encpipe does not convert, with text that is not ASCII."""


def codec(encoding):
    """Python's codec for PostgreSQL's `encoding`, or None (SQL_ASCII: bytes of no
    encoding; or one not in CODECS)."""
    return CODECS.get((encoding or "").upper())


def globals_text(raw):
    """(text, the encoding it was in, when it was converted) of a globals file's bytes
    `raw`. UnicodeDecodeError when they are not text of the encoding they say;
    Unconverted for text that is not ASCII in an encoding not in CODECS. UTF-8, and
    SQL_ASCII's bytes of no encoding, are kept as they are (surrogateescape), for the
    server to take or refuse."""
    said = _CLIENT_ENCODING.search(raw)
    encoding = said[1].decode("ascii").upper() if said else "UTF8"
    if encoding in ("UTF8", "SQL_ASCII") or raw.isascii():
        return raw.decode("utf-8", "surrogateescape"), None
    if encoding not in CODECS:
        raise Unconverted(encoding)
    return raw.decode(CODECS[encoding]), encoding


def readable(value, encoding):
    """`value` (properties: dicts, lists, strings) with each string that is not UTF-8,
    as read (surrogateescape), decoded as `encoding`'s text instead."""
    name = codec(encoding)

    def read(item):
        if isinstance(item, dict):
            return {key: read(each) for key, each in item.items()}
        if isinstance(item, list):
            return [read(each) for each in item]
        if not isinstance(item, str):
            return item
        raw = item.encode("utf-8", "surrogateescape")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.decode(name, "surrogateescape")

    return value if name in (None, "utf-8") else read(value)
