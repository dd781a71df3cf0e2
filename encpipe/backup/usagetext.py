"""How `python3 -m encpipe.backup` is named: its usage lines say how it is run
(RUN), which docopt cannot read (it takes a pattern's first word for the program's
name, and -m for an option), so it reads them with PROG, one word, in RUN's place."""

RUN = "python3 -m encpipe.backup"
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
