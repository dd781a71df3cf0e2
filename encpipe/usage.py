"""encpipe's usage text, and each command's part of it.

USAGE is the specification: `encpipe --help` prints it, the README shows it,
and everything else is derived from it, so nothing can drift. A command's help
(`encpipe seal --help`), from which its parser is built, is its usage patterns
plus the lines of the options that appear in them; the man page and the bash
completion come from the same functions. Adding an option to a command is
adding it to the command's pattern, and (once, if it is new) one line under
"Key options:" or "Options:". Standard library only, so that it works before
the dependencies are installed.
"""

import re

from .lazyre import Pattern

USAGE = """encpipe: streaming authenticated encryption for backups.

Usage:
  encpipe seal [-o FILE] [--allow-shared-dir] [--chunk-size SIZE] [--work-factor N] [--threads N]
               [--progress] [--size N]
               [--key-file FILE]... [--key-command CMD]... [--identity FILE]...
               [--recipient PUBKEY]... [--recipient-file FILE]...
               [--passphrase-file FILE]... [--passphrase-fd N]... [--passphrase-command CMD]...
               [-p] [--sign-key FILE]... [--sign-key-command CMD]...
  encpipe open [--verify-first] [--refuse-unauthenticated] [--threads N] [--progress] [--legacy]
               [--allow-shared-dir]
               [--key-file FILE]... [--key-command CMD]... [--identity FILE]...
               [--passphrase-file FILE]... [--passphrase-fd N]... [--passphrase-command CMD]...
               [-p] [--signer PUBKEY]... [--signer-file FILE]... [--] [FILE]
  encpipe inspect [--json] [--verify] [--threads N] [--progress] [--legacy] [--allow-shared-dir]
               [--key-file FILE]... [--key-command CMD]... [--identity FILE]...
               [--passphrase-file FILE]... [--passphrase-fd N]... [--passphrase-command CMD]...
               [-p] [--signer PUBKEY]... [--signer-file FILE]... [--] [FILE]
  encpipe rewrap [--in-place FILE] [--allow-shared-dir] [--replace] [--remove KEYID]... [--work-factor N]
               [--progress]
               [--add-key-file FILE]... [--add-recipient PUBKEY]... [--add-passphrase-file FILE]...
               [--key-file FILE]... [--key-command CMD]... [--identity FILE]...
               [--passphrase-file FILE]... [--passphrase-fd N]... [--passphrase-command CMD]...
               [-p] [--sign-key FILE]... [--sign-key-command CMD]...
               [--signer PUBKEY]... [--signer-file FILE]...
  encpipe keygen [--x25519 | --sign] [-o FILE] [--allow-shared-dir]
  encpipe pubkey [--allow-shared-dir] FILE
  encpipe keyid [--allow-shared-dir] [--key-file FILE]... [--key-command CMD]... [--identity FILE]...
               [--recipient PUBKEY]... [--recipient-file FILE]...
               [--sign-key FILE]... [--signer PUBKEY]... [--signer-file FILE]...
  encpipe help [COMMAND]
  encpipe (-h | --help)
  encpipe --version

Commands:
  seal      Encrypt standard input to standard output (or -o FILE).
  open      Decrypt FILE (default: standard input) to standard output; each
            chunk is written only after it authenticated.
  inspect   Show a sealed file's header without any key; with --verify and a
            key, authenticate every chunk and report the plaintext size.
  rewrap    Copy a sealed stream from standard input to standard output with a
            new set of key slots; the payload is copied, not re-encrypted,
            and nothing is written before all of it has been checked.
  keygen    Print a new random 256-bit key (64 hex digits), or with --x25519
            write a secret identity to FILE and print its public key, or
            with --sign write a signing key to FILE and print its verify key.
  pubkey    Print the public key of the identity (or the verify key of the
            signing key) in FILE.
  keyid     Print the key id of each given key or public key, as inspect
            shows it.
  help      Show one command's usage and options (as COMMAND --help does).

Options:
  -o FILE, --output FILE     Write to FILE (mode 0600; seal's appears, or replaces one, only once complete; keygen's never replaces one).
  --allow-shared-dir         Write in, or read a key from, a directory other users can write; else exit 73.
  --chunk-size SIZE          Plaintext chunk size, a power of two from 16K to 16M [default: auto].
  --work-factor N            scrypt cost log2(N) of new passphrase slots, 10 to 20 [default: 18].
  --threads N                Worker threads (auto: one wherever a second does not pay) [default: auto].
  --progress                 Report progress on standard error (with a known size: %, ETA).
  --size N                   The input's size in bytes, for --progress from a pipe.
  --verify-first             Authenticate all of FILE before writing anything.
  --refuse-unauthenticated   Refuse (67) a file whose maker is unauthenticated (v1; x25519, no --signer).
  --legacy                   Read the previous backup tool's format.
  --json                     Print the result as JSON.
  --verify                   Authenticate every chunk (needs a key).
  --in-place FILE            Rewrap FILE itself, replacing it atomically.
  --replace                  Drop every existing slot before adding.
  --remove KEYID             Drop the slot with this key id.
  --add-key-file FILE        Add a slot for each key in FILE.
  --add-recipient PUBKEY     Add a slot for this public key.
  --add-passphrase-file FILE  Add a slot for the passphrase in FILE.
  --x25519                   Make an x25519 identity instead of a raw key.
  --sign                     Make an Ed25519 signing key instead of a raw key.
  -h, --help                 Show this text, or with a command, that command's.
  --version                  Show the version.

Key options (never a secret on the command line; each may be repeated):
  --key-file FILE            Keys from FILE, one per line: 64 hex digits or an x25519 identity.
  --key-command CMD          Keys from the output of CMD, run with sh -c.
  --identity FILE            Same as --key-file (for x25519 identities).
  --recipient PUBKEY         Seal to this public key (encpipe1...).
  --recipient-file FILE      Seal to each public key listed in FILE.
  --passphrase-file FILE     A passphrase from FILE (every trailing CR and LF dropped).
  --passphrase-fd N          A passphrase from file descriptor N.
  --passphrase-command CMD   A passphrase from the output of CMD, run with sh -c.
  -p, --passphrase           Prompt for a passphrase on the terminal.
  --sign-key FILE            Sign with the signing key in FILE (format v2; /dev/fd/N works).
  --sign-key-command CMD     Sign with the signing key CMD prints, run with sh -c.
  --signer PUBKEY            Refuse a file not signed by this verify key (else ENCPIPE_SIGNER).
  --signer-file FILE         As --signer, for each verify key in FILE.
  Without any of these but the four signing ones, ENCPIPE_KEY (64 hex digits) and
  ENCPIPE_PASSPHRASE are used.

Exit status:
  0 success; 64 usage error or malformed key; 65 input is not a valid encpipe
  stream (corrupt, tampered, truncated, trailing data, unsupported version);
  66 cannot open an input or key file; 67 not signed by a trusted signer, or
  (--refuse-unauthenticated) its maker is not authenticated;
  69 a required Python package is missing; 70 internal error; 73 the output directory,
  or a key file or a directory above it, can be written by another user;
  74 cannot read or write data, or out of memory or system resources; 75 the
  output file was changed by someone else meanwhile; 77 no supplied key opens
  the file; 78 no key configured.
"""

