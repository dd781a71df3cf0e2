"""encpipe's command line: main(argv) -> exit status; the usage text is in usage.py."""

import os
import sys

from . import __version__
from .deps import docopt_parser, report_missing, unexpected_line
from .errors import EncpipeError, IOFailure, UsageError, ran_out
from .processguard import (ctypes_backend, no_core_dumps, no_file_command, no_unraisable_memory_errors,
                           whole_numbers)
from .shown import json_value, printable
from .stdio import blocking, discard, is_pipe, write_quietly, write_whole
from .usage import COMMANDS, USAGE, command_help
from .utf8mode import ensure as ensure_utf8

EXIT_OK = 0
EXIT_INTERNAL = 70


def main(argv=None, *, stdin=None, stdout=None, stderr=None, env=None):
    """Run one command; returns the exit status. Streams and env are injectable for tests."""
    io = Io(
        stdin or _standard_input(),
        stdout or sys.stdout.buffer,
        stderr or sys.stderr,
        os.environ if env is None else env,
    )
    argv = sys.argv[1:] if argv is None else list(argv)
    return report_errors(io, lambda: _run(argv, io))


def _unabbreviated(word):
    """--help or --version for a prefix of it (--he, --ver), as a command's long options may be abbreviated."""
    return next((full for full in ("--help", "--version") if len(word) > 2 and full.startswith(word)), word)


def _run(argv, io):
    command = _unabbreviated(argv[0]) if argv else None  # before a command; after --version, its words too
    if command is not None:
        argv = [command, *(map(_unabbreviated, argv[1:]) if command == "--version" else argv[1:])]
    one_command = argv[1:2] in ([c] for c in COMMANDS) and (command != "help" or len(argv) == 2)
    if command in ("-h", "--help", "help") and one_command:
        return _print(io, command_help(argv[1]).strip())
    if command in ("-h", "--help") or argv == ["help"] or command == "--version" and {"-h", "--help"} & set(argv):
        return _print(io, USAGE.strip())  # help first, as with `--help --version`
    if command == "--version":
        if argv[1:]:
            raise UsageError(f"--version takes no arguments: {len(argv) - 1} given", hint="see encpipe --help")
        from . import aead

        return _print(io, f"{__version__} (cipher: {aead.name_in_use()})")
    if command not in COMMANDS:
        from .usage_errors import unknown_command

        raise unknown_command(command)
    if {"-h", "--help"} & set(argv[1 : (argv + ["--"]).index("--")]):  # help's own too
        return _print(io, command_help(command).strip())
    if command == "help":
        raise UsageError(f"help takes one command: {', '.join(COMMANDS)}")
    from . import commands

    args = parse(command, argv)
    if args.get("--help"):  # abbreviated (--he, --hel), as any long option may be: before, run without it
        return _print(io, command_help(command).strip())
    return commands.dispatch(args, io)


def parse(command, argv):
    """docopt's dictionary for `argv`, parsed with the command's own help text;
    a mistake becomes a UsageError that names it."""
    from .usage_errors import explain, first_empty

    docopt, docopt_exit = docopt_parser()
    try:
        args = docopt(command_help(command, parsing=True), argv=argv, default_help=False)
    except docopt_exit as e:
        raise explain(command, argv, str(e)) from None
    empty = first_empty(args)
    if empty:
        raise empty
    return args


def _print(io, text):
    io.print(text)
    return EXIT_OK


def write_line(text):
    """One line of a script's report on standard output. A failure is IOFailure
    (74; a full disk, a closed stdout) or BrokenPipeError (its reader went away),
    with stdout pointed at /dev/null so that nothing flushes it again at exit."""
    try:
        sys.stdout.flush()
        write_whole(sys.stdout.buffer, (text + "\n").encode())  # JSON: ASCII
        sys.stdout.buffer.flush()
    except BrokenPipeError:
        discard(0)
        raise
    except OSError as e:
        discard(0)
        raise IOFailure(f"cannot write output: {e.strerror or e}") from None


