"""encpipe-rotate's encpipe children: `keyid` of the key files, `inspect` of each
file, `rewrap`, and `inspect --verify` of what rewrap wrote. Secrets travel as file
paths only (FdSecrets lends a /dev/fd/N one). A child's error line becomes the
Failure of its file (the file's one JSON line); the warnings of a child run on a
file (inspect, rewrap) are passed on to standard error as it writes them, each
line after `encpipe-rotate: FILE: `: rotate works on many files, and a warning
that named none would say nothing of which."""

import json
import os
import re
import subprocess

from . import childerr
from .argwords import option_words
from .errors import ran_out
from .shown import printable
from .textform import nth

PROG = "encpipe-rotate"
OUTPUT_MAX = 1 << 20  # bytes read of what an encpipe child prints (key ids, inspect's JSON report)


class Failure(Exception):
    """A step failed: `status` is the exit status of the script (or of encpipe, for a file)."""

    def __init__(self, message, status=1, step="rotate", hint=None):
        super().__init__(message)
        self.status, self.step, self.hint = status, step, hint


class Encpipe:
    """Runs the encpipe command; secrets only ever travel as file paths."""

    def __init__(self, command, secrets, shared=()):
        """`shared`: ["--allow-shared-dir"] when rotate was given it: each child reads the key files too."""
        self.command, self.secrets, self.shared = command, secrets, list(shared)

    def run(self, args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, quiet=True, about=None, only=b""):
        """encpipe's standard output (at most OUTPUT_MAX bytes); its error line becomes a
        Failure, its warnings are passed on unless `quiet`, or, for a child run on file
        `about`, each after the script's name and the file's (only those that start
        with `only`, if given; childerr: the child's standard error is never held
        whole, whatever it writes)."""
        label = f"{PROG}: {printable(about)}: " if about is not None else ""
        try:
            returncode, out, (error, hint) = childerr.run(self.secrets.spawn, self.command + args[:1] + self.shared + args[1:],
                                                       OUTPUT_MAX,
                                                       pass_on=not quiet or bool(label), label=label, only=only,
                                                       stdin=stdin, stdout=stdout)
        except OSError as e:  # ENCPIPE missing, a directory, not executable; or out of descriptors (74)
            if ran_out(e):
                raise Failure(f"cannot run encpipe: {ran_out(e)}", 74) from None
            raise Failure(f"cannot run encpipe: {e.filename or self.command[0]}", 66) from None
        returncode = childerr.exit_status(returncode)  # killed by signal N: 128 + N, as the other scripts say it
        if returncode != 0:
            raise Failure(error or f"encpipe {args[0]} failed", returncode, hint=hint)
        return out

    def key_ids(self, key_files, option="--key-file"):
        args = ["keyid", *option_words(option, key_files)]  # a file named -h is a file, not --help
        return self.run(args, quiet=False).decode("ascii").split() if key_files else []

    def recipient_ids(self, public_keys):
        """{public key: its key id} of rotate's --escrow-recipient values, in their order;
        Failure for the first refused, named by its place when there are several."""
        return {pub: self._recipient_id(pub, nth("--escrow-recipient", i, len(public_keys)))
                for i, pub in enumerate(public_keys, 1)}

    def _recipient_id(self, public_key, option):
        try:
            return self.run(["keyid", *option_words("--recipient", [public_key])]).decode("ascii").strip()
        except Failure as e:
            hint = e.hint and re.sub(r"--recipient(?![\w-])", "--escrow-recipient", e.hint)  # rotate's option
            raise Failure(f"{option}: {str(e).removeprefix('--recipient: ')}", e.status,
                          hint=hint) from None

    def inspect(self, fd, about=None):
        """inspect of the file open as `fd` (never by path: a FIFO swapped in would block it)."""
        os.lseek(fd, 0, os.SEEK_SET)
        return _report(self.run(["inspect", "--json"], stdin=fd, about=about))

    def verify_fd(self, fd, key_files, signer_args=(), progress_of=None):
        """inspect --verify of the file open as `fd`, from its start (never by path); a
        check of what rewrap wrote: its warnings, which rewrap gave, are dropped. With
        `progress_of` (a file's name: --progress), its progress lines pass on after it."""
        os.lseek(fd, 0, os.SEEK_SET)
        args = ["inspect", "--json", "--verify", *option_words("--key-file", key_files), *signer_args]
        if progress_of is None:
            return _report(self.run(args, stdin=fd))
        return _report(self.run([*args, "--progress"], stdin=fd, about=progress_of, only=b"encpipe: verify: "))


def _report(output):
    try:
        return json.loads(output)
    except ValueError:  # an ENCPIPE that is not encpipe
        raise Failure("encpipe inspect printed no JSON report", 66) from None

