"""rclone's processes as streams: `rclone cat` as a reader, `rclone rcat` as a
writer (for rclonestore.Rclone). A failure of rclone is an error, never a short file.
Children keeps the ones a store has running, so that a listing that stops early
(interrupted, failed) can end those its other threads started."""

import subprocess
import threading

from .. import sigthreads
from ..errors import InputUnavailable, IOFailure
from ..pipewatch import input_of, took_all
from ..proctree import kill_running

# Every rclone encpipe starts has bounded time: a remote that accepts the connection
# and never answers fails the call (rclone's status; encpipe's one error line) instead
# of hanging the run. These are rclone's own settings (its --contimeout, --timeout:
# idle time, not a transfer's length, and --low-level-retries, which multiplies
# both), given as its environment variables when the caller has not set them: set
# RCLONE_CONTIMEOUT, RCLONE_TIMEOUT or RCLONE_LOW_LEVEL_RETRIES to change them.
# README, "Off-site copies".
RCLONE_BOUNDS = {"RCLONE_CONTIMEOUT": "30s", "RCLONE_TIMEOUT": "1m", "RCLONE_LOW_LEVEL_RETRIES": "3"}


def bounded(env):
    """`env` (rclone's) with RCLONE_BOUNDS for each of them it does not set."""
    return {**env, **{name: value for name, value in RCLONE_BOUNDS.items() if not env.get(name)}}


class Children:
    """The rclone processes a store has running. stop() kills them all, and every
    one started until resume() (a thread of a listing that is stopping, just
    starting its next read) is killed at once: its read fails, as a read fails
    when rclone dies."""

    def __init__(self):
        self.lock = threading.Lock()
        self.running = set()
        self.stopped = False

    def start(self, argv, **options):
        """The child, started and recorded in one held step (sigthreads.held): a signal
        that came meanwhile (inside Popen, the child forked) stops it here, never loses it."""
        proc = None
        try:
            with self.lock, sigthreads.held():  # the lock: so that stop() cannot miss a child being started
                proc = sigthreads.popen(argv, **options)
                self.running.add(proc)
                if self.stopped:
                    proc.kill()
        except BaseException:
            if proc is not None:
                self.done(proc)
            raise
        return proc

    def done(self, proc):
        """Kill `proc` if it still runs, reap it, forget it."""
        try:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        finally:
            with self.lock:
                self.running.discard(proc)

    def stop(self):
        with self.lock:
            self.stopped = True
            kill_running(self.running)

    def resume(self):
        with self.lock:
            self.stopped = False


ERR_TAIL = 4096  # bytes kept of the end of what rclone writes on its standard error
# How long an upload given up (Upload.abort) leaves rclone, asked to stop, to abort its
# partial upload (one request, bounded by RCLONE_BOUNDS' times) before it is killed.
ABORT_WAIT = 30


def tail(src, size=ERR_TAIL):
    """The last `size` bytes of what `src` gives, read to its end: memory stays
    bounded whatever rclone writes there (its error is its last line)."""
    kept = b""
    try:
        while block := src.read(size):
            kept = (kept + block)[-size:]
    except (OSError, ValueError):  # closed under it: the run is being given up
        pass
    return kept


def last_line(err, otherwise="failed"):
    """What rclone said of its failure: the last line of the end of its standard
    error (`err`, bytes), else `otherwise`."""
    return (err.decode(errors="replace").strip().splitlines() or [otherwise])[-1]


# rclone's fatal error for a remote it cannot make (no such remote, a bad parameter):
# the command ended before it read or wrote anything there
UNOPENED = b"Failed to create file system for "
UNUSED_LIMIT = 1 << 20  # bytes of output read from a command that writes none (moveto, deletefile)


class Overflow(IOFailure):
    """A command wrote more on its standard output than it ever does."""


def unused(out):
    """The output of a command that writes none, read (a full pipe would stop rclone)
    up to UNUSED_LIMIT bytes: Overflow past them (the child killed), never all of it."""
    if len(out.read(UNUSED_LIMIT + 1)) > UNUSED_LIMIT:
        raise Overflow(f"more than {UNUSED_LIMIT} bytes on its standard output")
    return b""


def run(children, argv, read=unused, **options):
    """subprocess.run(argv, capture_output=True) with the child kept in `children`
    while it runs, and killed and reaped whatever happens; of its standard error,
    only the end (ERR_TAIL bytes) is kept. Its output is what `read` returns of
    its standard output (a file), by default none (unused: a bounded read); `read`
    takes it as it comes, and may stop early by raising (the child killed)."""
    proc = err = None
    try:
        with sigthreads.held():  # started, recorded and in this `try` in one step
            proc = children.start(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  **options)
            err = _ErrTail(proc)
        out = read(proc.stdout)
        proc.wait()
    finally:
        if proc is not None:
            children.done(proc)
            proc.stdout.close()
            said = err.end() if err else b""
    return proc.returncode, out, said


class _ErrTail:
    """rclone's standard error read in a thread while it runs (one that writes more
    than a pipe holds would otherwise wait for ever), its end (ERR_TAIL bytes) kept."""

    def __init__(self, proc):
        self.proc, self.kept = proc, []
        self.reader = sigthreads.start(threading.Thread(target=lambda: self.kept.append(tail(proc.stderr)),
                                                        daemon=True))

    def end(self):
        """The end of what rclone wrote, once it ended; a process it left behind that
        holds the pipe is waited for 10 s at most."""
        self.reader.join(10)
        if not self.reader.is_alive():
            self.proc.stderr.close()
        return self.kept[0] if self.kept else b""


