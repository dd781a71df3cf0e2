"""Secrets on descriptors given to a script that runs encpipe more than once
(encpipe-restore, encpipe-rotate, encpipe-migrate): secret files given as
/dev/fd/N, and descriptor options (encpipe-restore's `--passphrase-fd N`).

A child does not inherit N (subprocess closes every descriptor not passed), and
a pipe (`--key-file /dev/fd/3 3< <(vault read ...)`) can be read only once. So
the script reads each such secret once, at its start, as encpipe would read it
(a secret file through its path, from its start; a descriptor option from
where it stands, as keys.read_fd), and keeps N occupied by /dev/null for its
whole life: nothing it opens later (FILE, DIR, a lock, a temporary file) can
take that number. For each encpipe it runs, `lend(argv)` puts a fresh copy of
the secret on N, for the children whose argv names it only (the path, or the
option and N; the scripts give each as one word, --key-file=/dev/fd/N,
argwords.py): the child sees the options and values the user gave, and names
them in its messages. Any other child (psql, pg_restore, rclone, zstd) never
gets N.

The copy is an in-memory file (memfd: no file system, sealed; its owner's, with
the group and other bits of the file the secret came from, so that encpipe
warns of one others can read), which each open of /dev/fd/N reads from its
start: one child may read it twice (rotate's `rewrap` names the new key file to
--key-file and --add-key-file). Without memfd (not Linux), a pipe: read once
per child.

A secret file given by a path that names neither a regular file nor a directory
(a named FIFO, whose writer may write the key once; a character device; a
socket) is read once too, at the start, through its path, and lent the same
way at a number of its own, M, kept reserved as N is: each child that names
that path after one of encpipe's secret-file options (keyargs.SECRET_FILES; as
one word, --key-file=PATH) is given --key-file=/dev/fd/M instead (words(): its
messages name /dev/fd/M). A second open of such a file would wait for a writer
that is gone, or read other bytes. One file reached by two paths is read once.
A regular file stays a path: each child reads it, and warns of its mode, itself
(each script judged every path's place first, keyplace, and gives the children
its --allow-shared-dir; a /dev/fd/N is never judged: the caller's own).
A secret file on standard input (-, /dev/stdin, /dev/fd/0) is refused
(stdin_refused); on standard output or error (/dev/fd/1, 2) it is left as it
is. A descriptor option may be 0 (standard input, then /dev/null), not 1 or 2:
a child's output and error are its own, so the secret could not be lent there.
"""

import contextlib
import fcntl
import os
import stat
import subprocess

from . import childenv, keys
from .argwords import dashed
from .compat import set_pipe_size
from .errors import InputUnavailable, UsageError, unreadable
from .keyargs import FD_PATH, SECRET_FILES, descriptor_twice, fstat_fd

# A secret handed on to encpipe is written whole before encpipe reads it: on a
# pipe (without memfd), it must fit the pipe's buffer. No key or passphrase is this long.
MAX_SECRET = 65536
# encpipe's key options (commands.key_sources): with one, the environment's keys are not read.
KEY_OPTIONS = {"--key-file", "--key-command", "--identity", "--recipient", "--recipient-file", "--passphrase-file",
               "--passphrase-fd", "--passphrase-command", "--passphrase", "-p"}
# keyid given one of these and no key option prints their ids only (commands.cmd_keyid)
SIGNING_OPTIONS = {"--sign-key", "--sign-key-command", "--signer", "--signer-file"}
# the options whose command encpipe runs (keys.run_secret_command), with the cloud's and the stores' secrets
COMMAND_OPTIONS = {"--key-command", "--passphrase-command", "--sign-key-command"}
# encpipe's commands: inspect reads a key only with --verify; keygen, pubkey and help none
COMMANDS = {"seal", "open", "inspect", "rewrap", "keygen", "pubkey", "keyid", "help"}


