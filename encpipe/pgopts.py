"""Options passed through to pg_dump, pg_restore and psql, and those refused.

`encpipe-backup DB -- OPTIONS` hands OPTIONS to pg_dump; `encpipe-restore FILE
DB -- OPTIONS` to pg_restore (custom archives, `pg_restore -f -`, whose SQL psql
runs) or psql (plain dumps). An option
that would break the pipeline (write elsewhere, read a directory, connect
elsewhere, run in parallel from a pipe) is refused, exit 64, naming it; so is
an argument that is not an option (pg_dump would dump that database under
DBNAME's name, pg_restore restore that file instead of the authenticated
backup, psql take it for the database or the user).

A refused argument is named with the password of a libpq connection string in
it masked (`postgresql://user:***@host`, `password=***`): the line goes to
the journal or cron's mail.
"""

import re

from .textform import secret_kind

# The password of a connection string: a URI's `user:PASSWORD@`, a `password=` keyword
# (quoted or not) of a key/value string or a URI's query, and `sslpassword=` (the
# passphrase of the client's SSL key) alike.
_PASSWORD = re.compile(r"(?P<uri>postgres(?:ql)?://[^:/@?#]*:)[^/?#]*(?=@)"
                       r"|(?P<keyword>\b(?:ssl)?password\s*=\s*)(?:'(?:[^'\\]|\\.)*'?|[^\s&]*)", re.I)

