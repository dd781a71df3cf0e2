"""Key options as the command line gives them: paths checked before they are read,
and a hint, when no key is configured, that names the command's own key options.

No message here shows an option's value: it may be a secret typed in the wrong place.
"""

import errno
import os
import stat

from .errors import InputUnavailable, NoKeyConfigured, SigningKeyGiven, UsageError
from .lazyre import Pattern
from .textform import may_be_secret
from .workers import int_option


def secret_paths(args, option):
    """The paths given to `option`. A value naming no file that looks like a key or
    passphrase typed in place of its path (hex digits, an identity, spaces, or a
    bare word) is refused without being shown: no error message echoes a secret."""
    paths = args.get(option) or []
    for path in paths:
        if path not in ("-", "") and may_be_secret(path):
            raise UsageError(
                f"{option}: no such file, and the value (not shown) may be a key or passphrase instead of a path",
                hint=f"{option} takes the path of a file that holds the secret",
            )
    return paths


def refuse_output_over_secret(path, args):
    """UsageError (64), nothing read or written, when `path` (seal -o) is the very file
    (device and inode) that a secret file option of `args` names: sealing would replace
    the key it seals with, or the passphrase, and leave nothing that opens the file."""
    try:
        out = os.stat(path) if path else None
    except OSError:
        return
    if out is None or not stat.S_ISREG(out.st_mode):
        return
    from .safefile import same_file  # here: seal to standard output loads no file writer

    for option in SECRET_FILES:
        for given in args.get(option) or []:
            try:
                info = os.stat(given)
            except OSError:
                continue
            if same_file(info, out):
                raise UsageError(f"--output is the file {option} names: sealing would replace it",
                                 hint="write the sealed file to another name")


def load_keys(loader, args, sources, sealing):
    """The keys `sources` name; a hint that names only options this command takes
    (its docopt dictionary holds exactly those) when there are none, or when a
    signing key stands where an encryption key belongs."""
    try:
        return loader.load(sources, sealing=sealing)
    except NoKeyConfigured as e:
        raise NoKeyConfigured(str(e), hint=no_key_hint(args)) from None
    except SigningKeyGiven as e:
        if "--sign-key" in args:
            hint = "give it with --sign-key"
        elif "--signer" in args:
            hint = "to require its signature, give its verify key with --signer"
        else:
            hint = None
        raise SigningKeyGiven(str(e), hint=hint) from None


_KEY_OPTIONS = ("--key-file", "--identity", "--passphrase-file", "--key-command", "-p", "--recipient")


def no_key_hint(args):
    options = [o for o in _KEY_OPTIONS if o in args or (o == "-p" and "--passphrase" in args)]
    variables = "ENCPIPE_KEY or ENCPIPE_PASSPHRASE" if "--passphrase" in args else "ENCPIPE_KEY"
    return f"set {variables}, or use {', '.join(options[:-1])} or {options[-1]}"


def public_forms(option, values, what="public key"):
    """`values`, given to `option` where public keys (or verify keys) belong: UsageError
    (64), the value not shown, for one that is a secret key; a script calls it before
    it runs any child that would be given the value on its command line."""
    from .textform import nth, refuse_secret

    for i, value in enumerate(values, 1):
        refuse_secret(value, nth(option, i, len(values)), what)
    return values


def load_signers(texts, files, env):
    """Verify keys from --signer texts and --signer-file paths, else from ENCPIPE_SIGNER."""
    from .childenv import ENV_SIGNER

    if not texts and not files and not env.get(ENV_SIGNER):  # none: signing's cryptography not loaded
        return []
    from .keys import decode_text, read_secret_file
    from .signing import parse_verify_key, parse_verify_keys
    from .textform import nth

    if not texts and not files:
        return parse_verify_keys(env[ENV_SIGNER], ENV_SIGNER, numbered=False)
    keys = [parse_verify_key(text, nth("--signer", i, len(texts))) for i, text in enumerate(texts, 1)]
    for path in files:  # as a key file: UTF-8, and one with no key is refused, beside others too
        found = parse_verify_keys(decode_text(read_secret_file(path, lambda *a, **k: None), path), path)
        if not found:
            raise UsageError(f"{path}: no verify key found")
        keys += found
    return keys


FD_PATH = Pattern(r"/(?:dev|proc/self)/fd/([0-9]+)")
SECRET_FILES = ("--key-file", "--identity", "--passphrase-file", "--recipient-file", "--sign-key", "--signer-file",
                "--add-key-file", "--add-passphrase-file")


def readable_beside_another(words, options=("--key-file", "--identity")):
    """Whether every secret file that `words` (`--option=PATH` words) names for `options`
    can be read by two encpipe at once, each reading all of it: a regular file, or a
    /dev/fd/N (a script lends each child its own copy, fdsecrets). Not a named FIFO or a
    device, which two readers would share (one would find no key), nor a path that
    cannot be looked at now: give it FdSecrets.words(), in which a FIFO or a device
    read once at the start is the /dev/fd/M of its copy."""
    for word in words:
        option, _, path = word.partition("=")
        if option in options and not FD_PATH.fullmatch(path):
            try:
                if not stat.S_ISREG(os.stat(path).st_mode):
                    return False
            except (OSError, ValueError):
                return False
    return True


def refuse_shared_stdin(args):
    """At most one of a command's files of secrets (keys, passphrases, signing keys,
    rewrap's added keys) and verify keys (--signer-file), and --passphrase-fd, may
    be standard input (keys.KeySources.refuse_shared_stdin): UsageError (64)
    naming two of them, before anything is read; nor may one --passphrase-fd be given
    twice. `args`: docopt-style, by option."""
    from .keys import KeySources

    fds = [int_option(text, "--passphrase-fd", 0, 1 << 20, shown=False) for text in args.get("--passphrase-fd") or []]
    KeySources(passphrase_fds=fds).refuse_shared_stdin(more=[(o, args.get(o) or []) for o in SECRET_FILES])
    again = next((fd for i, fd in enumerate(fds) if fd in fds[:i]), None)
    if again is not None:
        raise descriptor_twice("--passphrase-fd", again)


def descriptor_twice(option, fd):
    """The UsageError (64) of one descriptor N given twice to `option`: read once, its
    second read would find it at its end ("the passphrase is empty")."""
    return UsageError(f"{option} {fd} is given twice: a descriptor holds one passphrase, read once")


def secret_fds_open(args):
    """Each --passphrase-fd, and each secret file given as /dev/fd/N, must be open
    when the command starts: a closed one could later be the number of a file
    encpipe opens itself (FILE, a directory), read as the secret."""
    fds = [int_option(text, "--passphrase-fd", 0, 1 << 20, shown=False) for text in args.get("--passphrase-fd") or []]
    for option in SECRET_FILES:
        fds += [int(m.group(1)) for m in map(FD_PATH.fullmatch, args.get(option) or []) if m]
    for fd in fds:
        try:
            fstat_fd(fd)
        except OSError as e:
            raise InputUnavailable(f"cannot read file descriptor {fd}: {e.strerror or e}") from None


def fstat_fd(fd):
    """os.fstat(fd), and OSError EBADF for a number over any descriptor's (/dev/fd/N
    as long as one likes), for which os.fstat raises OverflowError."""
    try:
        return os.fstat(fd)
    except OverflowError:
        raise OSError(errno.EBADF, os.strerror(errno.EBADF)) from None