_OPTION = Pattern(r"(?<![\w-])(--?[A-Za-z0-9][\w-]*)")
_SECTION_OPTION_LINE = Pattern(r"^  (-\S.*?)(?:\s{2,}|$)(.*)$")


def _sections():
    """{title: body} for the usage text's sections ("Usage", "Commands", ...)."""
    found = {}
    for block in USAGE.split("\n\n")[1:]:
        title, _, body = block.partition(":\n")
        found[title.split(" (")[0]] = body
    return found


def _patterns():
    """{command: [pattern, ...]}; a pattern's continuation lines are joined to it."""
    found = {}
    for pattern in re.split(r"\n(?=  encpipe )", _sections()["Usage"]):
        words = pattern.split()
        if len(words) > 1 and words[1][0].isalpha():
            found.setdefault(words[1], []).append(pattern)
    return found


COMMANDS = tuple(_patterns())


def option_lines():
    """[(names, line)]: each option line of the text, with the names it defines
    (`-o FILE, --output FILE` defines -o and --output)."""
    found = []
    for title, body in _sections().items():
        if title.endswith("options") or title == "Options":
            for line in body.splitlines():
                match = _SECTION_OPTION_LINE.match(line)
                if match:
                    found.append((tuple(_OPTION.findall(match.group(1))), line))
    return found


def takes_argument(option):
    """Whether `option` is followed by a value (`--key-file FILE`)."""
    for names, line in option_lines():
        if option in names:
            head = _SECTION_OPTION_LINE.match(line).group(1)
            return bool(re.search(r"\s[A-Z]", head.split(",")[0]))
    return False


def options_of(command):
    """Every option name `command` accepts, synonyms and -h/--help included."""
    named = set(_OPTION.findall(" ".join(_patterns()[command]))) - {"encpipe"}
    accepted = {"-h", "--help"}
    for names, _ in option_lines():
        if named & set(names):
            accepted |= set(names)
    return accepted


def commands_taking(option):
    return [c for c in COMMANDS if c != "help" and option in options_of(c)]


def summary(command):
    """The command's sentence from the Commands section, on one line."""
    text = _sections()["Commands"]
    match = re.search(rf"^  {command} +(.*(?:\n {{12}}.*)*)", text, re.M)
    return " ".join(match.group(1).split()) if match else ""


# keyid names keys: its lines for the options it shares with seal and open (which
# say what those do with a key: seal to it, sign with it, refuse files without it)
KEYID_LINES = {
    "--recipient": "A public key (encpipe1...).",
    "--recipient-file": "Each public key listed in FILE.",
    "--sign-key": "The signing key in FILE (its verify key's id; /dev/fd/N works).",
    "--signer": "A verify key (encpipesign1...), as keygen --sign prints it.",
    "--signer-file": "Each verify key listed in FILE.",
}


def _own_line(command, names, line):
    text = KEYID_LINES.get(names[-1]) if command == "keyid" else None
    return line if text is None else line[:29] + text


def command_help(command, parsing=False):
    """`encpipe COMMAND --help`: its summary, its usage, and only its options. With
    `parsing`, for docopt (which reads the usage and the options only): without the
    summary, so that a run does not import textwrap to wrap it (about 0.7 ms)."""
    head = []
    if not parsing:
        import textwrap

        head = [textwrap.fill(f"encpipe {command}: {summary(command)}", 80), ""]
    patterns = _patterns()[command]
    lines = [*head, "Usage:", *patterns, f"  encpipe {command} (-h | --help)", "", "Options:"]
    accepted = options_of(command)
    lines += [_own_line(command, names, line) for names, line in option_lines()
              if set(names) & accepted and "--help" not in names]
    lines.append("  -h, --help                 Show this text.")
    if command == "keyid":
        lines.append("  Without a key option, ENCPIPE_KEY (64 hex digits) is used (a passphrase has no key id).")
    elif "--key-file" in accepted:
        lines.append("  Without a key option, ENCPIPE_KEY (64 hex digits) and ENCPIPE_PASSPHRASE are used.")
    return "\n".join(lines) + "\n"