# Short options that take a value, per tool (bundles like -vf stop at them).
_WITH_VALUE = {
    "pg_dump": set("deEfFhjnNpStTUZ"),
    "pg_restore": set("dfFhIjLnNpPStTU"),
    "psql": set("cdfFhLopPRTUv"),
}
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
_REFUSED = {
    "pg_dump": {
        "f": ("file", "the dump goes to encpipe seal"),
        "F": ("format", "use encpipe-backup --format plain|custom"),
        "j": ("jobs", "parallel dumps need the directory format, which cannot go through a pipe"),
        "d": ("dbname", "name the database as DBNAME"),
        "C": ("create", "the restore creates the database and records its properties itself"),
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
        **_CONNECT,
    },
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
# Long options that take a value (`--schema NAME` as well as `--schema=NAME`), besides the refused ones.
_LONG_WITH_VALUE = {
    "pg_dump": {"schema", "exclude-schema", "table", "exclude-table", "exclude-table-data", "encoding", "superuser",
                "section", "snapshot", "compress", "lock-wait-timeout", "extra-float-digits", "rows-per-insert",
                "include-foreign-data", "extension", "exclude-extension", "filter", "role", "sync-method"},
    "pg_restore": {"index", "use-list", "schema", "exclude-schema", "function", "superuser", "table", "trigger",
                   "section", "role", "restrict-key", "filter", "transaction-size"},
    "psql": {"set", "variable", "field-separator", "pset", "record-separator", "table-attr"},
}
# What a non-option argument would be: never the backup (a restore), never another
# database than DBNAME (pg_dump takes it for the database to dump).
_NOT_AN_OPTION = {
    "pg_dump": "pg_dump would dump that database instead, under DBNAME's name; name the database as DBNAME",
    "pg_restore": "the backup is the only input",
    "psql": "the backup is the only input, and the restore chooses the database and the user",
}
_LONG_ONLY_REFUSED = {
    "pg_restore": {"role": "use encpipe-restore --role ROLE, which connects as that role",
                   "restrict-key": "the restore gives psql a restrict key of its own",  # no backslash: shown doubled
                   "transaction-size": "the archive is restored in one transaction"},
    "psql": {"set": None, "variable": None},
}


class RefusedOption(ValueError):
    pass


def check(tool, args, plain_dump=False):
    """Raises RefusedOption naming the first option of `args` that `tool` may not get."""
    refused = _REFUSED[tool]
    by_long = {long: (short, why) for short, (long, why) in refused.items()}
    for i, arg in enumerate(args):
        if i and _takes_value(tool, args[i - 1]):
            continue  # the value of the option before
        if tool in _NOT_AN_OPTION and (not arg.startswith("-") or arg == "-"):
            raise RefusedOption("%s argument %s is not an option: %s" % (tool, shown(arg), _NOT_AN_OPTION[tool]))
        if arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
            name = _abbreviated(tool, name)
            if not eq and i + 1 < len(args):
                value = args[i + 1]
            if name in by_long:
                _refuse(tool, arg, "-%s, --%s" % (by_long[name][0], name), by_long[name][1])
            if tool == "pg_dump" and plain_dump and name == "compress":
                _refuse(tool, arg, "-Z, --compress", "use encpipe-backup --compress for plain dumps")
            if name in _LONG_ONLY_REFUSED.get(tool, {}):
                why = _LONG_ONLY_REFUSED[tool][name]
                if why or value.upper().startswith("ON_ERROR_STOP"):
                    _refuse(tool, arg, "--" + name, why or "the restore must stop at the first error")
        elif arg.startswith("-") and len(arg) > 1:
            _check_short(tool, arg, args[i + 1] if i + 1 < len(args) else "", refused, plain_dump)


def _abbreviated(tool, name):
    """The refused long option `name` stands for: the tools take any unambiguous prefix
    of a long option for it (getopt_long), `--for=t` for `--format=t`. A prefix of
    several is ambiguous, which the tool refuses itself; none of the tools has an
    option of its own that is a prefix of a refused one (a test reads their --help)."""
    judged = {long for long, _ in _REFUSED[tool].values()} | set(_LONG_ONLY_REFUSED.get(tool, {}))
    if tool == "pg_dump":
        judged.add("compress")
    if not name or name in judged:
        return name
    return next((full for full in sorted(judged) if full.startswith(name)), name)


def _takes_value(tool, arg):
    """Is the argument after `arg` its value (`-f FILE`, `--file FILE`)?"""
    if arg.startswith("--"):
        return "=" not in arg and arg[2:] in {long for long, _ in _REFUSED[tool].values()} | _LONG_WITH_VALUE[tool]
    for i, letter in enumerate(arg[1:], 1) if arg.startswith("-") else ():
        if letter in _WITH_VALUE[tool]:
            return i == len(arg) - 1
    return False


def _check_short(tool, arg, following, refused, plain_dump):
    for i, letter in enumerate(arg[1:], 1):
        if letter in refused:
            _refuse(tool, arg, "-%s, --%s" % (letter, refused[letter][0]), refused[letter][1])
        if tool == "pg_dump" and plain_dump and letter == "Z":
            _refuse(tool, arg, "-Z, --compress", "use encpipe-backup --compress for plain dumps")
        if letter in _WITH_VALUE[tool]:
            value = arg[i + 1:] or following
            if tool == "psql" and letter == "v" and value.upper().startswith("ON_ERROR_STOP"):
                _refuse(tool, arg, "-v ON_ERROR_STOP", "the restore must stop at the first error")
            return


def _refuse(tool, arg, names, why):
    raise RefusedOption("%s option %s (%s) is not allowed: %s" % (tool, shown(arg), names, why))


def shown(arg):
    """`arg` as a message may show it: a connection string's password masked, a key
    pasted as the argument or an option's value (--file=KEY) not shown."""
    option, equals, value = arg.partition("=") if arg.startswith("-") else ("", "", arg)
    kind = secret_kind(value)
    if kind:
        return f"{option}{equals}({kind}, not shown)"
    return _PASSWORD.sub(lambda m: (m["uri"] or m["keyword"]) + "***", arg)


def restore_tool(filename):
    """The client a backup file's name says it needs: pg_restore for .dump.enc, else psql."""
    return "pg_restore" if filename.endswith(".dump.enc") else "psql"


def verbose(args):
    """Whether psql options `args` set VERBOSITY (-v, --set or --variable) to other than sqlstate."""
    values = [a.rpartition("VERBOSITY=")[2] for a in args if "VERBOSITY=" in a]
    return bool(values) and values[-1] != "sqlstate"
