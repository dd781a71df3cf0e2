USAGE = """encpipe.backup: list, prune, verify and check stored encrypted backups.

Usage:
  python3 -I -m encpipe.backup list [--stats] [--dir DIR | [--] DIR]
  python3 -I -m encpipe.backup prune [--keep-last N] [--keep-daily N] [--keep-weekly N]
               [--keep-monthly N] [--keep N] [--max-age DAYS] [--database DB]...
               [--dry-run] [--count-unauthenticated] [--allow-empty] [--threads N] [--allow-shared-dir]
               [--key-file FILE]... [--key-command CMD]... [--identity FILE]...
               [--passphrase-file FILE]... [--passphrase-fd N]... [--passphrase-command CMD]... [-p]
               [--signer KEY]... [--signer-file FILE]... [--dir DIR | [--] DIR]
  python3 -I -m encpipe.backup verify [--threads N] [--allow-empty] [--allow-shared-dir]
               [--key-file FILE]... [--key-command CMD]... [--identity FILE]...
               [--passphrase-file FILE]... [--passphrase-fd N]... [--passphrase-command CMD]... [-p]
               [--signer KEY]... [--signer-file FILE]... [--dir DIR | [--] PATH...]
  python3 -I -m encpipe.backup check --max-age HOURS [--warn-age HOURS] [-t SECONDS] [--database DB]...
               [--metrics-file FILE] [--count-unauthenticated] [--verify] [--allow-shared-dir]
               [--key-file FILE]... [--key-command CMD]... [--identity FILE]...
               [--passphrase-file FILE]... [--passphrase-fd N]... [--passphrase-command CMD]... [-p]
               [--signer KEY]... [--signer-file FILE]... [--dir DIR | [--] DIR]
  python3 -I -m encpipe.backup (-h | --help)

Run as `python3 -I -m encpipe.backup`, or as encpipe-list, encpipe-prune,
encpipe-verify and encpipe-check. DIR may be a directory or an rclone
REMOTE:PATH (whose objects' headers are read up to 8 at once); PATH a file
in either. Every command but check prints JSON.

Commands:
  list      Describe every file, from its name and its header (and who signed a
            v2 file, from its trailer, not verified); no key needed.
  prune     Remove the backups the policy does not keep (restic forget's rules,
            per database, plain and custom dumps and globals apart; the
            globals file of a dump kept stays with it). Every file
            is authenticated first: one that fails, is dated in the future, is
            a copy of another file there, was last written before the time its
            name says (an older file renamed), is a custom archive or a dump
            with no label owned by a user other than the caller, root and the
            directory's owner (who can set its time), is a dump with no label
            named after a labelled one of its series (an older backup copied),
            or whose maker is not authenticated (see --count-unauthenticated),
            is never counted as kept and never removed. Needs a key.
  verify    Authenticate every chunk of each backup; no plaintext is written.
            In a location, a dump with no label named after a labelled one of
            its series fails (65).
  check     Nagios check: 0 ok, 1 warning, 2 critical, one line per database,
            the worst first, and after " | " on the first line each printed
            database's performance data ('DB_age'=SECONDSs;WARN;CRIT;0
            'DB_backups'=N;;;0); at most 100 lines and 4096 bytes (Nagios 4
            keeps 8 KiB): past that, a first line too long is cut (" ..."),
            and the last line is "... and N more" for N lines left out. From
            names and headers, no key (a local file owned by a user other
            than the caller, root and the directory's owner is not counted).
            Anyone who can write the location can make a header claim a raw
            key or signing key of their own, or made-up key ids: only the
            option --verify (or verify, prune) tells a planted file from a
            backup. Use --verify where a user other than the backups' writer
            can write there.

Options:
  --dir DIR                  The backups; without it and without DIR,
                             $ENCPIPE_BACKUP_DIR, else ./backups.
  --stats                    Add counts, sizes, oldest and newest backup.
  --keep-last N              Keep the N newest backups.
  --keep-daily N             Keep the newest backup of each of the last N days that have one.
  --keep-weekly N            Likewise for ISO weeks.
  --keep-monthly N           Likewise for months.
  --keep N                   The same as --keep-last N.
  --max-age DAYS             Also remove kept backups older than DAYS days (prune);
                             critical when the newest is older than HOURS (check).
  --warn-age HOURS           Warning when the newest backup is older than HOURS,
                             which must be below --max-age's.
  -t SECONDS, --timeout SECONDS  check: critical when the run has not ended
                             after SECONDS (under Nagios' own 60 s), every
                             process it started stopped [default: 50].
  --database DB              prune: only this database's backups. check: expect
                             it too (critical when it has none); it filters
                             nothing: every database there keeps its line.
  --metrics-file FILE        A textfile of encpipe-backup --metrics-file: warn
                             when a database's last attempt failed; critical
                             when FILE is not a regular file or does not parse,
                             or when a user other than root, the caller and
                             FILE's owner can write FILE, its directory (sticky
                             or not) or a directory above (not sticky).
  --dry-run                  Say what would be removed and why; remove nothing.
  --verify                   check: authenticate each database's newest backup,
                             as prune counts one (every chunk; its maker, see
                             --count-unauthenticated; a --signer; a dump with
                             no label only if no labelled one of its series is
                             older; its run's globals file, when there, too):
                             the newest that does is the newest backup, each
                             newer one is a warning. One read of a backup (and
                             its globals file) per database (more past
                             unlabelled ones); needs a key (else critical).
                             Key options need --verify.
  --allow-empty              verify, prune: a location that holds no backup
                             (prune: of the databases given) is fine (else 66).
  --threads N                Worker threads [default: auto].
  --allow-shared-dir         Read a key file (or --signer-file) that a user other
                             than the caller or root could replace: it, its
                             directory or one above can be written by another
                             user (else 73; check --verify: critical). prune:
                             also a DIR such a user could lead elsewhere (a
                             link on the way they could point, a directory
                             above it they can write; else 73).
  --key-file FILE            As for encpipe: keys, one per line.
  --key-command CMD          As for encpipe.
  --identity FILE            As for encpipe.
  --passphrase-file FILE     As for encpipe.
  --passphrase-fd N          As for encpipe.
  --passphrase-command CMD   As for encpipe.
  -p, --passphrase           Prompt for a passphrase on the terminal.
  --signer KEY               Count a file as good only when signed by this verify
                             key (encpipesign1...); else 67 (verify), left (prune),
                             not counted (check --verify).
  --signer-file FILE         As --signer, for each verify key in FILE.
  --count-unauthenticated    Weaker: also count files whose maker is not
                             authenticated (v2 opened only by an x25519
                             identity and signed by no --signer; v1 files;
                             check: sealed to x25519 keys only, unsigned, or
                             v1), which anyone with the public key (or any slot
                             holder of a v1 file) can make: a writer of the
                             backups can then plant newer files that make
                             prune remove the genuine ones. Without it, prune
                             leaves such files (neither kept nor removed, 65)
                             and check does not count them.
  -h, --help                 Show this text.
  Without a key option, ENCPIPE_KEY and ENCPIPE_PASSPHRASE are used; without a
  signer option, the verify keys in ENCPIPE_SIGNER.

Exit status:
  0 success; 64 usage error (check: 3); 66 the location (verify: a PATH) is not there or
  cannot be read (nothing printed).

  verify, prune: 73 a key file another user could replace (nothing printed; see
  the option --allow-shared-dir); 78 no key configured (prune: nothing is removed).

  prune: 66 also when the
  location holds no backup of the databases given (nothing printed; 0 with
  the option --allow-empty), 74 a file could not be removed, 75 a local
  location's lock (flock on the directory, taken as encpipe-backup takes it)
  still held after $ENCPIPE_LOCK_WAIT seconds (nothing removed), 65 a backup
  failed verification, is future-dated, is a copy, is older than its name
  says, is an archive or unlabelled dump another user owns, is unlabelled
  but named after a labelled backup of its series, or its maker is not
  authenticated (left in place, reported under "left").

  verify exits with the encpipe status of the first file that failed (65
  invalid, 66 unreadable: not opened, or its header not read, 67 not signed by
  a trusted signer, 74 an I/O error once its chunks are read, 77
  no supplied key opens it); a file that verifies but whose maker is not
  authenticated is not a failure ("sender_authenticated": false). With no
  failure, a location that holds no backup (nothing, or only files that are
  not backups) is 66, nothing printed, unless --allow-empty.

  check exits 0, 1 or 2 as above (2 also when the location, the metrics file
  or, with --verify, the keys cannot be read, no key is configured, or the
  run times out), and 3 (UNKNOWN) for a usage error, which is also one line
  "UNKNOWN: ..." on standard output; the script encpipe-check exits 3 with that
  line too for a failure of its own (a missing package, an internal error, out
  of memory, a standard output that cannot be written), never 69, 70, 74 or 141.
"""
__doc__ = USAGE  # a plain constant too, so that python -OO keeps the usage text

