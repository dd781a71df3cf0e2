"""encpipe-restore: restore an encrypted backup into a PostgreSQL database, all or nothing.

Usage:
  encpipe-restore [options] FILE DBNAME [-- pg_restore or psql options]
  encpipe-restore --list-pre-restore [--maintenance-db DB]
  encpipe-restore --drop-pre-restore-older-than DAYS [--maintenance-db DB] [DBNAME]

Options:
  --drop-old                 drop the previous DBNAME after the swap
  --terminate-connections    end the sessions on DBNAME at the swap (else 75 when in use)
  --maintenance-db DB        where the administrative statements run [default: postgres]:
                             a database's name, on the server of PGHOST and PGPORT (a
                             connection string, holding = or postgres[ql]://: 64)
  --globals FILE             the globals file to take missing roles and properties from
                             [default: the one of FILE's backup run, beside it, which
                             must hold the properties of FILE's database]
  --no-globals               read no globals file: no roles created, no recorded database properties
                             (a backup made with encpipe-backup --no-globals needs it; else 66)
  --no-create-roles          create none of the globals file's roles: one the database needs and
                             this server lacks is refused (1); its properties are applied
  --role ROLE                restore the dump connected as ROLE, not as the connecting user
  --allow-unrestricted-psql  accept a psql without \\restrict (older than 15.14, 16.10, 17.6)
  --drop-pre-restore-older-than DAYS  drop DBNAME_pre_restore_* copies older than DAYS
  --list-pre-restore         print the *_pre_restore_* databases as JSON
  --progress, --threads N    passed to encpipe open of FILE (not to the globals file's
                             open: a few KiB, whose progress would only be noise)
  --signer KEY, --signer-file FILE  trusted signers (repeatable; instead of ENCPIPE_SIGNER):
                             a backup none of them signed is refused (67)
  --allow-unauthenticated    also restore a backup whose maker is not authenticated (else 67):
                             opened only by an --identity and signed by no signer, or format v1
  --allow-shared-dir         read a key file (or --signer-file) that a user other than the caller
                             or root could replace (it, its directory or one above: else 73)
  key options                --key-file, --key-command, --identity, --passphrase-file,
                             --passphrase-fd, --passphrase-command, -p: for encpipe open
                             (--passphrase-fd N and a file given as /dev/fd/N: read once,
                             lent to each encpipe at N; a file on standard input: 64)
A FILE or DBNAME that starts with - goes after --: encpipe-restore [options] -- FILE -DB.
See README, "Restoring: encpipe-restore".
"""

import json
import os
import signal
import sys

from . import childerr, keycheck, pgcommit, pgfetch, pgglobals, pgleftovers, pgopts, pgprops, pgrights, sigthreads
from .backup.remotes import is_remote, refuse_credentials
from .cli import catch_signal, child_command, print_text, set_up
from .shown import json_value
from .textform import NAME_MAX_BYTES, shown_name
from .usage_errors import shown_argument
from .sigdefer import hold_for_good
from .errors import EncpipeError, UsageError
from .fdsecrets import FdSecrets
from .keys import warn_fd_mode, warn_secret_modes
from .keyargs import readable_beside_another, secret_fds_open
from .pgcli import PROG, Failure, open_failure_hint, parse, say, utf8_name
from .pgclient import PgError, ident, literal, no_server_hint, password_hint, restoring, run_sql
from .pgrestorechild import Children
from .pgroles import Roles
from .pgstream import QUIET_ARCHIVE, QUIET_PSQL, EmptyStream, restricted_psql

# key sources with which `encpipe open` of FILE is not started early, beside another encpipe (keyid, the
# globals file's open): one that prompts, runs a command or costs scrypt's memory (and see readable_beside_another)
ASKS = {"--key-command", "--passphrase-command", "--passphrase", "--passphrase-file", "--passphrase-fd",
        "ENCPIPE_PASSPHRASE"}

# the options of `--drop-pre-restore-older-than DAYS [DBNAME]` alone (the others are a restore's)
DROP_FORM = {"--drop-pre-restore-older-than", "--maintenance-db", "--allow-shared-dir"}


