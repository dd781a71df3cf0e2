"""The `encpipe` command's entry point (setup.cfg's console script), and
`python -m encpipe`'s: SIGINT is held (earlysig) before encpipe.cli loads, and
delivered once run() has set its handlers. Pointed at encpipe.cli:run, the
console script loaded encpipe.cli first: a SIGINT meanwhile was Python's
KeyboardInterrupt, a traceback. Only an entry point imports this module."""

from . import earlysig

earlysig.hold()


def run():
    from .cli import run as cli_run

    return cli_run()
