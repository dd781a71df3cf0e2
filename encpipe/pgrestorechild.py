"""encpipe-restore's encpipe children: the key checks (keycheck: the keyid of each
key source, settled once), the check of a legacy FILE (`inspect --legacy --verify`),
the globals file's `open --verify-first`, and FILE's `open` for the restore stream
(pgstream.Restore). Each gets the secrets (FdSecrets lends a /dev/fd/N one) and
FILE's and the globals file's descriptors, opened once, never their names; those
still running when the run ends are ended (stop_children). One that refused is the
restore's one error line, each /dev/fd/N named as the user named the file (refused)."""

import subprocess

from . import childerr, keycheck, pgcommit, pgfetch, pgglobals, sigthreads
from .errors import EncpipeError
from .textform import shown_name
from .pgcli import Failure, maker_check, open_failure_hint, refused, say
from .pgstream import Restore


class Children:
    """The children of a Run (its o, encpipe, secrets, env, keyids, fds, file, db, sealed,
    source, named, remote, beside, source_run, legacy, restrict and stream); the globals
    file's open is kept in globals_open, globals_names and globals_path."""

    def encpipe_run(self, args, **kw):
        return self.secrets.spawn(self.encpipe + args[:1] + self.o["shared"] + self.o["key"] + args[1:],
                                  env=self.env, pass_fds=self.fds, **kw)

    def keys_checked(self):
        """The verdicts of the key checks (keycheck.check, check_environment), once: a Failure."""
        try:
            keycheck.settle(self.keyids)
        except EncpipeError as e:
            raise Failure(str(e), e.exit_code, e.hint) from None

    def stop_children(self):
        """A run that ends: the children that may still run, ended (an interrupted or failed run)."""
        for started in self.keyids:
            started.stop()
        if self.stream:
            self.stream.kill()
        if self.globals_open:
            childerr.stop(self.globals_open[0])

    def refused(self, what, status, said, hint=None, fallback=None, exists=None):
        """pgcli.refused, FILE's and the globals file's /dev/fd/N named as the user named them;
        `exists`: whether DBNAME does, once the server was asked (else None)."""
        names = dict(zip(("/dev/fd/%d" % fd for fd in self.fds), [self.file, *self.globals_names]))
        return refused(what, status, said, names, pgcommit.untouched(self.db, exists), hint, fallback)

    def authenticate_legacy(self):
        if self.sealed:
            return False
        status, said = childerr.used(self.encpipe_run, ["inspect", "--legacy", "--verify", self.source],
                                     start=subprocess.Popen, stdout=subprocess.DEVNULL)
        if status != 0:
            status = childerr.exit_status(status)
            raise self.refused("cannot authenticate %s" % self.file, status, said.wait())
        said.wait()  # its warnings come before the restore's next line
        return True

    def load_globals(self):
        """(statements, properties) of the run's globals file; ([], None) when none is needed."""
        path = self.o.get("globals") or pgglobals.beside(self.beside, self.remote, self.legacy)
        if path is None:
            return [], None
        proc, said = self.globals_open or self.start_globals(path)  # ended by stop_children if the read is not
        path = self.shown.get(path, path)  # a remote one's name, never its fetched copy's (gone at exit)
        text = pgglobals.read_sql(proc, path)
        self.globals_open = None  # it ended (read_sql waited for it)
        said.wait()
        if proc.returncode != 0:
            status = childerr.exit_status(proc.returncode)
            raise self.refused("cannot decrypt the globals file %s" % path, status, said.wait(),
                               open_failure_hint(status, self.o, self.env), pgglobals.REFUSED_HINT)
        self.globals_path = path
        checked = pgglobals.checked(text, path, self.source_run, say)
        # FILE's run's, labelled: that run labelled its dump too (pgstream.Restore.labelled)
        labelled = self.source_run is not None and pgglobals.labelled_run(text, path) is not None
        if labelled and self.legacy:
            raise Failure("%s is a file of the previous tool, but its run's globals file %s is encpipe-backup's, "
                          "whose dump carries a label (a copy of an older backup put under this name?); nothing "
                          "was changed" % (self.file, path), 65)
        self.labelled = labelled
        return checked

    def start_globals(self, path):
        """`encpipe open` of the globals file at `path`, started and recorded (globals_open) in one step."""
        shown = self.shown.get(path, path)
        self.fds.append(pgfetch.open_regular(path, "the globals file %s" % shown_name(shown),  # a key typed: not shown
                                             pgcommit.untouched(self.db, None),
                                             pgglobals.REFUSED_HINT))  # removed, it is refused as missing
        self.globals_names = [shown]
        args = ["open", "--verify-first", *maker_check(self.o), "/dev/fd/%d" % self.fds[-1]]
        with sigthreads.held():
            self.globals_open = childerr.started(self.encpipe_run, args, start=subprocess.Popen,
                                                 stdout=subprocess.PIPE)
        return self.globals_open

    def restore_stream_of(self, legacy):
        open_cmd = self.encpipe + ["open", "--legacy" if legacy else "--verify-first", *maker_check(self.o),
                                   *self.o["open"], *self.o["shared"], *self.o["key"], self.source]
        return Restore(open_cmd, self.env, self.fds[:1], self.o["tool"], self.o.get("role"), self.restrict,
                       self.secrets.spawn, self.named)
