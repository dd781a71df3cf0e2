"""encpipe-backup: one PostgreSQL database, dumped and sealed into a backup
directory and/or an rclone remote, in one process.

    python3 -m encpipe.pgbackup SCRIPT [encpipe-backup's arguments]

SCRIPT is the path of scripts/encpipe-backup, whose header is the usage text
(--help) and which --systemd-unit's ExecStart runs. The options, the steps and
the exit statuses are described there and in README, "Backing up"; its
command line is read and checked by pgbackupargs.
"""

import importlib
import mmap
import os
import signal
import sys
import time
from io import BytesIO, StringIO

from . import aead, commands, dirlock, sigdefer, sigthreads
from .argwords import joined
from .backup import job, label
from .backup.names import STAMP
from .cli import Io, Terminated, catch_signal, report_errors, set_up
from .errors import EncpipeError, IOFailure, UsageError, ran_out
from .fdsecrets import FdSecrets, holding, read_fd, refuse_one_number_twice
from .keyargs import load_keys, public_forms, refuse_shared_stdin, secret_fds_open
from .keyplace import refuse_replaceable
from .keys import STDIN_PATHS, warn_fd_mode
from .pgbackupargs import HELP, PROG, parse, validate
from .pgcli import Failure, script_usage
from .pgdump import Globals, Said, dump
from .stdio import said as stdio_said

TEMP_PREFIX = ".encpipe-tmp."
NAME_WAIT = 10  # seconds: a name is taken for a second at most by a run of this database
# Address space held back (mapped, never touched: no memory used) for a failed run's clean-up:
# a run that ran out of memory (its threads' stacks stay mapped) still removes its files and records it.
RESERVE = 8 << 20


class Interrupted(Terminated):
    """Backup's handler's: a SIGINT, SIGTERM or SIGHUP (`status`: 128 + its number) while
    the run is under way. One that escapes the run (as its failure's line was said) is,
    as any Terminated, death by the signal (run_script): it escaped as a traceback, exit 1."""

    def __init__(self, status):
        super().__init__(status - 128)
        self.status = status


