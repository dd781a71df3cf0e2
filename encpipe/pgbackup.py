"""encpipe-backup: one PostgreSQL database, dumped and sealed into a backup
directory and/or an rclone remote, in one process.

    python3 -m encpipe.pgbackup SCRIPT [encpipe-backup's arguments]

SCRIPT is the path of scripts/encpipe-backup, whose header is the usage text
(--help) and which --systemd-unit's ExecStart runs. The options, the steps and
the exit statuses are described there and in README, "Backing up".
"""

import os
import re
import secrets
import shutil
import signal
import sys
import time

from . import commands, dirlock, pgopts
from .backup import job
from .backup.cli import policy_from
from .backup.names import STAMP
from .backup.remotes import refuse_credentials
from .cli import Io, catch_signal, guard_standard_fds, no_core_dumps, report_errors
from .errors import EncpipeError, IOFailure
from .fdsecrets import read_fd
from .keyargs import load_keys, refuse_shared_stdin, secret_fds_open
from .pgcli import FD_NOT_A_NUMBER, Failure, script_usage, unknown_option, utf8_name
from .pgdump import Globals, dump
from .slots import MAX_SCRYPT_LOG2_N, MIN_SCRYPT_LOG2_N
from .usage_errors import empty_value
from .workers import chunk_log2, int_option, thread_option

PROG = "encpipe-backup"
TEMP_PREFIX = ".encpipe-tmp."
NAME_WAIT = 10  # seconds: a name is taken for a second at most by a run of this database
_OPEN = ("--key-file", "--key-command", "--identity", "--passphrase-file", "--passphrase-command")
_KEYS = _OPEN + ("--recipient", "--recipient-file")
_POLICY = ("--keep", "--keep-last", "--keep-daily", "--keep-weekly", "--keep-monthly", "--max-age")
_VALUE = {"--dir", "--to", "--format", "--metrics-file", "--compress", "--compress-level", "--compress-threads",
          "--sign-key", "--passphrase-fd", "--chunk-size", "--work-factor", "--threads", "--signer",
          "--signer-file", *_KEYS, *_POLICY}
_REPEATABLE = {*_KEYS, "--sign-key", "--passphrase-fd", "--signer", "--signer-file"}
_FLAGS = {"-p", "--passphrase", "--progress", "--allow-shared-dir", "--count-unauthenticated", "--no-globals"}
HELP = object()


def usage_error(message):
    return Failure(message, 64, hint=f"see {PROG} --help")


def parse(argv):
    """The options of `argv` (HELP for -h or --help); Failure (64) on a mistake."""
    seal = {o: [] for o in _KEYS + ("--sign-key", "--passphrase-fd")}
    seal.update({"--chunk-size": None, "--work-factor": None, "--threads": None, "--passphrase": False,
                 "--progress": False, "--sign-key-command": []})
    o = {"dir": "", "to": "", "format": "plain", "compress": "", "level": "", "threads": "", "globals": True,
         "db": "", "seal": seal, "policy": [], "open": [], "signers": {"--signer": [], "--signer-file": []},
         "metrics": [], "shared": [], "unauthenticated": [],
         "have_key": False}
    args, seen = list(argv), set()
    while args:
        arg = args.pop(0)
        if arg.startswith("--") and "=" in arg:
            name = arg.split("=", 1)[0]
            if name in _FLAGS:
                raise usage_error(f"{name} takes no value")
            if name in _VALUE:
                args[:0] = arg.split("=", 1)
                continue
        if arg in ("-h", "--help"):
            return HELP
        if arg in _VALUE:
            if not args:
                raise usage_error(f"{arg} needs a value")
            if not args[0]:
                raise Failure(str(empty_value(arg)), 64, hint=empty_value(arg).hint)
            if arg in seen and arg not in _REPEATABLE:
                raise usage_error(f"{arg} given more than once")
            seen.add(arg)
            _option(o, arg, args.pop(0))
        elif arg in ("-p", "--passphrase"):
            seal["--passphrase"], o["have_key"] = True, True
        elif arg == "--progress":
            seal["--progress"] = True
        elif arg == "--allow-shared-dir":
            o["shared"] = [arg]
        elif arg == "--count-unauthenticated":
            o["unauthenticated"] = [arg]
        elif arg == "--no-globals":
            o["globals"] = False
        elif arg == "--":
            break
        elif arg.startswith("-"):
            raise usage_error(unknown_option(arg))
        elif o["db"]:
            raise usage_error(f"only one DBNAME, not also {arg}")
        else:
            o["db"] = arg
    if not o["db"] and args:
        o["db"] = args.pop(0)
    o["dump"] = args
    return o