class Download:
    """rclone cat's output, as the listing said it is: its `size` bytes, no more
    (a remote that serves more, or an endless stream, fails at the first byte past
    them: a download never fills the disk it is spooled to nor runs for ever) and
    no fewer (an object that ends early fails, rather than reading as a short file).
    Either is InputUnavailable (66) naming the object; a failure of rclone is an
    OSError with rclone's reason (the last line of its standard error, read while it
    runs, its end kept, as an upload's), not a short file. rclone (`argv`, `options`,
    kept in `children`) starts at the first read, held (sigthreads.held): inside the
    reader's `with`, whose end stops it, never before it (a signal in between left it
    running)."""

    def __init__(self, argv, options, where, children, size):
        self.argv, self.options, self.where, self.children = argv, options, where, children
        self.proc, self.err, self.size, self.got = None, None, size, 0

    def _out(self):
        if self.proc is None:
            with sigthreads.held():  # started and recorded in one step: close() stops it
                self.proc = self.children.start(self.argv, **self.options, stderr=subprocess.PIPE)
                self.err = _ErrTail(self.proc)
        return self.proc.stdout

    def read(self, size=-1):
        if size == 0:
            return b""
        out, left = self._out(), self.size - self.got
        if left <= 0:  # all that was listed: the stream must end here
            if out.read(1):
                self.children.done(self.proc)  # rclone stopped at once, not left writing into its pipe
                raise InputUnavailable(f"{self.where} is longer than listed ({self.size} bytes)")
            self._ended()
            return b""
        block = out.read(left if size is None or size < 0 else min(size, left))
        if not block:
            self._ended()
            raise InputUnavailable(f"{self.where} is shorter than listed ({self.got} of {self.size} bytes)")
        self.got += len(block)
        return block

    def _ended(self):
        if self.proc.wait() != 0:  # rclone's reason, when it gave one
            reason = last_line(self.err.end(), None)
            raise OSError(f"rclone cannot read {self.where}" + (f": {reason}" if reason else ""))

    def readinto(self, buffer):
        block = self.read(len(buffer))
        buffer[: len(block)] = block
        return len(block)

    def seekable(self):
        return False

    def close(self):
        if self.proc is None:  # never read: never started
            return
        try:
            self.children.done(self.proc)  # killed if still running, reaped
        finally:
            self.proc.stdout.close()  # before the wait for its standard error: nothing blocks writing here
            if self.err:
                self.err.end()
            else:  # its reader never started (no thread to be had)
                self.proc.stderr.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Upload:
    """rclone rcat's input. Its standard error is read while the upload runs (an
    rclone that writes more than a pipe holds there, as `-vv` or `--dump bodies`
    makes it, would otherwise wait for ever, and the upload with it); only its
    end (ERR_TAIL bytes) is kept, for the error line. An rclone that ends before
    it has taken all that was written, even with status 0, fails the upload
    (IOFailure, 74): a short object is never taken for a complete one, whether
    rclone's end broke the pipe or left the rest unread in it (input_of); so
    does one that took it all but whose object the remote then gives with
    another size (`kept(written)` raises it: a proxy that cut the body short)."""

    def __init__(self, proc, where, kept=None):
        self.proc, self.where, self.kept = proc, where, kept
        self.err = _ErrTail(proc)
        self.written = 0

    def write(self, block):
        try:
            self.proc.stdin.write(block)
        except BrokenPipeError:  # rclone ended: its own failure, or a short upload
            self._end(short=True)
        self.written += len(block)

    def close(self):
        self._end(short=False)

    def abort(self):
        """Ends the upload unfinished, its input still open (at the end of its input
        rcat would store what it was given): rclone is asked to stop (SIGTERM), on
        which it aborts its own partial upload (an S3 multipart upload, that SIGKILL
        leaves on the server, invisible and billed), and killed only when it has not
        ended ABORT_WAIT s later, or when this is interrupted meanwhile; then
        reaped. What may be left on the remote (a sentence), else None; interrupted,
        that sentence is `left`."""
        left = None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(ABORT_WAIT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                left = f"rclone rcat did not end within {ABORT_WAIT} s of SIGTERM and was killed"
            except BaseException:  # interrupted again: stopped at once, and said (`left`)
                self.proc.kill()
                self.left = self._killed("rclone rcat was killed, the run interrupted again while it aborted its upload")
                self._closed()
                raise
        self._closed()
        return left and self._killed(left)

    left = None  # what abort() left, when it was interrupted again
    unopened = False  # rclone failed before it opened the remote: it stored nothing

    def _killed(self, why):
        return (f"{why}: an unfinished upload of {self.where} may be left (an S3 multipart upload: rclone backend "
                "list-multipart-uploads REMOTE:BUCKET)")

    def _closed(self):
        try:
            self.proc.stdin.close()
        except OSError:  # what was buffered for it, not taken
            pass
        self.proc.wait()
        self.err.end()

    def _end(self, short):
        watch = None
        try:
            if not self.proc.stdin.closed:
                self.proc.stdin.flush()
                watch = None if short else input_of(self.proc)
        except BrokenPipeError:  # what was left to give it was not taken
            short = True
        try:
            self.proc.stdin.close()
        except BrokenPipeError:  # the flush that failed above, tried again
            short = True
        status = self.proc.wait()
        err = self.err.end()
        if watch is not None:
            short = not took_all(watch) or short  # rclone has ended: what it left in its pipe it never read
        if status != 0:
            self.unopened = UNOPENED in err
            raise IOFailure(f"cannot upload {self.where}: {last_line(err)}")
        if short:
            raise IOFailure(f"cannot upload {self.where}: "
                            "rclone rcat ended (status 0) before all the data was written to it")
        if self.kept:  # what the remote holds: all that was written, or the upload failed
            self.kept(self.written)
