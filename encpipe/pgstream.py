"""The decrypted dump, from `encpipe open` to psql or pg_restore, through pipes only.

The first bytes say what the stream is: zstd or gzip (decompressed by the
`zstd`/`gzip` tools, whatever the file is called), then a custom archive
(`PGDMP`) or plain SQL. A custom archive goes to `pg_restore -f -`, which writes
its SQL; that SQL, or the plain dump's, goes to psql in restricted mode:
`\\restrict KEY` with a fresh random key comes first, and the dump's own
`\\restrict KEY`/`\\unrestrict KEY` lines are dropped on the way, so every
other meta-command of the dump (`\\!`, `\\copy ... program`, `\\connect`...)
is an error that stops the restore. psql's errors name the SQLSTATE and the
line, never the dump's values (QUIET_ERRORS). Memory stays constant.
"""

import os
import re
import subprocess
import threading

from . import childerr, sigthreads
from .backup.label import HEAD_BYTES, after_line, found, mismatch
from .backup.names import CLUSTER_DUMP
from .errors import InvalidStream
from .childenv import child_env
from .compat import set_pipe_size
from .pgcli import Failure
from .pgsaid import ClientSaid
from .pgclient import client_env, psql_args, psql_can_restrict, psql_version, restrict_key
from .pipewatch import input_of, took_all
from .proctree import kill_running

BLOCK = 1 << 20
_DECOMPRESSORS = ((b"\x28\xb5\x2f\xfd", "zstd"), (b"\x1f\x8b", "gzip"))
_ZSTD_SKIPPABLE = b"\x2a\x4d\x18"  # after 50..5F: a skippable frame (encpipe-backup's label), then zstd's
# pg_dump's own lines (pg_restore -f -'s too): `\\restrict KEY`, the first line that is
# neither blank nor an SQL comment, and `\\unrestrict KEY` with that KEY, near the end;
# KEY alphanumeric, random per dump. Only those go: a line of a function's body, a
# comment or a string may read `\\restrict K` or `\\unrestrict K` too, and is the dump's
# data (dropping such lines changed what was restored, and status 0).
_MAX_KEY = 256
_OPENING = re.compile(rb"\\restrict ([A-Za-z0-9]{1,%d})\r?\n?" % _MAX_KEY)
_KEY_START = re.compile(rb"[A-Za-z0-9]{0,%d}\r?" % _MAX_KEY)



QUIET_ERRORS = ("-v", "VERBOSITY=sqlstate", "-v", "SHOW_CONTEXT=never")
# A custom archive's SQL, BEGIN first and COMMIT last (encpipe/bench/pg.py runs the same through cat)
ARCHIVE_TO_SQL = ("pg_restore", "--exit-on-error", "--single-transaction", "-f", "-")
# encpipe-restore's hints after a failure psql named by its SQLSTATE
QUIET_PSQL = ("psql's errors above are SQLSTATE codes and lines of the dump: its messages may quote the dump's"
              " data; to see them, add -- -v VERBOSITY=default")
QUIET_ARCHIVE = ("psql's errors above are SQLSTATE codes and lines of the archive's SQL (pg_restore -f -): its"
                 " messages may quote the dump's data; README, \"A failed restore's messages\", says how to see them")


def psql_restore_args(db, custom, tool_args=()):
    """psql reading a dump's SQL on standard input, its errors quiet: a plain dump's
    in one transaction with the user's options, an archive's (ARCHIVE_TO_SQL's
    output, which holds its BEGIN and COMMIT, and took the options) as it is."""
    if custom:  # the archive's BEGIN, after this -c, begins a transaction that may write
        return psql_args(db, *QUIET_ERRORS, "-c", "SET default_transaction_read_only = off", "-f", "-")
    return psql_args(db, "--single-transaction", *QUIET_ERRORS, "-c", "SET TRANSACTION READ WRITE", *tool_args,
                     "-f", "-")


