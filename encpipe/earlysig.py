"""SIGINT held from an entry point's first line until its handlers are set.

Python raises KeyboardInterrupt for SIGINT from its start: one that came while
encpipe-backup (encpipe.launch), `python -m encpipe`, `python -m encpipe.backup`
or a Python script (encpipe-rotate...) was still loading encpipe.cli printed a
traceback. Those entry points call hold() first, which only notes the signal;
run_script and run (and encpipe.backup's own), once their own handlers are set
(see cli.catch_signal), call release(), which delivers it again. A SIGINT ignored
when the process started stays ignored. Imports only _signal, the built-in
module under signal (importing signal builds its enums first: long enough for a
SIGINT to come meanwhile).

An exec forgets a signal only noted, and the new image is a new Python, which
raises KeyboardInterrupt again from its start: so utf8mode.ensure(), which
executes the command again, blocks SIGINT first (blocked_for_exec) and raises a
noted one again, pending; a process's mask and its pending signals cross the
exec, and the new image unblocks SIGINT (unblock) once its own hold() is done.
Every entry point holds SIGINT before anything else, ensure() included.
"""

import _signal as signal

_noted = []


def hold():
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, lambda signum, _frame: _noted.append(signum))


def release():
    while _noted:
        signal.raise_signal(_noted.pop())


def blocked_for_exec():
    """SIGINT blocked and a noted one raised again, pending, for an exec: (the mask as
    it was, for unblocked() when the exec failed; whether SIGINT was blocked already)."""
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    while _noted:
        signal.raise_signal(_noted.pop())
    return before, signal.SIGINT in before


def unblocked(mask):
    """The mask `mask` again: a SIGINT pending goes to the handler (noted, after hold())."""
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def unblock():
    """SIGINT unblocked in the image executed again, after its hold(): one pending is noted."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