def print_text(prog, text):
    """A script's --help (or report) on standard output: 0, else (a full disk, a closed
    stdout) one error line and 74, or 141 when its reader went away."""
    io = Io(None, sys.stdout.buffer, sys.stderr, os.environ, prog=prog)
    return report_errors(io, lambda: _print(io, text))


def report_errors(io, action):
    """Run `action()` and return its status; encpipe's errors become one line on
    stderr and their exit code, a failing stdout 74 (or 141 when its reader left).
    The line is said whole before a signal that waited for an import runs (held:
    its retry, 10 ms later, could cut it, and the run die of SIGINT, nothing said)."""
    try:
        return action()
    except (ImportError, EncpipeError, OSError, MemoryError) as e:
        from .sigdefer import held_once

        with held_once():  # a second signal ends it: a line stuck on a full stderr never keeps it alive
            return _reported(io, e)


def _reported(io, e):
    if isinstance(e, ImportError):
        return report_missing(io, e)
    if isinstance(e, EncpipeError):
        io.error(str(e), hint=e.hint)
        return e.exit_code
    if isinstance(e, BrokenPipeError):
        return discard(141)
    io.error(ran_out(e) or f"cannot write output: {e.strerror or e}")  # writing a report or a key to standard
    return discard(IOFailure.exit_code)  # output; or out of memory, descriptors


def _script_failure(io, e):
    """run_script's one line for what main_of(module)(argv) raised; its status."""
    from .scriptmain import NotAScript

    if isinstance(e, ImportError):  # of the module, or one it imports when it needs it
        return report_missing(io, e)  # another's failure too: one line (deps.report_missing)
    if isinstance(e, NotAScript):  # no such module, or none with a main(): a bug (70)
        io.error(str(e))
        return e.exit_code
    return unexpected_line(io, e)  # a bug, its clean-up run on the way here, or a resource that ran out (74)


def run_script(prog, module, argv):
    """main(argv) of `module`, for the script `prog`: a dependency that cannot be
    imported is one line and exit 69, as for encpipe itself, not a traceback; a
    `module` that is not one with a main() one line and 70 (scriptmain);
    closed standard streams and SIGINT as for encpipe (see run); SIGTERM and
    SIGHUP, unless main sets its own, raise Terminated, so that clean-up runs,
    then the script dies of the signal. The shell scripts come here through
    `python -m encpipe.launch PROG MODULE ARG...`."""
    ensure_utf8()  # names read as UTF-8 whatever the locale: first, before a handler or a file is set up
    import signal

    from .earlysig import release
    from .scriptmain import main_of
    from .sigdefer import drained, held_once, settle

    catch_signal(signal.SIGINT, signal.default_int_handler)  # KeyboardInterrupt, outside imports
    for signum in (signal.SIGTERM, signal.SIGHUP):  # a script may set its own in main
        catch_signal(signum, _raise_terminated)
    try:
        guard_standard_fds()
        no_core_dumps()
        whole_numbers()
        no_unraisable_memory_errors()
        no_file_command()
        release()  # a SIGINT that came before the handlers (launch): now
        io = Io(None, None, sys.stderr, os.environ, prog=prog)
        try:
            status = main_of(module)(argv)
        except Exception as e:  # said whole before a signal that waited for an import runs (its
            with held_once():  # retry, 10 ms later, could cut the line: died of SIGINT, nothing said)
                status = _script_failure(io, e)
        # a signal an import made wait (the module's own, which failed too): now, not at the exit
        status = drained(status)
    except KeyboardInterrupt:
        return die_of()
    except Terminated as e:
        return die_of(e.args[0])
    except Exception as e:  # setting up (no_core_dumps's import of resource, out of memory): as run()
        status = unexpected_line(Io(None, None, sys.stderr, os.environ, prog=prog), e)
    settle()  # a change made and said (sigdefer.hold_for_good): its status stands
    return status