class FdSecrets:
    def __init__(self, given, files, descriptors=()):
        """The secrets that `given` ({option: [value...]}: a docopt-style dictionary,
        or vars() of an argparse namespace, whose keys have no dashes) gives on a
        descriptor: the /dev/fd/N values of the `files` options, and the N of the
        `descriptors` options (--passphrase-fd; numbers that keyargs.secret_fds_open
        checked), each descriptor read once. Over
        MAX_SECRET bytes is UsageError (64), unreadable errors.unreadable's (66, or 74 out of descriptors);
        neither shows the secret. One N given to a descriptor option and as a
        secret file is UsageError before anything is read: read once, it would be
        one secret for both, which encpipe would read by two rules; so is one N
        given to a descriptor option twice."""
        refuse_keys_as_commands(given)
        self.secrets, self.names, self.options = {}, {}, {dashed(o) for o in descriptors}
        sources = {}  # N: (option, path) of its first mention; path None for a descriptor option
        for name, fd, path, word in _mentions(given, files, descriptors):
            _one_secret_each(sources, name, fd, path)
            if path is None and fd in (1, 2):
                raise UsageError(f"{name} {fd} is standard {('output', 'error')[fd - 1]}: "
                                 "give the secret on another descriptor")
            if path is not None and fd == 0:
                raise stdin_refused(name, path)
            if path is None or fd >= 3:  # a secret file on 0 to 2 is left as it is
                self.names.setdefault(fd, set()).add(word)
        for fd in self.names:
            name, path = sources[fd]
            self.secrets[fd] = read_fd(fd) if path is None else _read(fd, name, path)
        held = _held_files(given, files)
        self.null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)  # now: a closed N was refused (66)
        for fd in self.secrets:
            os.dup2(self.null, fd, inheritable=fd == 0)  # reserved: never another file's number (0: stdin, inherited)
        self.paths = {}  # a path held (not a regular file): the number M that its copy is lent at
        for identity, (data, paths) in held.items():
            fd = os.dup(self.null)  # reserved as N is; not inheritable but by pass_fds
            self.secrets[fd], self.names[fd] = data, {f"/dev/fd/{fd}"}
            self.paths.update(dict.fromkeys(paths, fd))

    def words(self, argv):
        """`argv`, each --option=PATH word of a secret-file option whose PATH was
        read here (not a regular file) as --option=/dev/fd/M: the copy lend() gives."""
        def lent(word):
            option, equals, path = word.partition("=")
            return f"{option}={self.value(path)}" if equals and option in SECRET_FILES else word

        return [lent(word) for word in argv] if self.paths else list(argv)

    def value(self, path):
        """/dev/fd/M for a secret file's `path` read here (not a regular file), else `path`."""
        fd = self.paths.get(path)
        return path if fd is None else f"/dev/fd/{fd}"

    def keep_lent(self):
        """Each secret's copy at its number for good, not inheritable: for a script that
        reads its secret files itself, more than once (encpipe-backup: the seal, then
        the prune of --keep...). A memfd is read from its start by each open of
        /dev/fd/N; a pipe (no memfd) only once."""
        for fd, data in self.secrets.items():
            copy = holding(data, f"file descriptor {fd}")
            os.dup2(copy, fd, inheritable=False)
            os.close(copy)

    def others_bits(self, path):
        """The group and other permission bits of the regular file that secret file
        `path` (/dev/fd/N) was read from (0: a pipe), or None when it is not one read here."""
        match = FD_PATH.fullmatch(path)
        secret = self.secrets.get(int(match.group(1))) if match else None
        return None if secret is None else getattr(secret, "others", 0)

    @contextlib.contextmanager
    def lend(self, argv):
        """The descriptors `argv` names (a secret file's path, alone or as the
        value of an option's one word, --key-file=/dev/fd/N; or a descriptor
        option and N, as one word or two), each a fresh copy of its secret while
        the block runs (spawn the child in it, with pass_fds=the list it yields);
        /dev/null again afterwards."""
        words = {*argv, *(f"{a}={b}" for a, b in zip(argv, argv[1:]) if a in self.options),
                 *(w.partition("=")[2] for w in argv if w.startswith("--") and "=" in w)}
        fds = [fd for fd, names in self.names.items() if names & words]
        try:
            for fd in fds:
                copy = holding(self.secrets[fd], f"file descriptor {fd}")
                os.dup2(copy, fd, inheritable=fd == 0)  # pass_fds makes it inheritable in the child (0 is stdin)
                os.close(copy)
            yield fds
        finally:
            for fd in fds:
                os.dup2(self.null, fd, inheritable=fd == 0)

    def spawn(self, argv, start=subprocess.run, pass_fds=(), env=None, **kwargs):
        """`start(argv, ...)` (subprocess.run or Popen) of an encpipe, with the secrets
        `argv` names lent, beside `pass_fds`; in `env` (default: ours) less the secrets
        encpipe does not need (childenv.ENCPIPE_NEEDS: no PGPASSWORD, no RCLONE_ variable;
        the previous tool's key only for a --legacy command; none of ENCPIPE_KEY,
        ENCPIPE_PASSPHRASE and the previous tool's key when `argv` gives a key option,
        or is a command that reads no key: reads_no_key; the cloud's credentials and the secret
        stores' tokens only when `argv` gives a key command, the one thing in encpipe that reads them)."""
        needs = childenv.ENCPIPE_NEEDS if runs_a_command(argv) else ("encpipe",)
        env = childenv.child_env(os.environ if env is None else env, needs=needs)
        if "--legacy" not in argv:
            env.pop(childenv.LEGACY_KEY, None)
        if names_a_key(argv) or reads_no_key(argv):  # then encpipe reads none of its variables (keys.KeyLoader.load)
            for name in childenv.SECRET_VARIABLES:
                env.pop(name, None)
        argv = self.words(argv)
        with self.lend(argv) as lent:
            return start(argv, pass_fds=[*pass_fds, *lent], env=env, **kwargs)


