"""Options passed through to pg_dump, pg_restore and psql, and those refused.

`encpipe-backup DB -- OPTIONS` hands OPTIONS to pg_dump; `encpipe-restore FILE
DB -- OPTIONS` to pg_restore (custom archives, `pg_restore -f -`, whose SQL psql
runs) or psql (plain dumps). They are read as the tool reads them (getopt_long:
bundles, values, long options by any unambiguous prefix); one that cannot be read
so (unknown, ambiguous, its value missing) is refused, exit 64, naming it, and so
is an option that would break the pipeline (write elsewhere, read a directory,
connect elsewhere, run in parallel from a pipe), one that would dump part of the
database only (_PART: encpipe-backup names and retention counts every file as a
backup of the whole database), and an argument that is not an
option (pg_dump would dump that database under DBNAME's name, pg_restore restore
that file instead of the authenticated backup, psql take it for the database or
the user). A plain dump's psql takes only what it needs (_PSQL_TAKES): its other
options change how it reads the dump or what it echoes, and a restore needs none.

A refused argument is named with the password of a libpq connection string in
it masked (`postgresql://user:***@host`, `password=***`): the line goes to
the journal or cron's mail.
"""

import os
import re
import stat

from .errors import UsageError
from .lazyre import Pattern
from .textform import secret_kind

# The password of a connection string: a URI's `user:PASSWORD@`, a `password=` keyword
# (quoted or not) of a key/value string or a URI's query, and `sslpassword=` (the
# passphrase of the client's SSL key) alike. As libpq reads them: a URI's user and
# password run to an `@` before any `/`, `?` and `#` in them included (to its last such
# `@`: a password with an `@` not %-encoded is masked whole, not cut at it; one with a `/`,
# which libpq then reads as no password, is masked to the `@` after it all the same); a URI
# query's value to the next `&`; a key/value string's unquoted value to a space not
# escaped by a backslash (`&` included).
_PASSWORD = Pattern(r"(?P<uri>postgres(?:ql)?://[^:/@]*:)(?:[^/]*(?=@)|[^@]*(?=@))"
                    r"|(?P<query>[?&](?:ssl)?password=)[^&]*"
                    r"|(?P<keyword>(?<![?&\w])(?:ssl)?password\s*=\s*)(?:'(?:[^'\\]|\\.)*'?|(?:\\.|[^\s\\])*\\?)",
                    re.I)

