"""Where secrets come from: environment, files, file descriptors, commands, the terminal.
The key slots' cryptography (slots: hmac, OpenSSL's hashlib) is imported where a key
is made, so that a script that only checks key options (encpipe-backup, -restore)
starts without it.

Never argv. Every source is read here and nowhere else; the CLI only says
which sources the user named. Explicit options win: the environment variables
are read only when no key option was given.
"""

import os
import stat

from .childenv import ENV_KEY, ENV_PASSPHRASE, KEY_COMMAND_NEEDS, child_env
from .deps import require_installed
from .errors import InputUnavailable, NoKeyConfigured, SigningKeyGiven, UsageError, unreadable
from .proctree import kill_holders, kill_tree
from .sigdefer import held
from .textform import (ASCII_SPACE, IDENTITY_PREFIX, SIGNING_PREFIX, lines, nth, refuse_key_in_place, refuse_public,
                       shown_name)
from .workers import decimal_number

require_installed()  # pycryptodome missing: 69 as any command that reads a key starts

ENV_COMMAND_TIMEOUT = "ENCPIPE_COMMAND_TIMEOUT"
ENV_MODE_WARNED = "ENCPIPE_MODE_WARNED"  # "1": the script running this encpipe warned of its secret files' modes
DEFAULT_COMMAND_TIMEOUT = 60.0
MAX_COMMAND_TIMEOUT = 86400.0
HEX_KEY_LEN = 64
HEX_DIGITS = frozenset("0123456789abcdefABCDEF")  # string.hexdigits, without importing string
# The most a key file, a passphrase source or a key command's output may hold:
# /dev/zero or an endless command given by mistake must not fill memory.
MAX_SECRET_BYTES = 1 << 20
STDIN_PATHS = {"-", "/dev/stdin", "/dev/fd/0", "/proc/self/fd/0"}


class KeySources:
    """The key sources named on the command line (paths, fds and commands; never secrets)."""

    def __init__(self, key_files=(), key_commands=(), identity_files=(), recipients=(), recipient_files=(),
                 passphrase_files=(), passphrase_fds=(), passphrase_commands=(), prompt=False):
        self.key_files = list(key_files)
        self.key_commands = list(key_commands)
        self.identity_files = list(identity_files)
        self.recipients = list(recipients)
        self.recipient_files = list(recipient_files)
        self.passphrase_files = list(passphrase_files)
        self.passphrase_fds = list(passphrase_fds)
        self.passphrase_commands = list(passphrase_commands)
        self.prompt = prompt

    def any_given(self):
        return any(bool(v) for v in vars(self).values())

    def reads_stdin(self):
        """True when a secret would come from standard input."""
        return bool(self.stdin_readers())

    def stdin_readers(self, more=()):
        """The options (one entry per value) that would read standard input: a
        --passphrase-fd 0, a path that is `-` or names our descriptor 0; `more`:
        (option, paths) of the command's other files (--sign-key, --add-key-file...)."""
        readers = ["--passphrase-fd 0"] * self.passphrase_fds.count(0)
        for option, paths in (("--key-file", self.key_files), ("--identity", self.identity_files),
                              ("--passphrase-file", self.passphrase_files), ("--recipient-file", self.recipient_files),
                              *more):
            readers += [option for p in paths if _is_stdin(p)]
        return readers

    def refuse_shared_stdin(self, more=()):
        """Two secrets cannot both come from standard input: the first would take what
        it holds (a pipe), or each would read it by its own rule (a file given as
        `< FILE` is read from where it stands by --passphrase-fd 0, from its start
        through /dev/stdin). `more`: as for stdin_readers. UsageError before
        anything is read."""
        readers = self.stdin_readers(more)
        if len(readers) > 1:
            raise UsageError(f"standard input is given to {readers[0]} and to {readers[1]}: give each secret its own")


def _is_stdin(path):
    if path in STDIN_PATHS:
        return True
    try:
        return os.path.samestat(os.stat(path), os.fstat(0))
    except OSError:
        return False


def parse_hex_key(text, source):
    text = text.strip(ASCII_SPACE)
    if len(text) != HEX_KEY_LEN:
        raise UsageError(f"{source}: a key must be {HEX_KEY_LEN} hex characters, not {len(text)}")
    if not all(c in HEX_DIGITS for c in text):  # bytes.fromhex would skip white space
        raise UsageError(f"{source}: a key must be hex characters (0-9, a-f)")
    from .slots import RawKey

    return RawKey(bytes.fromhex(text))


