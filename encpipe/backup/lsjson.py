"""`rclone lsjson`'s output read entry by entry as it comes, never whole: a JSON
array of objects, which rclone writes one a line ("[", then each object, a comma
ending every line but the last one's, then "]"). Any JSON array of objects each
on one line reads the same (a stand-in's one-line array too); every line is
bounded (LINE_LIMIT), so memory is, whatever the output. Anything else is
NotAListing, which names the line: never a partial listing. `lsjson --stat`'s
output, one object (or null) that rclone indents over several lines, is read
whole up to the same bound (one)."""

import json
import re

LINE_LIMIT = 1 << 20  # bytes of one line; an object's line is two names (Path, Name), each at most a few KiB

_SPACE = re.compile(r"[ \t\r\n]*")
_DECODER = json.JSONDecoder()


class NotAListing(ValueError):
    """The output is not a JSON array of objects, each with a name and a size, one a line."""


class Unended(NotAListing):
    """The output ended before its array did."""


def entries(src, limit=LINE_LIMIT):
    """(name, size) of each object the array read from `src` (a binary file) lists,
    as each is read. NotAListing at the first line that breaks the form; Unended at
    the output's end when it ends before the array's (a failed rclone leaves that:
    its caller asks rclone's status first)."""
    # start: "[" expected; first: an entry or "]"; after: "," or "]"; next: an entry; end: nothing more
    state, number, line = "start", 0, b""
    while block := src.readline(limit + 1):
        line, number = block, number + 1
        if len(line) > limit:
            raise NotAListing(f"line {number}: longer than {limit} bytes")
        try:
            text = line.decode()
        except UnicodeDecodeError:
            raise NotAListing(f"line {number}: not UTF-8") from None
        at = _SPACE.match(text).end()
        while at < len(text):
            char = text[at]
            if state == "end":
                raise NotAListing(f"line {number}: more after its array")
            if state == "start":
                if char != "[":
                    raise NotAListing(f"line {number}: not a JSON array")
                state, at = "first", at + 1
            elif char == "]" and state in ("first", "after"):
                state, at = "end", at + 1
            elif state == "after":
                if char != ",":
                    raise NotAListing(f"line {number}: " + ("no comma before the next entry" if char == "{"
                                                            else "not JSON"))
                state, at = "next", at + 1
            else:
                try:
                    found, at = _DECODER.raw_decode(text, at)
                except ValueError:  # on a last line without its newline: the output cut in an entry
                    cut = not line.endswith(b"\n")
                    raise (Unended if cut else NotAListing)(
                        f"line {number}: " + ("it ends before its array does" if cut else "not JSON")) from None
                yield _entry(found, number)
                state = "after"
            at = _SPACE.match(text, at).end()
    if state != "end":
        last = number + (not number or line.endswith(b"\n"))  # the output ends on the line after its last newline
        raise Unended(f"line {last}: it ends before its array does")


def one(src, limit=LINE_LIMIT):
    """The one JSON object `rclone lsjson --stat` writes (a dict), None for its null or
    for no output, read from `src` (a binary file) up to `limit` bytes: NotAListing
    past them (nothing more read), and for anything but one object or null."""
    data = src.read(limit + 1)
    if len(data) > limit:
        raise NotAListing(f"longer than {limit} bytes")
    try:
        text = data.decode()
    except UnicodeDecodeError as e:
        raise NotAListing(f"line {_line(data, e.start)}: not UTF-8") from None
    start = _SPACE.match(text).end()
    if start == len(text):
        return None
    try:
        found, end = _DECODER.raw_decode(text, start)
    except ValueError as e:
        raise NotAListing(f"line {e.lineno}: not JSON") from None
    if found is not None and not isinstance(found, dict):
        raise NotAListing(f"line {_line(text, start)}: not a JSON object")
    more = _SPACE.match(text, end).end()
    if more < len(text):
        raise NotAListing(f"line {_line(text, more)}: more after its object")
    return found


def _line(text, at):
    """The number of the line `text` (str or bytes) has at `at`."""
    return text.count(b"\n" if isinstance(text, bytes) else "\n", 0, at) + 1


def _entry(found, number):
    name, size = (found.get("Name"), found.get("Size")) if isinstance(found, dict) else (None, None)
    if type(name) is not str or type(size) is not int:
        raise NotAListing(f"line {number}: an entry without a name and a size")
    return name, size
