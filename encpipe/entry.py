"""The `encpipe` command's entry point (setup.cfg's console script; the Python
scripts' below), and
`python -m encpipe`'s: SIGINT is held (earlysig) before encpipe.cli loads, and
delivered once run() has set its handlers. Pointed at encpipe.cli:run, the
console script loaded encpipe.cli first: a SIGINT meanwhile was Python's
KeyboardInterrupt, a traceback. Only an entry point imports this module."""

from . import earlysig

earlysig.hold()


def run():
    from .cli import run as cli_run

    return cli_run()


# The Python scripts' entry points (setup.cfg's console scripts; scripts/ holds the same
# commands for a checkout). pip writes a console script's first line as a /bin/sh
# trampoline when the interpreter's path has a space, which a #! line cannot hold:
# installed as `scripts =`, encpipe-list and the others could not start from a
# virtual environment under such a path.


def _script(prog, module, argv):
    from .cli import run_script

    return run_script(prog, module, argv)


def _args():
    import sys

    return sys.argv[1:]


def backup_list():
    return _script("encpipe-list", "encpipe.backup.cli", ["list", *_args()])


def backup_prune():
    return _script("encpipe-prune", "encpipe.backup.cli", ["prune", *_args()])


def backup_verify():
    return _script("encpipe-verify", "encpipe.backup.cli", ["verify", *_args()])


def backup_check():
    from .backup.plugin import run as plugin_run

    return plugin_run(_args())  # always a plugin's status, 0 to 3, with a line on standard output


def rotate():
    return _script("encpipe-rotate", "encpipe.rotate", _args())


def migrate():
    return _script("encpipe-migrate", "encpipe.migrate", _args())
