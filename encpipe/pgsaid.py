"""What the restore's client (psql, or pg_restore -d) says on standard error: passed on
to encpipe-restore's own as it comes, byte for byte, and looked at on the way for what
the restore's hint needs: whether a tablespace the server lacks is what failed.

Before, the client wrote to the restore's standard error itself, and a failed
restore got the hint for a missing tablespace whenever the globals file named one
the server lacks, whatever psql had said (a division by zero too), in place of
the one that says how to see psql's messages (tests/test_disaster_recovery_cluster.py)."""

import os
import re
import select
import threading

from . import sigthreads
from .childerr import LINE_MAX

# psql with VERBOSITY=sqlstate (pgstream.QUIET_ERRORS) names an error by its SQLSTATE alone: a
# dump's `SET default_tablespace = NAME` fails 22023, a `TABLESPACE NAME` clause 42704
QUIET_ERROR = re.compile(rb"psql:.*: ERROR:  ([0-9A-Z]{5})\r?")
TABLESPACE_CODES = frozenset({"22023", "42704"})
# a whole message (VERBOSITY=default, pg_restore -d): `tablespace "NAME" does not exist`, or
# `DETAIL:  Tablespace "NAME" does not exist.` after the SET's
MISSING_TABLESPACE = re.compile(rb'[Tt]ablespace "(.*)" does not exist')


class ClientSaid:
    """Give `fd` as the client's standard error, then call started() (once it was
    started, or could not be) and wait() once it ended. `codes`: the SQLSTATEs its
    quiet errors named; `tablespaces`: the tablespaces its messages said do not exist
    (each line looked at by its first LINE_MAX bytes: memory stays bounded)."""

    def __init__(self, out_fd=2):
        self._read, self.fd = os.pipe2(os.O_CLOEXEC)
        self._out, self._thread = out_fd, None
        self._ended = threading.Event()  # the client ended: what is in the pipe is all it wrote
        self.codes, self.tablespaces = set(), set()

    def started(self):
        os.close(self.fd)
        self.fd = None
        self._thread = sigthreads.start(threading.Thread(target=self._relay, daemon=True))

    def wait(self, timeout=10):
        """Once the client ended: returns once all it wrote was passed on. A process it
        left behind that holds the pipe is not waited for, as childerr's relays do not
        (before, 10 s, and what that process wrote came after the restore's own line);
        `timeout` s at most for a standard error that takes nothing."""
        self._ended.set()
        if self._thread:
            self._thread.join(timeout)

    def tablespace_failed(self, lacking):
        """Whether what it said plausibly is a tablespace of `lacking` missing: its message
        names one, or (its messages quiet) its error is one such a tablespace gives."""
        return bool(self.tablespaces & set(lacking)) or bool(lacking and self.codes & TABLESPACE_CODES)

    def _relay(self):
        rest = b""
        with open(self._read, "rb", buffering=0) as src:
            while chunk := self._next(src):
                self._pass_on(chunk)
                *lines, rest = (rest + chunk).split(b"\n")
                for line in lines:
                    self._look(line[:LINE_MAX])
                rest = rest[:LINE_MAX]  # a longer line is looked at by its start
        self._look(rest)

    def _next(self, src):
        """What comes next, or b"" at its end: EOF, or the pipe empty once the client ended."""
        ready = select.poll()  # not select(): a descriptor over 1023 is one too
        ready.register(src, select.POLLIN)
        while not ready.poll(100):
            if self._ended.is_set():
                return b""
        return src.read(1 << 16)

    def _pass_on(self, chunk):
        try:
            while chunk:
                chunk = chunk[os.write(self._out, chunk):]
        except OSError:  # standard error gone: what the client said is lost, as it would have been
            pass

    def _look(self, line):
        if found := QUIET_ERROR.fullmatch(line):
            self.codes.add(found[1].decode())
        elif found := MISSING_TABLESPACE.search(line):
            self.tablespaces.add(found[1].decode("utf-8", "surrogateescape"))
