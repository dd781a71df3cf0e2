"""What the restore's client (psql, or pg_restore -d) says on standard error: passed on
to encpipe-restore's own as it comes, byte for byte, and looked at on the way for what
the restore's hint needs: whether a tablespace the server lacks is what failed.

Before, the client wrote to the restore's standard error itself, and a failed
restore got the hint for a missing tablespace whenever the globals file named one
the server lacks, whatever psql had said (a division by zero too), in place of
the one that says how to see psql's messages (tests/test_disaster_recovery_cluster.py)."""

import os
import re

from .childerr import LINE_MAX, ChildStderr, Lines
from .pgclient import NO_PASSWORD, password_hint

# psql with VERBOSITY=sqlstate (pgstream.QUIET_ERRORS) names an error by its SQLSTATE alone: a
# dump's `SET default_tablespace = NAME` fails 22023, a `TABLESPACE NAME` clause 42704
QUIET_ERROR = re.compile(rb"psql:.*: ERROR:  ([0-9A-Z]{5})\r?")
TABLESPACE_CODES = frozenset({"22023", "42704"})
# a whole message (VERBOSITY=default, pg_restore -d): `tablespace "NAME" does not exist`, or
# `DETAIL:  Tablespace "NAME" does not exist.` after the SET's
MISSING_TABLESPACE = re.compile(rb'[Tt]ablespace "(.*)" does not exist')
# the lock table full (or memory short): quiet, `ERROR:  53200`; whole, `HINT:  You might need to increase
# max_locks_per_transaction.`, which the server's message adds when it is the lock table
OUT_OF_MEMORY_CODE = "53200"
LOCK_TABLE_FULL = re.compile(rb"\bmax_locks_per_transaction\b")
LOCKS_HINT = ("the server ran out of shared memory (53200), most often of lock slots: a restore loads the dump in one "
              "transaction, which locks each table, index and large object it makes until it commits; raise "
              "max_locks_per_transaction on this server (a restart), then restore again")
# its own line when it could not connect for want of a password (-w: none asked); not a line of the dump's
UNSENT_PASSWORD = re.compile(rb"(?:psql|pg_restore): error: connection to server .* failed: %s\r?"
                             % re.escape(NO_PASSWORD.encode()))


class ClientSaid(ChildStderr):
    """Give `fd` as the client's standard error, then call started() (once it was
    started, or could not be) and wait() once it ended (ChildStderr's pipe, thread
    and end: a process the client left behind that holds the pipe is not waited
    for). Its bytes go to `out_fd` as they come. `codes`: the SQLSTATEs its quiet
    errors named; `tablespaces`: the tablespaces its messages said do not exist
    (each line looked at by its first LINE_MAX bytes: memory stays bounded)."""

    def __init__(self, out_fd=2):
        super().__init__(pass_on=False)
        self._out_fd = out_fd
        self.codes, self.tablespaces = set(), set()
        self.lock_table_full = False  # its whole message said so
        self.hint = None  # pgclient.password_hint's, when it said it was given no password

    def tablespace_failed(self, lacking):
        """Whether what it said plausibly is a tablespace of `lacking` missing: its message
        names one, or (its messages quiet) its error is one such a tablespace gives."""
        return bool(self.tablespaces & set(lacking)) or bool(lacking and self.codes & TABLESPACE_CODES)

    def locks_failed(self):
        """Whether what it said is the server out of lock slots: the whole message's hint
        names max_locks_per_transaction, or (its messages quiet) its error is 53200."""
        return self.lock_table_full or OUT_OF_MEMORY_CODE in self.codes

    def _relay(self):
        with open(self._read, "rb", buffering=0) as src:
            self._read = None
            reader, line = Lines(src, self._ended), b""
            while piece := reader.next(lambda start: False):  # passed on as it comes, nothing held
                self._write(piece)
                line += piece[: LINE_MAX - len(line)]
                if piece.endswith(b"\n"):
                    self._look(line[:-1] if line.endswith(b"\n") else line)
                    line = b""
        self._look(line)

    def _write(self, chunk):
        try:
            while chunk:
                chunk = chunk[os.write(self._out_fd, chunk):]
        except OSError:  # standard error gone: what the client said is lost, as it would have been
            pass

    def _look(self, line):
        if UNSENT_PASSWORD.fullmatch(line):
            self.hint = password_hint(NO_PASSWORD)
        if found := QUIET_ERROR.fullmatch(line):
            self.codes.add(found[1].decode())
        elif found := MISSING_TABLESPACE.search(line):
            self.tablespaces.add(found[1].decode("utf-8", "surrogateescape"))
        elif LOCK_TABLE_FULL.search(line) and line.startswith((b"HINT:", b"psql:")):
            self.lock_table_full = True