# Every option of pg_dump, pg_restore and psql 15 to 18, as their getopt_long tables
# have them: the short ones (a letter before ":" takes a value), then the long ones,
# "name/X" the long form of -X, "name=" a long-only one that takes a value. -V and -?
# are there to be named when refused.
_OPTIONS = {
    "pg_dump": ("abBcCd:e:E:f:F:h:j:n:N:Op:RsS:t:T:U:vVwWxZ:?",
                "data-only/a blobs/b large-objects/b no-blobs/B no-large-objects/B clean/c create/C dbname/d "
                "extension/e file/f format/F host/h jobs/j no-reconnect/R no-owner/O port/p schema/n "
                "exclude-schema/N schema-only/s superuser/S table/t exclude-table/T no-password/w password/W "
                "username/U verbose/v no-privileges/x no-acl/x compress/Z encoding/E help/? version/V "
                "attribute-inserts binary-upgrade column-inserts disable-dollar-quoting disable-triggers "
                "enable-row-security exclude-table-data= extra-float-digits= if-exists inserts lock-wait-timeout= "
                "no-table-access-method no-tablespaces quote-all-identifiers load-via-partition-root role= section= "
                "serializable-deferrable snapshot= statistics statistics-only strict-names "
                "use-set-session-authorization no-comments no-data no-policies no-publications no-schema "
                "no-security-labels no-statistics no-subscriptions no-toast-compression no-unlogged-table-data "
                "no-sync on-conflict-do-nothing rows-per-insert= include-foreign-data= table-and-children= "
                "exclude-table-and-children= exclude-table-data-and-children= sync-method= filter= "
                "exclude-extension= sequence-data restrict-key="),
    "pg_restore": ("acCd:ef:F:h:I:j:lL:n:N:Op:P:RsS:t:T:U:vVwWx1?",
                   "clean/c create/C data-only/a dbname/d exit-on-error/e exclude-schema/N file/f format/F "
                   "function/P host/h index/I jobs/j list/l no-privileges/x no-acl/x no-owner/O no-reconnect/R "
                   "port/p no-password/w password/W schema/n schema-only/s superuser/S table/t trigger/T "
                   "use-list/L username/U verbose/v single-transaction/1 help/? version/V disable-triggers "
                   "enable-row-security if-exists no-data-for-failed-tables no-table-access-method no-tablespaces "
                   "role= section= strict-names transaction-size= use-set-session-authorization no-comments "
                   "no-data no-policies no-publications no-schema no-security-labels no-subscriptions "
                   "no-statistics statistics statistics-only filter= restrict-key="),
    "psql": ("aAbc:d:eEf:F:h:HlL:no:p:P:qR:sStT:U:v:VwWxXz?01",
             "echo-all/a no-align/A command/c dbname/d echo-queries/e echo-errors/b echo-hidden/E file/f "
             "field-separator/F field-separator-zero/z host/h html/H list/l log-file/L no-readline/n "
             "single-transaction/1 output/o port/p pset/P quiet/q record-separator/R record-separator-zero/0 "
             "single-step/s single-line/S tuples-only/t table-attr/T username/U set/v variable/v version/V "
             "no-password/w password/W expanded/x no-psqlrc/X help/? csv"),
}


def _tables(short, longs):
    """({letter: takes a value}, {long name: (what it is, takes a value)}): what an
    option is, its letter, or its own name for a long-only one."""
    letters = {letter: short[i + 1:i + 2] == ":" for i, letter in enumerate(short) if letter != ":"}
    table = {}
    for word in longs.split():
        name, _, letter = word.partition("/")
        table[name.rstrip("=")] = (letter, letters[letter]) if letter else (name.rstrip("="), name.endswith("="))
    return letters, table


_TABLES = {tool: _tables(*spec) for tool, spec in _OPTIONS.items()}
_USE_ENVIRONMENT = "connect with PGHOST, PGPORT and PGUSER instead, for every step alike"
_CONNECT = {
    "h": ("host", _USE_ENVIRONMENT),
    "p": ("port", _USE_ENVIRONMENT),
    "U": ("username", _USE_ENVIRONMENT),
    "V": ("version", "it prints a version instead of working"),
    "?": ("help", "it prints help instead of working"),
}
# pg_restore writes the archive's SQL (-f -) and psql runs it: pg_restore reaches no server.
_SCRIPT = ("pg_restore only writes the archive's SQL, and psql runs it, connecting as every step does "
           "(give the password with PGPASSWORD or ~/.pgpass)")
# pg_dump's selections of part of the database; its exclusions (-T, -N, --exclude-*,
# -B, --no-owner...) stay: what every backup of the database leaves out.
_PART = ("a dump of part of a database is not a backup of it (retention would count it as the newest, and a "
         "restore of it gives that part only)")
_PART_HINT = "make it with `pg_dump ... | encpipe seal` into a file outside the backup locations"
_PARTS = ("t", "n", "a", "s", "e", "table-and-children", "section", "filter",  # --filter: include lines too
          "no-data", "no-schema", "statistics-only",  # pg_dump 18's -s and -a, and its statistics alone
          "enable-row-security")  # the rows the role's policies show: else pg_dump fails where it sees not all
