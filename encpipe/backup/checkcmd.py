"""encpipe-check's run, once its options are read (cli.COMMANDS): its keys for
--verify, the metrics file, the listing, and the plugin's lines (metrics.check)."""

from datetime import datetime, timezone

from .. import commands
from ..shown import plugin_line
from ..errors import EncpipeError, NoKeyConfigured, UsageError
from ..keyargs import refuse_shared_stdin, secret_fds_open
from ..keyplace import refuse_replaceable
from ..textform import shown_name, shown_value
from ..workers import decimal_number
from . import metrics
from .deadline import Deadline
from .listing import older_than_its_name, owned_elsewhere, scan
from .plugin import UNKNOWN, output
from .retention import OK, RENAMED, UNAUTHENTICATED, UNAUTHENTICATED_REASON, archived_earlier, refused_by_run
from .storage import open_location
from .verify import KeyRing, internal_error, is_labelled, standing, verify_entry

KEY_OPTIONS = ("--key-file", "--key-command", "--identity", "--passphrase-file", "--passphrase-fd",
               "--passphrase-command", "--passphrase", "--signer", "--signer-file")


MAX_AGE = 1000000  # days or hours: --max-age (prune's too), --warn-age


def number(text, option):
    value = decimal_number(text)
    if value is None or value > MAX_AGE:
        raise UsageError(f"{option} must be a number from 0 to {MAX_AGE}, not {shown_value(text)}")
    return value


def command(args, io, where):
    """check, its options read; `where`: the location."""
    max_age = number(args["--max-age"], "--max-age")
    warn = None if args["--warn-age"] is None else number(args["--warn-age"], "--warn-age")
    if warn is not None and warn >= max_age:  # critical first (metrics.check): the warning would never come
        raise UsageError(f"--warn-age must be below --max-age ({args['--max-age']} hours), not '{args['--warn-age']}':"
                         " else no warning comes before the critical")
    seconds = decimal_number(args["--timeout"] or "")
    if not seconds or seconds > MAX_AGE:
        raise UsageError(f"--timeout must be a number of seconds above 0, at most {MAX_AGE}, "
                         f"not {shown_value(args['--timeout'])}")
    return run(args, io, where, max_age, warn, Deadline(seconds))


def run(args, io, where, max_age, warn, deadline=None):
    """The plugin's lines on io; its status (0, 1, 2). `where`: the location. A bug is
    CRITICAL too: its traceback would exit 1, which the plugin's reader takes for a
    WARNING (a name dated year 1 once made check say so, whatever the backups' age),
    and an OSError went on to the handler of a failing standard output (74)."""
    deadline = deadline or Deadline(float(args["--timeout"]))  # its default, 50
    try:
        status, rows = deadline.run(lambda: _run(args, io, where, max_age, warn, deadline))
    except EncpipeError:  # a usage error (UNKNOWN)
        raise
    except Exception as e:
        status, rows = 2, [(f"CRITICAL: {internal_error(e)}", None)]
    for line in output(rows, max_age, warn):  # outside the `try`: standard output that fails is 74 (141)
        io.print(line)
    return status


def unknown(io, message):
    """A usage error of check's, once said on standard error: UNKNOWN, with one
    line on standard output. Nagios reads the status and standard output only:
    64 and nothing there was "return code of 64 is out of bounds" and "(No
    output on stdout)"."""
    io.print(plugin_line(f"UNKNOWN: {message}"))
    return UNKNOWN


