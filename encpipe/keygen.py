"""encpipe keygen: a new raw key on standard output, or a new x25519 identity or
signing key in a file (-o) with its public half on standard output. A run that
fails leaves no key file behind: not one half-written (a full disk), nor one
whose public half could not be printed."""

import os
import signal

from .errors import IOFailure, UsageError
from .sigdefer import held, hold_for_good
from .stdio import write_whole


def cmd_keygen(args, io):
    if args["--output"]:  # a secret key where another user could swap it: 73, as for seal -o
        from .pathwalk import absolute
        from .safefile import check_directory

        directory = os.path.dirname(absolute(args["--output"]))
        if os.path.isdir(directory):
            check_directory(directory, args["--allow-shared-dir"])
    if args["--sign"]:
        from .signing import new_key_file

        recipient, secret = new_key_file(args["--output"])
    elif args["--x25519"]:
        from .x25519 import X25519Identity

        identity = X25519Identity.generate()
        recipient = str(identity.recipient())
        secret = f"# public key: {recipient}\n{identity}\n"
    else:
        secret = os.urandom(32).hex() + "\n"
        recipient = None
    if args["--output"]:
        made = []
        try:
            with held():  # the file made and its removal armed in one step: a signal never leaves it
                made.append(_write_new_secret_file(args["--output"], secret))
                if not recipient:
                    hold_for_good()  # written whole: done, 0 whatever signal comes now
            if recipient:
                _print_or_remove(io, recipient, args["--output"], made[0])
        except BaseException:  # a signal as the print began, say (once done, signals wait for good)
            if made:
                _remove_own(args["--output"], made[0])
            raise
    else:
        write_whole(io.stdout, secret.encode("ascii"))
        io.stdout.flush()
    return 0


def _print_or_remove(io, text, path, made):
    """Print the public key; when that fails (a full disk, a closed standard output,
    a reader gone, a signal) the key file is removed first. SIGPIPE is held off
    while printing so that the removal runs, then encpipe dies of it as usual."""
    try:
        previous = signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    except ValueError:  # not the main thread (an embedding program): its own SIGPIPE setting stays
        previous = None
    try:
        io.print(text)
        hold_for_good()  # the file and its public half both out: done, 0 whatever signal comes now
    except BaseException as e:
        _remove_own(path, made)
        if isinstance(e, BrokenPipeError) and previous == signal.SIG_DFL:
            signal.signal(signal.SIGPIPE, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGPIPE)
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGPIPE, previous)


def _write_new_secret_file(path, text):
    """Create `path` (0600, never over an existing file) holding `text`, and return
    its stat; a write that fails (a full disk) removes it again, and is 74. Its name is
    made durable (its directory fsync'd) before the public half is printed: else a
    crash could lose the identity whose recipient then sealed backups."""
    try:  # its caller holds signals until its removal is armed
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UsageError(f"{path} already exists; refusing to overwrite a key") from None
    except OSError as e:
        raise IOFailure(f"cannot create {path}: {e.strerror or e}") from None
    made = os.fstat(fd)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    except BaseException as e:
        _remove_own(path, made)
        if isinstance(e, OSError):
            raise IOFailure(f"cannot write {path}: {e.strerror or e}") from None
        raise
    from .pathwalk import absolute
    from .safefile import fsync_directory

    fsync_directory(os.path.dirname(absolute(path)))
    return made


def _remove_own(path, made):
    """Remove `path` if it is still the file this run made (`made`, its stat)."""
    try:
        if os.path.samestat(os.lstat(path), made):
            os.unlink(path)
    except OSError:
        pass
