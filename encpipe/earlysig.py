"""SIGINT held from an entry point's first line until its handlers are set.

Python raises KeyboardInterrupt for SIGINT from its start: one that came while
encpipe-backup (encpipe.launch) or `python -m encpipe` was still loading
encpipe.cli printed a traceback. Those entry points call hold() first, which
only notes the signal; run_script and run, once their own handlers are set (see
cli.catch_signal), call release(), which delivers it again. A SIGINT ignored
when the process started stays ignored. Imports only _signal, the built-in
module under signal (importing signal builds its enums first: long enough for a
SIGINT to come meanwhile).
"""

import _signal as signal

_noted = []


def hold():
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, lambda signum, _frame: _noted.append(signum))


def release():
    while _noted:
        signal.raise_signal(_noted.pop())
