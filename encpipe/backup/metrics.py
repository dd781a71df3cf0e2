"""A node_exporter textfile (Prometheus text format) of backup runs, per database.

One file may be shared by the backups of several databases: each run rewrites
its own database's samples and keeps the others', under a lock, and replaces the
file atomically (node_exporter never reads half a file).
"""

import fcntl
import math
import os
import re
import stat
from contextlib import contextmanager

from ..errors import InputUnavailable, InvalidStream, IOFailure, UnsafeDirectory
from ..lazyre import Pattern
from ..safefile import open_source, write_atomically
from ..writers import first_other_writer, other_writer, way_writer
from .listing import copies, older_than_its_name, user_name
from .retention import LATE_UNLABELLED_REASON, named_late

MAX_BYTES = 4 << 20  # about 8000 databases' samples

METRICS = {
    "encpipe_backup_last_success_timestamp_seconds": "Unix time the last successful backup finished.",
    "encpipe_backup_last_attempt_timestamp_seconds": "Unix time the last backup attempt finished.",
    "encpipe_backup_last_attempt_success": "1 if the last backup attempt succeeded, else 0.",
    "encpipe_backup_last_duration_seconds": "How long the last backup attempt took.",
    "encpipe_backup_last_size_bytes": "Size of the last successful backup, sealed.",
}
_SAMPLE = Pattern(r'^(?P<metric>[a-z_]+)\{database="(?P<db>(?:[^"\\]|\\.)*)"\} (?P<value>\S+)$')
# Any line of Prometheus' text format: a HELP or TYPE comment, or a sample with a
# number. A file with none is something else (a key file named by mistake): never replaced.
_TEXT_FORMAT_LINE = Pattern(rb'^(?:# (?:HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* |[a-zA-Z_:][a-zA-Z0-9_:]*(?:\{.*\})? '
                          rb'(?:[-+]?[0-9.]+(?:[eE][-+]?[0-9]+)?|NaN|[-+]Inf)(?: -?[0-9]+)?$)', re.M)


def label(database):
    """A database name as its label value: UTF-8 always (a name with bytes that are
    not, as os.fsdecode gives them, has them as the text \\xNN), so that the file
    stays one that node_exporter accepts, and the same name the same label."""
    return database.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _escape(text):
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _unescape(text):
    return re.sub(r"\\(.)", lambda m: "\n" if m[1] == "n" else m[1], text)


def read(path, lenient=False, trusted_place=False):
    """{database: {metric: value}} from a file this module wrote; {} if there is none.
    A file that is not a regular file (a FIFO, a link), over MAX_BYTES, not UTF-8
    or with a sample that is not a number is an error (66, 65); `lenient`, for a
    run about to rewrite the file, drops what does not parse instead, but refuses
    (65) a file with no line of Prometheus' text format at all: not a metrics file. With
    `trusted_place` (check), so is a file another user could have written
    (refuse_shared: 73), and a file that is not there where another user could
    have removed it. One that cannot be looked up (a directory on the way the caller
    cannot search) cannot be read (66): taken for one not there, check said OK after
    a failed attempt."""
    try:
        there = bool(os.lstat(path))
    except FileNotFoundError:
        there = False
    except OSError as e:
        raise InputUnavailable(f"cannot read {path}: {e.strerror or e}") from None
    if not there:
        if trusted_place:
            refuse_shared(path, None)
        return {}
    src, info = open_source(path)
    with src:
        if trusted_place:
            refuse_shared(path, info)
        try:
            data = src.read(MAX_BYTES + 1)
        except OSError as e:  # an I/O error: the file's, not a failing standard output's (74)
            raise InputUnavailable(f"cannot read {path}: {e.strerror or e}") from None
    if lenient and _not_metrics(data[:MAX_BYTES]):
        raise InvalidStream(f"{path} holds no line of Prometheus' text format (not a metrics file?); not replaced")
    if len(data) > MAX_BYTES:  # a run's too: before, it was rewritten with this run's samples alone
        raise InvalidStream(f"{path} is over {MAX_BYTES >> 20} MiB: not a metrics file of encpipe-backup"
                            + ("; not replaced" if lenient else ""))
    try:
        text = data.decode("utf-8", "replace" if lenient else "strict")
    except UnicodeDecodeError:
        raise InvalidStream(f"{path} is not UTF-8 text") from None
    samples = {}
    # lines end at "\n" only, as in Prometheus' text format: a label holds CR, NEL or
    # U+2028 as they are, and splitlines() cut a run's own sample of such a name in two
    for number, line in enumerate(text.split("\n"), 1):
        match = _SAMPLE.match(line)
        if match and match["metric"] in METRICS:
            try:
                value = float(match["value"])
            except ValueError:
                if lenient:
                    continue
                value = match["value"] if len(match["value"]) <= 32 else match["value"][:32] + "..."  # not 4 MiB
                raise InvalidStream(f"{path}, line {number}: not a number: '{value}'") from None
            samples.setdefault(_unescape(match["db"]), {})[match["metric"]] = value
    if trusted_place and not samples and _not_metrics(data):
        # check's, after what the file's size, its text and its samples say: a --metrics-file naming
        # another file (a key file, say) was read as no samples, and a failed attempt never showed
        raise InvalidStream(f"{path} holds no line of Prometheus' text format (not a metrics file?)")
    return samples


