"""encpipe-check's run, once its options are read (cli.cmd_check): its keys for
--verify, the metrics file, the listing, and the plugin's lines (metrics.check)."""

from datetime import datetime, timezone

from .. import commands
from ..shown import plugin_line
from ..errors import EncpipeError, NoKeyConfigured, UsageError
from ..keyargs import refuse_shared_stdin, secret_fds_open, shown_name
from ..keyplace import refuse_replaceable
from . import metrics
from .listing import older_than_its_name, owned_elsewhere, scan
from .retention import OK, RENAMED, UNAUTHENTICATED, UNAUTHENTICATED_REASON, refused_by_run
from .storage import open_location
from .verify import KeyRing, internal_error, is_labelled, standing, verify_entry

KEY_OPTIONS = ("--key-file", "--key-command", "--identity", "--passphrase-file", "--passphrase-fd",
               "--passphrase-command", "--passphrase", "--signer", "--signer-file")


def run(args, io, where, max_age, warn):
    """The plugin's lines on io; its status (0, 1, 2). `where`: the location. A bug is
    CRITICAL too: its traceback would exit 1, which the plugin's reader takes for a
    WARNING (a name dated year 1 once made check say so, whatever the backups' age),
    and an OSError went on to the handler of a failing standard output (74)."""
    try:
        status, lines = _run(args, io, where, max_age, warn)
    except EncpipeError:  # a usage error (64)
        raise
    except Exception as e:
        status, lines = 2, [plugin_line(f"CRITICAL: {internal_error(e)}")]
    for line in lines:  # outside the `try`: standard output that fails is 74 (141)
        io.print(line)
    return status


def _run(args, io, where, max_age, warn):
    """(status, the lines to print)."""
    given = [option for option in KEY_OPTIONS if args[option]]
    if given and not args["--verify"]:
        raise UsageError(f"{given[0]} is read only with --verify: without it, check reads names and headers only")
    try:
        keys = _check_keys(args, io) if args["--verify"] else None
    except NoKeyConfigured:
        return 2, ["CRITICAL: --verify needs a key: give the key options encpipe-verify takes, or set ENCPIPE_KEY"]
    except UsageError:
        raise
    except EncpipeError as e:  # a key that cannot be read: as a metrics file that cannot, critical
        return 2, [plugin_line(f"CRITICAL: cannot load the keys for --verify: {e}")]
    try:
        samples = metrics.read(args["--metrics-file"], trusted_place=True) if args["--metrics-file"] else {}
    except EncpipeError as e:  # a monitor that cannot read what it watches says so
        return 2, [plugin_line(f"CRITICAL: cannot read the metrics file: {e}")]
    try:
        store = open_location(where, io.env)
        entries = scan(store)
    except Exception as e:  # an unreadable target is itself critical
        said = f"cannot list {shown_name(where, what='DIR')}: "  # once: a remote's error says it already
        return 2, [plugin_line(f"CRITICAL: {'' if str(e).startswith(said) else said}{e}")]
    count_unauthenticated = args["--count-unauthenticated"]
    authenticate = None if keys is None else _authenticator(store, keys, commands.threads(args), count_unauthenticated,
                                                            entries)
    status, lines = metrics.check(entries, args["--database"], samples, datetime.now(timezone.utc), max_age, warn,
                                  count_unauthenticated=count_unauthenticated, authenticate=authenticate,
                                  trusted=None if authenticate else store.trusted_owners())
    return status, bounded([plugin_line(line) for line in lines])


# The most check prints: Nagios 4 keeps 8 KiB of a plugin's output (its
# MAX_PLUGIN_OUTPUT_LENGTH), and thousands of databases with no backup, one
# line each, went far past it. README, "Monitoring".
MAX_LINES, MAX_BYTES = 100, 4096


def bounded(lines, max_lines=MAX_LINES, max_bytes=MAX_BYTES):
    """`lines` as printed: all of them when they fit in `max_lines` lines and
    `max_bytes` bytes (newlines counted), else the first (cut to fit, ending
    ` ...`, when it alone is too long: one newer file that fails --verify is a
    note on its line, and a writer of the location can plant any number) and as
    many of the next as fit with a last line `... and N more` (N: the lines left
    out, when there are any)."""
    def size(line):
        return len(line.encode("utf-8")) + 1

    if len(lines) <= max_lines and sum(map(size, lines)) <= max_bytes:
        return lines
    rest = len(lines) - 1
    kept = [_cut(lines[0], max_bytes - 1 - (size(f"... and {rest} more") if rest else 0))]
    used = size(kept[0])
    for line in lines[1:]:
        more = size(f"... and {len(lines) - len(kept) - 1} more")  # the last line, this one kept
        if len(kept) + 2 > max_lines or used + size(line) + more > max_bytes:
            break
        kept.append(line)
        used += size(line)
    left = len(lines) - len(kept)
    return kept + ([f"... and {left} more"] if left else [])


def _cut(line, limit):
    """`line` in at most `limit` bytes of UTF-8: as it is, else its start and ` ...`
    (cut between characters)."""
    data = line.encode("utf-8")
    if len(data) <= limit:
        return line
    return data[: limit - 4].decode("utf-8", "ignore") + " ..."


def _check_keys(args, io):
    secret_fds_open(args)  # before any file is opened, as for the other commands
    refuse_shared_stdin(args)
    refuse_replaceable(args, allow_shared=args["--allow-shared-dir"])  # a key another user could replace: critical
    keys = KeyRing.from_args(args, io)
    keys.encpipe()  # check counts sealed files only: the previous tool's key alone is no key here
    return keys


def _authenticator(store, keys, workers, count_unauthenticated, entries=()):
    """entry -> (None when it counts as a good backup by prune's rule, else why not;
    whether it is a labelled dump: True, False, or None when not known). As for prune,
    a dump does not count when its run's globals file, among `entries`, is one a restore
    refuses (retention.refused_by_run): it is read too."""
    trusted = store.trusted_owners()
    runs = {(e.database, e.created): e for e in entries
            if e.naming == "encpipe" and e.dump_format == "globals" and not e.item.link}

    def run_refused(entry):
        found = runs.get((entry.database, entry.created))
        if found is None:
            return None
        state = RENAMED if older_than_its_name(found) else standing(verify_entry(store, found, keys, workers),
                                                                     count_unauthenticated)
        return refused_by_run(found.filename, state)

    def authenticate(entry):
        result = verify_entry(store, entry, keys, workers)
        state = standing(result, count_unauthenticated)
        labelled = is_labelled(entry, result)
        if state == OK:
            why = owned_elsewhere(entry, result["label"], trusted) or run_refused(entry)
            return (why, None) if why else (None, labelled)
        return (UNAUTHENTICATED_REASON if state == UNAUTHENTICATED else result["error"] or "not verified"), labelled
    return authenticate