class Backup:
    def __init__(self, o, passphrases, io):
        self.o, self.passphrases, self.io = o, passphrases, io
        self.db, self.temp, self.gtemp, self.globals, self.pending = o["db"], None, None, None, None
        self.stores = []  # prepare()'s
        self.said = Said()  # what failed, for the run's one error line
        # for `job commit` and `job abort`, each value one word with its option (argwords): a DBNAME
        # or a key file named --, docopt's end of options, is a value
        self.store_opts = joined({"--dir": [o["dir"]] if o["dir"] else [], "--to": [o["to"]] if o["to"] else []})
        self.store_opts += o["shared"]
        self.job_opts = o["metrics"] + joined({"--database": [self.db], "--started": [repr(time.time())]})
        self.clock = time.monotonic()  # the run's duration, which a clock stepped back does not make < 0

    def run(self):
        """The run's status; a failed one also removes the --dir it made, if still empty."""
        self.made, status = [], None
        try:
            self.reserve = mmap.mmap(-1, RESERVE)
        except OSError:  # ENOMEM: no room for anything
            raise MemoryError from None
        try:
            status = self._run()
            return status
        finally:
            if status != 0:
                dirlock.remove_made(self.made)

    def _run(self):
        try:
            self.prepare()
        except (EncpipeError, OSError) as e:
            if isinstance(e, OSError):  # DIR cannot be made, opened or locked: the output cannot be written
                self.said.error(f"cannot use {self.o['dir']}: {e.strerror or e}", _dir_hint(e, self.o["dir"]))
                status = 74
            else:
                self.said.error(str(e), e.hint)
                status = e.exit_code
            # a failed attempt too (DIR refused, its lock held): nothing to remove, but recorded
            return self.failed(status, job.metrics_not_written(job.record_failed_run(self.job_opts, self.clock)))
        self.temp = self._temp_name()
        try:
            for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                catch_signal(signum, self._interrupt)  # ignored at start (nohup, &): stays so
            status = self.dump()
            self.pending = 0  # from here on a signal waits until the run's end
        except Interrupted as e:
            self.pending = status = e.status
            if self.globals:  # its temporary file is removed once it can no longer appear
                self.globals.stop()
                self.globals.join(60)
        status = status or self.marker.write(self._temp_name, self.said)  # once there is a backup to store
        if status:
            self.marker.undo()
            self.reserve.close()  # its room, for the clean-up
            unrecorded = self.abort()
            if status != self.pending:
                self.failed(status, unrecorded)
            else:  # interrupted: one line (cron mails standard error), and what was left, if anything
                self.io.error(f"backup of {self.db} interrupted; nothing was stored{unrecorded or ''}")
            return self.pending or status
        status = self.commit()  # the globals, then the dump: a dump always has its globals beside it
        if not sigdefer.committed():
            self.marker.undo()
            return self.pending or status
        self.marker.write(self._temp_name, self.said, stored=True)  # --new-cluster: taken over once stored
        return status  # stored: a signal then changes nothing

    def prepare(self):
        self.stamp = None
        while not self.stamp:  # again when DIR was removed while this run waited for its lock
            if self.o["dir"]:
                with sigthreads.held():  # made and recorded in one step: an interrupted run removes them
                    self.made += dirlock.make_directories(self.o["dir"])
            self.stores = job.stores({"--dir": self.o["dir"], "--to": self.o["to"],
                                      "--allow-shared-dir": bool(self.o["shared"])}, self.io)
            self.stamp = self.lock() if self.o["dir"] else time.strftime(STAMP, time.gmtime())
        self.final = f"{self.db}_{self.stamp}.{self.o['ext']}.enc"
        self.gname = f"{self.db}_{self.stamp}.globals.sql.enc"
        self.guard()

    def guard(self):
        """The location's cluster marker (backup.cluster.Guard), checked before anything is dumped."""
        from .backup import cluster

        self.marker = cluster.Guard(self.stores, self.o["new_cluster"], self.io.warn)
        self.marker.check_stores(self.db)

    def failed(self, status, unrecorded=None):  # the run's one error line (a child's own, pg_dump's, came before it)
        cause = self.said.because()
        self.io.error(f"backup of {self.db} failed (status {status}){': ' + cause if cause else ''}; "
                      f"nothing was stored{unrecorded or ''}", hint=self.said.hint)
        return status

    def _interrupt(self, signum, frame):
        if self.pending is None:
            raise Interrupted(128 + signum)
        self.pending = 128 + signum

    def _temp_name(self):
        tail = int.from_bytes(os.urandom(4), "big") >> 2  # secrets.randbelow(1 << 30), without importing random
        return f"{TEMP_PREFIX}{self.stamp}_{os.getpid()}_{tail}"

    def _say_waiting(self):
        self.io.stderr.write(f"{PROG}: waiting for another run in {self.o['dir']}\n")  # any holder of its lock
        self.io.stderr.flush()

    def lock(self):
        """Take turns in DIR (flock), remove the temporary files of killed runs, and
        wait until this second's names are free; the time stamp (None: DIR is gone)."""
        directory = self.o["dir"]
        fd = self.stores[0].opened()  # --dir's (job.stores: first), opened once: each step here relative to it
        try:
            there = dirlock.take(fd, directory, self.o["lock_wait"], self._say_waiting)
        except BaseException:
            os.close(fd)
            raise
        if not there:
            os.close(fd)
            return None
        self.lock_fd = fd
        for name in os.listdir(fd):  # holding the lock, no other backup writes here (a seal -o may: left_behind)
            if name.startswith(TEMP_PREFIX) and dirlock.left_behind(fd, name):
                try:
                    os.unlink(name, dir_fd=fd)
                except OSError:
                    pass
        deadline = time.monotonic() + NAME_WAIT  # names planted for every second to come never free up
        while True:
            stamp = time.strftime(STAMP, time.gmtime())
            names = (f"{self.db}_{stamp}.{self.o['ext']}.enc", f"{self.db}_{stamp}.globals.sql.enc")
            taken = [n for n in names if self.stores[0].lexists(n)]  # in the directory opened, as fd
            if not taken:
                return stamp
            if time.monotonic() > deadline:
                raise IOFailure(f"{os.path.join(directory, taken[0])} already exists, as did this backup's names "
                                f"for each second of the last {NAME_WAIT} s; not overwritten",
                                hint="files dated in the future were put there: see encpipe-list")
            time.sleep(0.2)

    def sealer(self):
        """seal(src, out): the keys loaded once, for both files."""
        args = dict(self.o["seal"])
        chunk, workers = commands.seal_chunking(args, from_pipe=True, load=False)  # the library: see seal()
        aead.checked()  # an ENCPIPE_CIPHER that names no library, or one not installed: 64 now
        # each --passphrase-fd secret, read once, on a descriptor again: a memfd holds it whole (a
        # new pipe, which nothing read yet, held 8 KiB for a user over pipe-user-pages-soft: a longer
        # passphrase waited for ever to be written)
        held, asked, loader = [], [], commands.loader(args, self.io)
        ask = loader.prompt  # -p: the answer kept for the prune too
        loader.prompt = lambda confirm: asked.append(ask(confirm=confirm)) or asked[-1]
        try:
            for fd, secret in zip(self.o["seal"]["--passphrase-fd"], self.passphrases):
                held.append(holding(secret, f"file descriptor {fd}"))
            args["--passphrase-fd"] = [str(fd) for fd in held]
            recipients = load_keys(loader, args, commands.key_sources(args), sealing=True)
        finally:
            for fd in held:
                os.close(fd)
        if self.o["policy"]:  # the prune of --keep... opens the series with them (before, none: "no key")
            for secret in (*self.passphrases, *asked):  # a memfd, not inherited, read from its start by each open
                self.o["open"].append(f"--passphrase-file=/dev/fd/{holding(secret, 'a passphrase')}")
        signed_by = commands.signing_keys(args, self.io)
        self.progress = commands.progress(args, self.io, "seal")

        from . import envelope

        def seal(src, out, progress=None):
            # Loaded once pg_dump runs, while it connects and reads the catalog, before its first byte:
            # the cipher library (one that cannot be loaded fails the run, its temporary file removed)
            # and the modules that read the stored file back (job's commit).
            aead.library()
            importlib.import_module(".backup.listing", __package__)
            envelope.seal(src, out, recipients, chunk_log2=chunk, threads=workers, on_progress=progress,
                          signing_keys=signed_by)

        return seal

    def dump(self):
        try:
            seal = self.sealer()
        except EncpipeError as e:
            self.said.error(str(e), e.hint)
            return e.exit_code
        if self.o["globals"]:  # beside the dump, at the same time: it is mostly waiting
            self.gtemp = self._temp_name()
            self.globals = Globals(self.db, seal, self.stores, self.gtemp, self.gname)
            try:
                sigthreads.start(self.globals)
            except RuntimeError as e:  # no thread: a failed run, recorded
                if not ran_out(e):
                    raise
                self.globals = None
                self.said.error(ran_out(e))
                return IOFailure.exit_code
        # -w as every client of the scripts: a prompt could not help (pg_dumpall's is -w), wrote
        # `Password:` into a cron job's mail, and stopped a backup run in a shell's background
        pg_dump = ["pg_dump", "--no-password", f"--format={self.o['format']}", *self.o["dump"]]
        # the label first (README, "The backup's label"): what the file's name says, authenticated
        first = label.prefix(self.o["compress"] if self.o["format"] == "plain" else None, self.db, self.stamp)
        status = dump(self.said, self.db, pg_dump, self.o["squeeze"],
                      lambda src, out: seal(label.Labelled(first, src), out, self.progress), self.stores, self.temp,
                      self.final)
        if self.progress and not status:
            self.progress.finish()
        if self.globals:
            self.globals.join()
            if self.globals.status and not status:  # pg_dump could, pg_dumpall could not: most likely privilege
                self.said = self.globals.said
                if not self.said.cause:
                    self.said.hint = ("pg_dumpall connects to the postgres database (else template1) and reads "
                                      "pg_authid as a superuser, and asks for no password (PGPASSWORD, a password "
                                      "file); --no-globals skips the globals")
            status = status or self.globals.status
        return status

    def abort(self):
        """Remove the temporary files, record a failed run; what the run's one line ends
        with when that failed (`job abort`'s own error, folded in), or when an upload
        may have left something (storage.write_new: an rclone that had to be killed; a
        temporary object that `job abort`, trying again on the run's own stores, could
        not remove either: the last try's word), else None."""
        said = StringIO()  # one line of this process's own making
        # one abort for both temporary files: the run recorded once (it ran once for each,
        # --metrics-file written twice, the first write's error thrown away)
        gtemp = joined({"--globals-temp": [self.gtemp]}) if self.gtemp else []
        # its standard output in memory (it prints nothing): no descriptor to open, which a run
        # that failed out of descriptors (EMFILE) would not get, and with it neither its
        # temporary files removed nor the run recorded, nor a word that it was not
        job.main(["abort", *self.store_opts, *self.job_opts, *gtemp, self.temp], stdout=BytesIO(),
                 stderr=said, stores=self.stores, clock=self.clock)
        why = stdio_said(said.getvalue())
        left = "".join(f"; {note}" for store in self.stores for note in [*store.unfinished, *store.unremoved.values()])
        if why is None:
            return left or None
        return (job.metrics_not_written(why) if self.o["metrics"] else f"; temporary files not removed: {why}") + left

    def commit(self):
        """One step renames the globals, then the dump, prunes, records the run, prints the JSON line."""
        globals_opts = joined({"--globals-temp": [self.gtemp], "--globals-name": [self.gname]}) if self.gtemp else []
        return job.main(["commit", *self.store_opts, *self.job_opts, f"--kind={self.o['ext']}", *self.o["policy"],
                         *self.o["open"], *joined(self.o["signers"]), *self.o["unauthenticated"], *globals_opts,
                         "--", self.temp, self.final],  # NAME starts as DBNAME does: maybe with a dash
                        clock=self.clock, written=self.stores[0].written if self.stores else None)