def restricted_psql(allow_unrestricted, warn):
    """True: psql can restrict a plain dump's meta-commands. An older psql is
    Failure (1), or, when the user accepts the risk, False after `warn(text)`."""
    version = psql_version()
    if psql_can_restrict(version):
        return True
    if not allow_unrestricted:
        # no backslash in these lines: messages show one doubled (shown.printable)
        raise Failure("psql %d.%d cannot restrict a dump's meta-commands (a shell command, a copy to or from "
                      "a program would run on this host); nothing was changed" % version, 1,
                      "install psql 15.14, 16.10, 17.6 or later, or accept the risk "
                      "with --allow-unrestricted-psql")
    warn("psql %d.%d cannot restrict a dump's meta-commands: they will run on this host" % version)
    return False


class EmptyStream(Exception):
    pass


def _may_open(partial):
    """True when `partial`, a line's start, may still become the opening `\\restrict KEY`."""
    word = b"\\restrict "
    return word.startswith(partial) or partial.startswith(word) and bool(_KEY_START.fullmatch(partial, len(word)))


class RestrictFilter:
    """Drops the dump's own `\\restrict KEY` line (its first that is neither blank nor
    an SQL comment) and the lines that are exactly `\\unrestrict KEY` with that KEY;
    passes every other byte. Memory: a line's start, at most a key's length."""

    def __init__(self):
        self.opening = b""  # the opening's line not yet complete; None once it is passed
        self.in_comment = False  # the opening's comment line passed on as it comes
        self.closing = None  # b"\\unrestrict KEY" once the opening line was dropped
        self.carry = b""  # a line's start that may still be the closing line
        self.line_start = True

    def feed(self, chunk):
        if self.opening is not None:
            out, chunk = self._open(chunk)
            return out + (self._close(chunk) if chunk else b"")
        return self._close(chunk)

    def _open(self, chunk):
        """(what passes, the rest for _close) while the opening lines come."""
        data, pos = self.opening + chunk, 0
        while pos < len(data):
            end = data.find(b"\n", pos)
            if self.in_comment:
                self.in_comment = end < 0
                pos = len(data) if end < 0 else end + 1
                continue
            line = data[pos:] if end < 0 else data[pos:end + 1]
            if line.startswith(b"--"):
                self.in_comment = True
                continue
            if line in (b"\n", b"\r\n"):
                pos = end + 1
                continue
            if end < 0 and (line in (b"-", b"\r") or _may_open(line)):
                self.opening = line  # may still be blank, a comment or the opening line
                return data[:pos], b""
            self.opening = None
            own = _OPENING.fullmatch(line) if end >= 0 else None
            if own:
                self.closing = b"\\unrestrict " + own.group(1)
                return data[:pos], data[end + 1:]
            return data, b""
        self.opening = b""
        return data, b""

    def _close(self, chunk):
        data, self.carry = self.carry + chunk, b""
        if self.closing is None:
            return data
        needle, out, kept, pos = self.closing, [], 0, 0
        while (found := data.find(needle, pos)) >= 0:
            pos, after = found + 1, found + len(needle)
            if not (data[found - 1:found] == b"\n" if found else self.line_start):
                continue
            rest = data[after:after + 2]
            if rest in (b"", b"\r"):  # the line's end not here yet
                out.append(data[kept:found])
                self.carry, kept = data[found:], len(data)
                break
            if rest[:1] == b"\n" or rest == b"\r\n":
                out.append(data[kept:found])
                kept = after + (1 if rest[:1] == b"\n" else 2)
        if kept < len(data):  # the last line's start, which may become the closing line
            newline = data.rfind(b"\n", kept)
            start = newline + 1 if newline >= 0 else kept if kept or self.line_start else len(data)
            if start < len(data) and needle.startswith(data[start:]):
                out.append(data[kept:start])
                self.carry, kept = data[start:], len(data)
        out.append(data[kept:])
        self.line_start = bool(self.carry) or (data.endswith(b"\n") if data else self.line_start)
        return b"".join(out)

    def finish(self):
        if self.opening is not None:
            rest, self.opening = self.opening, None
            return b"" if _OPENING.fullmatch(rest) else rest
        rest, self.carry = self.carry, b""
        return b"" if self.closing and rest in (self.closing, self.closing + b"\r") else rest


def widen_pipes(*pipes):
    """1 MiB pipe buffers (Linux; 64 KiB by default): a sixteenth of the reads,
    writes and wake-ups on the way through. Best effort."""
    for pipe in pipes:
        try:
            set_pipe_size(pipe.fileno(), BLOCK)
        except (OSError, ValueError):
            pass