def _option(o, name, value):
    seal = o["seal"]
    if name in ("--dir", "--to", "--format", "--compress"):
        o[name[2:]] = value
    elif name in ("--compress-level", "--compress-threads"):
        o[name[11:]] = value
    elif name in _POLICY:
        o["policy"] += [name, value]
    elif name == "--metrics-file":
        o["metrics"] = [name, value]
    elif name in ("--signer", "--signer-file"):
        o["signers"][name].append(value)
    elif name in ("--chunk-size", "--work-factor", "--threads"):
        seal[name] = value
    elif name == "--passphrase-fd":
        if not re.fullmatch(r"[0-9]+", value):
            raise usage_error(FD_NOT_A_NUMBER)
        seal[name].append(int(value))
        o["have_key"] = True
    else:
        seal[name].append(value)
        o["have_key"] = o["have_key"] or name in _KEYS
        if name in _OPEN:
            o["open"] += [name, value]


def validate(o, env):
    """Checks before anything runs; fills in the compressor, the kind and the directory."""
    db = o["db"]
    if not db:
        raise usage_error("no DBNAME given")
    if "/" in db or db.startswith("."):
        raise usage_error(f"cannot name a file after database {db}")
    utf8_name(db)  # 64: it goes into SQL
    if o["format"] not in ("plain", "custom"):
        raise usage_error(f"--format must be plain or custom, not {o['format']}")
    if not o["compress"]:
        o["compress"] = "zstd" if o["format"] == "plain" and shutil.which("zstd") else "none"
    if o["compress"] not in ("zstd", "gzip", "none"):
        raise usage_error(f"--compress must be zstd, gzip or none, not {o['compress']}")
    if o["format"] != "plain" and o["compress"] != "none":
        raise usage_error(f"--compress {o['compress']} is for plain dumps; custom dumps take pg_dump's -Z (after --)")
    if not re.fullmatch(r"[0-9]*", o["level"] + o["threads"]):
        raise usage_error("--compress-level and --compress-threads must be whole numbers")
    if o["threads"] and o["compress"] != "zstd":
        raise usage_error("--compress-threads is for zstd")
    low, high = {"zstd": (0, 22), "gzip": (1, 9)}.get(o["compress"], (0, float("inf")))  # now, not once pg_dump runs
    if not low <= int(o["level"] or low) <= high or int(o["threads"] or 0) > 200:
        raise usage_error("--compress-level is 0 to 22 for zstd, 1 to 9 for gzip; --compress-threads 0 to 200")
    chunk_log2(o["seal"]["--chunk-size"])  # as seal would refuse them (64), but before DIR is made
    thread_option(o["seal"])
    if o["seal"]["--work-factor"] is not None:
        int_option(o["seal"]["--work-factor"], "--work-factor", MIN_SCRYPT_LOG2_N, MAX_SCRYPT_LOG2_N)
    try:
        pgopts.check("pg_dump", o["dump"], plain_dump=o["format"] == "plain")
    except pgopts.RefusedOption as e:
        raise Failure(str(e), 64) from None
    if o["policy"]:  # a malformed policy is a mistake now, not after the dump
        policy = dict.fromkeys(_POLICY)
        policy.update(zip(o["policy"][::2], o["policy"][1::2]))
        policy_from(policy)
    if not o["have_key"] and "ENCPIPE_KEY" not in env and "ENCPIPE_PASSPHRASE" not in env:
        raise Failure("no key configured: refusing to dump without encryption", 78,
                      hint="use --key-file FILE, --recipient PUBKEY, --passphrase-file FILE..., or set ENCPIPE_KEY")
    o["squeeze"] = {"zstd": ["zstd", "-q", "-c", f"-{o['level'] or 3}", f"-T{o['threads'] or 1}"],
                    "gzip": ["gzip", "-c", f"-{o['level'] or 6}"]}.get(o["compress"])
    o["ext"] = {"zstd": "sql.zst", "gzip": "sql.gz"}.get(o["compress"], "sql" if o["format"] == "plain" else "dump")
    refuse_credentials(o["to"], "--to")  # 64: a credential would be on argv, in the JSON line and the metrics
    if not o["to"] and not o["dir"]:
        o["dir"] = env.get("ENCPIPE_BACKUP_DIR") or "./backups"
    if o["dir"].startswith("-"):
        o["dir"] = "./" + o["dir"]
    o["lock_wait"] = dirlock.lock_wait(env)


