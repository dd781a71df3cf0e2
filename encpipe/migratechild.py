"""encpipe-migrate's encpipe children for one file: `open --legacy | seal` into
the new file, and `inspect --verify` of what seal wrote, read through its
descriptor. A child's error line (and hint) goes in the file's report line
(childerr); its other lines (warnings, seal's --progress) pass on to standard
error."""

import json
import os
import signal
import subprocess

from . import childerr

REPORT_MAX = 1 << 20  # bytes read of inspect's JSON report of a new file


class Failure(Exception):
    def __init__(self, message, code, hint=None):
        super().__init__(message)
        self.code, self.hint = code, hint


def child_failed(what, status, said):
    """A Failure for encpipe child `what` that exited `status`, its error line (and
    hint), as childerr kept them, folded in: the file's one report line says why."""
    error, hint = said
    return Failure(f"{what} failed with status {status}" + (f": {error}" if error else ""), status, hint)


class Children:
    """The children of a Migration (its encpipe, secrets, open_args, seal_args,
    verify_args, open_env, new_env and sign_ids)."""

    def seal(self, src, out_fd, plaintext):
        """open --legacy | seal; their warnings pass on, an error line goes in the file's report line.
        Each child is started inside the `try` that stops it (childerr.used): a signal, even
        one that comes as it starts, leaves neither running. A seal that cannot start fails
        the file once open's warnings passed on (bounded: ChildStderr.wait), as when it fails."""
        opened_said = childerr.ChildStderr()
        try:
            (sealed, opened, sealed_said), _ = childerr.used(
                self.secrets.spawn, [*self.encpipe, "open", "--legacy", *self.open_args, "-"], stdin=src,
                stdout=subprocess.PIPE, env=self.open_env, start=subprocess.Popen, stderr_of=opened_said,
                use=lambda opener: self.sealed_from(opener, out_fd, plaintext))
        except Exception:  # open stopped by now; not a signal, which ends the run at once
            opened_said.wait()
            raise
        sealed, opened = childerr.exit_status(sealed), childerr.exit_status(opened)
        opened_said, sealed_said = opened_said.wait(), sealed_said.wait()
        if opened and not (sealed and opened == 128 + signal.SIGPIPE):  # not just seal going first
            raise child_failed("encpipe open --legacy", opened, opened_said)
        if sealed:
            raise child_failed("encpipe seal", sealed, sealed_said)

    def sealed_from(self, opener, out_fd, plaintext):
        """seal of what `opener` (open --legacy) writes, into `out_fd`: (seal's status, then
        open's, once both ended, seal's ChildStderr). With --progress, seal reports the
        file's `plaintext` bytes (--size: it reads them from a pipe)."""
        def waited(sealer):
            opener.stdout.close()  # seal's alone: open gets SIGPIPE if seal ends first
            return childerr.waited(sealer)

        try:
            sealed, said = childerr.used(self.secrets.spawn, [*self.encpipe, "seal", *self.seal_args, *self.progress(plaintext)],
                                         stdin=opener.stdout, stdout=out_fd, env=self.new_env, start=subprocess.Popen,
                                         use=waited)
        finally:
            opener.stdout.close()
        return sealed, opener.wait(), said

    def verify(self, fd, plaintext):
        """inspect --verify of the new file through its descriptor, never its name."""
        os.lseek(fd, 0, os.SEEK_SET)
        returncode, out, said = childerr.run(self.secrets.spawn, [*self.encpipe, "inspect", "--verify", "--json",
                                                                  *self.verify_args, *self.progress(None)],
                                             REPORT_MAX, stdin=fd, stdout=subprocess.PIPE, env=self.new_env)
        status = childerr.exit_status(returncode)
        if status:
            raise child_failed("encpipe inspect --verify of the new file", status, said)
        try:
            report = json.loads(out)
        except ValueError:
            raise Failure("encpipe inspect --verify printed no JSON", 70) from None
        if not report.get("verified") or report.get("plaintext_bytes") != plaintext:
            raise Failure(f"the new file holds {report.get('plaintext_bytes')} bytes, not {plaintext}", 70)
        if not set(self.sign_ids) <= set(report.get("signed_by") or []):
            raise Failure("the new file is not signed by every --sign-key", 70)
        return report

    def progress(self, plaintext):
        """--progress for seal (the plaintext's size: it reads a pipe), or for inspect --verify (None)."""
        size = ["--size", str(plaintext)] if plaintext is not None else []
        return ["--progress", *size] if self.args.progress else []