def names_a_key(argv):
    """True when `argv` (an encpipe command) gives one of KEY_OPTIONS, before any "--":
    its keys come from there, and none from the environment."""
    return any(word.partition("=")[0] in KEY_OPTIONS for word in _options(argv))


def _options(argv):
    """`argv`'s words before any "--" (after it, file names)."""
    return argv[:argv.index("--")] if "--" in argv else argv


def runs_a_command(argv):
    """True when `argv` (an encpipe command) gives a key command (COMMAND_OPTIONS), before any "--"."""
    return any(word.partition("=")[0] in COMMAND_OPTIONS for word in _options(argv))


def reads_no_key(argv):
    """True when `argv` (an encpipe command, after the words of ENCPIPE) reads no key
    from anywhere: `inspect` without --verify (its header only), `keyid` of signing
    or verify keys only, keygen, pubkey, help. The command is its first word that
    names one; with none found, False (the child keeps the variables: never fewer
    than it reads)."""
    words = _options(argv)
    command = next((word for word in words if word in COMMANDS), None)
    given = {word.partition("=")[0] for word in words}
    if command == "inspect":
        return "--verify" not in given
    if command == "keyid":
        return bool(given & SIGNING_OPTIONS)
    return command in ("keygen", "pubkey", "help")


class Secret(bytes):
    """A secret's bytes, and the group and other permission bits of the regular file
    it was read from (0 for a pipe): its copy gets them too, so that encpipe warns
    of a key file others can read through /dev/fd/N as through its path."""

    others = 0


COMMAND_OPTIONS = ("--key-command", "--passphrase-command", "--sign-key-command")


def refuse_keys_as_commands(given):
    """UsageError (64), the value not shown, for a key pasted as a command of `given`
    ({option: [value...]}, as FdSecrets takes it): a script refuses it before anything
    runs, as encpipe does. Before, migrate and restore handed it to their encpipe
    child's command line (`--key-command=KEY`), for `ps` to show every user."""
    from .textform import nth, refuse_key_in_place

    for option, values in given.items():
        if dashed(option) in COMMAND_OPTIONS and values:
            values = values if isinstance(values, list) else [values]
            for i, value in enumerate(values, 1):
                refuse_key_in_place(value, nth(dashed(option), i, len(values)))


def _mentions(given, files, descriptors):
    """(option, N, path, the word of a child's argv that names it) for each value
    of the descriptor options (path None), then each secret file given as /dev/fd/N."""
    for option in descriptors:
        for value in given.get(option) or []:
            yield dashed(option), int(value), None, f"{dashed(option)}={value}"
    for option in files:
        for path in given.get(option) or []:
            match = FD_PATH.fullmatch(path)
            if match:
                yield dashed(option), int(match.group(1)), path, path
            elif path in keys.STDIN_PATHS:  # descriptor 0 too: a --passphrase-fd 0 beside it is refused
                yield dashed(option), 0, path, path


def refuse_one_number_twice(given, files, descriptors):
    """UsageError (64) when one N is given to a `descriptors` option and as a secret
    file of `files`, or to one twice (as FdSecrets refuses it), nothing read: for a script that reads
    the descriptor options itself."""
    sources = {}
    for name, fd, path, _ in _mentions(given, files, descriptors):
        _one_secret_each(sources, name, fd, path)


def _one_secret_each(sources, name, fd, path):
    if path is None and sources.get(fd, (None, ""))[1] is None:
        raise descriptor_twice(name, fd)
    first = sources.setdefault(fd, (name, path))
    if (first[1] is None) != (path is None):
        raise UsageError(f"file descriptor {fd} is given to {first[0]} and to {name}: give each secret its own")