def catch_signal(signum, handler):
    """Handle `signum` with `handler`, unless it is ignored: a signal ignored when
    the process started (nohup's SIGHUP, a background job's SIGINT) stays ignored,
    here and in every child (an ignored signal stays ignored across exec; a
    handled one is the default again). Scripts and encpipe set handlers only so."""
    import signal

    from .sigdefer import outside_imports

    if signal.getsignal(signum) != signal.SIG_IGN:
        signal.signal(signum, outside_imports(handler))


class Terminated(BaseException):
    """SIGTERM or SIGHUP, raised in the main thread (see run_script and run) so that
    its clean-up runs (a remote listing kills and reaps its rclone processes;
    `seal -o` removes its hidden file); then the process dies of the signal."""


def _raise_terminated(signum, _frame):
    raise Terminated(signum)


JSON_BLOCK = 1 << 16  # characters of JSON gathered per write


class Io:
    """A process's streams (binary stdin and stdout, text stderr) and environment,
    passed to commands explicitly; messages are prefixed with the program's name."""

    def __init__(self, stdin, stdout, stderr, env, prog="encpipe"):
        self.stdin, self.stdout, self.stderr, self.env, self.prog = stdin, stdout, stderr, env, prog

    def _say(self, kind, message, hint=None):
        hint = f"{self.prog}: hint: {printable(hint)}\n" if hint else ""
        write_quietly(self.stderr, f"{self.prog}: {kind}: {printable(message)}\n{hint}")

    def error(self, message, hint=None):
        self._say("error", message, hint)

    def warn(self, message, hint=None):
        self._say("warning", message, hint)

    def print(self, text):
        write_whole(self.stdout, text.encode("utf-8") + b"\n")
        self.stdout.flush()

    def print_json(self, value, default=None):
        """`value` as indented JSON, the bytes json.dumps(value, indent=2) gives, written
        as it is encoded: no string of the whole document (a listing of many files);
        `default` turns an object (a listing's entry) into its JSON value when reached.
        Names that are not UTF-8 as shown.json_value gives them. json is imported
        here, not at the top: seal and open, most runs, print none."""
        import json

        out, pending, size = self.stdout, [], 0
        encoder = json.JSONEncoder(indent=2, default=default and (lambda o: json_value(default(o))))
        for chunk in encoder.iterencode(json_value(value)):
            pending.append(chunk)
            size += len(chunk)
            if size >= JSON_BLOCK:
                write_whole(out, "".join(pending).encode("utf-8"))
                pending, size = [], 0
        pending.append("\n")
        write_whole(out, "".join(pending).encode("utf-8"))
        out.flush()


def set_up(prog):
    """guard_standard_fds(), no_core_dumps() and no_unraisable_memory_errors() for a
    module run as a program by `python -m` (not through run or run_script, which do
    them): one that fails (an extension that cannot be mapped, out of memory) is one
    line and its status, never a traceback, and the program goes no further: it
    would hold keys with no guard against a core file."""
    try:
        guard_standard_fds()
        no_core_dumps()
        no_unraisable_memory_errors()
        no_file_command()
    except Exception as e:
        raise SystemExit(unexpected_line(Io(None, None, sys.stderr, os.environ, prog=prog), e)) from None


def guard_standard_fds():
    """Give a standard descriptor the caller closed (`<&-`, `>&-`, `2>&-`) /dev/null
    in its place, so that no file opened later takes its number (to be written as
    standard output, or inherited so by a child). Standard input and output get
    it the wrong way round (write-only, read-only): reading or writing them is then
    an error (EBADF, one line and exit 74), not a traceback nor an empty input.
    Messages to a closed standard error are discarded; the exit status still tells.
    One handed down in non-blocking mode is made blocking (stdio.blocking)."""
    for fd, flags, name, mode in ((0, os.O_WRONLY, "stdin", "r"), (1, os.O_RDONLY, "stdout", "w"),
                                  (2, os.O_WRONLY, "stderr", "w")):
        if blocking(fd):
            continue
        null = os.open(os.devnull, flags)
        if null != fd:
            os.dup2(null, fd)
            os.close(null)
        if getattr(sys, name) is None:
            setattr(sys, name, open(fd, mode, closefd=False, errors="backslashreplace" if fd == 2 else "strict"))
        if fd == 1:  # what could not be written is dropped at exit, not flushed again (exit 120)
            import atexit

            atexit.register(discard, 0)