def _not_metrics(data):
    """True for bytes with something in them and no line of Prometheus' text format."""
    return bool(data.strip()) and not _TEXT_FORMAT_LINE.search(data)


def refuse_shared(path, info):
    """UnsafeDirectory when a user other than root, the caller and the metrics
    file's owner (`info`, its fstat; when it is not there, its directory's owner)
    can write the file at `path`, its directory (sticky or not: there such a user
    could have made the file before any backup ran) or a directory above (a sticky
    one excepted): that user could hide a failed attempt. encpipe-backup writes
    it only in a directory no other user than it and root can write (73)."""
    directory, link = way_writer(path, {0, os.geteuid()} if info is None else {0, os.geteuid(), info.st_uid},
                                 directory_only=True)
    owner = info.st_uid if info is not None else _owner_of(directory)
    trusted = {0, os.geteuid(), owner}
    writer = info is not None and other_writer(info, trusted, sticky_ok=False, where=path)
    found = (path, writer) if writer else link or first_other_writer(directory, trusted, sticky_here=False,
                                                                      missing_ok=info is None)
    if found:
        raise UnsafeDirectory(f"{found[0]} can be written by {found[1]}, who could hide a failed backup")


def refuse_place(path):
    """UnsafeDirectory (73) when a user other than the caller and root can write the
    directory of the metrics file at `path`, sticky or not, or one above it (a
    sticky one excepted): encpipe-check would not read it there (refuse_shared),
    and in a sticky one such as /tmp another user could have made it first."""
    directory, link = way_writer(path, directory_only=True)
    found = link or first_other_writer(directory, sticky_here=False)
    if found:
        raise UnsafeDirectory(f"{found[0]} can be written by {found[1]}, who could hide a failed backup: "
                              "encpipe-check would not read the metrics file there",
                              hint="write it in a directory that only the backups' user and root can write")


def _owner_of(directory):
    """The owner of `directory`, else of the first directory above it that is there."""
    current = os.path.realpath(directory)
    while True:
        try:
            return os.stat(current).st_uid
        except FileNotFoundError:
            current = os.path.dirname(current)  # "/" is there
        except OSError as e:
            raise IOFailure(f"cannot examine {current}: {e.strerror or e}") from None


def render(samples):
    out = []
    for metric, help_text in METRICS.items():
        out += [f"# HELP {metric} {help_text}", f"# TYPE {metric} gauge"]
        for database in sorted(samples):
            if metric in samples[database]:
                out.append(f'{metric}{{database="{_escape(database)}"}} {_number(samples[database][metric])}')
    return "\n".join(out) + "\n"


def _number(value):
    """A sample's value as Python's shortest form gives it back (0.136, not
    0.13600000000000001), a whole number without ".0"."""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def record(path, database, *, ok, finished, duration, size=None, committed=None):
    """Write one attempt of `database`, ended at Unix time `finished` after `duration` s
    (job._duration), into the textfile at `path`; `committed()` runs once it is renamed into place
    (write_atomically), before a signal can."""
    refuse_place(path)  # before making the lock in it
    with _locked(f"{path}.lock"):
        samples = read(path, lenient=True)
        mine = samples.setdefault(label(database), {})
        mine["encpipe_backup_last_attempt_timestamp_seconds"] = round(finished, 3)
        mine["encpipe_backup_last_attempt_success"] = 1 if ok else 0
        mine["encpipe_backup_last_duration_seconds"] = round(duration, 3)
        if ok:
            mine["encpipe_backup_last_success_timestamp_seconds"] = round(finished, 3)
            if size is None:  # stored, but it could not be read back: no size rather than an old one
                mine.pop("encpipe_backup_last_size_bytes", None)
            else:
                mine["encpipe_backup_last_size_bytes"] = size
        text = render(samples).encode("utf-8")
        if len(text) > MAX_BYTES:  # encpipe-check would not read it (CRITICAL), nor the next run
            raise InvalidStream(f"{path} would be over {MAX_BYTES >> 20} MiB with {len(samples)} databases' samples, "
                                "more than encpipe-check reads; not replaced",
                                hint="give each database, or each group of them, a metrics file of its own")
        # node_exporter's user reads it; write_atomically sets the mode whatever the umask
        write_atomically(path, lambda dst: dst.write(text), mode=0o644, committed=committed)
    return samples


