"""encpipe-backup's two pipelines, sealed in this process straight into the stores.

The dump: `pg_dump --format=F [options]`, through `zstd` or `gzip` when
compressing. The globals: the label (encpipe.backup.label, in its SQL comment form: the
database, the run's time), `pg_dumpall --globals-only`, then (when it succeeded)
the database's properties as one comment line (encpipe.pgprops), sealed in a
thread of its own beside the dump. Every child gets the environment without
encpipe's secrets (pgclient.client_env) and no descriptor but its pipes.

Each returns a status as a shell pipeline with pipefail would: that of the last
step that failed (the seal and the upload last), 128+N for a child killed by
signal N, 0 when all succeeded.
"""

import os
import signal
import subprocess
import threading

from . import sigthreads
from .backup import label
from .backup.storage import write_new
from .childenv import child_env
from .childerr import exit_status
from .errors import EncpipeError, IOFailure, ran_out, unexpected
from .pgclient import PgError, client_env, conninfo
from .pgprops import comment_line
from .pgstream import widen_pipes
from .proctree import kill_running

GLOBALS_SUFFIX = ".globals.sql.enc"


class Said:
    """What went wrong in one pipeline, kept for the run's one error line instead
    of printed: encpipe's first error (and its hint), else the child that failed
    last (a child's own messages are its own, on standard error already)."""

    def __init__(self):
        self.cause, self.hint, self.child = None, None, None

    def error(self, message, hint=None):
        if self.cause is None:
            self.cause, self.hint = message, hint

    def because(self):
        return self.cause or self.child


class Children:
    """The child processes of one pipeline, each reading the one before.

    A child is started and recorded in one step that a signal's handler never
    cuts in two (sigthreads.held; one forked but not recorded would outlive
    the run), and under a lock that stop() takes too: once stopped (from
    another thread) the pipeline starts nothing more."""

    def __init__(self, said):
        self.said, self.procs, self.failed, self.stopped = said, [], 0, False
        self.lock = threading.Lock()

    def start(self, argv, env):
        with sigthreads.held(), self.lock:
            return self._start(argv, env)

    def _start(self, argv, env):
        stdin = self.procs[-1].stdout if self.procs else subprocess.DEVNULL
        try:
            if self.stopped:
                self.failed = 128 + signal.SIGKILL  # as if started, then killed
                return None
            proc = sigthreads.popen(argv, stdin=stdin, stdout=subprocess.PIPE, bufsize=0, env=env, close_fds=True)
        except OSError as e:  # out of descriptors or processes: 74; else as a child that failed, 1
            self.said.error(f"cannot run {argv[0]}: {e.strerror or e}")
            self.failed = IOFailure.exit_code if ran_out(e) else 1
            return None
        finally:
            if self.procs:
                self.procs[-1].stdout.close()  # the next one reads it now
        self.procs.append(proc)
        widen_pipes(proc.stdout)
        return proc.stdout

    def stop(self):
        """Kill them, and start no more (an interrupted run)."""
        with self.lock:
            self.stopped = True
            kill_running(self.procs)

    def wait(self):
        """Close the last output (a child still writing gets SIGPIPE); the statuses."""
        if self.procs:
            self.procs[-1].stdout.close()
        codes = [proc.wait() for proc in self.procs]  # -N: killed by signal N
        for proc, code in zip(self.procs, codes):
            if code:
                name = os.path.basename(proc.args[0])
                self.said.child = (f"{name} killed by signal {-code}" if code < 0 else
                                   f"{name} exited with status {code}")
        # the run's status: 1 for a child that failed with a status of its own, whatever it is (zstd's 11,
        # a wrapper's 130: no status of encpipe-backup's), 128 + N for one killed by signal N
        return [exit_status(code) if code < 0 else min(code, 1) for code in codes] + [self.failed]


def last_failure(statuses):
    return next((s for s in reversed(statuses) if s), 0)


def sealed_into(said, stores, temp, final, seal, src):
    """seal(src, out) into a new file `temp` (for `final`) in every store; 0, or the
    error's status (kept in `said`)."""
    try:
        write_new(stores, temp, lambda out: seal(src, out), final)
    except EncpipeError as e:
        said.error(str(e), hint=e.hint)
        return e.exit_code
    except Exception as e:  # out of memory, a worker thread that cannot start: a failed run, cleaned up
        if not ran_out(e):
            raise
        said.error(ran_out(e))
        return IOFailure.exit_code
    return 0


def dump(said, db, dump_argv, squeeze, seal, stores, temp, final):
    """pg_dump (and `squeeze`, a compressor's argv, when given), sealed into `temp`;
    what failed is kept in `said` (a Said)."""
    children = Children(said)
    env = client_env()
    # TZ: a custom archive's header holds pg_dump's local time, which verify compares with the
    # name's (label.mismatch); in UTC it is the name's, whatever the host's zone (libpq reads PGTZ)
    env["TZ"] = "UTC0"
    # the database by a connection string of its name alone, as psql gets it: libpq ranks a
    # service's dbname (PGSERVICE) above PGDATABASE, and the dump was another database's
    # under DBNAME's name, 0 (pg_dump reads a --dbname holding = as a connection string)
    status = 0
    try:
        src = children.start([*dump_argv, "--dbname=" + conninfo(db)], env)
        if src and squeeze:
            src = children.start(squeeze, child_env(os.environ))
        if src:
            status = sealed_into(said, stores, temp, final, seal, src)
    except BaseException:
        children.stop()
        raise
    finally:
        statuses = children.wait()
    return last_failure(statuses + [status])


class Globals(threading.Thread):
    """pg_dumpall --globals-only and the properties of `db`, sealed into `temp`
    in a thread; `status` once joined, what failed in `said`."""

    def __init__(self, db, seal, stores, temp, final):
        super().__init__(name="globals", daemon=True)
        self.said, self.db, self.seal, self.stores, self.temp, self.final = Said(), db, seal, stores, temp, final
        self.children, self.status, self.stopped = Children(self.said), 1, False
        self.source, self.tail = None, None
        self.run_name = final[: -len(GLOBALS_SUFFIX)]  # <db>_<stamp>: the label's time, the properties' run

    def run(self):
        try:
            # never a password asked (before, on the terminal beside pg_dump's prompt): PGPASSWORD's, a password file's
            self.source = self.children.start(["pg_dumpall", "--no-password", "--globals-only"], client_env())
            first = label.prefix("none", self.db, self.run_name.rsplit("_", 1)[1])
            status = (sealed_into(self.said, self.stores, self.temp, self.final, self.seal, label.Labelled(first, self))
                      if self.source else 0)
        except Exception as e:  # a thread's failure is a status, not a traceback (nor the exception's words)
            message, status = unexpected(e)
            self.said.error(f"cannot seal the globals: {message}")
        finally:
            statuses = self.children.wait()
        self.status = last_failure(statuses + [status])

    def stop(self):
        self.stopped = True
        self.children.stop()

    def readinto(self, view):
        """pg_dumpall's output, then (when it succeeded) the properties line."""
        if self.tail is None:
            n = self.source.readinto(view)
            if n:
                return n
            self.tail = self._properties()
        n = min(len(view), len(self.tail))
        view[:n] = self.tail[:n]
        self.tail = self.tail[n:]
        return n

    def _properties(self):
        if self.children.procs[0].wait() != 0 or self.stopped:
            return b""
        try:
            return (comment_line(self.db, self.run_name) + "\n").encode()
        except PgError as e:
            self.said.error(str(e))
            self.children.failed = 1
            return b""