def _held_files(given, files):
    """{(st_dev, st_ino): (its secret, [its paths])} of each secret file of the `files`
    options given by a path (not /dev/fd/N, nor standard input) that names neither a
    regular file nor a directory, each read once; one that cannot be looked at is
    left to the child that reads it, as a regular file."""
    held = {}
    for option in files:
        for path in given.get(option) or []:
            if FD_PATH.fullmatch(path) or path in keys.STDIN_PATHS:
                continue
            try:
                info = os.stat(path)
            except (OSError, ValueError):
                continue
            if stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode):
                continue
            identity = (info.st_dev, info.st_ino)
            if identity not in held:
                held[identity] = (_read_path(dashed(option), path), [])
            held[identity][1].append(path)
    return held


def stdin_refused(option, path):
    """A secret file on standard input, given to a script that runs encpipe more than
    once: each would read standard input again (a pipe is empty after the first;
    migrate's seal reads the plaintext there), and a child that needs its standard
    input cannot be lent the secret there. Refused at the start, as a mistake."""
    return UsageError(f"{option} {path}: a secret on standard input cannot be lent to each encpipe this runs",
                      hint="give the secret on another descriptor, read once and lent to each: "
                           f"{option} /dev/fd/3 3<FILE")


def read_fd(fd):
    """The secret of descriptor option N, read as encpipe reads a --passphrase-fd
    (keys.read_fd: from where it stands, to its end), up to MAX_SECRET bytes."""
    try:
        data = Secret(keys.read_fd(fd, limit=MAX_SECRET))
    except UsageError:
        raise UsageError(f"the passphrase on file descriptor {fd} is over {MAX_SECRET} bytes") from None
    data.others = keys.others_bits(os.fstat(fd).st_mode)  # its copies get them; keys.warn_fd_mode says it
    return data


def _read(fd, option, path):
    try:
        fstat_fd(fd)  # not open: "Bad file descriptor" (opening /dev/fd/N would say "No such file or directory")
    except OSError as e:
        raise InputUnavailable(f"{option}: cannot read file descriptor {fd}: {e.strerror or e}") from None
    return _read_path(option, path, f"file descriptor {fd}")


def _read_path(option, path, source=None):
    """The secret in `path` (`source` for messages: the path itself by default), read
    once as encpipe reads it: a file given as 3<FILE from its start, a FIFO whole."""
    try:
        with open(path, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            data = Secret(f.read(MAX_SECRET + 1))
    except OSError as e:
        raise unreadable(f"{option}: cannot read {source or path}: {e.strerror or e}", e) from None
    if len(data) > MAX_SECRET and source:
        raise UsageError(f"{option}: {source} holds more than {MAX_SECRET} bytes; not a key or passphrase")
    if len(data) > MAX_SECRET:  # as encpipe says it of a path (keys.read_secret_file), at this limit
        raise UsageError(f"{option}: {path}: more than {MAX_SECRET} bytes; not a key or passphrase source")
    data.others = keys.others_bits(mode)
    return data


def holding(data, source):
    """A new descriptor holding `data`, the secret of `source`: a sealed memfd
    at offset 0, else (no memfd) a pipe."""
    if not hasattr(os, "memfd_create"):
        return _pipe_holding(data, source)
    fd = os.memfd_create("encpipe-secret", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        os.fchmod(fd, 0o400 | getattr(data, "others", 0))  # encpipe warns of group or other bits, as of the file's
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW |
                    fcntl.F_SEAL_WRITE)
        os.lseek(fd, 0, os.SEEK_SET)
    except OSError as e:
        os.close(fd)
        raise unreadable(f"cannot hand the secret of {source} on to encpipe: {e.strerror or e}", e) from None
    return fd


def _pipe_holding(data, source):
    """The read end of a new pipe that holds all of `data` (the secret of `source`),
    its write end closed."""
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    try:
        if len(data) > 4096:  # a pipe of a user over pipe-user-pages-soft starts at one page
            with contextlib.suppress(OSError):
                set_pipe_size(write_end, MAX_SECRET)
        os.set_blocking(write_end, False)
        view = memoryview(data)
        while view:
            view = view[os.write(write_end, view):]
    except OSError as e:  # BlockingIOError: the pipe is smaller than the secret
        os.close(read_end)
        raise unreadable(f"cannot hand the secret of {source} on to encpipe: {e.strerror or e}", e) from None
    finally:
        os.close(write_end)
    return read_end