def _a_file(name):
    """Whether a DBNAME is rather a backup file: named as one (`.enc`, as every backup's name
    ends), or a path (a `/` in it) to a file that is there."""
    return name.endswith(".enc") or "/" in name and os.path.isfile(name)


class Run(Children):
    def __init__(self, opts):
        self.o = opts
        self.no_spaces = "no-tablespaces" in pgopts.given("pg_restore", opts["tool"])  # --no-tablesp... too
        self.maint = utf8_name(opts.get("maintenance_db") or "postgres", "--maintenance-db", to_psql=True)
        self.encpipe = child_command(os.environ)
        secret_fds_open(opts["given"])  # 66 if closed: FILE, opened later, may take its number
        files = ("--key-file", "--identity", "--passphrase-file")  # one on standard input: 64 first
        self.secrets = FdSecrets(opts["given"], files, ("--passphrase-fd",))
        for fd in dict.fromkeys(map(int, opts["given"].get("--passphrase-fd", []))):  # before ENCPIPE_MODE_WARNED
            warn_fd_mode(fd, self.secrets.others_bits(f"/dev/fd/{fd}") or 0, lambda text: say(text, "warning"))
        warn_secret_modes([p for o in files for p in opts["given"].get(o, [])], lambda text: say(text, "warning"),
                          self.secrets.others_bits)
        self.env = dict(os.environ)
        if opts["signers"]:  # as for encpipe: the options, else ENCPIPE_SIGNER
            self.env["ENCPIPE_SIGNER"] = " ".join(opts["signers"])
        self.temp = self.lock = self.stream = self.globals_open = None
        self.keyids = []  # the key checks' keyid, started (keycheck.Started), not yet asked
        self.fetched = []
        self.shown = {}  # a fetched copy's path -> the remote object's name, as messages name it
        self.globals_stmts, self.globals_path = [], None
        self.roles = Roles(self.maint, say, create=not opts.get("no_create_roles"))
        self.fds = []  # FILE's and the globals file's, open once: each encpipe reads them
        self.globals_names = []  # the globals file's name, once it is open

    def main(self):
        o = self.o
        if o.get("list_pre_restore"):
            if o["positional"] or o["tool"] or o.get("drop_pre_restore_older_than"):  # else taken for a run of it
                raise Failure("--list-pre-restore lists only: it takes no FILE, DBNAME or "
                              "--drop-pre-restore-older-than", 64)
            copies = pgleftovers.pre_restore_copies(self.maint, sizes=True)
            return print_text(PROG, json.dumps(json_value(copies), indent=2))
        if o.get("drop_pre_restore_older_than") and len(o["positional"]) <= 1 and not o["tool"]:
            other = sorted(o["named"] - DROP_FORM)  # else a restore with DBNAME left out dropped FILE's copies
            if other:
                raise Failure("%s is a restore's option: --drop-pre-restore-older-than DAYS [DBNAME] alone only "
                              "drops copies (a restore takes FILE DBNAME)" % other[0], 64)
            if o["positional"] and _a_file(o["positional"][0]):  # the key in the environment: no option said so
                raise Failure("%s is a backup file, not a DBNAME: --drop-pre-restore-older-than DAYS [DBNAME] alone "
                              "only drops copies (a restore takes FILE DBNAME)"
                              % shown_argument(o["positional"][0]), 64)
            return self.drop_pre_restore(utf8_name(o["positional"][0]) if o["positional"] else None)
        if len(o["positional"]) != 2:
            raise Failure("need FILE and DBNAME" if len(o["positional"]) < 2 else
                          "too many arguments: %s" % shown_argument(o["positional"][2]), 64)  # a key: not shown
        self.file, self.db = o["positional"][0], utf8_name(o["positional"][1])
        try:  # before its name is printed or given to rclone
            refuse_credentials(self.file, "FILE")
        except UsageError as e:
            raise Failure(str(e), 64, e.hint) from None
        pgleftovers.refuse_reserved(self.db)
        self.days()
        if not pgfetch.is_link(self.file):  # a link's target's name is checked once it is open (open_file)
            pgfetch.refuse_tool_options(self.file, o["tool"])
        if self.maint == self.db:  # the administrative statements cannot run in the database they replace
            given = self.o.get("maintenance_db")
            raise Failure("--maintenance-db must not be %s, the database restored" % self.db if given else
                          "restoring %s needs another --maintenance-db (its default, postgres, is the database "
                          "restored)" % self.db, 64, "give --maintenance-db template1")
        try:  # now, not once a server was reached: each encpipe gets these key sources
            keycheck.check([(o, o, self.o["given"].get(o)) for o in ("--key-file", "--identity", "--passphrase-file")],
                           self.encpipe, self.secrets.spawn, self.o["shared"], started=self.keyids)
            with sigthreads.held():  # started and recorded in one step: a stop ends it (stop_children)
                self.keyids += filter(None, [keycheck.check_environment(self.encpipe, self.secrets.spawn, self.env,
                                                                        key_read=not self.o["key"], wait=False)])
        except EncpipeError as e:
            self.keys_checked()  # a key file's refusal comes before ENCPIPE's
            raise Failure(str(e), e.exit_code, e.hint) from None
        try:  # the key checks run meanwhile; what they find comes first, as when each was waited for at once
            self.open_file()
        except Exception:
            self.keys_checked()
            raise
        self.keys_checked()
        self.legacy = self.authenticate_legacy()
        globals_stmts, backup_props = ([], None) if o.get("no_globals") else self.load_globals()  # not even opened
        exists = self.wait_until_free()
        if exists and len(self.old.encode()) > NAME_MAX_BYTES:  # onto a server without it: restores
            raise Failure("database name %s is too long to keep the old one as %s; nothing was changed"
                          % (self.db, self.old), 64, "restore it under a shorter name, or rename %s first" % self.db)
        pgrights.check(self, exists, self.props if exists else backup_props, globals_stmts)  # all it needs, or now
        with pgleftovers.RunLock(self.maint, self.temp_name) as self.lock:
            self.lock.take()
            return self.restore(exists, globals_stmts, backup_props)

    def open_file(self):
        stamp = pgleftovers.stamp()
        self.old = "%s_pre_restore_%s" % (self.db, stamp)
        self.temp_name = "%s%s_%d" % (pgleftovers.TEMP_PREFIX, stamp, os.getpid())
        pgglobals.refuse_globals_file(self.file, self.file)
        given, wanted = self.o.get("globals"), not (self.o.get("globals") or self.o.get("no_globals"))
        self.remote = is_remote(self.file)
        if self.remote:
            self.keys_checked()  # before a remote FILE is fetched
            local, fetched = pgfetch.fetch_remote(self.file, wanted and pgfetch.globals_name(self.file), self.fetched)
            self.o["globals"] = given or fetched
            self.shown = {fetched: pgfetch.globals_name(self.file)} if fetched else {}
        fd, name = pgfetch.open_named(self.file, shown_name(self.file, "--passphrase" in self.o["key"]),
                                      "nothing was changed", local if self.remote else None)
        self.fds = [fd]
        pgfetch.refuse_tool_options(name, self.o["tool"])
        pgglobals.refuse_globals_file(name, self.file)  # by the name of the file opened (a link's target's):
        # FILE's run, whose database's properties its globals file must hold, and that file (pgglobals.beside)
        self.source_run = None if given else pgfetch.run_name(name)
        self.named = pgfetch.backup_named(name)  # a remote file's name, not its fetched copy's
        self.beside = pgfetch.globals_name(name) if wanted else None
        self.source = "/dev/fd/%d" % self.fds[0]  # never the name again: it may be swapped
        self.restrict = restricted_psql(self.o.get("allow_unrestricted_psql"), lambda text: say(text, "warning"))
        self.sealed = os.pread(self.fds[0], 7, 0) == b"ENCPIPE"  # format.MAGIC, without loading format
        sources = {word.partition("=")[0] for word in self.o["key"]} or {v for v in ASKS if v in self.env}
        if self.sealed and not ASKS & sources and readable_beside_another(self.secrets.words(self.o["key"])):
            # `open --verify-first` lets nothing out before the whole file authenticated: it reads
            # it now, while the checks before the restore run; its output waits in its pipe
            self.stream = self.restore_stream_of(False)
            self.stream.start()
            path = self.o.get("globals") or (not self.remote and self.beside)  # as load_globals finds it
            if path and not self.o.get("no_globals") and os.path.isfile(path):
                try:  # its open too; one refused here is refused where it was, by load_globals
                    self.start_globals(path)
                except Failure:
                    pass

    def days(self):
        self.keep_days = pgleftovers.keep_days(self.o.get("drop_pre_restore_older_than"))

    def drop_pre_restore(self, db):
        self.days()
        return pgleftovers.drop_said(self.maint, self.keep_days, db, say)

    def wait_until_free(self):
        # for the swap, a warning; DBNAME's properties, the roles (Roles.check reads them next)
        exists, _, _, self.superuser, self.user, self.props, self.role_names, spaces = pgprops.free(
            self.maint, self.db, self.o.get("terminate_connections"))
        self.spaces = () if self.no_spaces and not exists else spaces  # in place: DBNAME's
        return exists

    def restore(self, exists, globals_stmts, backup_props):
        dropped, busy = self.lock.clean(self.maint)
        if dropped:
            say("dropped scratch database(s) left by killed restores: %s" % ", ".join(dropped))
        for name, why in busy:  # before, "still in use", also of one the role may not drop
            say("scratch database %s of an earlier run left alone: %s" % (name, why), "warning")
        try:
            self.globals_stmts, self.recorded = globals_stmts, backup_props  # applied (stmts) in create()
            props = self.props if exists else backup_props  # read with DBNAME's state
            if props and not exists:
                self.roles.seen(self.role_names)
                self.roles.check(self.db, props, self.globals_stmts, *self.skips(exists))
            self.restore_stream(props, exists)
            self.swap(props, exists)
        except BaseException:
            self.undo()
            raise
        return self.report(exists)

    def skips(self, exists):
        """(no owner, no ACL): what the restore tool's options leave out of a new database."""
        given = pgopts.given("pg_restore", self.o["tool"])  # -Ox, --no-own too (psql takes none of them)
        return not exists and "O" in given, not exists and "x" in given

    def create(self, props, exists, kind):
        self.tool = tool = "pg_restore" if kind == "custom" else "psql"
        try:  # the stream, not the name, says which tool restores it
            pgopts.check(tool, self.o["tool"])
        except pgopts.RefusedOption as e:
            raise Failure(str(e), 64, "%s holds a %s, restored with %s, whatever its name says; see %s --help"
                          % (self.file, "custom archive" if kind == "custom" else "plain dump", tool, PROG)) from None
        for text in pgprops.unapplied(self.db, self.o.get("role") or self.user, self.o.get("no_globals"),
                                      props if exists else None, self.recorded):  # once FILE authenticated
            say(text, "warning")  # (a refused one is the restore's one line)
        self.roles.create_missing(self.globals_stmts, self.globals_path, self.restrict)
        self.temp, created = self.temp_name, False  # first: stopped while psql runs the CREATE, undo() drops it
        try:
            run_sql(self.maint, pgprops.create_sql(self.temp_name, props, self.spaces))
            created = True
            sql = pgprops.private_sql(self.temp, props, self.skips(exists)[0], owner=self.o.get("role"))
            self.temp_oid = run_sql(self.maint, sql + pgcommit.OID_SQL % literal(self.temp),
                                    single_transaction=True)[-1][0]  # the swap's outcome is asked by it
        except PgError as e:  # undo() drops it when created, not when psql said the CREATE failed
            self.temp = self.temp if created else None
            raise Failure("cannot create the scratch database %s (%s); %s"
                          % (self.temp_name, e, pgcommit.as_it_was(self.db, exists))) from None
        return self.temp

    def restore_stream(self, props, exists):
        self.stream = self.stream or self.restore_stream_of(self.legacy)
        self.stream.labelled = getattr(self, "labelled", False)  # its run's globals file's label: its own too
        try:
            opened, restored = self.stream.run(lambda kind: self.create(props, exists, kind))
        except EmptyStream:
            raise Failure("%s holds no data; %s" % (self.file, pgcommit.untouched(self.db, exists)), 65) from None
        if opened not in (0, -13, 141):
            status = childerr.exit_status(opened)
            raise self.refused("cannot decrypt %s" % self.file, status, self.stream.opener_said(),
                               open_failure_hint(status, self.o, self.env), exists=exists)
        if restored == 0 and self.stream.short_read:  # a quit command in an unrestricted psql's dump
            raise Failure("restoring %s failed: psql ended (status 0) before it had read all of the dump; %s"
                          % (self.file, pgcommit.as_it_was(self.db, exists)))
        if restored != 0:
            quiet = getattr(self, "tool", None) == "psql" and not pgopts.verbose(self.o["tool"])
            archive = getattr(self, "tool", None) == "pg_restore" and self.stream.psql_failed
            raise Failure("restoring %s failed; %s" % (self.file, pgcommit.as_it_was(self.db, exists)),
                          hint=self.roles.hint(QUIET_PSQL if quiet else QUIET_ARCHIVE if archive else None,
                                               self.no_spaces, self.stream.client_said))

    def swap(self, props, exists):
        # private until now (see pgprops.private_sql): its properties come with the swap
        self.old = pgleftovers.pre_restore_name(self.maint, self.db) if exists else None
        sql = [pgprops.finish_sql(self.temp, props, *self.skips(exists), superuser=self.superuser,
                                  owner=self.o.get("role") or self.user),
               pgprops.swap_sql(self.temp, self.db, self.old, self.o.get("terminate_connections"))]
        hint = pgrights.swap_hint(self.user, self.db, exists, self.o.get("terminate_connections"))
        with sigthreads.held():  # psql's answer waited for (its own group's: a Ctrl-C is the restore's only)
            pgcommit.swap(self.maint, "\n".join(sql), self.temp, self.temp_oid, self.db, hint, say, exists)
            self.temp = None
            hold_for_good()  # DBNAME is the restored database: its report and status stand

    def undo(self):
        if getattr(self, "stream", None):
            self.stream.kill()
        if self.temp:
            try:
                pgcommit.drop_scratch(self.maint, self.temp,
                                      lambda: pgcommit.drop(self.maint, self.temp, pgprops.undo_sql(self.temp)))
            except PgError as e:  # the server gone, say: not the failure, which is the one error line
                say("could not drop the scratch database %s (%s); a later restore drops it" % (self.temp, e), "warning")
        self.roles.drop_created()

    def report(self, exists):
        status = 0
        if not exists:
            say("restored %s into new database %s" % (self.file, self.db))
        elif self.o.get("drop_old"):
            try:
                pgcommit.drop(self.maint, self.old, "DROP DATABASE %s WITH (FORCE);" % ident(self.old))
                say("restored %s into %s; previous database dropped" % (self.file, self.db))
            except PgError as e:
                say("restored %s into %s, but could not drop the previous database %s (%s)"
                    % (self.file, self.db, self.old, e), "error")
                status = 1
        else:
            say("restored %s into %s; previous database kept as %s" % (self.file, self.db, self.old))
        if self.keep_days is not None:
            status = self.drop_pre_restore(self.db) or status
        return status


def main(argv=None):
    catch_signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        opts = parse(sys.argv[1:] if argv is None else argv)
        if opts.get("help") or opts.get("h"):
            return print_text(PROG, __doc__.strip())
        # every session of the run speaks UTF-8, whatever the server's encoding (the dump's own
        # SET client_encoding, and pg_restore's, hold for its load): names read and written
        # are one text (pgencoding), never a LATIN1 server's bytes taken for UTF-8's
        restoring()
        run = Run(opts)
        try:
            return run.main()
        finally:
            run.stop_children()
            for path in getattr(run, "fetched", []):
                os.unlink(path)
    except (Failure, PgError) as e:  # a psql's that wanted a password: the hint that says where to give it
        say(str(e), "error")
        hint = getattr(e, "hint", None) or password_hint(e) or no_server_hint(e)
        if hint or e.status == 64:
            say(hint or "see %s --help" % PROG, "hint")
        return e.status
    except EncpipeError as e:  # ENCPIPE that is not a command, a secret's descriptor closed
        say(str(e), "error")
        if e.hint:
            say(e.hint, "hint")
        return e.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    set_up(PROG)
    raise SystemExit(main())