_REFUSED = {
    "pg_dump": {
        **{what: (None, _PART) for what in _PARTS},
        "f": ("file", "the dump goes to encpipe seal"),
        "F": ("format", "use encpipe-backup --format plain|custom"),
        "j": ("jobs", "parallel dumps need the directory format, which cannot go through a pipe"),
        "d": ("dbname", "name the database as DBNAME"),
        "W": ("password", "encpipe-backup's clients never ask for a password (give it in PGPASSWORD or a password "
                          "file)"),
        "C": ("create", "the restore creates the database and records its properties itself"),
        "binary-upgrade": (None, "its dump restores only into a server in pg_upgrade's binary upgrade mode, and "
                                 "the backup would never restore"),
        "extra-float-digits": (None, "its dump may hold floating-point values rounded (at 0 or less), as a "
                                     "restore would give them back; pg_dump keeps every digit by itself"),
        "include-foreign-data": (None, "a restore of its dump writes the foreign tables' rows into their foreign "
                                       "servers (one more copy there each time), and fails where those cannot be "
                                       "reached"),
        **_CONNECT,
    },
    "pg_restore": {
        "f": ("file", "the archive's SQL goes to psql, into the database the restore chooses"),
        "d": ("dbname", "the restore chooses the database itself"),
        "F": ("format", "the archive arrives on a pipe, in the custom format"),
        "j": ("jobs", "parallel restores need a seekable archive, not a pipe"),
        "C": ("create", "the restore creates the database itself"),
        "l": ("list", "it lists the archive instead of restoring it"),
        "w": ("no-password", _SCRIPT),
        "W": ("password", _SCRIPT),
        "role": (None, "use encpipe-restore --role ROLE, which connects as that role"),
        "restrict-key": (None, "the restore gives psql a restrict key of its own"),  # no backslash: shown doubled
        "transaction-size": (None, "the archive is restored in one transaction"),
        **_CONNECT,
    },
    # psql: these with their own reason; any other but _PSQL_TAKES with _PSQL_ONLY
    "psql": {
        "f": ("file", "the dump arrives on standard input"),
        "d": ("dbname", "the restore chooses the database itself"),
        "c": ("command", "only the dump is run"),
        "l": ("list", "it lists databases instead of restoring"),
        "o": ("output", "query output is not kept"),
        "L": ("log-file", "it would write the dump's statements, plaintext, to that file"),
        "s": ("single-step", "the restore runs unattended"),
        "W": ("password", "psql reads the dump on its standard input, where, with no terminal, it would read the "
                          "password too: give it with PGPASSWORD or a password file"),
        **_CONNECT,
    },
}
# A plain dump's psql takes these only: the variables that say how much of an error it
# shows, and what the restore gives it anyway (-q, -1, -X, -w).
_PSQL_TAKES = set("q1Xwv")
_PSQL_VARIABLES = ("VERBOSITY", "SHOW_CONTEXT")
_PSQL_ONLY = ("a plain dump's psql takes only -v (--set, --variable) VERBOSITY=... or SHOW_CONTEXT=..., "
              "and -q, -1, -X, -w")
# What a non-option argument would be: never the backup (a restore), never another
# database than DBNAME (pg_dump takes it for the database to dump).
_NOT_AN_OPTION = {
    "pg_dump": "pg_dump would dump that database instead, under DBNAME's name; name the database as DBNAME",
    "pg_restore": "the backup is the only input",
    "psql": "the backup is the only input, and the restore chooses the database and the user",
}


class RefusedOption(ValueError):
    def __init__(self, message, hint=None):
        super().__init__(message)
        self.hint = hint


# A restore loads a dump into a new, empty database, stopping at its first error.
_CLEAN = ("its DROP statements fail in the empty database a restore loads it into, and the backup would never "
          "restore")


