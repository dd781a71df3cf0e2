"""Convert the previous backup tool's *.sql.enc files in DIR into encpipe files.

Usage:
  encpipe-migrate [options] [NEW-KEY-OPTIONS] DIR

Each legacy file NAME.sql.enc (opened without following a symbolic link) is
converted with `encpipe open --legacy | encpipe seal` into a new hidden file
in DIR (O_EXCL|O_NOFOLLOW), which is then checked through its own descriptor
with `encpipe inspect --verify` (it must authenticate and hold exactly the old
file's size less 64 plaintext bytes), given the old file's mode, access ACL,
owner, group and modification time through that descriptor, and renamed over
NAME.sql.enc only while both names are still the files migrate opened. Not run
as root, migrate leaves a file owned by another user (root too), or in a group
the caller is not in: failed (73). A
converted file keeps its name; it is an encpipe file from then on, so a later
run skips it: each legacy file is converted exactly once. Interrupted at any
point, DIR holds every file either in the old format or converted and
verified, and a file renamed is reported (a signal from its rename on waits
for its line); a run removes the temporary files an interrupted one left behind
(those of the same user: another user's under such a name is left).

Old key (reading): without --legacy-* options, BACKUP_ENCRYPTION_KEY (the
previous tool's setting: 64 hex digits are the key, anything else a
passphrase), ENCPIPE_KEY and ENCPIPE_PASSPHRASE.
  --legacy-key-file FILE          keys in FILE, as encpipe --key-file
  --legacy-passphrase-file FILE   the old passphrase in FILE
New key (sealing): encpipe's own options, passed to `encpipe seal`; without
any, ENCPIPE_KEY and ENCPIPE_PASSPHRASE. The new files are verified with the
options among them that can open a file (not --recipient*: add --identity).
  --key-file FILE  --key-command CMD  --identity FILE  --recipient PUBKEY
  --recipient-file FILE  --passphrase-file FILE  --passphrase-command CMD
  --work-factor N  --chunk-size SIZE
Signing (README, "Signing keys"): files of the previous tool carry no
signature, so no signer is asked of them; the signer check is of the new files.
  --sign-key FILE     sign each new file with the signing key in FILE (repeatable)
  --signer KEY, --signer-file FILE  (repeatable; else ENCPIPE_SIGNER) trusted
                      signers: each new file must verify as signed by one of
                      them, so one --sign-key must be one of them (else 64)
A secret file given as /dev/fd/N (--legacy-*, --key-file, --identity,
--passphrase-file, --recipient-file, --sign-key), or as the path of a named
FIFO or a device, is read once, at the start, and lent to each encpipe that
names it, as a fresh copy at a /dev/fd/N; one given as standard input (-,
/dev/stdin, /dev/fd/0) is refused (64).
Other options:
  --allow-shared-dir  work in a DIR, and read a key file (--legacy-*, --key-file,
                      --sign-key, --signer-file...), that a user other than the
                      caller or root could change (refused by default, exit 73)
  --keep-originals   keep each old file as NAME.sql.enc.legacy (a hard link)
  -n, --dry-run      only report which files would be converted (and, on
                     standard error, which temporary files of an
                     interrupted run would be removed)
  --progress         report each file's seal (its total the file's plaintext
                     size) and the check of the new file on standard error
                     (README "Progress"), never on standard output

Prints one JSON line per *.sql.enc file: {"file", "status": migrated, skipped,
failed or would-migrate, ...}. Files with other names are never touched. A
new file sealed to public keys only and not signed (its maker not authenticated:
encpipe-restore refuses it without --allow-unauthenticated) is still migrated,
with a warning and "sender_authenticated": false.
Exit status: 0 when no file failed; else the encpipe status of the first
failure (65 damaged, 67 not signed by a trusted signer, 73 an owner or group
migrate cannot keep, 77 wrong key, ...);
64 usage (or trusted signers without a --sign-key among them); 66 DIR
unreadable (or replaced as the run started), or (before any file) a key file,
identity, passphrase file or --sign-key that cannot be read, or an ENCPIPE
that cannot be run (64 one that holds no key or is over 1 MiB, or a malformed
ENCPIPE_KEY the children would read); 73
another user can write DIR, or could replace a key file; 74 the report cannot be written (141 when its
reader went away); 75 DIR's lock is held (a backup, a rotation, a migration); 78 no key;
130 or 143 interrupted by SIGINT or SIGTERM (the files reported migrated are, the others not yet).
Environment: ENCPIPE, the encpipe command (default: this Python's encpipe, run as -m
would, never a module of the working directory's).
"""

