import sys

from .. import earlysig

earlysig.hold()  # a SIGINT from here on: delivered once its handler is set (across ensure's exec)

from .. import utf8mode  # noqa: E402

utf8mode.ensure()  # names read as UTF-8 whatever the locale

import signal  # noqa: E402

from ..cli import Io, catch_signal, die_of, run_script, set_up, unexpected_line  # noqa: E402
from ..deps import report_missing  # noqa: E402
from ..sigdefer import drained, held_once  # noqa: E402
from .usagetext import PROG, TITLES  # noqa: E402

argv = sys.argv[1:]
try:
    from . import cli, job
except ImportError as e:  # docopt-ng missing: one line naming it, 69, as each script says it (not a traceback)
    prog = f"encpipe-{argv[0]}" if argv[:1] and argv[0] in TITLES else PROG
    raise SystemExit(report_missing(Io(None, None, sys.stderr, {}, prog=prog), e))
# the JSON lines of commit and upload go to the script's standard output (guard_standard_fds);
# prune, verify, check --verify and commit (its prune) hold keys, and every command may
# hold rclone's credentials: no core file, as for the scripts (run_script does it too).
set_up("encpipe.backup")
if argv[:1] == ["fetch"]:  # SIGTERM, SIGHUP, SIGINT: its rclone killed and reaped, then it dies of it, quietly
    raise SystemExit(run_script("encpipe-backup", job.__name__, argv))
catch_signal(signal.SIGINT, signal.default_int_handler)  # KeyboardInterrupt, outside imports
try:
    earlysig.release()  # one that came as it loaded: now
    try:
        status = (job.main if argv and argv[0] in job.COMMANDS else cli.main)(argv)
    except Exception as e:  # a bug, its clean-up run on the way here: one line, not a traceback,
        with held_once():  # said whole before a signal that waited for an import runs (cli.report_errors)
            status = unexpected_line(Io(None, None, sys.stderr, {}, prog="encpipe.backup"), e)
    status = drained(status)  # a signal an import made wait: now, not at the exit
except KeyboardInterrupt:  # its clean-up run on the way here: death by the signal, no traceback
    status = die_of()
raise SystemExit(status)
