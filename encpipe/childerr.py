"""A child encpipe's standard error, as a script that runs it shows it: its error
and hint lines held back for the script's one line, everything else passed on.

encpipe-restore runs `encpipe open` (and `inspect --legacy --verify`) on the
backup and the globals file; when one refuses the file, its `encpipe: error:`
line (and `hint:` line) went to standard error before restore's own, three
lines for one failure. Now a thread reads the child's standard error from a
pipe: a line that is an error or the hint right after it is kept (the first
of each, at most LINE_MAX bytes of it: memory stays bounded whatever the child
writes, and nothing goes to disk) and the script folds it into its own line;
any other line (a warning, such as the one for a key file others can read or
for a v1 file, with its hint; and --progress) is passed on to the script's
standard error at once, as the child wrote it, whether the child then fails
or not; so is a line not ended yet that cannot become an error or hint line (a
key command's question, which waits for its answer: held back, it never showed
while the command waited).
"""

import codecs
import os
import select
import subprocess
import sys
import threading

from . import sigthreads
from .proctree import kill_tree
from .shown import unprintable
from .stdio import write_quietly

LINE_MAX = 4096  # bytes of a line read at once, and kept of an error or hint line


class ChildStderr:
    """Give `fd` as the child's stderr, call started() once it runs (or close()
    if it could not be started), and wait() once it ended: (error, hint).
    `prog`: the name the child gives itself in its lines; without `pass_on`, its
    other lines are read and dropped (a check whose warnings the real run gives).
    `label`: put before each line passed on (a script that runs a child per file:
    the file it is about). `only`: pass on only the lines that start so (a check's
    --progress lines, its warnings dropped)."""

    def __init__(self, out=None, prog="encpipe", pass_on=True, label="", only=b""):
        self._out, self._pass_on, self._label, self._only = out, pass_on, label, only
        self._markers = {kind: f"{prog}: {kind}: ".encode() for kind in ("error", "hint")}
        self._read, self.fd = os.pipe2(os.O_CLOEXEC)
        self._thread = None
        self._ended = threading.Event()  # the child ended: what is in the pipe is all it wrote
        self.error = self.hint = None

    def started(self):
        os.close(self.fd)
        self.fd = None
        self._thread = threading.Thread(target=self._relay, daemon=True)
        sigthreads.start(self._thread)

    def close(self):
        """The child was not started: both ends closed."""
        for fd in (self.fd, self._read):
            if fd is not None:
                os.close(fd)
        self.fd = self._read = None

    def wait(self, timeout=10):
        """(the child's first error, its first hint), each without its prefix, or None,
        once every line it wrote was passed on: call it once the child ended. What
        it wrote is in the pipe by then; a process it left behind that holds the
        pipe (a key command's) is not waited for: the relay ends once the pipe is
        empty (`timeout` s at most)."""
        self._ended.set()
        if self._thread:
            self._thread.join(timeout)
        return self.error, self.hint

    def _relay(self):
        with open(self._read, "rb", buffering=0, closefd=True) as src:
            self._read = None
            reader, text = Lines(src, self._ended), codecs.getincrementaldecoder("utf-8")("replace")
            keep = None  # the rest of a line being kept: "error" or "hint"; False: one passed on
            passing = False  # the line under way is passed on
            after_error = False  # the line before was an error line: a hint now is its hint
            markers = self._markers.values()
            # the start of a line, not ended yet, that is or may become an error or hint line (or one that
            # starts with `only`, when it is not all there yet): held for the rest
            markers = (*markers, self._only) if self._only else markers
            held = lambda start: keep is None and any(start.startswith(m) or m.startswith(start) for m in markers)
            while piece := reader.next(held):
                label = self._label if keep is None else ""
                if keep is None:  # a line starts here
                    keep = next((kind for kind, marker in self._markers.items() if piece.startswith(marker)), False)
                    if keep == "hint" and not after_error:
                        keep = False  # a warning's hint: passed on with it, never taken for the error's
                    passing = self._pass_on and not keep and piece.startswith(self._only)
                    if keep and getattr(self, keep) is None:  # a character cut at LINE_MAX is left out
                        kept = piece[len(self._markers[keep]):].rstrip(b"\r\n")
                        # as the child's text, not as it showed it: the script shows it again (shown.printable)
                        setattr(self, keep, unprintable(codecs.getincrementaldecoder("utf-8")("replace").decode(kept)))
                if passing:
                    write_quietly(self._out or sys.stderr, label + text.decode(piece))
                if piece.endswith(b"\n"):
                    keep, after_error = None, keep == "error"
            if (rest := text.decode(b"", final=True)) and self._pass_on:
                write_quietly(self._out or sys.stderr, rest)


