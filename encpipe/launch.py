"""`python -m encpipe.launch PROG MODULE [ARG...]`: how the shell scripts
(encpipe-backup, encpipe-restore) run MODULE's main(ARGS), through
cli.run_script: a dependency that cannot be imported is one line and exit
69, not a traceback. Imports nothing that needs a dependency itself."""

import sys

from . import earlysig

earlysig.hold()  # a SIGINT while encpipe.cli loads: delivered once run_script has set its handlers

from .cli import run_script  # noqa: E402

# As cli.run: pycryptodome's cffi backend costs ~25 ms of start-up; its ctypes one is as fast.
sys.modules.setdefault("cffi", None)
raise SystemExit(run_script(sys.argv[1], sys.argv[2], sys.argv[3:]))
