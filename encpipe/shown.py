"""Text as the tools show it on one line (their messages, encpipe-check's plugin
lines): a name in it can neither forge a line nor pass for another name."""

from .lazyre import Pattern


def printable(text):
    r"""`text` on one line, as a terminal or a log shows it: control characters (a
    file name's newline, CR or ESC) and bytes that are not UTF-8 (as os.listdir
    gives them, surrogates) escaped, so that no name can forge a line or move the
    cursor; and a backslash always doubled, so that no two texts show the same
    (a name holding a backslash and an n shows as `a\\nb`, one holding a newline as `a\nb`)."""
    text = str(text)
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(_escaped(c) for c in text)


def _escaped(c):
    r"""One character as printable shows it: `\xNN` only for an ASCII control
    character (`\n`, `\r`, `\t` for those) or a byte that is not UTF-8 (never
    both), `\uNNNN` (`\UNNNNNNNN`) for any other character that is not printable."""
    if c == "\\":
        return "\\\\"
    if c.isprintable():
        return c
    n = ord(c)
    if 0xDC80 <= n <= 0xDCFF:  # os.listdir's surrogate for a byte that is not UTF-8
        return f"\\x{n - 0xDC00:02x}"
    if n < 0x80:
        return repr(c)[1:-1]
    return f"\\u{n:04x}" if n <= 0xFFFF else f"\\U{n:08x}"


# what printable puts after a backslash: each of its escapes, and nothing else
_ESCAPE = Pattern(r"\\(\\|[nrt]|x[0-9a-f]{2}|u[0-9a-f]{4}|U[0-9a-f]{8})")


def unprintable(text):
    r"""The text that printable() showed as `text` (a child's error line, to be shown
    again in the script's own, so that a backslash is doubled once, not twice); a
    backslash that starts none of printable's escapes (a line cut short) is left."""
    def one(match):
        escape = match[1]
        if len(escape) == 1:
            return {"\\": "\\", "n": "\n", "r": "\r", "t": "\t"}[escape]
        n = int(escape[1:], 16)
        return chr(n if escape[0] != "x" or n < 0x80 else 0xDC00 + n)
    return _ESCAPE.sub(one, text)


def plugin_line(text):
    """`text` as one line of a Nagios/Icinga plugin's output: printable (one line, no
    control character), and a name's `|`, which those take for the start of
    performance data (hiding the rest of the line, and with Nagios every line
    after it), escaped as `\\x7c`."""
    return printable(text).replace("|", "\\x7c")


def json_value(value):
    r"""`value` for the tools' JSON (README, "JSON output"): every string Unicode. A
    string holding bytes that are not UTF-8 (os.listdir's surrogates, in a file
    name and all that is taken from it) shows each such byte as `\xNN`; beside it,
    in its object, `<key>_base64` holds its exact bytes (an object keyed by such a
    string holds them as `key_base64`, under the first of `\xNN`, `\xNN (2)`, ...
    that is no other key of the object: a UTF-8 name may read `\xNN` too, and
    neither entry is lost). A lone surrogate would be refused by a strict parser,
    and read by jq as U+FFFD: two names, one text."""
    if isinstance(value, dict):
        out = {}
        taken = {key for key in value if not _odd(key)}
        for key, item in value.items():
            item = json_value(item)
            shown = key
            if _odd(key):
                if isinstance(item, dict):
                    item = {**item, "key_base64": _base64(key)}
                shown = _free(_shown(key), taken)
                taken.add(shown)
            out[shown] = item
            if _odd(value[key]):
                out[f"{shown}_base64"] = _base64(value[key])
        return out
    if isinstance(value, (list, tuple)):
        return [json_value(item) for item in value]
    return _shown(value) if _odd(value) else value


def _free(text, taken):
    """`text`, or the first of `text (2)`, `text (3)`, ... not in `taken`."""
    n, shown = 1, text
    while shown in taken:
        n += 1
        shown = f"{text} ({n})"
    return shown


def _odd(text):
    return isinstance(text, str) and not text.isascii() and any(0xD800 <= ord(c) <= 0xDFFF for c in text)


def _shown(text):
    return "".join(f"\\x{ord(c) - 0xDC00:02x}" if 0xDC80 <= ord(c) <= 0xDCFF else
                   "\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)


def _base64(text):
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate os.listdir never gives (from a remote's listing, say)
        raw = text.encode("utf-8", "surrogatepass")
    import base64  # here: most runs show no name that is not UTF-8

    return base64.b64encode(raw).decode("ascii")