class Lines:
    """Pieces of what `src` gives: each a whole line, LINE_MAX bytes of a longer one,
    or as much of a line as came so far, unless held(it) (a key command's question,
    which ends in no newline, shows while it waits for the answer). The end: EOF, or
    the pipe empty once `ended` is set."""

    def __init__(self, src, ended):
        self.src, self.buffer, self.ended = src, b"", ended
        self.ready = select.poll()  # not select(): a descriptor over 1023 is one too
        self.ready.register(src, select.POLLIN)

    def next(self, held=lambda start: True):
        while True:
            end = self.buffer.find(b"\n", 0, LINE_MAX) + 1 or (LINE_MAX if len(self.buffer) >= LINE_MAX else 0)
            if not end and self.buffer and not held(self.buffer):
                end = len(self.buffer)
            if end:
                piece, self.buffer = self.buffer[:end], self.buffer[end:]
                return piece
            try:
                while not self.ready.poll(100):
                    if self.ended.is_set():  # nothing more to read, and the child ended
                        raise EOFError
                more = self.src.read(LINE_MAX)
            except (OSError, ValueError, EOFError):
                more = b""
            if not more:
                piece, self.buffer = self.buffer, b""
                return piece
            self.buffer += more


def stop(proc):
    """End `proc`, an encpipe child, if it still runs, with what it started (its key
    command, which holds its standard error too), and reap it: a restore stopped
    (SIGTERM, SIGINT) or failing leaves none of them running, nor waits for them."""
    if proc.poll() is None:
        kill_tree(proc.pid)
        proc.wait()


def exit_status(returncode):
    """As a shell shows it: 128 + N for a process killed by signal N."""
    return 128 - returncode if returncode < 0 else returncode


def waited(proc):
    """proc.wait(); stop(proc) first when something ends the wait (SIGTERM, SIGINT)."""
    try:
        return proc.wait()
    except BaseException:
        stop(proc)
        raise


def started(launch, *args, stderr_of=None, **kwargs):
    """`launch(*args, stderr=..., **kwargs)`: subprocess.Popen, or a function that
    calls it (FdSecrets.spawn), with the child's standard error read by a
    ChildStderr (`stderr_of`, else one that passes other lines on); (what launch
    returned, the ChildStderr). The start is held (sigthreads.held): a signal inside
    Popen, the child forked but not yet returned, stops it here, never loses it."""
    errs, proc = stderr_of or ChildStderr(), None
    try:
        with sigthreads.held():
            proc = launch(*args, stderr=errs.fd, **kwargs)
            errs.started()
    except BaseException:
        if proc is None:
            errs.close()
        else:
            stop(proc)
        raise
    return proc, errs


def used(launch, *args, use=waited, stderr_of=None, **kwargs):
    """started(...), then `use(proc)` (default: waited, its status), in one `try`
    entered before the start (held): a signal or an error anywhere from the start
    to use's end stops the child (stop), never leaves it running; (what use
    returned, the ChildStderr). Once started() returned, a caller that entered its
    own `try` only then had a few bytecodes in which a signal lost the child."""
    proc = None
    try:
        with sigthreads.held():  # started and in this `try` in one step
            proc, errs = started(launch, *args, stderr_of=stderr_of, **kwargs)
        return use(proc), errs
    except BaseException:
        if proc is not None:
            stop(proc)
        raise


def run(launch, args, limit, pass_on=True, label="", only=b"", **kwargs):
    """`launch(args, start=subprocess.Popen, **kwargs)` (FdSecrets.spawn) to its end, its
    standard error read by a ChildStderr (other lines passed on if `pass_on`, each
    after `label`; only those that start with `only`): (its returncode, at most `limit` bytes of its standard output,
    b"" when that is no pipe, (its error, its hint)). OSError when it cannot be
    started. A wait that is stopped (SIGTERM, SIGINT: the script is dying) ends the
    child first, with what it started (stop), as every other child of a script."""
    def use(proc):
        out = b""
        if proc.stdout:
            with proc.stdout:
                out = read_bounded(proc.stdout, limit)
        return waited(proc), out

    (status, out), errs = used(launch, args, use=use, stderr_of=ChildStderr(pass_on=pass_on, label=label, only=only),
                               start=subprocess.Popen, **kwargs)
    return status, out, errs.wait()


def read_bounded(src, limit):
    """At most `limit` bytes of what `src` (a child's pipe) gives, the rest read to its
    end and dropped: memory stays bounded whatever the child writes."""
    kept = src.read(limit)
    while src.read(LINE_MAX):
        pass
    return kept