def check(tool, args, plain_dump=False):
    """Raises RefusedOption naming the first argument of `args` that `tool` may not get."""
    clean = if_exists = None
    for arg, what, value in options(tool, args):
        clean = clean or (arg if what == "c" else None)
        if_exists = if_exists or what == "if-exists"
        if what == "--":
            raise RefusedOption("%s argument -- is not allowed: %s would take every argument after it for no option "
                                "(psql the restore's own -f)" % (tool, tool))
        if what is None:
            raise RefusedOption("%s argument %s is not an option: %s" % (tool, shown(arg), _NOT_AN_OPTION[tool]))
        if what in _REFUSED[tool]:
            why = _REFUSED[tool][what][1]
            _refuse(tool, arg, what, why, _PART_HINT if why is _PART else None)
        if tool == "pg_dump" and plain_dump and what == "Z":
            _refuse(tool, arg, what, "use encpipe-backup --compress for plain dumps")
        if tool == "pg_restore" and what == "L" and not _regular_or_none(value):
            _refuse(tool, arg, what, "the list must be a regular file (pg_restore -l's output): the archive comes "
                                     "on standard input, and a list read from it took the rest of the archive and "
                                     "restored nothing")
        if tool == "psql" and (what not in _PSQL_TAKES or what == "v" and value.partition("=")[0]
                               not in _PSQL_VARIABLES):
            _refuse(tool, arg, what, _PSQL_ONLY)
    if tool == "pg_dump" and plain_dump and clean and not if_exists:  # pg_dump ignores -c in a custom archive
        _refuse(tool, clean, "c", _CLEAN, "leave it out (a restore needs no DROP), or add --if-exists",
                "without --if-exists in a plain dump")


def options(tool, args):
    """(argument, what option it is, its value or None) for each option in `args` as
    `tool` reads them (getopt_long): a value where the option takes one, whatever it
    looks like (`-t -f` is table "-f"); a long option by any prefix of its name that no
    other option shares (`--for=t` is `--format=t`). ("--", "--", None) for `--`, then
    (argument, None, None) for every one after it, as for one that is not an option. An
    option none of the tools has, an ambiguous prefix and an option left without its
    value are refused: how `tool` would read the arguments after them cannot be told."""
    letters, table = _TABLES[tool]
    args = list(args)
    while args:
        arg = args.pop(0)
        if arg == "--":  # the end of the options: what comes after, the restore's own too, is none
            yield arg, "--", None
            yield from ((rest, None, None) for rest in args)
            return
        if arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
            what, takes = _long(tool, arg, name, table)
            if takes and not eq:
                value = _value(tool, arg, args)
            yield arg, what, value if takes or eq else None
        elif arg.startswith("-") and arg != "-":
            for i, letter in enumerate(arg[1:], 2):
                if letter not in letters:
                    raise RefusedOption("%s option %s is unknown: it is none of the options of %s 15 to 18 (-%s)"
                                        % (tool, shown(arg), tool, letter))
                if letters[letter]:
                    yield arg, letter, arg[i:] or _value(tool, arg, args)
                    break
                yield arg, letter, None
        else:
            yield arg, None, None


def _long(tool, arg, name, table):
    """(what, takes a value) of long option `name`: the one named so, else the only one
    that starts so (aliases of one option, --no-acl and --no-privileges, are one)."""
    if name in table:
        return table[name]
    found = {table[full] for full in table if name and full.startswith(name)}
    if len(found) == 1:
        return found.pop()
    raise RefusedOption("%s option %s is %s" % (tool, shown(arg), "ambiguous: give it in full" if found else
                                                "unknown: it is none of the options of %s 15 to 18" % tool))


def _value(tool, arg, args):
    if not args:  # the tool would take the restore's own next argument (psql's -f) for it
        raise RefusedOption("%s option %s needs a value" % (tool, shown(arg)))
    return args.pop(0)


def given(tool, args):
    """The options `args` hold as `tool` reads them (letters, long-only names); none
    when `tool` cannot read them."""
    try:
        return {what for _, what, _ in options(tool, args)}
    except RefusedOption:
        return set()


_DESCRIPTORS = ("/dev/stdin", "/dev/fd/", "/proc/self/", "/proc/thread-self/")


def _regular_or_none(path):
    """Whether `path` (links followed) is a regular file, or nothing at all (pg_restore says
    so); never a name of a descriptor (/dev/stdin, /dev/fd/N, /proc/self/fd/N): pg_restore's
    descriptors are not the ones this process sees under it (its standard input is the archive)."""
    if ("/" + os.path.abspath(path).lstrip("/")).startswith(_DESCRIPTORS):  # `//dev/./fd/0` and `../dev/stdin` too
        return False
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return True