def _read_head(src, size):
    head = b""
    while len(head) < size:
        more = src.read1(size - len(head)) if hasattr(src, "read1") else src.read(size - len(head))
        if not more:
            break
        head += more
    return head


def _pump(head, src, dst):
    try:
        dst.write(head)
        while block := src.read1(BLOCK):
            dst.write(block)
    except (BrokenPipeError, ValueError):
        pass
    finally:
        for stream in (dst, src):  # src too: a writer blocked on a reader gone would hang
            try:
                stream.close()
            except OSError:
                pass


class Restore:
    """Runs `open_cmd | [decompressor] | psql or pg_restore` into the database that
    `create(kind)` makes once the first bytes arrived (after authentication)."""

    def __init__(self, open_cmd, open_env, pass_fds, tool_args, user, restrict, spawn, named=None):
        """`spawn`: fdsecrets.FdSecrets.spawn, which starts `encpipe open` only with the
        secrets it names lent. `named`: (file, database, time) its backup name says,
        which its label must not contradict; None for a file not named as a backup."""
        self.named = named
        self.labelled = False  # its run labelled its dump (its globals file carries a label): one without is refused
        self.open_cmd, self.open_env, self.pass_fds, self.spawn = open_cmd, open_env, pass_fds, spawn
        self.tool_args, self.user, self.restrict = tool_args, user, restrict
        self.procs = []
        self.quiet = self.psql_failed = False
        self.short_read = False  # psql ended before all of its input (pg_restore may: -t, the archive's end)
        self.opener_stderr = None  # encpipe open's error and hint, kept for the restore's one line
        self.client_said = None  # psql's or pg_restore's (pgsaid), once it was started

    def opener_said(self):
        """(encpipe open's error, its hint), each None when it said none."""
        return self.opener_stderr.wait() if self.opener_stderr else (None, None)

    def _child(self, *args, **options):
        """subprocess.Popen, recorded in procs in the same step for a raising handler
        (sigthreads.held): Popen cut short after the fork would lose the child."""
        with sigthreads.held():
            proc = subprocess.Popen(*args, **options)
            self.procs.append(proc)
        return proc

    def start(self):
        """Starts `encpipe open` (once), which then reads the file while its caller goes on."""
        if not self.procs:
            with sigthreads.held():  # started and recorded in one step: a stop kills it (kill())
                opener, self.opener_stderr = childerr.started(self.spawn, self.open_cmd, start=subprocess.Popen,
                                                              stdout=subprocess.PIPE, env=self.open_env,
                                                              pass_fds=self.pass_fds)
                self.procs.append(opener)
            widen_pipes(opener.stdout)

    def run(self, create):
        """Returns (status of encpipe open, status of the restore client); raises EmptyStream."""
        self.start()
        opener = self.procs[0]
        src = opener.stdout
        head = _read_head(src, HEAD_BYTES)
        if self.named:
            self._check_label(head)
        for magic, tool in _DECOMPRESSORS:
            if head.startswith(magic) or tool == "zstd" and head[:1] and head[0] >> 4 == 5 and \
                    head[1:4] == _ZSTD_SKIPPABLE:
                unpack = self._child([tool, "-d", "-c", "-q"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     env=child_env(os.environ))
                widen_pipes(unpack.stdin, unpack.stdout)
                sigthreads.start(threading.Thread(target=_pump, args=(head, src, unpack.stdin), daemon=True))
                src, head = unpack.stdout, _read_head(unpack.stdout, 8)
                break
        if not head:
            status = opener.wait()
            self.opener_said()  # its warnings before the restore's own line
            if any(p.wait() for p in self.procs[1:]):
                return status, 1  # the decompressor failed
            if status == 0:
                raise EmptyStream()
            return status, 0
        custom = head.startswith(b"PGDMP")
        if not custom:  # pg_dumpall's first lines: a globals file renamed to a dump's name authenticates too
            head += _read_head(src, len(CLUSTER_DUMP) - len(after_line(head)))  # past a label, which both carry
            if after_line(head).startswith(CLUSTER_DUMP):  # restored, its CREATE ROLE statements would run as superuser
                raise Failure("the file holds pg_dumpall's dump of a cluster (a globals file under a dump's name?), "
                              "not a database's dump; nothing was changed", 65)
        db = create("custom" if custom else "plain")
        # psql's errors name the SQLSTATE and line, not the statement or its values (the dump's
        # plaintext, bound for a journal or cron's mail); for a plain dump `-- -v VERBOSITY=default` shows all.
        self.quiet = not custom or self.restrict  # psql runs the SQL (else pg_restore -d, whose errors are whole)
        if custom and not self.restrict:  # no psql to keep the archive's meta-commands from running
            argv = ["pg_restore", "--no-password", "--exit-on-error", "--single-transaction", "-d", db,
                    *self.tool_args]
        else:  # an archive's SQL, BEGIN first and COMMIT last, to the same psql as a plain dump's
            if custom:
                src, head = self._script(head, src), b""
            argv = psql_restore_args(db, custom, self.tool_args)
        self.client_said = said = ClientSaid()  # its lines passed on, and what the hint needs kept
        try:
            client = self._child(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=said.fd,
                                 env=client_env(self.user))
        finally:
            said.started()
        widen_pipes(client.stdin)
        watch = None
        try:
            self._feed(head, src, client.stdin, RestrictFilter() if self.quiet else None)
            client.stdin.flush()
            # psql (a \q of an unrestricted one's dump) may end before its input: what it left is counted
            watch = input_of(client) if self.quiet else None
        except BrokenPipeError:
            self.short_read = self.quiet
        finally:
            try:
                client.stdin.close()
            except OSError:
                pass
            src.close()
        status = client.wait()
        if watch is not None:
            self.short_read = not took_all(watch)
        said.wait()  # its lines before the restore's own
        self.psql_failed = self.quiet and status > 0  # it named errors (a signal ends it silently)
        middle = self.procs[1:-1]  # a decompressor, pg_restore -f -: one that failed cut the stream short
        if status:  # pg_restore may read on for long without writing (the data of tables -t left out)
            kill_running(middle)
        for proc in middle:
            status = status or (proc.wait() and 1)
        opened = opener.wait()
        self.opener_said()
        return (0 if opened == -13 and status != 0 else opened), status

    def _check_label(self, head):
        """Refuse (65) a dump whose label, or archive header, names another backup than its name."""
        path, db, stamp = self.named
        try:
            said = found(head)
            why = mismatch(said, db, stamp)
        except InvalidStream as e:
            why, said = str(e), None
        if not why and self.labelled and head and said.source is None:  # before labels, or by hand: another
            # run's (none at all: encpipe open refused it, and says why, or it is empty)
            why = "holds no label, though its run's globals file carries one, as encpipe-backup labels every dump " \
                  "of such a run"
        if why:
            raise Failure("%s %s (a copy of another backup put under this name?); nothing was changed"
                          % (path, why), 65)

    def _script(self, head, src):
        """Starts `pg_restore -f -` on the archive (`head`, then `src`); returns its SQL's pipe.
        It reaches no server: libpq's secrets stay out of its environment. With
        --single-transaction it writes BEGIN and COMMIT around the rest (large objects
        too), and a stream cut short lacks the COMMIT: psql, given no -1 of its own, rolls back."""
        script = self._child([*ARCHIVE_TO_SQL, *self.tool_args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             env=child_env(os.environ))
        widen_pipes(script.stdin, script.stdout)
        sigthreads.start(threading.Thread(target=_pump, args=(head, src, script.stdin), daemon=True))
        return script.stdout

    def _feed(self, head, src, dst, restrict_filter):
        if restrict_filter is None:
            dst.write(head)
            while block := src.read1(BLOCK):
                dst.write(block)
            return
        if self.restrict:
            dst.write(b"\\restrict " + restrict_key().encode() + b"\n")
        dst.write(restrict_filter.feed(head))
        while block := src.read1(BLOCK):
            dst.write(restrict_filter.feed(block))
        dst.write(restrict_filter.finish())

    def kill(self):
        for proc in self.procs:  # encpipe open's key command too, which holds its standard error
            childerr.stop(proc)
        if self.client_said:  # what the client said before it was stopped, before the restore's own line
            self.client_said.wait()
        self.opener_said()