@contextmanager
def _locked(path):
    """An exclusive flock on the lock file `path`, made if need be; never through a
    link, never a FIFO (opening one would block). Its owner's only (0600): flock
    needs no write access, so any user who could open it could hold it for ever."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise IOFailure(f"cannot open {path}: {e.strerror or e}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise IOFailure(f"{path} is not a regular file")
        if info.st_uid == os.geteuid() and info.st_mode & 0o077:  # made by an earlier version
            os.fchmod(fd, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def check(entries, required, metrics, now, max_age, warn_age, count_unauthenticated=False, authenticate=None,
          trusted=None):
    """(status, rows): Nagios 0 ok, 1 warning, 2 critical, one row per database, the
    worst first (Nagios shows the first line as the status text), by name within a
    status: (its line, (database, the age of its newest backup in whole seconds or
    None, how many backups it has: the files that count by their headers)).

    Critical: no authentic-looking backup (sealed, dated in the past, neither a
    link nor a copy of another file there, and, unless `count_unauthenticated`,
    with a header that can authenticate its maker: not v1, not only x25519 slots
    unsigned) younger than max_age. Warning: the newest is older than warn_age,
    the newest file under a backup name is not such a file, or the last attempt
    (metrics) failed. Headers only, which anyone who can write the location can
    make claim a raw-key slot or a signature of their own; with `authenticate`
    (entry -> (None when it authenticates, else why not; whether it is a
    labelled dump)), a database's newest backup is the newest such file that
    authenticates and is not an unlabelled dump named later than a labelled one
    of its series, and each newer one is a warning, never counted. `trusted`: without
    `authenticate`, the users whose files count by their header (a local location's
    trusted_owners(); None: anyone's)."""
    names = {e.database for e in entries if e.naming == "encpipe"} | set(required)
    databases = sorted(names | (set(metrics) - {label(name) for name in names}))
    copied = copies(entries)
    dumps = {}  # each database's dumps dated in the past, in listed order: one pass over the files
    for e in entries:
        if e.naming == "encpipe" and e.dump_format != "globals" and e.created <= now:
            dumps.setdefault(e.database, []).append(e)
    worst, lines = 0, []
    for database in databases:
        mine = dumps.get(database, [])
        sealed = [e for e in mine if _what(e, copied, count_unauthenticated, trusted) == "sealed"]
        duplicates = [e for e in mine if e.status == "sealed" and not e.item.link and e.filename in copied]
        newest, failed = _newest(sealed, authenticate, duplicates)
        age = None if newest is None else (now - newest.created).total_seconds() / 3600
        status, notes, over = 0, [], ""
        if newest is None or age > max_age:
            status, over = 2, f", over --max-age {max_age:g} h"
        elif warn_age is not None and age > warn_age:
            status, over = 1, f", over --warn-age {warn_age:g} h"
        latest = max(mine, key=lambda e: (e.created, e.filename), default=None)
        what = None if latest is None else _what(latest, copied, count_unauthenticated, trusted)
        if what not in (None, "sealed"):
            status = max(status, 1)
            notes.append(f"newest file {latest.filename} is {what}")
        for entry, why in failed:
            status = max(status, 1)
            which = "newest file" if entry is latest else "file"
            notes.append(f"{which} {entry.filename} failed authentication: {why}")
        recorded = metrics.get(label(database), {})
        failed_at = recorded.get("encpipe_backup_last_attempt_timestamp_seconds")
        # a backup made since (by a run without --metrics-file, by hand) that counts: the failure is past
        # (before, it warned until the next recorded run, whatever backup came after it)
        if recorded.get("encpipe_backup_last_attempt_success") == 0 and not (
                newest is not None and failed_at is not None and newest.created.timestamp() > failed_at):
            status = max(status, 1)
            notes.append("the last backup attempt failed")
        said = "no backup" if newest is None else \
            f"newest backup {newest.filename} is {_hours(age, max_age, warn_age)} h old{over}"
        perf = (database, None if newest is None else int((now - newest.created).total_seconds()), len(sealed))
        lines.append((-status, f"{('OK', 'WARNING', 'CRITICAL')[status]}: {database}: {said}"
                      + "".join(f"; {note}" for note in notes), perf))
        worst = max(worst, status)
    if not databases:
        return 2, [("CRITICAL: no backups found", None)]
    return worst, [(text, perf) for _, text, perf in sorted(lines, key=lambda line: line[0])]  # stable: by name


def _hours(age, *thresholds):
    """`age` (h) to 0.1 h as a line shows it, never reading as a threshold it is under or
    less than one it is over: the nearest 0.1 h, else rounded down or up (more digits for
    thresholds closer than that). Before, an OK line at --max-age 24 read "24.0 h old"."""
    limits = [t for t in thresholds if t is not None and t != age]  # an age at one shows as it
    for digits in range(1, 7):
        scale = 10 ** digits
        for value in (round(age, digits), math.floor(age * scale) / scale, math.ceil(age * scale) / scale):
            if all(value > t if age > t else value < t for t in limits):
                return f"{value:.{digits}f}"
    return repr(age)


def _newest(candidates, authenticate, duplicates=()):
    """(the newest candidate that counts, or None; [(entry, why)] for each newer one
    that does not), newest first. `authenticate`: entry -> (None when it authenticates,
    else why not; whether it is a labelled dump). Reading stops at the first labelled
    dump that authenticates and is newer than every unlabelled one still counted: an
    unlabelled dump named no earlier than a labelled one of its series (read after it,
    newest first) is not counted (retention.LATE_UNLABELLED_REASON), so one counts
    only once every older file of its series has been read. `duplicates`: the database's
    dumps that are copies of another file, never counted, but a labelled one that
    authenticates settles an unlabelled dump as well, its run's globals file refused or
    not, as prune judges (else copying each labelled dump, and tampering with its run's
    globals file, made a series look unlabelled); read only when an unlabelled dump is still counted
    once every candidate was. Without `authenticate`, the newest candidate (the first
    listed of equal dates)."""
    if not authenticate:
        newest = max(candidates, key=lambda e: e.created, default=None)  # max: the first of equal dates
        return newest, []
    failed, counted = [], []  # (walk index, entry, why); (walk index, entry, labelled), newest first
    for index, entry in enumerate(sorted(candidates, key=lambda e: e.created, reverse=True)):  # stable
        why, labelled = authenticate(entry)
        if why is not None:
            failed.append((index, entry, why))
            if labelled:  # refused for its run's globals file only: its label still settles the later unlabelled
                counted = _settled(counted, entry, failed)
            continue
        if labelled is not False:
            counted = _settled(counted, entry, failed)
        counted.append((index, entry, labelled))
        if counted[0][2] is not False:  # labelled: no older file can refuse it, nor anything newer
            break
    for copy in sorted(duplicates, key=lambda e: e.created, reverse=True):  # only once every candidate was read
        if any(c[2] is False and c[1].series == copy.series and named_late(c[1].created, copy.created)
               for c in counted):
            _, labelled = authenticate(copy)
            if labelled:  # its label authenticated: refused for its run's globals file only, it still settles
                counted = _settled(counted, copy, failed)
    if not counted:
        return None, [(e, why) for _, e, why in sorted(failed, key=lambda f: f[0])]
    first, newest, _ = counted[0]
    return newest, [(e, why) for i, e, why in sorted(failed, key=lambda f: f[0]) if i < first]


def _settled(counted, entry, failed):
    """`counted` without the unlabelled dumps of `entry`'s series named no earlier than
    `entry`, a labelled dump that authenticated; each one removed goes to `failed`."""
    late = [c for c in counted
            if c[2] is False and c[1].series == entry.series and named_late(c[1].created, entry.created)]
    failed += [(i, e, LATE_UNLABELLED_REASON) for i, e, _ in late]
    return [c for c in counted if c not in late]


def _what(entry, copied, count_unauthenticated=False, trusted=None):
    """"sealed" for a file that may count as a backup; else what it is."""
    if entry.status != "sealed":
        return entry.status
    if entry.item.link:
        return "a symbolic link"
    if entry.filename in copied:
        return f"the same file as {copied[entry.filename]}"
    if renamed := older_than_its_name(entry):
        return renamed
    if trusted is not None and entry.item.uid is not None and entry.item.uid not in trusted:
        return (f"owned by {user_name(entry.item.uid)} (not the caller, root or the directory's owner): check reads"
                " its header only, which another user makes as they like (--verify reads the file)")
    if not (entry.maker_checkable or count_unauthenticated):
        return UNCHECKABLE
    return "sealed"


UNCHECKABLE = ("not counted: its maker cannot be authenticated (anyone with the public key, or for a v1 file"
               " any slot holder, could have made it; seal with --sign-key, or --count-unauthenticated)")
