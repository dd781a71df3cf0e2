"""Regular expressions compiled where first used, not as their module loads: a
command uses few of the patterns its modules hold, and each compile costs about
0.1 ms of every start (the test suite starts thousands)."""

import re


class Pattern:
    """re.compile(pattern, flags), made on the first use of any of its methods
    (fullmatch, split, sub...); compiled twice at worst, by two threads at once."""

    __slots__ = ("_args", "_compiled")

    def __init__(self, pattern, flags=0):
        self._args = (pattern, flags)
        self._compiled = None

    def __getattr__(self, name):
        compiled = self._compiled
        if compiled is None:
            compiled = self._compiled = re.compile(*self._args)
        return getattr(compiled, name)