def parse_keyring(text, source):
    """Keys, one per line: 64-hex raw keys, identities or signing keys; blank lines
    and lines starting with # ignored (a # after a key is not a comment)."""
    keys = []
    for number, line in lines(text):
        where = f"{source}, line {number}"
        if line.upper().startswith(IDENTITY_PREFIX):
            from .x25519 import parse_identity

            keys.append(parse_identity(line, where))
        elif line.upper().startswith(SIGNING_PREFIX):
            from .signing import parse_signing_key

            keys.append(parse_signing_key(line, where))
        else:
            refuse_public(line, where)
            keys.append(parse_hex_key(line, where))
    if not keys:
        raise UsageError(f"{source}: no key found")
    return keys


def read_secret_file(path, warn):
    """The bytes of a key or passphrase file ("-": standard input), warning when others can read it."""
    if path == "-":
        return read_fd_warned(0, warn)
    try:
        with open(path, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            data = _read_bounded(f, path)
    except OSError as e:  # a secret typed in its path's place (--sign-key KEY, pubkey KEY): not shown
        raise unreadable(f"cannot read {shown_name(path, secret_file=True)}: {e.strerror or e}", e) from None
    _warn_mode(path, mode, warn)
    return data


def _warn_mode(path, mode, warn):
    """One warning line (its advice on it: no hint line), unless a script that runs
    this encpipe already gave it (ENV_MODE_WARNED). A named FIFO too: another user
    who may open it can read the key before encpipe does (a pipe's is 0600)."""
    if others_bits(mode) and os.environ.get(ENV_MODE_WARNED) != "1":
        warn(f"{path} is readable by group or others: chmod 600 {path}")


def others_bits(mode):
    """The group and other bits of a regular file's or a FIFO's `mode` (0 for any other)."""
    return stat.S_IMODE(mode) & 0o077 if stat.S_ISREG(mode) or stat.S_ISFIFO(mode) else 0


def read_fd_warned(fd, warn):
    """read_fd(fd), warning as of a path when the descriptor is open on a file (or a
    named FIFO) others can read: `--passphrase-fd 3 3<FILE`, `--key-file - <FILE`."""
    data = read_fd(fd)
    warn_fd_mode(fd, others_bits(os.fstat(fd).st_mode), warn)
    return data


def warn_fd_mode(fd, others, warn):
    if others and os.environ.get(ENV_MODE_WARNED) != "1":
        name = "standard input" if fd == 0 else f"file descriptor {fd}"
        warn(f"{name} is readable by group or others: chmod 600 the file it reads")


def warn_secret_modes(paths, warn, held=lambda path: None):
    """For a script that runs encpipe on many files with the same secret files: the
    warning of each one others can read once, here, and none in those children.
    `held(path)`: the group/other bits of the file /dev/fd/N was read from, else None."""
    for path in dict.fromkeys(paths):  # a file given twice (old and new key): once
        others = held(path)  # fdsecrets read it: N holds /dev/null now
        if others is not None:
            _warn_mode(path, stat.S_IFREG | others, warn)
            continue
        try:
            mode = os.stat(path).st_mode  # /dev/fd/N: the file open there
        except OSError:  # said when it is read
            continue
        _warn_mode(path, mode, warn)
    os.environ[ENV_MODE_WARNED] = "1"


def read_fd(fd, limit=MAX_SECRET_BYTES):
    try:
        with os.fdopen(fd, "rb", closefd=False) as f:
            return _read_bounded(f, f"file descriptor {fd}", limit)
    except OSError as e:
        raise unreadable(f"cannot read file descriptor {fd}: {e.strerror or e}", e) from None


def _read_bounded(f, source, limit=MAX_SECRET_BYTES):
    """All of `f`, refused (64) past `limit` bytes without reading further."""
    data = f.read(limit + 1)
    if len(data) > limit:
        raise UsageError(f"{source}: more than {limit} bytes; not a key or passphrase source")
    return data


def run_secret_command(command, env):
    """Run `command` with sh -c and return its standard output; bounded in time.
    It inherits our environment less every secret in it but the cloud's and the
    secret stores' (KEY_COMMAND_NEEDS). A key pasted in the command's place is
    refused unshown, never run (sh would say `KEY: not found`, and so would our error)."""
    import subprocess  # here, as in sigthreads.popen: most runs start no child

    refuse_key_in_place(command, "key command")
    timeout, child = _command_timeout(env), None
    try:
        with held():  # started and in this `try` in one step: a signal (encpipe dies of it) never leaves it running
            child = subprocess.Popen(["/bin/sh", "-c", command], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     env=child_env(os.environ, needs=KEY_COMMAND_NEEDS))
        output = _bounded_output(child, timeout)
    except BaseException as e:
        if child is None:
            if isinstance(e, OSError):
                raise InputUnavailable(f"cannot run key command: {e.strerror or e}") from None
            raise
        # Kill what the shell started too: a grandchild holding the pipe would
        # otherwise keep us waiting. The command stays in our process group so
        # that it can still prompt on the terminal (pass, gpg's pinentry).
        kill_tree(child.pid)
        kill_holders(child.stdout.fileno())  # one it left running as it exited, holding the pipe
        child.stdout.close()
        child.wait()
        if isinstance(e, UsageError):
            raise UsageError(f"key command printed {e}: {command}") from None
        if isinstance(e, subprocess.TimeoutExpired):
            raise InputUnavailable(f"key command timed out after {timeout:g} s: {command}") from None
        raise
    child.stdout.close()  # read to its end (before, left to the garbage collector: a ResourceWarning)
    if child.returncode != 0:  # killed by signal N: so said, not "status -N"
        status = child.returncode
        how = f"killed by signal {-status}" if status < 0 else f"failed with status {status}"
        raise InputUnavailable(f"key command {how}: {command}")
    return output


def _bounded_output(child, timeout, limit=MAX_SECRET_BYTES):
    """The child's standard output to its end, and its exit, within `timeout`
    seconds (else TimeoutExpired); UsageError past `limit` bytes."""
    import selectors
    import subprocess
    import time

    deadline = time.monotonic() + timeout
    fd, blocks, size = child.stdout.fileno(), [], 0
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise subprocess.TimeoutExpired(child.args, timeout)
            if not selector.select(left):
                continue
            block = os.read(fd, 1 << 16)
            if not block:
                break
            size += len(block)
            if size > limit:
                raise UsageError(f"more than {limit} bytes")
            blocks.append(block)
    child.wait(timeout=max(deadline - time.monotonic(), 0.001))
    return b"".join(blocks)


def _command_timeout(env):
    raw = env.get(ENV_COMMAND_TIMEOUT)
    if raw is None:
        return DEFAULT_COMMAND_TIMEOUT
    value = decimal_number(raw) or 0  # ASCII digits, as every number encpipe takes: not "1_0", "1e3" nor "١"
    if not 0 < value <= MAX_COMMAND_TIMEOUT:
        raise UsageError(f"{ENV_COMMAND_TIMEOUT} must be a positive number of seconds, at most {MAX_COMMAND_TIMEOUT:g}")
    return value


def decode_text(data, source):
    """A key, recipient or signer file's text: UTF-8, else UsageError (64)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{source}: not UTF-8 text") from None


def _passphrase_bytes(data):
    """A passphrase from a file, fd or command: its content without trailing newlines."""
    return data.rstrip(b"\r\n")


def prompt_passphrase(confirm):
    import getpass  # only when prompting: keeps start-up lean

    from .utf8mode import terminal_charset

    try:
        with open("/dev/tty", "r+b", buffering=0):
            pass
    except OSError:
        raise NoKeyConfigured("cannot prompt for a passphrase: no terminal") from None
    try:  # getpass decodes the line by the locale's encoding, strictly
        with terminal_charset(getpass):
            first = getpass.getpass("encpipe: passphrase: ")
            if confirm and getpass.getpass("encpipe: passphrase again: ") != first:
                raise UsageError("the passphrases do not match")
    except UnicodeDecodeError:
        raise UsageError("the passphrase typed is not text in the terminal's encoding (the locale's)",
                         hint="set LC_ALL or LANG to the terminal's encoding, or use --passphrase-file") from None
    except EOFError:  # Ctrl-D at the prompt: no line at all (before, internal error, 70)
        raise UsageError("no passphrase typed: the terminal's input ended at the prompt") from None
    return first.encode("utf-8")


class KeyLoader:
    """Turns KeySources into recipients (sealing) or identities (opening)."""

    def __init__(self, env, warn, work_factor=None, prompt=prompt_passphrase):
        self.env, self.warn, self.work_factor, self.prompt = env, warn, work_factor, prompt

    def keyrings(self, paths, commands):
        """Every key in the keyring files `paths` and in the output of `commands`."""
        keys = []
        for path in paths:
            keys += parse_keyring(decode_text(read_secret_file(path, self.warn), path), path)
        for command in commands:
            keys += parse_keyring(decode_text(run_secret_command(command, self.env), "key command"), "key command")
        return keys

    def signing_keys(self, paths, commands):
        """The Ed25519 signing keys in `paths` and in the output of `commands` (only those)."""
        keys = self.keyrings(paths, commands)
        if any(not hasattr(k, "sign") for k in keys):
            raise UsageError("a --sign-key source holds a key that is not a signing key (ENCPIPE-SIGNING-KEY-1...)")
        return list({k.verify_key.key_id: k for k in keys}.values())  # a key given twice signs once

    def load(self, sources, sealing, use_env=True, recipient_option="--recipient"):
        """`recipient_option`: how messages name sources.recipients (rewrap's --add-recipient)."""
        sources.refuse_shared_stdin()
        keys = self.keyrings(sources.key_files + sources.identity_files, sources.key_commands)
        if any(hasattr(k, "sign") for k in keys):
            raise SigningKeyGiven("a signing key is not an encryption key")
        keys += self._public_keys(sources, sealing, recipient_option)
        passphrases = [_passphrase_bytes(read_secret_file(p, self.warn)) for p in sources.passphrase_files]
        passphrases += [_passphrase_bytes(read_fd_warned(fd, self.warn)) for fd in sources.passphrase_fds]
        passphrases += [_passphrase_bytes(run_secret_command(c, self.env)) for c in sources.passphrase_commands]
        if sources.prompt:
            passphrases.append(self.prompt(confirm=sealing))
        if use_env and not sources.any_given():
            keys, passphrases = self._from_environment()
        from .slots import DEFAULT_SCRYPT_BUDGET, DEFAULT_SCRYPT_LOG2_N, ENV_SCRYPT_BUDGET, Passphrase, ScryptRun, parse_budget

        # set but empty is a bad value (64), not the default, as ENCPIPE_KEY, ENCPIPE_COMMAND_TIMEOUT
        budget = self.env.get(ENV_SCRYPT_BUDGET)
        budget = DEFAULT_SCRYPT_BUDGET if budget is None else parse_budget(budget)
        run = ScryptRun(budget, len(passphrases))  # one for the files these keys open (a run's many)
        log2_n = DEFAULT_SCRYPT_LOG2_N if self.work_factor is None else self.work_factor
        keys += [Passphrase(p, log2_n=log2_n, budget=budget, run=run) for p in passphrases]
        if not keys:
            raise NoKeyConfigured(
                "no key configured",
                hint=f"use --key-file, --passphrase-file, --key-command, --passphrase or "
                f"{'--recipient' if sealing else '--identity'}, or set {ENV_KEY} or {ENV_PASSPHRASE}",
            )
        if sealing:
            return [k.recipient() if hasattr(k, "recipient") else k for k in keys]
        return keys

    def _public_keys(self, sources, sealing, option="--recipient"):
        if not (sources.recipients or sources.recipient_files):
            return []
        if not sealing:
            raise UsageError("--recipient is for sealing; open with --identity")
        from .x25519 import parse_recipient, read_recipient_file

        keys = [parse_recipient(text, nth(option, i, len(sources.recipients)))
                for i, text in enumerate(sources.recipients, 1)]
        for path in sources.recipient_files:
            keys += read_recipient_file(decode_text(read_secret_file(path, lambda *a, **k: None), path), path)
        return keys

    def _from_environment(self):
        keys, passphrases = [], []
        if self.env.get(ENV_KEY) is not None:
            keys.append(parse_hex_key(self.env[ENV_KEY], ENV_KEY))
        if self.env.get(ENV_PASSPHRASE) is not None:
            passphrases.append(os.fsencode(self.env[ENV_PASSPHRASE]))
        return keys, passphrases
