USAGE = """encpipe: streaming authenticated encryption for backups.

Usage:
  encpipe seal [-o FILE] [--allow-shared-dir] [--chunk-size SIZE] [--work-factor N] [--threads N]
               [--progress]
               [--key-file FILE]... [--key-command CMD]... [--identity FILE]...
               [--recipient PUBKEY]... [--recipient-file FILE]...
               [--passphrase-file FILE]... [--passphrase-fd N]... [--passphrase-command CMD]...
               [-p] [--sign-key FILE]... [--sign-key-command CMD]...
  encpipe open [--verify-first] [--threads N] [--progress] [--legacy]
               [--key-file FILE]... [--key-command CMD]... [--identity FILE]...
               [--passphrase-file FILE]... [--passphrase-fd N]... [--passphrase-command CMD]...
               [-p] [--signer PUBKEY]... [--signer-file FILE]... [FILE]
  encpipe inspect [--json] [--verify] [--threads N] [--progress] [--legacy]
               [--key-file FILE]... [--key-command CMD]... [--identity FILE]...
               [--passphrase-file FILE]... [--passphrase-fd N]... [--passphrase-command CMD]...
               [-p] [--signer PUBKEY]... [--signer-file FILE]... [FILE]
  encpipe rewrap [--in-place FILE] [--allow-shared-dir] [--replace] [--remove KEYID]... [--work-factor N] [--progress]
               [--add-key-file FILE]... [--add-recipient PUBKEY]... [--add-passphrase-file FILE]...
               [--key-file FILE]... [--key-command CMD]... [--identity FILE]...
               [--passphrase-file FILE]... [--passphrase-fd N]... [--passphrase-command CMD]...
               [-p] [--sign-key FILE]... [--sign-key-command CMD]...
               [--signer PUBKEY]... [--signer-file FILE]...
  encpipe keygen [--x25519 | --sign] [-o FILE]
  encpipe pubkey FILE
  encpipe keyid [--key-file FILE]... [--key-command CMD]... [--identity FILE]...
               [--recipient PUBKEY]... [--recipient-file FILE]...
               [--sign-key FILE]... [--signer PUBKEY]... [--signer-file FILE]...
  encpipe (-h | --help)
  encpipe --version

Commands:
  seal      Encrypt standard input to standard output (or -o FILE).
  open      Decrypt FILE (default: standard input) to standard output. Each
            chunk is written only after it authenticated.
  inspect   Show a sealed file's header without any key. With --verify and a
            key, authenticate every chunk and report the plaintext size.
  rewrap    Copy a sealed stream from standard input to standard output with a
            new set of key slots; the payload is copied, not re-encrypted.
  keygen    Print a new random 256-bit key (64 hex digits), or with --x25519
            write a secret identity to FILE and print its public key, or
            with --sign write a signing key to FILE and print its verify key.
  pubkey    Print the public key of the identity (or the verify key of the
            signing key) in FILE.
  keyid     Print the key id of each given key or public key, as inspect
            shows it.

Keys (never on the command line; options may be repeated):
  --key-file FILE            A file of keys, one per line: 64 hex digits, or an
                             x25519 identity. # starts a comment.
  --key-command CMD          Run CMD with sh -c; its output is such a key list.
  --identity FILE            Same as --key-file (for x25519 identities).
  --recipient PUBKEY         Seal to this public key (encpipe1...).
  --recipient-file FILE      Seal to each public key listed in FILE.
  --passphrase-file FILE     Read a passphrase from FILE (trailing newline dropped).
  --passphrase-fd N          Read a passphrase from file descriptor N.
  --passphrase-command CMD   Run CMD with sh -c; its output is the passphrase.
  -p, --passphrase           Prompt for a passphrase on the terminal.
  Without any of these, ENCPIPE_KEY (64 hex digits) and ENCPIPE_PASSPHRASE
  are used.

Signatures (format v2):
  --sign-key FILE            Sign with the signing key in FILE (/dev/fd/N works).
  --sign-key-command CMD     Run CMD with sh -c; its output is a signing key.
  --signer PUBKEY            Refuse a file not signed by this verify key
                             (encpipesign1...); nothing is written before the
                             whole file and its signature verified.
  --signer-file FILE         As --signer, for each verify key in FILE.
  Without --signer or --signer-file, ENCPIPE_SIGNER (verify keys separated
  by white space) is used.

Options:
  -o FILE, --output FILE     Write to FILE (mode 0600; it appears, or replaces
                             an existing FILE, only once complete).
  --allow-shared-dir         Write in a directory other users can write (-o,
                             --in-place); refused by default (exit 73).
  --chunk-size SIZE          Plaintext chunk size, a power of two from 16K to
                             16M, or auto: 4M when standard input is a file,
                             512K otherwise [default: auto].
  --work-factor N            scrypt cost log2(N) for new passphrase slots,
                             10 to 20 [default: 18].
  --threads N                Worker threads; auto: one wherever a second
                             does not pay (see README "Performance")
                             [default: auto].
  --progress                 Report progress on standard error.
  --verify-first             Authenticate all of FILE before writing anything.
  --legacy                   Read the previous backup tool's format.
  --json                     Print the result as JSON.
  --verify                   Authenticate every chunk (needs a key).
  --in-place FILE            Rewrap FILE itself, replacing it atomically.
  --replace                  Drop every existing slot before adding.
  --remove KEYID             Drop the slot with this key id.
  --add-key-file FILE        Add a slot for each key in FILE.
  --add-recipient PUBKEY     Add a slot for this public key.
  --add-passphrase-file FILE Add a slot for the passphrase in FILE.
  -h, --help                 Show this text.
  --version                  Show the version.

Exit status:
  0 success; 64 usage error or malformed key; 65 input is not a valid encpipe
  stream (corrupt, tampered, truncated, trailing data, unsupported version);
  66 cannot open an input or key file; 67 not signed by a trusted
  signer; 70 internal error; 73 the output
  directory can be written by another user; 74 cannot read or write data;
  75 the output file was changed by someone else meanwhile; 77 no supplied
  key opens the file; 78 no key configured.
"""
__doc__ = USAGE  # a plain constant too, so that python -OO keeps the usage text

