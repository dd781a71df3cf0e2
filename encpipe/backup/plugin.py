"""encpipe-check's output as a Nagios plugin's (the Nagios plugin guidelines):
its status lines, each escaped (shown.plugin_line), the worst first; after ` | `
on the first line, the performance data of the databases whose lines are
printed; all of it within MAX_LINES lines and MAX_BYTES bytes. Its exit status
is always a plugin's, 0 to 3, with a line on standard output (run)."""

import os
import sys

from ..shown import plugin_line, printable

# The most check prints: Nagios 4 keeps 8 KiB of a plugin's output (its
# MAX_PLUGIN_OUTPUT_LENGTH), and thousands of databases with no backup, one
# line each, went far past it. README, "Monitoring".
MAX_LINES, MAX_BYTES = 100, 4096
UNKNOWN = 3  # the plugin's status for a usage error or a failure of its own (the Nagios plugin guidelines)


def run(argv, prog="encpipe-check"):
    """encpipe-check's status (cli.run_script of backup.cli's check) as a plugin's,
    whatever stops it: check's own are 0 to 3, each with its lines; a status every
    script shares (69 a missing package, 70 a bug, 74 out of memory or a standard
    output that cannot be written, 141 its reader gone), said on standard error
    only, is UNKNOWN, its error line (else its status) printed after `UNKNOWN: ` on
    the standard output check was given, which an error may have pointed at
    /dev/null (stdio.discard). A signal still ends it as it ends every script."""
    from ..cli import guard_standard_fds, run_script

    guard_standard_fds()  # a closed one: /dev/null first, as run_script does
    said = _Said(sys.stderr, f"{prog}: error: ")
    out = os.dup(1)  # not inherited by check's children
    sys.stderr = said
    try:
        status = run_script(prog, "encpipe.backup.cli", ["check", *argv])
    finally:
        sys.stderr = said.stream
    try:
        if not 0 <= status <= UNKNOWN:
            why = said.error or f"{prog} failed with status {status}"
            os.write(out, plugin_line(f"UNKNOWN: {why}").encode("utf-8", "backslashreplace") + b"\n")
            status = UNKNOWN
    except OSError:  # no reader, a full disk: the status tells
        status = UNKNOWN
    finally:
        os.close(out)
    return status


class _Said:
    """Standard error, the first error line written to it kept (without `prefix`)."""

    def __init__(self, stream, prefix):
        self.stream, self.prefix, self.error = stream, prefix, None

    def write(self, text):
        if self.error is None:
            self.error = next((line[len(self.prefix):] for line in text.splitlines()
                               if line.startswith(self.prefix)), None)
        return self.stream.write(text)

    def __getattr__(self, name):  # flush, fileno...: the stream's
        return getattr(self.stream, name)


def output(rows, max_age, warn_age, max_lines=MAX_LINES, max_bytes=MAX_BYTES):
    """The lines to print for `rows`, [(status text, None or (database, age of its
    newest backup in seconds or None, its backups))], the first the status text:
    all of them when they fit in `max_lines` lines and `max_bytes` bytes (newlines
    counted), else the first and as many of the next as fit with a last line
    `... and N more` (N: the lines left out, when there are any). A first line too
    long alone has its text cut to fit, ending ` ...` (_cut): one newer file that
    fails --verify is a note on its line, and a writer of the location can plant
    any number. Only printed rows have performance data, after ` | ` on the first
    line (where every reader of plugins takes it: Nagios, Naemon, Icinga 1 and 2),
    each item whole."""
    texts = [plugin_line(text) for text, _ in rows]
    items = [perfdata(perf, max_age, warn_age) if perf else "" for _, perf in rows]

    def lines(n, first=texts[0]):
        data = " ".join(item for item in items[:n] if item)
        more = [f"... and {len(rows) - n} more"] if n < len(rows) else []
        return [first + (f" | {data}" if data else ""), *texts[1:n], *more]

    def size(printed):
        return sum(len(line.encode("utf-8")) + 1 for line in printed)

    def fits(printed):
        return len(printed) <= max_lines and size(printed) <= max_bytes

    if fits(lines(len(rows))):
        return lines(len(rows))
    kept = 1
    while kept + 1 < len(rows) and fits(lines(kept + 1)):
        kept += 1
    if fits(lines(kept)):
        return lines(kept)
    room = max_bytes - size(lines(1, first=""))  # what the rest takes: newlines, performance data, `... and N more`
    if room < len("x ...") and items[0]:  # the first database's performance data, whole, leaves no room: none
        items[0] = ""
        room = max_bytes - size(lines(1, first=""))
    return lines(1, first=_cut(texts[0], room))


def _cut(line, limit):
    """`line` in at most `limit` bytes of UTF-8: as it is, else its start and ` ...`
    (cut between characters)."""
    data = line.encode("utf-8")
    if len(data) <= limit:
        return line
    return data[: max(limit - 4, 0)].decode("utf-8", "ignore") + " ..."


def perfdata(perf, max_age, warn_age):
    """A database's performance data, as the guidelines write it
    ('label'=value[UOM];[warn];[crit];[min];[max]): the age of its newest backup,
    in seconds (U when it has none), with --warn-age and --max-age as its
    thresholds; and how many backups it has, as check counts them from their
    names and headers."""
    database, age, count = perf
    shown = "U" if age is None else f"{age}s"
    warn = "" if warn_age is None else _seconds(warn_age)
    return f"{label(database, 'age')}={shown};{warn};{_seconds(max_age)};0 {label(database, 'backups')}={count};;;0"


def label(database, what):
    """`database`'s label for `what`, quoted: printable, as check's lines show the
    name (one line, a backslash doubled, so no two names show alike), and its `|`
    (Nagios' start of performance data) and `=` (where Icinga 2 and PNP4Nagios end a
    label, quoted or not) as \\x7c and \\x3d; a quote doubled, as the guidelines say."""
    text = printable(database).replace("|", "\\x7c").replace("=", "\\x3d").replace("'", "''")
    return f"'{text}_{what}'"


def _seconds(hours):
    """`hours` (a number of --max-age's form) in seconds, with no exponent: 3600, 5400, 0.36."""
    return f"{hours * 3600:.3f}".rstrip("0").rstrip(".")
