"""Usage mistakes, named: which option is unknown to which command, what was
probably meant, and why a refused option is refused. Never echoes a value:
an argument may be a secret typed in the wrong place."""

import re

from .errors import UsageError
from .usage import COMMANDS, _patterns, commands_taking, options_of, takes_argument

# Words people try first.
ALIASES = {"encrypt": "seal", "decrypt": "open", "unseal": "open", "verify": "inspect", "info": "inspect",
           "genkey": "keygen", "generate": "keygen", "rekey": "rewrap", "pub": "pubkey"}
_PUBLIC_KEY = "a public key cannot open a file; open with --identity (the secret key) instead"
# (command, option): why that command refuses it, and what to use.
REFUSED = {
    ("open", "--recipient"): _PUBLIC_KEY,
    ("open", "--recipient-file"): _PUBLIC_KEY,
    ("inspect", "--recipient"): _PUBLIC_KEY,
    ("inspect", "--recipient-file"): _PUBLIC_KEY,
    ("rewrap", "--recipient"): "to add a public key use --add-recipient; to open, --identity",
    ("rewrap", "--recipient-file"): "to add public keys use --add-recipient; to open, --identity",
    ("open", "-o"): "open writes to standard output: encpipe open FILE > OUTPUT",
    ("open", "--output"): "open writes to standard output: encpipe open FILE > OUTPUT",
    ("rewrap", "-o"): "rewrap writes to standard output (encpipe rewrap < IN > OUT), or use --in-place FILE",
    ("rewrap", "--output"): "rewrap writes to standard output (encpipe rewrap < IN > OUT), or use --in-place FILE",
    ("keyid", "--passphrase-file"): "a passphrase has no key id",
    ("keyid", "-p"): "a passphrase has no key id",
}
# Why a command takes no FILE argument.
NO_FILE = {
    "seal": "seal reads standard input: encpipe seal < FILE",
    "rewrap": "rewrap reads standard input; to rewrap a file use --in-place FILE",
}


def empty_value(name):
    """An option or argument given an empty value (`-o ""`, `--dir=`, an unset shell
    variable) is a mistake, never the same as leaving it out: `-o ""` would mean
    standard output, `--dir ""` the default directory."""
    what = f"{name} needs a value, not an empty one" if name.startswith("-") else f"{name} is empty"
    return UsageError(what, hint="an unset shell variable?")


def first_empty(args):
    """The UsageError for the first empty option value or argument in docopt's `args`, else None."""
    for name, value in args.items():
        if (name.startswith("-") or name.isupper()) and "" in (value if isinstance(value, list) else [value]):
            return empty_value(name)
    return None


def first_empty_parsed(namespace):
    """first_empty for an argparse namespace (its `dir` is DIR, `old_key_file` --old-key-file)."""
    return first_empty({k.upper() if k == "dir" else "--" + k.replace("_", "-"): v for k, v in vars(namespace).items()})


def shown_argument(arg):
    """An argument as a message may show it: an option less the value it carries
    (--name=VALUE, -xVALUE), any other word as _shown shows it."""
    if not arg.startswith("-") or arg == "-":
        return _shown(arg)
    name = arg.partition("=")[0] if arg.startswith("--") else arg[:2]
    shown = option_shown(name)
    return shown if shown == arg or shown != name else shown + "... (the rest not shown)"


def parse_quietly(parser, argv):
    """argparse's parse_args, except that an unknown option or an extra argument
    is named by shown_argument, not echoed: it may be a secret."""
    # --option=-- is a value (a file named --): argparse (3.11) drops a -- even there, leaving []
    stand_in = "\0--"  # no word of argv holds a NUL
    args, extra = parser.parse_known_args([w[:-2] + stand_in if w.startswith("--") and w.partition("=")[2] == "--"
                                           else w for w in argv])
    for name, value in vars(args).items():
        if isinstance(value, list):
            setattr(args, name, ["--" if v == stand_in else v for v in value])
        elif value == stand_in:
            setattr(args, name, "--")
    if extra:  # options named, other words counted: one may be the value of an unknown option, a secret
        named = [shown_argument(arg) for arg in extra if arg.startswith("-") and arg != "-"]
        others = len(extra) - len(named)
        named += [("an argument" if others == 1 else f"{others} arguments") + " (not shown)"] if others else []
        parser.error("unrecognized arguments: " + ", ".join(named))
    return args


def argparse_message(message):
    """An error of argparse less the `=VALUE` it echoes for a flag given one, or for an
    abbreviation that could name several options (`--sig=KEY could match --sign-key, ...`)."""
    message = re.sub(r"^(ambiguous option: )(.*)( could match .*)$",
                     lambda m: m[1] + shown_argument(m[2]) + m[3], message, flags=re.S)
    return re.sub(r": ignored explicit argument .*", ": takes no value", message, flags=re.S)


