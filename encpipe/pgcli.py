"""encpipe-restore's command line: options into a dict; its lines on standard error (say)."""

import re
import sys

from .argwords import option_words
from .errors import InputUnavailable, UsageError
from .pgopts import refuse_connection_string
from .shown import printable
from .stdio import write_quietly
from .textform import refuse_key_as_database
from .usage_errors import empty_value, shown_argument

PROG = "encpipe-restore"

_KEY_VALUE = {"--key-file", "--key-command", "--identity", "--passphrase-file", "--passphrase-fd",
              "--passphrase-command"}
_SINGLE = {"--maintenance-db", "--globals", "--role", "--drop-pre-restore-older-than", "--threads"}
_VALUE = _SINGLE | {"--signer", "--signer-file"} | _KEY_VALUE
_FLAGS = {"--drop-old", "--terminate-connections", "--no-globals", "--no-create-roles", "--allow-unrestricted-psql",
          "--list-pre-restore",
          "--progress", "-p", "--passphrase", "-h", "--help", "--allow-unauthenticated", "--allow-shared-dir"}
# The key files encpipe-restore reads, or each encpipe it runs reads: judged by keyplace at the start.
KEY_FILES = ("--key-file", "--identity", "--passphrase-file", "--signer-file")


# Messages that never show an option's value: it may be a secret typed in the wrong place.
FD_NOT_A_NUMBER = "--passphrase-fd must be a number (the value, not shown, may be a passphrase)"


def unknown_option(arg):
    """The message for an unknown option `arg`, less a value it carries (--name=VALUE, -xVALUE)."""
    return "unknown option %s" % shown_argument(arg)


class Failure(Exception):
    def __init__(self, message, status=1, hint=None):
        super().__init__(message)
        self.status, self.hint = status, hint


def say(text, kind=None):
    write_quietly(sys.stderr, "%s: %s%s\n" % (PROG, kind + ": " if kind else "", printable(text)))


def parse(argv):
    # "given": every value of each option, for keyargs.secret_fds_open and FdSecrets
    opts = {"positional": [], "key": [], "open": [], "signers": [], "tool": [], "given": {}, "shared": [],
            "named": set()}  # every option's name given
    args, seen = list(argv), set()
    while args:
        arg = args.pop(0)
        name, eq, inline = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if arg == "--":
            while args and len(opts["positional"]) < 2 and args[0] != "--":
                opts["positional"].append(args.pop(0))
            opts["tool"] = args[1:] if args[:1] == ["--"] else args
            break
        if name in _VALUE or name in _FLAGS:
            opts["named"].add(name)
        if name in _VALUE:
            if not eq and not args:
                raise Failure("%s needs a value" % name, 64)
            val = inline if eq else args.pop(0)
            if not val:
                raise Failure(str(empty_value(name)), 64, hint=empty_value(name).hint)
            if name in _SINGLE and name in seen:
                raise Failure("%s given more than once" % name, 64, hint="see encpipe-restore --help")
            seen.add(name)
            opts["given"].setdefault(name, []).append(val)
            if name == "--passphrase-fd" and not val.isdigit():
                raise Failure(FD_NOT_A_NUMBER, 64)
            if name in _KEY_VALUE:  # one word for encpipe (argwords): a file named -h is a file, not --help
                opts["key"] += option_words(name, [val])
            elif name == "--threads":
                _threads(val)
                opts["open"] += option_words(name, [val])
            elif name == "--signer":
                if not val.strip():
                    raise Failure("--signer needs a verify key (encpipesign1...)", 64)
                opts["signers"].append(val)
            elif name == "--signer-file":
                opts["signers"].append((val,))  # read once every key file's place is judged
            else:
                opts[name[2:].replace("-", "_")] = val
        elif name in _FLAGS and not eq:
            if name in ("-p", "--passphrase"):
                opts["key"].append("--passphrase")
            elif name == "--progress":
                opts["open"].append(name)
            elif name == "--allow-shared-dir":  # for this script and for each encpipe it runs
                opts["shared"] = [name]
            else:
                opts[name.lstrip("-").replace("-", "_")] = True
        elif arg.startswith("-") and arg != "-":
            raise Failure(unknown_option(arg), 64)
        else:
            opts["positional"].append(arg)
    _verify_keys(opts["given"].get("--signer", []))
    if "" in opts["positional"]:
        raise Failure("FILE or DBNAME is empty", 64, hint=empty_value("FILE").hint)
    if opts.get("globals") and opts.get("no_globals"):
        raise Failure("--no-globals reads no globals file: give --globals FILE or --no-globals, not both", 64)
    if opts.get("no_create_roles") and opts.get("no_globals"):
        raise Failure("--no-globals reads no globals file, so it creates no role: give one of them", 64)
    _key_places(opts)
    opts["signers"] = [_read_signers(s[0]) if isinstance(s, tuple) else s for s in opts["signers"]]
    return opts