import argparse
import json
import os
import signal
import stat
import sys

from . import dirlock, keycheck, safefile
from .argwords import dashed, option_words
from .cli import Io, catch_signal, child_command, print_text, write_line
from .errors import EncpipeError
from .format import MAGIC, not_a_header
from .fdsecrets import FdSecrets
from .shown import json_value
from .sigdefer import Commit, held
from .keys import warn_secret_modes
from .keyargs import load_signers, public_forms, secret_fds_open
from .inplace import kept, links_left, not_a_leftover, owner_not_kept
from .keyplace import refuse_replaceable
from .migratechild import Children, Failure
from .usage_errors import argparse_message, first_empty_parsed, parse_quietly
from .childenv import ENV_SIGNER
from .textform import shown_name

LEGACY_HEADER = 64
SUFFIX = ".sql.enc"
KEPT_SUFFIX = ".legacy"
TEMP_SUFFIX = ".migrate-tmp"
TEMP_NAME_BYTES = 128  # of the file's name in its temporary's: room for the rest within NAME_MAX (255)


def _short(name):
    """`name`, cut to TEMP_NAME_BYTES bytes (a character cut in two stays bytes)."""
    return os.fsdecode(os.fsencode(name)[:TEMP_NAME_BYTES])
OPENING_OPTIONS = ("key_file", "key_command", "identity", "passphrase_file", "passphrase_command")
SEALING_OPTIONS = OPENING_OPTIONS + ("recipient", "recipient_file")
SECRET_FILES = ("legacy_key_file", "legacy_passphrase_file", "key_file", "identity", "passphrase_file",
                "recipient_file", "sign_key")


def err(message, hint=None):
    Io(None, None, sys.stderr, None, prog="encpipe-migrate").error(message, hint)


def warn(message, hint=None):
    Io(None, None, sys.stderr, None, prog="encpipe-migrate").warn(message, hint)


class Parser(argparse.ArgumentParser):
    def error(self, message):
        err(argparse_message(message), hint="see encpipe-migrate --help")
        sys.exit(64)


def parse(argv):
    parser = Parser(prog="encpipe-migrate", usage="%(prog)s [options] DIR", add_help=False)
    parser.add_argument("-h", "--help", action="store_true")
    parser.add_argument("--keep-originals", action="store_true")
    parser.add_argument("--allow-shared-dir", action="store_true")
    parser.add_argument("-n", "--dry-run", action="store_true")
    parser.add_argument("--progress", action="store_true")
    for name in ("--legacy-key-file", "--legacy-passphrase-file", "--sign-key", "--signer", "--signer-file",
                 *(dashed(o) for o in SEALING_OPTIONS)):
        parser.add_argument(name, action="append", default=[])
    parser.add_argument("--work-factor")
    parser.add_argument("--chunk-size")
    parser.add_argument("dir", nargs="?")
    args = parse_quietly(parser, argv)
    if args.help:
        sys.exit(print_text("encpipe-migrate", __doc__.strip()))
    if args.dir is None:
        parser.error("DIR is missing")
    empty = first_empty_parsed(args)
    if empty:
        parser.error(str(empty))
    return args


def options(args, names):
    """The options `names` as encpipe takes them, each value one word with its option
    (argwords: a file named -h is a file, not encpipe's --help)."""
    return [word for name in names for word in option_words(dashed(name), getattr(args, name))]