READ_ONCE = ("--key-file", "--identity", "--passphrase-file", "--recipient-file", "--sign-key", "--signer-file")


def read_once(o):
    """The secret files of `o` (READ_ONCE: the keys are read for the seal, and again by
    the prune of --keep...; a --signer-file now and by the prune) given as /dev/fd/N, or
    by a path that names no regular file (a FIFO whose writer writes once): each read
    once, now, and kept at a number of its own as a copy each open reads from its start
    (FdSecrets.keep_lent: a pipe read again would be empty, a FIFO's second open wait
    for ever); a path so read is given as /dev/fd/M from then on. Standard input is left
    as it is: the seal reads it. One N given to --passphrase-fd too is UsageError (64): read
    for both, then closed, the file would be read again from whatever took N next."""
    where = {f: o["signers"] if f == "--signer-file" else o["seal"] for f in READ_ONCE}
    given = {**{f: where[f].get(f) for f in READ_ONCE}, "--passphrase-fd": o["seal"]["--passphrase-fd"]}
    refuse_one_number_twice(given, READ_ONCE, ("--passphrase-fd",))  # else read for both, then closed: read again
    held = FdSecrets({f: [p for p in where[f].get(f) or [] if p not in STDIN_PATHS] for f in READ_ONCE}, READ_ONCE)
    held.keep_lent()
    for f in READ_ONCE:
        if where[f].get(f):
            where[f][f] = [held.value(p) for p in where[f][f]]
    o["open"] = held.words(o["open"])