import os
import re
import sys
from datetime import datetime, timedelta, timezone

from docopt import DocoptExit, docopt

from .. import commands, dirlock
from ..cli import Io, report_errors
from ..errors import InputUnavailable, NoKeyConfigured, UsageError
from ..keyargs import refuse_shared_stdin, secret_fds_open
from ..keyplace import refuse_replaceable
from ..pgopts import refuse_connection_string
from ..shown import printable
from ..stdio import write_quietly
from ..textform import refuse_key_as_database, shown_value
from ..usage_errors import close_matches, first_empty, option_shown
from . import checkcmd, verifycmd
from .listing import Entry, scan, stats
from .prune import prune
from .retention import Policy
from .remotes import refuse_credentials
from .storage import Local, open_location
from . import usagetext
from .usagetext import PROG, RUN, for_docopt, help_asked
from .verify import KeyRing

ENV_BACKUP_DIR = "ENCPIPE_BACKUP_DIR"
DEFAULT_BACKUP_DIR = "./backups"


def location(args, io):
    return args["--dir"] or args.get("DIR") or io.env.get(ENV_BACKUP_DIR) or DEFAULT_BACKUP_DIR


def cmd_list(args, io):
    entries = scan(open_location(location(args, io), io.env), signers=True)
    # each entry's JSON object is made as it is written, never all of them at once
    io.print_json({"backups": entries, "stats": stats(entries)} if args["--stats"] else entries, default=Entry.to_json)
    return 0


