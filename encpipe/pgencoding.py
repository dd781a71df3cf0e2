"""The text of a globals file, and of the properties it records, in the encoding
PostgreSQL wrote them in.

pg_dumpall writes a globals file in the encoding of the database it read from, and
says which (`SET client_encoding = 'LATIN1';`): psql, fed the file, sends its bytes
as they are and the server converts them. A restore sends its statements as UTF-8,
so it decodes the file by what it says and says UTF-8 instead: before, a LATIN1
cluster's role `Jürgen` came back as `J\ufffdrgen`, exit 0. The properties
(pgprops) are read connected to the database itself, and a shared catalog's text
(its comment, a setting, a role's name) comes as the server stored it: UTF-8 when it
is, else taken as the database's encoding (a LATIN1 database's comment `für` was
refused, `invalid byte sequence for encoding "UTF8"`, once the whole dump had loaded).
"""

import re

# PostgreSQL's encodings (pg_encoding_to_char) whose bytes Python's codecs read.
CODECS = {
    "UTF8": "utf-8", "LATIN1": "iso8859-1", "LATIN2": "iso8859-2", "LATIN3": "iso8859-3", "LATIN4": "iso8859-4",
    "LATIN5": "iso8859-9", "LATIN6": "iso8859-10", "LATIN7": "iso8859-13", "LATIN8": "iso8859-14",
    "LATIN9": "iso8859-15", "LATIN10": "iso8859-16", "ISO_8859_5": "iso8859-5", "ISO_8859_6": "iso8859-6",
    "ISO_8859_7": "iso8859-7", "ISO_8859_8": "iso8859-8", "KOI8R": "koi8-r", "KOI8U": "koi8-u",
    "WIN866": "cp866", "WIN874": "cp874", "WIN1250": "cp1250", "WIN1251": "cp1251", "WIN1252": "cp1252",
    "WIN1253": "cp1253", "WIN1254": "cp1254", "WIN1255": "cp1255", "WIN1256": "cp1256", "WIN1257": "cp1257",
    "WIN1258": "cp1258", "EUC_JP": "euc_jp", "EUC_JIS_2004": "euc_jis_2004", "EUC_KR": "euc_kr",
    "EUC_CN": "gb2312", "SJIS": "shift_jis", "SHIFT_JIS_2004": "shift_jis_2004", "BIG5": "big5", "GBK": "gbk",
    "GB18030": "gb18030", "UHC": "cp949", "JOHAB": "johab",
}
_CLIENT_ENCODING = re.compile(rb"^SET client_encoding = '([A-Za-z0-9_]+)';\r?$", re.M)
SET_UTF8 = "SET client_encoding = 'UTF8';"


def codec(encoding):
    """Python's codec for PostgreSQL's `encoding`, or None (SQL_ASCII: bytes of no
    encoding; or one Python has none for)."""
    return CODECS.get((encoding or "").upper())


def globals_text(raw):
    """(text, the encoding it was in, when not UTF-8) of a globals file's bytes `raw`.
    UnicodeDecodeError when they are not text of the encoding they say. Bytes of no
    known encoding (SQL_ASCII, UTF-8 that is not) are kept as they are (surrogateescape),
    for the server to take or refuse."""
    said = _CLIENT_ENCODING.search(raw)
    name = codec(said[1].decode("ascii")) if said else None
    if name in (None, "utf-8"):
        return raw.decode("utf-8", "surrogateescape"), None
    return raw.decode(name), said[1].decode("ascii")


def readable(value, encoding):
    """`value` (properties: dicts, lists, strings) with each string that is not UTF-8,
    as read (surrogateescape), decoded as `encoding`'s text instead."""
    name = codec(encoding)
    if name in (None, "utf-8"):
        return value
    if isinstance(value, dict):
        return {key: readable(item, encoding) for key, item in value.items()}
    if isinstance(value, list):
        return [readable(item, encoding) for item in value]
    if isinstance(value, str):
        raw = value.encode("utf-8", "surrogateescape")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.decode(name, "surrogateescape")
    return value