def close_matches(word, candidates):
    """[the one of `candidates` that `word` is probably a mistyping of], or [].
    difflib is imported here, not at the top: only a usage error pays for it,
    not every start of encpipe and of the scripts (about a millisecond each)."""
    import difflib

    return difflib.get_close_matches(word, candidates, n=1)  # cutoff 0.6


def unknown_command(command):
    if command is None:
        return UsageError("no command given", hint="see encpipe --help")
    if command.startswith("-"):
        return UsageError(f"unknown option {shown_argument(command)} before a command", hint="see encpipe --help")
    guess = ALIASES.get(command) or next(iter(close_matches(command, COMMANDS)), None)
    hint = f"did you mean encpipe {guess}?" if guess else f"the commands are {', '.join(COMMANDS)}"
    return UsageError(f"unknown command {_shown(command)}", hint=hint)


def _secret_like(word):
    """True for a word that may be key material or a passphrase: long, hex, an identity, spaces."""
    return len(word) > 32 or bool(re.search(r"[0-9a-fA-F]{32}|SECRET|\s", word))


def _shown(word):
    """A word safe to echo: short and without key material, else a placeholder."""
    if _secret_like(word):
        return "(a long argument, not shown)"
    return f"'{word}'"  # quoted, not repr(): the message's escaping (shown.printable) is once


def option_shown(name):
    """An option's name (no value) as a message may show it: a key or passphrase typed
    as one (`--KEY`) is not shown (before, `unknown option --<the key> for open`)."""
    return "(an option, not shown)" if _secret_like(name) else name


def explain(command, argv, docopt_text=""):
    """The UsageError for an `argv` that `command`'s usage does not match."""
    accepted = options_of(command)
    seen, positionals = [], []
    args = argv[1:]
    i = 0
    while i < len(args):
        token = args[i]
        if token == "--":
            positionals += args[i + 1 :]
            break
        names = _option_names(token)
        for name in names:
            if name not in accepted:
                return _refused(command, name, accepted)
        seen += names
        if names and takes_argument(names[-1]) and not _value_attached(token):
            i += 1
        if not names:
            positionals.append(token)
        i += 1
    for name in set(seen):
        if seen.count(name) > 1 and name not in _repeatable(command):
            return UsageError(f"{name} given more than once", hint=f"see encpipe {command} --help")
    values = re.sub(r"--?[\w-]+[ =][A-Z][A-Z0-9_-]*", "", _pattern_words(command))
    wanted = len(re.findall(r"\b[A-Z][A-Z0-9_-]*\b", values))
    required = re.findall(r"\b[A-Z][A-Z0-9_-]*\b", re.sub(r"\[[^\]]*\]", "", values))
    if len(positionals) < len(required):
        return UsageError(f"{command} needs {' '.join(required)}", hint=f"see encpipe {command} --help")
    if len(positionals) > wanted:
        count = f"at most {wanted} argument{'s' if wanted > 1 else ''}" if wanted else "no argument"
        why = NO_FILE.get(command, f"{command} takes {count} besides options")
        return UsageError(f"unexpected argument for {command}: {why}", hint=f"see encpipe {command} --help")
    first = (docopt_text.strip().splitlines() or [""])[0]
    if first and not first.startswith(("Usage:", "Warning:", "encpipe")):
        return UsageError(first, hint=f"see encpipe {command} --help")
    return UsageError(f"invalid arguments for {command}", hint=f"see encpipe {command} --help")


def _option_names(token):
    """The options a token names: `--key-file=x` -> [--key-file]; `-po` -> [-p, -o]."""
    if token.startswith("--"):
        return [token.split("=", 1)[0]]
    if token.startswith("-") and token != "-":
        names = []
        for char in token[1:]:
            names.append("-" + char)
            if takes_argument(names[-1]):
                break
        return names
    return []


def _value_attached(token):
    return "=" in token if token.startswith("--") else len(token) > 2 and takes_argument(token[:2])


def _pattern_words(command):
    return " ".join(_patterns()[command])


def _repeatable(command):
    return set(re.findall(r"\[(--?[\w-]+)[^\]]*\]\.\.\.", _pattern_words(command)))


def _refused(command, name, accepted):
    why = REFUSED.get((command, name))
    if why:
        return UsageError(f"{command} does not take {name}: {why}")
    others = commands_taking(name)
    if others:
        return UsageError(f"{command} does not take {name} (that is an option of {', '.join(others)})",
                          hint=f"see encpipe {command} --help")
    guess = close_matches(name, sorted(accepted))
    message = f"unknown option {option_shown(name)} for {command}" + (f"; did you mean {guess[0]}?" if guess else "")
    return UsageError(message, hint=f"see encpipe {command} --help")