def policy_from(args):
    def count(option):
        text = args[option]
        if text is None:
            return None
        if not re.fullmatch(r"[0-9]{1,18}", text):
            raise UsageError(f"{option} must be a whole number from 0, not {shown_value(text)}")
        return int(text)

    last, alias = count("--keep-last"), count("--keep")
    if last is not None and alias is not None:
        raise UsageError("--keep is --keep-last: give one of them")
    policy = Policy(last if alias is None else alias, count("--keep-daily"), count("--keep-weekly"),
                    count("--keep-monthly"), _days(args["--max-age"], "--max-age"))
    if policy.empty():
        raise UsageError("prune needs a policy: --keep-last, --keep-daily, --keep-weekly, --keep-monthly"
                         " or --max-age")
    return policy


def _days(text, option):
    return None if text is None else timedelta(days=checkcmd.number(text, option))


def cmd_prune(args, io):
    policy = policy_from(args)
    store = open_location(location(args, io), io.env)
    wait = dirlock.lock_wait(io.env) if isinstance(store, Local) else None  # 64 before a key is read
    if isinstance(store, Local):  # it removes: judged as the directories encpipe-backup writes in (73)
        store.refuse_led_elsewhere(args["--allow-shared-dir"], "prune")
    try:
        keys = KeyRing.from_args(args, io)
    except NoKeyConfigured:
        raise NoKeyConfigured("no key configured: prune removes nothing it has not authenticated",
                              hint="give the key options encpipe-verify takes, or set ENCPIPE_KEY") from None
    # a local directory: turns taken with encpipe-backup (and its own prune), another prune, rotate and
    # migrate, from before the listing until after the last removal (a dry run too: it says what a run
    # would do then); an rclone remote has no lock
    def said():
        write_quietly(io.stderr, f"{io.prog}: waiting for another run in {printable(store.directory)}\n")

    held = None if wait is None else store.locked(wait, said)
    try:
        report, status = prune(store, policy, keys, commands.threads(args), datetime.now(timezone.utc),
                               databases=args["--database"], dry_run=args["--dry-run"],
                               count_unauthenticated=args["--count-unauthenticated"])
    finally:
        if held is not None:
            os.close(held)
    if not any(report[key] for key in ("removed", "kept", "left", "errors")) and not args["--allow-empty"]:
        # "nothing there" is not "pruned": a timer pruning a location no backup reaches any more says so
        of = f" of {', '.join(args['--database'])}" if args["--database"] else ""
        raise InputUnavailable(f"{location(args, io)}: no backup{of} to prune (--allow-empty accepts that)")
    io.print_json(report)
    for series in report["unprotected"]:
        io.warn(f"{series} has no authenticated backup; none of its files were removed")
    for line in report["left"]:
        io.warn(f"left {line['filename']}: {line['reasons'][0]}")
    for error in report["errors"]:
        io.error(error["error"])
    return status


def usage_message(argv, error, commands):
    """docopt's first line when it says something specific, else which command."""
    first = (str(error).strip().splitlines() or [""])[0]
    if first and not first.startswith(("Usage:", "Warning:")):
        return first
    if not argv:
        return "no command given"
    return f"invalid arguments for {argv[0]}" if argv[0] in commands else f"unknown command '{argv[0]}'"


COMMANDS = {"list": cmd_list, "prune": cmd_prune,
            "verify": lambda args, io: verifycmd.command(args, io, location(args, io)),
            "check": lambda args, io: checkcmd.command(args, io, location(args, io))}