def die_of(signum=2):
    """Die of `signum` (SIGINT unless said) itself (quietly, no traceback), so that the
    parent sees the conventional status; 128 + signum if the signal is somehow ignored."""
    import signal

    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    return 128 + signum


def _standard_input():
    # Unbuffered: a worker thread still blocked reading a stalled pipe when a
    # command fails must not hold a buffer lock that interpreter exit needs.
    return sys.stdin.buffer.raw


# `python -c RUN_MODULE MODULE ARG...` runs MODULE as `python -m MODULE ARG...` would, less the
# working directory that -m (and -c) put first on the module path: an encpipe.py, an encpipe/ or a
# json.py there, another user's, ran in encpipe's place, as the operator and with the keys (sys is
# built in; -P would do it from Python 3.11 only). scripts/encpipe-sh-setup holds the same line.
RUN_MODULE = ('import sys; sys.path[:1] == [""] and sys.path.pop(0); import runpy; '
              'runpy.run_module(sys.argv.pop(1), run_name="__main__", alter_sys=True)')


def python_module(module):
    """The command that runs `module` with this very Python, never a module of the
    working directory's (RUN_MODULE)."""
    return [sys.executable, "-c", RUN_MODULE, module]


def child_command(env):
    """How a script runs encpipe: $ENCPIPE split like a shell, else this very
    Python's encpipe (python_module; never whatever `encpipe` PATH finds first)."""
    import shlex

    try:
        return shlex.split(env.get("ENCPIPE", "")) or python_module("encpipe")
    except ValueError as e:  # an unbalanced quote
        raise UsageError(f"ENCPIPE: cannot split it into a command: {e}") from None


def _widen_pipes(size=1 << 20):
    """Let a pipe on stdin or stdout hold a whole chunk: fewer wake-ups per chunk
    (pg_dump writes 4 KiB at a time)."""
    from .compat import set_pipe_size

    for stream in (sys.stdin, sys.stdout):
        if is_pipe(stream):
            try:
                set_pipe_size(stream.fileno(), size)
            except OSError:
                pass


def run():
    """Console entry point: default signal behaviour, then main(). SIGTERM and
    SIGHUP (unless ignored when encpipe started) raise Terminated, as SIGINT raises
    KeyboardInterrupt, so that `seal -o` and `rewrap --in-place` remove their
    hidden file; then encpipe dies of the signal."""
    import signal

    from .earlysig import release
    from .sigdefer import drained, held_once, settle

    ctypes_backend()
    catch_signal(signal.SIGINT, signal.default_int_handler)  # KeyboardInterrupt, outside imports
    for signum in (signal.SIGTERM, signal.SIGHUP):
        catch_signal(signum, _raise_terminated)  # nohup's SIGHUP stays ignored
    try:
        guard_standard_fds()
        no_core_dumps()
        whole_numbers()
        no_unraisable_memory_errors()
        _widen_pipes()
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        release()  # a SIGINT that came before the handlers (python -m encpipe): now
        try:
            status = main()
        except Exception as e:  # as in run_script: said whole, then a signal that waited
            with held_once():
                status = unexpected_line(Io(None, None, sys.stderr, os.environ), e)
        status = drained(status)  # a signal an import made wait: now, not at the exit
    except KeyboardInterrupt:
        status = die_of()
    except Terminated as e:  # after clean-up: seal -o's hidden file is removed
        status = die_of(e.args[0])
    except Exception as e:  # setting up (guard_standard_fds...)
        status = unexpected_line(Io(None, None, sys.stderr, os.environ), e)
    settle()  # FILE renamed into place (sigdefer.hold_for_good): 0 stands
    raise SystemExit(status)