import json
import os
import re
import stat
import sys

from docopt import DocoptExit, docopt

from . import __version__
from .errors import EncpipeError, IOFailure

EXIT_OK = 0
EXIT_USAGE = 64
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
    if "-h" in argv or "--help" in argv:
        return report_errors(io, lambda: _print(io, USAGE.strip()))
    try:
        args = docopt(usage_for(argv), argv=argv, default_help=False)
    except DocoptExit as e:
        io.error(_usage_message(argv, str(e)), hint="see encpipe --help")
        return EXIT_USAGE
    return report_errors(io, lambda: _dispatch(args, io))


def _print(io, text):
    io.print(text)
    return EXIT_OK


def _dispatch(args, io):
    if args.get("--version"):
        from . import aead

        return _print(io, f"{__version__} (cipher: {aead.name()})")
    from . import commands

    return commands.dispatch(args, io)


def report_errors(io, action):
    """Run `action()` and return its status; encpipe's errors become one line on
    stderr and their exit code, a failing stdout 74 (or 141 when its reader left)."""
    try:
        return action()
    except EncpipeError as e:
        io.error(str(e), hint=e.hint)
        return e.exit_code
    except BrokenPipeError:
        return _discard_stdout(141)
    except OSError as e:  # writing a report or a key to standard output
        io.error(f"cannot write output: {e.strerror or e}")
        return _discard_stdout(IOFailure.exit_code)
    except MemoryError:
        io.error("out of memory")
        return EXIT_INTERNAL


def _usage_message(argv, docopt_text):
    """docopt's own first line when it says something specific, else ours."""
    first = (docopt_text.strip().splitlines() or [""])[0]
    if first and not first.startswith(("Usage:", "Warning:")):
        return first
    if not argv:
        return "no command given"
    if usage_for(argv) is USAGE:
        return f"unknown command {argv[0]!r}"
    return f"invalid arguments for {argv[0]!r}"


def usage_for(argv):
    """USAGE with only the usage patterns of the command in argv[0], when there is
    one: docopt then parses a quarter of the text, which is most of its cost."""
    head, rest = USAGE.split("Usage:\n", 1)
    patterns, sections = rest.split("\n\n", 1)
    command = argv[0] if argv else None
    chosen = [p for p in re.split(r"\n(?=  encpipe )", patterns) if p.split()[1:2] == [command]]
    if not chosen:
        return USAGE
    return head + "Usage:\n" + "\n".join(chosen) + "\n\n" + sections


class Io:
    """A process's streams (binary stdin and stdout, text stderr) and environment,
    passed to commands explicitly; messages are prefixed with the program's name."""

    def __init__(self, stdin, stdout, stderr, env, prog="encpipe"):
        self.stdin, self.stdout, self.stderr, self.env, self.prog = stdin, stdout, stderr, env, prog

    def _say(self, kind, message, hint=None):
        self.stderr.write(f"{self.prog}: {kind}: {message}\n")
        if hint:
            self.stderr.write(f"{self.prog}: hint: {hint}\n")
        self.stderr.flush()

    def error(self, message, hint=None):
        self._say("error", message, hint)

    def warn(self, message, hint=None):
        self._say("warning", message, hint)

    def print(self, text):
        self.stdout.write(text.encode("utf-8") + b"\n")
        self.stdout.flush()

    def print_json(self, value):
        self.print(json.dumps(value, indent=2, sort_keys=False))


def _discard_stdout(status):
    """Standard output failed (its reader went away, or the disk is full): point
    it at /dev/null so that nothing tries to flush it again at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return status


def _standard_input():
    # Unbuffered: a worker thread still blocked reading a stalled pipe when a
    # command fails must not hold a buffer lock that interpreter exit needs.
    return sys.stdin.buffer.raw


def is_pipe(stream):
    try:
        return stat.S_ISFIFO(os.fstat(stream.fileno()).st_mode)
    except (AttributeError, OSError, ValueError):
        return False


def _widen_pipes(size=1 << 20):
    """Let a pipe on stdin or stdout hold a whole chunk: fewer wake-ups per chunk
    (pg_dump writes 4 KiB at a time)."""
    import fcntl

    for stream in (sys.stdin, sys.stdout):
        if is_pipe(stream):
            try:
                fcntl.fcntl(stream.fileno(), fcntl.F_SETPIPE_SZ, size)
            except (OSError, AttributeError):
                pass


def run():
    """Console entry point: default signal behaviour, then main()."""
    import signal

    # pycryptodome prefers cffi, whose import parses C declarations on every
    # start (about 25 ms); its ctypes backend is as fast for our large calls.
    sys.modules.setdefault("cffi", None)
    _widen_pipes()
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    try:
        status = main()
    except KeyboardInterrupt:
        # Die of the signal itself, so the parent sees the conventional status.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
        status = 128 + signal.SIGINT
    raise SystemExit(status)