def _usage_lines(name):
    """The usage patterns of command `name`, as one string."""
    patterns = USAGE.split("Usage:\n", 1)[1].split("\n\n", 1)[0]
    return " ".join(p for p in re.split(rf"\n(?=  {RUN} )", patterns) if p.startswith(f"  {RUN} {name} "))


def unknown_option(argv):
    """The message for the first option in `argv` (argv[0] a command) that its
    command does not take, named without the value it carries; else None. The
    value of an option that takes one, given apart, is never taken for an option,
    even one that starts with - (docopt takes it as the value): a --key-file's may
    be a passphrase typed there."""
    accepted = set(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", _usage_lines(argv[0]))) | {"-h", "--help"}
    aliases = re.findall(r"^ +(-\w)(?: [A-Z]+)?, (--[\w-]+)", USAGE, re.M)  # -t, --timeout: either taken
    accepted |= {name for pair in aliases if set(pair) & accepted for name in pair}
    valued = _valued(argv[0], aliases)
    tokens = iter(argv[1:])
    for token in tokens:
        if token == "--":
            break
        name = token.split("=", 1)[0] if token.startswith("--") else token[:2]
        if token.startswith("-") and token != "-" and name not in accepted:
            guess = close_matches(name, sorted(accepted))
            return f"unknown option {option_shown(name)}" + (f"; did you mean {guess[0]}?" if guess else "")
        if name in valued and "=" not in token:
            next(tokens, None)  # its value
    given = {token.split("=", 1)[0] for token in argv[1:]}
    for option, value in re.findall(r"(--[\w-]+) ([A-Z]+)", re.sub(r"\[[^\]]*\]", "", _usage_lines(argv[0]))):
        if option not in given and not given & {"-h", "--help"}:
            return f"{argv[0]} needs {option} {value}"
    return None


def _valued(name, aliases=None):
    """The options of command `name` that take a value (-t's and --timeout's alike)."""
    if aliases is None:
        aliases = re.findall(r"^ +(-\w)(?: [A-Z]+)?, (--[\w-]+)", USAGE, re.M)
    return set(re.findall(r"(--?[\w-]+) [A-Z]", " ".join([_usage_lines(name), *map(" ".join, aliases)])))


def script_help(name):
    """USAGE as encpipe-NAME's own help (usagetext.script_help)."""
    return usagetext.script_help(USAGE, name)


def main(argv=None, *, stdout=None, stderr=None, env=None):
    """Run one command; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    name = argv[0] if argv and argv[0] in COMMANDS else None
    io = Io(None, stdout or sys.stdout.buffer, stderr or sys.stderr, os.environ if env is None else env,
            prog=f"encpipe-{name}" if name else PROG)
    if help_asked(argv, _valued(name) if name else ()):  # its own text, or a script's; an output that cannot be written: one line, 74
        return report_errors(io, lambda: io.print(script_help(name) if name else USAGE) or 0)
    try:
        args = docopt(for_docopt(USAGE), argv=argv, default_help=False)
    except DocoptExit as e:
        return refused(io, name, UsageError((name and unknown_option(argv)) or usage_message(argv, e, COMMANDS),
                                            hint=f"see encpipe-{name} --help" if name else f"see {RUN} --help"))
    empty = first_empty(args)
    if empty:
        return refused(io, name, empty)
    def start():
        try:
            return run(args, io, name)
        except UsageError as e:
            if name != "check":
                raise
            return refused(io, name, e)

    return report_errors(io, start)


def refused(io, name, error):
    """A usage error: its lines on standard error and 64; check's is a plugin's
    UNKNOWN (checkcmd.unknown): 3 and its status text on standard output too."""
    io.error(str(error), hint=error.hint)
    if name != "check":
        return error.exit_code
    return report_errors(io, lambda: checkcmd.unknown(io, str(error)))


def run(args, io, name):
    """The command `name`, its options read."""
    for option in ("--dir", "DIR", "PATH"):  # 64 before anything runs: never a remote with a credential
        for value in args.get(option) if isinstance(args.get(option), list) else [args.get(option)]:
            refuse_credentials(value, option)
    for database in args.get("--database") or []:  # nor a key as a database's name: in stdout, the error line
        refuse_connection_string(database, "--database")  # nor a connection string's password
        refuse_key_as_database(database, "--database")
    refuse_credentials(location(args, io), ENV_BACKUP_DIR)
    if name != "check":  # check --verify says CRITICAL of a key it cannot read (_check_keys)
        secret_fds_open(args)
        refuse_shared_stdin(args)  # two secrets on standard input: 64 before either is read
        refuse_replaceable(args, allow_shared=args.get("--allow-shared-dir"))  # 73 before any is read
    return COMMANDS[name](args, io)
