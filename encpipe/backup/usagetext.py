"""How `python3 -I -m encpipe.backup` is named: its usage lines say how it is run
(RUN), which docopt cannot read (it takes a pattern's first word for the program's
name, and -m for an option), so it reads them with PROG, one word, in RUN's place."""

import re

RUN = "python3 -I -m encpipe.backup"
PROG = "encpipe.backup"  # its name in its error lines


def for_docopt(usage):
    """`usage` as docopt reads it: each pattern's program name one word."""
    return usage.replace(f"\n  {RUN} ", f"\n  {PROG} ")


def help_asked(argv, valued=()):
    """Whether -h or --help is among `argv`'s words before a `--`, but not as the
    value, given apart, of one of the options `valued` (`--database -h`: a database
    may be named so), which before was help and 0: what encpipe-check's reader
    takes for OK."""
    tokens = iter(argv)
    for token in tokens:
        if token == "--":
            return False
        if token in ("-h", "--help"):
            return True
        if token in valued:  # its value follows, apart: `-t 5`, not `-t5` nor `--timeout=5`
            next(tokens, None)
    return False


TITLES = {  # each script's first line, where the module's names all four
    "list": "describe the stored backups of a location, from their names and headers (no key)",
    "prune": "remove the stored backups a retention policy does not keep, each authenticated first",
    "verify": "authenticate every chunk of each stored backup (no plaintext written)",
    "check": "a Nagios check of the stored backups' age (with --verify, their authenticity)",
}


_NAMES = "|".join(TITLES)


def script_help(usage, name):
    """`usage` (the module's USAGE) as encpipe-NAME's own help: its title, its usage
    lines under its name, and the rest of the text only as far as it is NAME's."""
    rest = usage.split("Usage:\n", 1)[1]
    patterns, tail = rest.split("\n\n", 1)
    mine = [p for p in re.split(rf"\n(?=  {RUN} )", patterns) if p.startswith(f"  {RUN} {name} ")]
    lines = "\n".join(mine) + f"\n  {RUN} {name} (-h | --help)"
    text = "Usage:\n" + lines + "\n\n" + _only_mine(tail, name, lines)
    return f"encpipe-{name}: {TITLES[name]}.\n\n" + text.replace(f"{RUN} ", "encpipe-")


def _only_mine(tail, name, usage):
    """USAGE's text after the usage lines, with only NAME's paragraph under Commands:,
    only the options its usage lines take under Options: (the note on key options
    only when it takes them), and of the exit statuses the paragraphs for all and
    those that name it (`  verify, prune: ...`, `  check exits ...`)."""
    def taken(entry):
        if not entry.startswith("  -"):
            return "--key-file" in usage
        names = re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", re.split(r"\s{2,}", entry.strip(), maxsplit=1)[0])
        return any(re.search(rf"(?<![\w-]){re.escape(n)}(?![\w-])", usage) for n in names)

    wanted = {"Commands:": lambda entry: entry.startswith(f"  {name} "), "Options:": taken}
    paragraphs = []
    for paragraph in tail.split("\n\n"):
        title, _, block = paragraph.partition("\n")
        if title in wanted:  # its entries: a line at two spaces, then its continuation lines
            entries = re.split(r"\n(?=  \S)", block)
            paragraph = "\n".join([title, *(e for e in entries if wanted[title](e))])
        whose = re.match(rf"  ((?:{_NAMES})(?:, (?:{_NAMES}))*)(?::| exits) ", paragraph)
        if whose is None or name in whose.group(1).split(", "):
            paragraphs.append(paragraph)
    return "\n\n".join(paragraphs)