def _run(args, io, where, max_age, warn, deadline):
    """(status, [(a line's text, its database's performance data or None)]: plugin.output)."""
    given = [option for option in KEY_OPTIONS if args[option]]
    if given and not args["--verify"]:
        raise UsageError(f"{given[0]} is read only with --verify: without it, check reads names and headers only")
    deadline.doing = "reading the keys"
    try:
        keys = _check_keys(args, io) if args["--verify"] else None
    except NoKeyConfigured:
        return 2, [("CRITICAL: --verify needs a key: give the key options encpipe-verify takes, or set ENCPIPE_KEY",
                    None)]
    except UsageError:
        raise
    except EncpipeError as e:  # a key that cannot be read: as a metrics file that cannot, critical
        return 2, [(f"CRITICAL: cannot load the keys for --verify: {e}", None)]
    deadline.doing = f"reading the metrics file {args['--metrics-file']}"
    try:
        samples = metrics.read(args["--metrics-file"], trusted_place=True) if args["--metrics-file"] else {}
    except EncpipeError as e:  # a monitor that cannot read what it watches says so
        return 2, [(f"CRITICAL: cannot read the metrics file: {e}", None)]
    shown = shown_name(where, what="DIR")  # a key typed as the location is not shown
    deadline.doing = f"reading {shown}"
    store = None
    try:
        store = open_location(where, io.env)
        entries = scan(store)
    except Exception as e:  # an unreadable target is itself critical
        # the location named once: a remote's error names it already (as rclone is given it, without a
        # trailing /), a directory's as "cannot read backup directory"
        said = next((str(e)[len(p):] for named in (shown, getattr(store, "location", shown))
                     for p in (f"cannot list {named}: ", f"cannot read backup directory {named}: ")
                     if str(e).startswith(p)), str(e))
        return 2, [(f"CRITICAL: cannot list {shown}: {said}", None)]
    count_unauthenticated = args["--count-unauthenticated"]
    authenticate = None if keys is None else _authenticator(store, keys, commands.threads(args), count_unauthenticated,
                                                            entries)
    deadline.doing = f"authenticating the backups in {shown}"
    return metrics.check(entries, args["--database"], samples, datetime.now(timezone.utc), max_age, warn,
                         count_unauthenticated=count_unauthenticated, authenticate=authenticate,
                         trusted=None if authenticate else store.trusted_owners())


def _check_keys(args, io):
    secret_fds_open(args)  # before any file is opened, as for the other commands
    refuse_shared_stdin(args)
    refuse_replaceable(args, allow_shared=args["--allow-shared-dir"])  # a key another user could replace: critical
    keys = KeyRing.from_args(args, io)
    keys.encpipe()  # check counts sealed files only: the previous tool's key alone is no key here
    return keys


def _authenticator(store, keys, workers, count_unauthenticated, entries=()):
    """entry -> (None when it counts as a good backup by prune's rule, else why not;
    whether it is a labelled dump: True, False, or None when not known; with a why, None
    unless the dump authenticated and its run's globals file alone refuses it). As for prune,
    a dump does not count when its run's globals file, among `entries`, is one a restore
    refuses (retention.refused_by_run): it is read too."""
    trusted = store.trusted_owners()
    runs = {(e.database, e.created): e for e in entries
            if e.naming == "encpipe" and e.dump_format == "globals" and not e.item.link}
    results = {}  # each file verified once, by id: the walk reads again those an archive was compared with

    def verified(entry):
        if id(entry) not in results:
            results[id(entry)] = verify_entry(store, entry, keys, workers)
        return results[id(entry)]

    def run_refused(entry):
        found = runs.get((entry.database, entry.created))
        if found is None:
            return None
        state = RENAMED if older_than_its_name(found) else standing(verified(found), count_unauthenticated)
        return refused_by_run(found.filename, state)

    def archived_later(entry):
        """For an archive: why it does not count when one of its series named before it
        that authenticates was made later (retention.archived_earlier, as prune judges):
        each one named before it is verified."""
        older = [e for e in entries if e.naming == "encpipe" and e.series == entry.series and not e.item.link
                 and e.status == "sealed" and e.created < entry.created]
        counted = [(e.filename, e.created, e.archived) for e in older
                   if standing(verified(e), count_unauthenticated) == OK]
        return archived_earlier(entry.created, entry.archived, counted)

    def authenticate(entry):
        result = verified(entry)
        state = standing(result, count_unauthenticated)
        labelled = is_labelled(entry, result)
        if state == OK:
            why = owned_elsewhere(entry, result["label"], trusted)
            refused = None if why else run_refused(entry)
            if refused:  # its own label authenticated: it still dates its series' labels (labelled)
                return refused, labelled
            why = why or (trusted is None and entry.archived and archived_later(entry))  # a remote: no owner says
            return (why, None) if why else (None, labelled)
        return (UNAUTHENTICATED_REASON if state == UNAUTHENTICATED else result["error"] or "not verified"), None
    return authenticate
