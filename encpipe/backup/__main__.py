import sys

from . import cli, job

argv = sys.argv[1:]
raise SystemExit((job.main if argv and argv[0] in job.COMMANDS else cli.main)(argv))