def _dir_hint(error, directory):
    """For a --dir this user may not make or enter: the command that makes it theirs."""
    if not isinstance(error, PermissionError):
        return None
    import pwd
    import shlex

    try:
        user = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        user = str(os.geteuid())
    return f"make it this user's, as root: install -d -o {shlex.quote(user)} -m 700 {shlex.quote(directory)}"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    script, argv = argv[0], argv[1:]
    os.umask(0o077)
    io = Io(sys.stdin.buffer, sys.stdout.buffer, sys.stderr, os.environ, prog=PROG)
    if "--systemd-unit" in argv:
        if "--new-cluster" in argv[:argv.index("--") if "--" in argv else len(argv)]:  # every night: no guard left
            io.error("--new-cluster is for one run, not for a unit: each of its runs would take the location over",
                     hint="run encpipe-backup --new-cluster once by hand, and make the unit without it")
            return UsageError.exit_code
        return job.main(["systemd-unit", script, *[a for a in argv if a != "--systemd-unit"]])
    started, run = (time.time(), time.monotonic()), None
    try:
        o = parse(argv)
        if o is HELP:
            return report_errors(io, lambda: io.print(script_usage(script)) or 0)
        public_forms("--recipient", o["seal"]["--recipient"])  # a secret pasted: 64, before anything
        public_forms("--signer", o["signers"]["--signer"], "verify key")
        validate(o, io.env)
        run = o  # from here on a failure is a failed run: recorded (--metrics-file)
        # a secret on a closed descriptor: 66 now, before DIR's lock takes its number
        given = {**o["seal"], "--passphrase-fd": list(map(str, o["seal"]["--passphrase-fd"]))}
        secret_fds_open({**given, **o["signers"]})
        refuse_shared_stdin({**given, **o["signers"]})  # --passphrase-fd 0 and --key-file /dev/stdin: 64
        refuse_replaceable({**given, **o["signers"]}, READ_ONCE, bool(o["shared"]))  # 73, before any is read
        read_once(o)
        # a bad signer (a secret key in ENCPIPE_SIGNER too, with no policy that reads it) is a
        # mistake now, not after the dump (none given: nothing read, nothing imported)
        commands.signers(o["signers"], io)
        passphrases = []
        for fd in o["seal"]["--passphrase-fd"]:  # read once, then closed: the keys are loaded in this process
            secret = read_fd(fd)
            warn_fd_mode(fd, secret.others, io.warn)  # here: its copy (bytes, mode 0400) draws none
            passphrases.append(bytes(secret))
            os.close(fd)
    except Failure as e:
        io.error(f"{e}{_recorded(run, started, e.status)}", hint=e.hint)
        return e.status
    except EncpipeError as e:
        io.error(f"{e}{_recorded(run, started, e.exit_code)}", hint=e.hint)
        return e.exit_code
    try:
        return report_errors(io, Backup(o, passphrases, io).run)
    except KeyboardInterrupt:  # before the run began (waiting for the lock): Backup.run removed what it made
        return 130


def _recorded(o, started, status):
    """Record a run that failed with `status` before Backup (a key file refused, a
    descriptor closed) in --metrics-file; what its line ends with when that failed."""
    if o is None or status == UsageError.exit_code:  # its command line not read, or a mistake in it: no run
        return ""
    return job.metrics_not_written(job.record_failed_run(o["metrics"] + joined(
        {"--database": [o["db"]], "--started": [repr(started[0])]}), started[1]))


if __name__ == "__main__":
    from .processguard import ctypes_backend

    ctypes_backend()  # as cli.run
    set_up(PROG)
    raise SystemExit(main())