def _refuse(tool, arg, what, why, hint=None, qualified=None):
    """The refusal of option `what` given as `arg`, which names it both ways (-f, --file);
    `qualified`: when it is not allowed (without another option, say)."""
    letters, table = _TABLES[tool]
    typed = arg[2:].partition("=")[0] if arg.startswith("--") else ""  # the name it was given by, in full
    longs = [name for name in table if table[name][0] == what and name.startswith(typed)][:1]
    names = ", ".join(([] if what not in letters else ["-" + what]) + ["--" + name for name in longs])
    raise RefusedOption("%s option %s (%s) is not allowed%s: %s" % (tool, shown(arg), names,
                                                                    " " + qualified if qualified else "", why), hint)


def shown(arg):
    """`arg` as a message may show it: a connection string's password masked, a key
    pasted as the argument or an option's value (--file=KEY, --set=x=KEY, -ZKEY, x=KEY)
    not shown (before, a key after a second `=` or a dash, or after two dashes, was shown whole)."""
    option, equals, value = arg.partition("=") if arg.startswith("-") else ("", "", arg)
    kind = next(filter(None, map(secret_kind, (value, *value.split("=")[1:]))), None)  # x=KEY too
    if kind:
        return f"{option}{equals}({kind}, not shown)"
    if option[:1] == "-":  # a short option and its value in one word (-KEY, -ZKEY); a long option's name (--KEY)
        kind = secret_kind(option[2:]) or option[1:2] != "-" and secret_kind(option[1:])
        if kind:
            return f"{option[:2]}... ({kind}, not shown)"
    return _PASSWORD.sub(lambda m: (m["uri"] or m["query"] or m["keyword"]) + "***", arg)


def refuse_connection_string(name, source, any_kind=False):
    """UsageError (64) when `name`, given where a database's name belongs (`source`:
    DBNAME, --database, --maintenance-db), is a libpq connection string with a
    password (`host=db1 password=... dbname=shop`, `postgresql://user:PASS@db1/shop`):
    the scripts take a name (pg_dump and psql get it quoted in a connection string of
    the name alone, `dbname='...'`; one given whole to psql's -d, where `ps` shows it to every user), which
    goes into the error lines, the backup's name and the metrics file. Shown masked.
    `any_kind`: any connection string too (is_connection_string), for a name given
    to psql's -d as it is (--maintenance-db), which would read it as one: another
    server, user or options than the run's other clients (PGHOST, PGPORT, PGUSER)."""
    if _PASSWORD.search(name):
        raise UsageError(f"{source} {shown(name)}: a connection string with a password, not a database's name",
                         hint="give the database's name alone; the server in PGHOST, PGPORT and PGUSER, "
                              "the password in PGPASSWORD or a password file (~/.pgpass)")
    if any_kind and is_connection_string(name):
        raise UsageError(f"{source} {shown(name)}: a connection string, not a database's name: give the database's "
                         "name, and the server in PGHOST and PGPORT")


def is_connection_string(dbname):
    """Whether libpq reads `dbname`, given as a client's -d, as a whole connection
    string rather than a database's name: one holding `=`, or starting postgresql://
    or postgres:// (libpq's recognized_connection_string, its prefixes case-sensitive)."""
    return "=" in dbname or dbname.startswith(("postgresql://", "postgres://"))


def restore_tool(filename):
    """The client a backup file's name says it needs: pg_restore for .dump.enc, else psql."""
    return "pg_restore" if filename.endswith(".dump.enc") else "psql"


def verbose(args):
    """Whether psql options `args` set VERBOSITY (-v, --set or --variable) to other than sqlstate."""
    values = [a.rpartition("VERBOSITY=")[2] for a in args if "VERBOSITY=" in a]
    return bool(values) and values[-1] != "sqlstate"
