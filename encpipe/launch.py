"""`python -m encpipe.launch PROG MODULE [ARG...]`: how the shell scripts
(encpipe-backup, encpipe-restore) run MODULE's main(ARGS), through
cli.run_script: a dependency that cannot be imported is one line and exit
69, not a traceback; a MODULE that is not one with a main(), or PROG or MODULE
missing, one line and exit 70 (the arguments are the scripts' own: a bug).
Imports nothing that needs a dependency itself."""

import sys

from . import earlysig

earlysig.hold()  # a SIGINT from here on: delivered once run_script has set its handlers (across ensure's exec)

from . import utf8mode  # noqa: E402

utf8mode.ensure()  # names read as UTF-8 whatever the locale

from .cli import Io, guard_standard_fds, run_script  # noqa: E402
from .processguard import ctypes_backend  # noqa: E402

ctypes_backend()  # as cli.run
if len(sys.argv) < 3:  # written in encpipe's own scripts: a bug (70), not a traceback
    guard_standard_fds()
    Io(None, None, sys.stderr, {}).error("python -m encpipe.launch needs PROG MODULE [ARG...]")
    raise SystemExit(70)
raise SystemExit(run_script(sys.argv[1], sys.argv[2], sys.argv[3:]))