def _key_places(opts):
    """A key file another user could replace: 73 now, before it is read (keyplace)."""
    from .errors import UnsafeDirectory
    from .keyplace import refuse_replaceable

    try:
        refuse_replaceable(opts["given"], KEY_FILES, bool(opts["shared"]))
    except UnsafeDirectory as e:
        raise Failure(str(e), e.exit_code, e.hint) from None


def utf8_name(name, what="DBNAME", to_psql=False):
    """`name`, a database's, if it is UTF-8 text; else 64: it goes into SQL, sent as UTF-8
    (argv bytes that are not UTF-8 arrive as surrogates, which no encoding takes). A key
    pasted in its place is 64 too, not shown: it would be in error lines and in the
    metrics file, which every user may read (one longer than any database's name, 63 bytes);
    so is a connection string with a password, shown masked (pgopts.refuse_connection_string),
    and, `to_psql` (a name psql's -d gets as it is: --maintenance-db), any connection string."""
    try:
        refuse_connection_string(name, what, any_kind=to_psql)
        refuse_key_as_database(name, what)
    except UsageError as e:
        raise Failure(str(e), 64, e.hint) from None
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise Failure("%s %s is not UTF-8 text" % (what, name), 64) from None
    return name


def maker_check(opts):
    """What every `encpipe open` of a restore (the dump, the globals file) is given:
    refuse a file whose maker is not authenticated, unless --allow-unauthenticated."""
    return [] if opts.get("allow_unauthenticated") else ["--refuse-unauthenticated"]


def open_failure_hint(status, opts, env):
    """The hint for `encpipe open` failing with `status`: for 67 without a signer, the
    ways to restore a backup whose maker encpipe could not authenticate."""
    if status != 67 or opts.get("allow_unauthenticated") or env.get("ENCPIPE_SIGNER", "").strip():
        return None
    return ("restore a signed backup with --signer or --signer-file, or one sealed to a raw key or passphrase with"
            " that key; to accept a backup anyone with its public key could have made, --allow-unauthenticated")


def refused(what, status, said, names, left, hint=None, fallback=None):
    """encpipe-restore's one line for an encpipe child that refused `what` with `status`:
    `said`, its (error, hint), folded in (each /dev/fd/N of `names` named as the user named
    the file), then `left` (what became of DBNAME: pgcommit.untouched); its hint is the
    line's hint when the restore has none of its own, else `fallback`."""
    error, child_hint = said
    cause = ": " + re.sub(r"/dev/fd/[0-9]+", lambda m: names.get(m[0], m[0]), error) if error else ""
    return Failure("%s (status %d)%s; %s" % (what, status, cause, left), status,
                   hint or child_hint or fallback)


def _verify_keys(texts):
    """The --signer values, read as encpipe reads them: 64 now, named by their place, a
    secret key pasted (a signing key) not shown. Each goes to every encpipe's
    environment (ENCPIPE_SIGNER), which refused it under that name, once the server was reached."""
    from .keyargs import load_signers

    try:
        load_signers(texts, [], {})
    except UsageError as e:
        raise Failure(str(e), 64, e.hint) from None


def _read_signers(path):
    """The verify keys in a --signer-file (read and checked as encpipe does), as one
    line for ENCPIPE_SIGNER. None found is 64: trusting nobody must not mean checking nothing."""
    from .keyargs import load_signers, secret_fds_open

    secret_fds_open({"--signer-file": [path]})  # /dev/fd/N closed: "Bad file descriptor", 66
    try:
        found = load_signers([], [path], {})
    except (InputUnavailable, UsageError) as e:
        raise Failure("signer file %s" % e, 66 if isinstance(e, InputUnavailable) else 64) from None
    return " ".join(str(key) for key in found)


def _threads(text):
    """--threads as encpipe open reads it (64 now, not once the server was reached)."""
    from .workers import thread_option

    try:
        thread_option({"--threads": text})
    except UsageError as e:
        raise Failure(str(e), 64) from None


def script_usage(script):
    """A script's header comment, from its second line to `set -euo pipefail`: its --help."""
    import re

    lines = []
    with open(script) as f:
        for line in list(f)[1:]:
            if line.startswith("set -euo"):
                break
            lines.append(re.sub(r"^# ?", "", line.rstrip("\n")))
    return "\n".join(lines)
