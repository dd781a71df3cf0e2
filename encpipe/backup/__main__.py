import sys

from . import cli, job

argv = sys.argv[1:]
if argv[:1] == ["fetch"]:  # SIGTERM, SIGHUP, SIGINT: its rclone killed and reaped, then it dies of it, quietly
    from ..cli import run_script

    raise SystemExit(run_script("encpipe-backup", job.__name__, argv))
raise SystemExit((job.main if argv and argv[0] in job.COMMANDS else cli.main)(argv))