class Migration(Children):
    def __init__(self, args, env):
        self.args, self.directory = args, args.dir
        self.kept_before = set()  # NAMEs whose NAME.legacy an interrupted run had made (keep)
        self.secrets = FdSecrets(vars(args), SECRET_FILES)  # one on standard input: 64 first
        # once, not once per file
        warn_secret_modes([p for o in SECRET_FILES for p in getattr(args, o)], warn, self.secrets.others_bits)
        self.encpipe = child_command(env)
        self.open_args = option_words("--key-file", args.legacy_key_file)
        self.open_args += option_words("--passphrase-file", args.legacy_passphrase_file)
        self.seal_args = options(args, SEALING_OPTIONS)
        self.seal_args += [w for o in ("work_factor", "chunk_size") if getattr(args, o)
                           for w in option_words(dashed(o), [getattr(args, o)])]
        from .slots import MAX_SCRYPT_LOG2_N, MIN_SCRYPT_LOG2_N
        from .workers import chunk_log2, int_option

        if args.work_factor:  # 64 now, as encpipe seal would say it for every file
            int_option(args.work_factor, "--work-factor", MIN_SCRYPT_LOG2_N, MAX_SCRYPT_LOG2_N)
        chunk_log2(args.chunk_size)
        self.verify_args = options(args, OPENING_OPTIONS)
        env_keys = any(env.get(v) for v in ("ENCPIPE_KEY", "ENCPIPE_PASSPHRASE"))
        if not options(args, SEALING_OPTIONS) and not env_keys:
            raise Failure("no key for the new files: give --key-file, --passphrase-file, --identity... "
                          "or set ENCPIPE_KEY or ENCPIPE_PASSPHRASE", 78)
        if options(args, SEALING_OPTIONS) and not self.verify_args:
            raise Failure("the new files could not be verified: --recipient cannot open them; "
                          "add --identity FILE (or --key-file) for a key that can", 64)
        if not self.open_args and not env_keys and not env.get("BACKUP_ENCRYPTION_KEY"):
            raise Failure("no key for the old files: set BACKUP_ENCRYPTION_KEY or use --legacy-key-file", 78)
        self.shared = ["--allow-shared-dir"] if args.allow_shared_dir else []  # each encpipe reads the key files
        keycheck.check([("--legacy-key-file", "--key-file", args.legacy_key_file),  # now, before any file
                        ("--legacy-passphrase-file", "--passphrase-file", args.legacy_passphrase_file),
                        *((dashed(o),) * 2 + (getattr(args, o),) for o in SEALING_OPTIONS)],
                       self.encpipe, self.secrets.spawn, self.shared)
        keycheck.check_environment(self.encpipe, self.secrets.spawn, env,
                                   key_read=not self.open_args or not options(args, SEALING_OPTIONS))
        self.sign(args, env)
        same_passphrase(args, env, bool(self.open_args), bool(options(args, SEALING_OPTIONS)))
        for words in (self.open_args, self.seal_args, self.verify_args):
            words += self.shared

    def sign(self, args, env):
        """--sign-key for seal; the trusted signers (--signer..., else ENCPIPE_SIGNER) for the
        check of the new files only: the legacy reader gets none (its files have no signature)."""
        trusted = load_signers(args.signer, args.signer_file, env)
        self.sign_ids = []
        if args.sign_key:
            self.seal_args += options(args, ("sign_key",))
            self.sign_ids = keycheck.keyid(self.encpipe, self.secrets.spawn,
                                           [*options(args, ("sign_key",)), *self.shared], "--sign-key")
        if trusted and not {k.key_id.hex() for k in trusted} & set(self.sign_ids):
            raise Failure("trusted signers are set (--signer, --signer-file or ENCPIPE_SIGNER), so the new files must "
                          "be signed by one of them: give its signing key with --sign-key", 64)
        self.verify_args += option_words("--signer", trusted)
        self.open_env = {k: v for k, v in env.items() if k != ENV_SIGNER}
        # the old setting is the legacy reader's only: seal and inspect never read it
        self.new_env = {k: v for k, v in env.items() if k != "BACKUP_ENCRYPTION_KEY"}

    def run(self, dir_fd):
        """`dir_fd`: DIR, open and locked: it is listed and its leftovers removed through it, and a
        file is replaced only in that very directory (never one a link put in its place since)."""
        self.dir_fd, first_failure = dir_fd, 0
        for name in self.candidates():
            with Commit() as commit:  # renamed and reported in one step: a signal waits for the line
                line = self.one(name, commit.hold)
                write_line(json.dumps(json_value(line)))
            if line["status"] == "failed" and not first_failure:
                first_failure = line["exit_code"]
        return first_failure

    def candidates(self):
        try:
            names = sorted(os.listdir(self.dir_fd))
        except OSError as e:
            raise Failure(f"cannot read {self.directory}: {e.strerror}", 66) from None
        for name in names:
            if name.endswith(TEMP_SUFFIX) and name.startswith("."):
                self.remove_leftover(name)
        return [n for n in names if n.endswith(SUFFIX) and not n.startswith(".")]

    def remove_leftover(self, name):
        """A regular file of the caller's only: a directory or anything else under such a
        name, or a file another user put there, is not ours. A dry run says what it would do."""
        with held():  # removed and said in one step
            try:
                why = not_a_leftover(os.lstat(name, dir_fd=self.dir_fd), "migrate")
                if why:
                    return warn(f"left {name}: named like a temporary file of this tool, but {why}")
                if self.args.dry_run:
                    return warn(f"would remove {name}, left by an interrupted run")
                os.unlink(name, dir_fd=self.dir_fd)
            except FileNotFoundError:
                return
            except OSError as e:
                return warn(f"cannot remove {name}, left by an interrupted run: {e.strerror or e}")
            warn(f"removed {name}, left by an interrupted run")

    def one(self, name, committed):
        path = os.path.join(self.directory, name)
        line = {"file": name}
        try:
            info = os.lstat(name, dir_fd=self.dir_fd)
            if not stat.S_ISREG(info.st_mode):
                return {**line, "status": "skipped", "reason": "not a regular file"}
            src, _ = safefile.open_source(path, self.dir_fd)  # not through a link, nor a FIFO swapped in
            with src:
                head = src.read(len(MAGIC))
                bad = head == MAGIC and not_a_header(src)  # its salt's first bytes, which nothing authenticates
        except EncpipeError as e:
            return {**line, "status": "failed", "reason": str(e), "exit_code": 66}
        except OSError as e:
            return {**line, "status": "failed", "reason": f"cannot read it: {e.strerror}", "exit_code": 66}
        if bad:
            return {**line, "status": "failed", "reason": f"starts as an encpipe file, but is not one: {bad}",
                    "exit_code": 65}
        if head == MAGIC:
            return {**line, "status": "skipped", "reason": "already an encpipe file"}
        # planted by another user (its time theirs), root's or a group's: renamed over, it would be the caller's
        refused = owner_not_kept(info, os.fstat(self.dir_fd), "migrate", "migrated")
        if refused:
            return {**line, "status": "failed", "reason": refused, "exit_code": 73}
        plaintext = info.st_size - LEGACY_HEADER
        if plaintext < 0:
            return {**line, "status": "failed", "reason": "too short for a legacy file", "exit_code": 65}
        if self.args.dry_run:
            return {**line, "status": "would-migrate", "plaintext_bytes": plaintext}
        try:
            kept, report = self.convert(path, name, info, plaintext, committed)
        except Failure as e:
            return {**line, "status": "failed", "reason": str(e), **({"hint": e.hint} if e.hint else {}),
                    "exit_code": e.code}
        if report.get("sender_authenticated") is False and not report.get("signed_by"):  # restore refuses it
            warn(f"{name}: the new file's maker is not authenticated (sealed to public keys only, and not signed): "
                 "encpipe-restore refuses it (67) without --allow-unauthenticated; add --key-file or "
                 "--passphrase-file, or give --sign-key")
            line["sender_authenticated"] = False
        links = info.st_nlink - (name in self.kept_before)  # NAME.legacy of an interrupted run's: wanted
        if left := links_left(name, links, "migrate", "in the previous tool's format (its old secret opens them)"):
            warn(left)
            line["other_links"] = links - 1
        return {**line, "status": "migrated", "plaintext_bytes": plaintext, "kept": kept}

    def convert(self, path, name, info, plaintext, committed):
        try:
            src, opened = safefile.open_source(path, self.dir_fd)
            linked, checked = [], []
            with src:
                if not safefile.unchanged(opened, info):
                    raise Failure("the file changed while it was being converted; run again", 75)
                safefile.write_atomically(
                    path, lambda out: self.seal(src, out.fileno(), plaintext),
                    verify=lambda fd: checked.append(self.verify(fd, plaintext)),
                    **kept(src.fileno(), opened),  # its mode, access ACL, owner and group
                    times_ns=(info.st_atime_ns, info.st_mtime_ns), replaces=info,
                    before_rename=lambda dir_fd: linked.append(self.keep(dir_fd, name, info)
                                                               if self.args.keep_originals else None),
                    allow_shared=self.args.allow_shared_dir, prefix=f".{_short(name)}.", suffix=TEMP_SUFFIX,
                    dir_fd=self.dir_fd, committed=committed)
            return linked[0], checked[0]
        except EncpipeError as e:
            raise Failure(str(e), e.exit_code) from None
        except OSError as e:
            raise Failure(f"{e.strerror}: {e.filename or name}", 74) from None

    def keep(self, dir_fd, name, info):
        """NAME.legacy, a link to NAME in the directory opened for the conversion: `info`, the
        file converted (NAME, linked by its name, may be another just then; its check comes after)."""
        kept = name + KEPT_SUFFIX
        try:
            os.link(name, kept, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
            why = f"{kept} is not the file being converted: {name} changed meanwhile; nothing was replaced", 75
        except FileExistsError:  # an interrupted run may have linked it already
            why = f"{kept} already exists and is another file", 73
            self.kept_before.add(name)  # one of NAME's links before this run, kept on purpose
        if not safefile.same_file(os.stat(kept, dir_fd=dir_fd, follow_symlinks=False), info):
            raise Failure(*why)
        return kept


def same_passphrase(args, env, old_options, new_options):
    """Failure (64), before any file is read, when the options show one passphrase for
    the old files and the new. Its holder could make a file of the previous tool that
    this run converts into one authenticated by the new files' raw key: a passphrase
    slot's holder making a file the key's holder takes for their own (before, a warning,
    and the run went on). And a file of the previous tool under it is a guess at the
    cost of one PBKDF2 (a salt the same for everyone), whatever the new files' scrypt."""
    both = None
    if not old_options and not new_options and env.get("ENCPIPE_PASSPHRASE"):
        both = "ENCPIPE_PASSPHRASE"
    for old in args.legacy_passphrase_file:
        for new in args.passphrase_file:
            try:
                if os.path.samefile(old, new):
                    both = f"--legacy-passphrase-file and --passphrase-file {shown_name(new)}"
            except (OSError, ValueError):
                pass
    if both:
        raise Failure(f"the new files would be sealed under a passphrase also tried on the old files ({both}): "
                      "its holder could make a file of the previous tool that this run converts into one the new "
                      "key authenticates, and a file made with it lets it be guessed at the cost of its PBKDF2; "
                      "nothing was converted", 64, "seal the new files under a new passphrase or a key")


def open_directory(directory):
    try:
        return os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as e:
        raise Failure(f"cannot open {shown_name(directory, what='DIR')}: {e.strerror}", 66) from None


def main(argv):
    os.umask(0o077)
    catch_signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up the temporary file, then go
    args = parse(argv)
    try:
        public_forms("--recipient", args.recipient)  # a secret pasted: 64, before any child
        public_forms("--signer", args.signer, "verify key")
        secret_fds_open({"--signer-file": args.signer_file})  # read later: closed is 66 now, before FdSecrets
        key_files = {dashed(o): getattr(args, o) for o in (*SECRET_FILES, "signer_file")}
        refuse_replaceable(key_files, tuple(key_files), args.allow_shared_dir)  # 73, before any is read
        if os.path.isdir(args.dir):
            safefile.check_directory(args.dir, args.allow_shared_dir)
        migration = Migration(args, os.environ)
        held = open_directory(args.dir)
        try:  # checked again, locked: the directory listed is the one locked and checked
            dirlock.hold(held, args.dir, lambda: safefile.check_directory(args.dir, args.allow_shared_dir),
                         Failure, "encpipe-migrate")
            return migration.run(held)
        finally:
            os.close(held)
    except Failure as e:
        err(str(e), e.hint)
        return e.code
    except EncpipeError as e:
        err(str(e), e.hint)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader of the report went away: quietly, as encpipe
        return 141