class Interrupted(BaseException):
    def __init__(self, status):
        super().__init__(status)
        self.status = status


class Backup:
    def __init__(self, o, passphrases, io):
        self.o, self.passphrases, self.io = o, passphrases, io
        self.db, self.temp, self.gtemp, self.globals, self.pending = o["db"], None, None, None, None
        self.hint = None  # for the final error line
        self.store_opts = (["--dir", o["dir"]] if o["dir"] else []) + (["--to", o["to"]] if o["to"] else [])
        self.store_opts += o["shared"]
        self.job_opts = o["metrics"] + ["--database", self.db, "--started", repr(time.time())]

    def run(self):
        """The run's status; a failed one also removes the --dir it made, if still empty."""
        self.made, status = [], None
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
                status, message = 74, f"cannot use {self.o['dir']}: {e.strerror or e}"
            else:
                status, message = e.exit_code, str(e)
            self.io.error(message, hint=getattr(e, "hint", None))
            self.io.error(f"backup of {self.db} failed (status {status}); nothing was stored")
            return status
        self.temp = self._temp_name()
        try:
            for signum in (signal.SIGINT, signal.SIGTERM):
                catch_signal(signum, self._interrupt)  # ignored at start (nohup, &): stays so
            status = self.dump()
            self.pending = 0  # from here on a signal waits until the run's end
        except Interrupted as e:
            self.pending = status = e.status
            if self.globals:  # its temporary file is removed once it can no longer appear
                self.globals.stop()
                self.globals.join(60)
        if status:
            if status != self.pending:
                self.io.error(f"backup of {self.db} failed (status {status}); nothing was stored", hint=self.hint)
            self.abort()
            return self.pending or status
        status = self.commit()  # the globals, then the dump: a dump always has its globals beside it
        return self.pending or status

    def prepare(self):
        self.stamp = None
        while not self.stamp:  # again when DIR was removed while this run waited for its lock
            if self.o["dir"]:
                self.made += dirlock.make_directories(self.o["dir"])
            self.stores = job.stores({"--dir": self.o["dir"], "--to": self.o["to"],
                                      "--allow-shared-dir": bool(self.o["shared"])}, self.io)
            self.stamp = self.lock() if self.o["dir"] else time.strftime(STAMP, time.gmtime())
        self.final = f"{self.db}_{self.stamp}.{self.o['ext']}.enc"
        self.gname = f"{self.db}_{self.stamp}.globals.sql.enc"

    def _interrupt(self, signum, frame):
        if self.pending is None:
            raise Interrupted(128 + signum)
        self.pending = 128 + signum

    def _temp_name(self):
        return f"{TEMP_PREFIX}{self.stamp}_{os.getpid()}_{secrets.randbelow(1 << 30)}"

    def _say_waiting(self):
        self.io.stderr.write(f"{PROG}: waiting for another backup into {self.o['dir']}\n")
        self.io.stderr.flush()

    def lock(self):
        """Take turns in DIR (flock), remove the temporary files of killed runs, and
        wait until this second's names are free; the time stamp (None: DIR is gone)."""
        directory = self.o["dir"]
        self.lock_fd = dirlock.take(directory, self.o["lock_wait"], self._say_waiting)
        if self.lock_fd is None:
            return None
        for name in os.listdir(directory):  # holding the lock, no other backup writes here
            if name.startswith(TEMP_PREFIX):
                try:
                    os.unlink(os.path.join(directory, name))
                except OSError:
                    pass
        deadline = time.monotonic() + NAME_WAIT  # names planted for every second to come never free up
        while True:
            stamp = time.strftime(STAMP, time.gmtime())
            names = (f"{self.db}_{stamp}.{self.o['ext']}.enc", f"{self.db}_{stamp}.globals.sql.enc")
            taken = [n for n in names if os.path.lexists(os.path.join(directory, n))]
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
        chunk, workers = commands.seal_chunking(args, from_pipe=True)
        pipes = [os.pipe() for _ in self.passphrases]  # each --passphrase-fd secret, read once, on a pipe again
        try:
            for (_, w), secret in zip(pipes, self.passphrases):
                os.write(w, secret)
                os.close(w)
            args["--passphrase-fd"] = [str(r) for r, _ in pipes]
            recipients = load_keys(commands.loader(args, self.io), args, commands.key_sources(args), sealing=True)
        finally:
            for r, w in pipes:
                for fd in (r, w):
                    try:
                        os.close(fd)
                    except OSError:
                        pass
        signed_by = commands.signing_keys(args, self.io)
        self.progress = commands.progress(args, self.io, "seal")

        from . import envelope

        def seal(src, out, progress=None):
            envelope.seal(src, out, recipients, chunk_log2=chunk, threads=workers, on_progress=progress,
                          signing_keys=signed_by)

        return seal

    def dump(self):
        try:
            seal = self.sealer()
        except EncpipeError as e:
            self.io.error(str(e), hint=e.hint)
            return e.exit_code
        if self.o["globals"]:  # beside the dump, at the same time: it is mostly waiting
            self.gtemp = self._temp_name()
            self.globals = Globals(self.io, self.db, seal, self.stores, self.gtemp, self.gname)
            self.globals.start()
        pg_dump = ["pg_dump", f"--format={self.o['format']}", *self.o["dump"]]
        status = dump(self.io, self.db, pg_dump, self.o["squeeze"],
                      lambda src, out: seal(src, out, self.progress), self.stores, self.temp, self.final)
        if self.progress and not status:
            self.progress.finish()
        if self.globals:
            self.globals.join()
            if self.globals.status and not status:  # pg_dump could, pg_dumpall could not: most likely privilege
                self.hint = "pg_dumpall reads pg_authid as a superuser; --no-globals skips the globals"
            status = status or self.globals.status
        return status

    def abort(self):
        """Remove the temporary files, record a failed run."""
        with open(os.devnull, "w") as quiet:
            if self.gtemp:
                job.main(["abort", *self.store_opts, *self.job_opts, self.gtemp], stdout=quiet.buffer, stderr=quiet)
            job.main(["abort", *self.store_opts, *self.job_opts, self.temp], stdout=quiet.buffer)

    def commit(self):
        """One step renames the globals, then the dump, prunes, records the run, prints the JSON line."""
        globals_opts = ["--globals-temp", self.gtemp, "--globals-name", self.gname] if self.gtemp else []
        return job.main(["commit", *self.store_opts, *self.job_opts, "--kind", self.o["ext"], *self.o["policy"],
                         *self.o["open"], *_pairs(self.o["signers"]), *self.o["unauthenticated"], *globals_opts,
                         "--", self.temp, self.final])  # NAME starts as DBNAME does: maybe with a dash


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    script, argv = argv[0], argv[1:]
    os.umask(0o077)
    io = Io(sys.stdin.buffer, sys.stdout.buffer, sys.stderr, os.environ, prog=PROG)
    if "--systemd-unit" in argv:
        return job.main(["systemd-unit", script, *[a for a in argv if a != "--systemd-unit"]])
    try:
        o = parse(argv)
        if o is HELP:
            return report_errors(io, lambda: io.print(script_usage(script)) or 0)
        validate(o, io.env)
        # a secret on a closed descriptor: 66 now, before DIR's lock takes its number
        given = {**o["seal"], "--passphrase-fd": list(map(str, o["seal"]["--passphrase-fd"]))}
        secret_fds_open({**given, **o["signers"]})
        refuse_shared_stdin({**given, **o["signers"]})  # --passphrase-fd 0 and --key-file /dev/stdin: 64
        if any(o["signers"].values()):  # a bad --signer is a mistake now, not after the dump
            commands.signers(o["signers"], io)
        passphrases = []
        for fd in o["seal"]["--passphrase-fd"]:  # read once, then closed: the keys are loaded in this process
            passphrases.append(read_fd(fd))
            os.close(fd)
    except Failure as e:
        io.error(str(e), hint=e.hint)
        return e.status
    except EncpipeError as e:
        io.error(str(e), hint=e.hint)
        return e.exit_code
    try:
        return report_errors(io, Backup(o, passphrases, io).run)
    except KeyboardInterrupt:  # before the run began (waiting for the lock): Backup.run removed what it made
        return 130


def _pairs(options):
    return [word for name, values in options.items() for value in values for word in (name, value)]


if __name__ == "__main__":
    # As cli.run: pycryptodome's cffi backend costs ~25 ms of start-up; its ctypes one is as fast.
    sys.modules.setdefault("cffi", None)
    guard_standard_fds()
    no_core_dumps()
    raise SystemExit(main())
