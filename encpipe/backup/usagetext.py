"""How `python3 -m encpipe.backup` is named: its usage lines say how it is run
(RUN), which docopt cannot read (it takes a pattern's first word for the program's
name, and -m for an option), so it reads them with PROG, one word, in RUN's place."""

RUN = "python3 -m encpipe.backup"
PROG = "encpipe.backup"  # its name in its error lines


def for_docopt(usage):
    """`usage` as docopt reads it: each pattern's program name one word."""
    return usage.replace(f"\n  {RUN} ", f"\n  {PROG} ")


def help_asked(argv):
    """Whether -h or --help is among `argv`'s words before a `--`."""
    words = argv[:argv.index("--")] if "--" in argv else argv
    return bool({"-h", "--help"} & set(words))
