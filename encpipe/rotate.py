"""encpipe-rotate: move every sealed file under a backup directory from the old
key(s) to the new key(s) by rewriting headers only (`encpipe rewrap`).

  encpipe-rotate [--old-key-file FILE]... --new-key-file FILE...
                 [--escrow-recipient PUBKEY]... [--sign-key FILE]...
                 [--signer KEY]... [--signer-file FILE]... [--dry-run] [--progress]
                 [--allow-shared-dir] DIR

For each regular file under DIR (hidden files, hidden directories and symbolic
links are left alone):
  - not an encpipe file: left alone, reported as "foreign";
  - rotate not run as root: owned by another user than the caller (root too), or
    in a group the caller is not in: an "error" (73), left alone;
  - with trusted signers (--signer, --signer-file, else ENCPIPE_SIGNER): a file
    whose trailer names none of them is an "error" (exit 67), left alone;
  - already holds a slot for every new key and escrow recipient, none for an
    old key, and a signature by every --sign-key (key ids from `encpipe
    inspect --json`): "skipped";
  - otherwise `encpipe rewrap` (opened with the old or new keys; old-key slots
    removed; new keys and escrow recipients added, a slot of theirs it had
    made anew; other slots kept)
    into a new hidden file beside it (O_EXCL|O_NOFOLLOW), `encpipe inspect
    --verify` of what was written, read through the file's own descriptor,
    with the new keys only (and the trusted signers); then the original's
    mode, access ACL, owner and times are set through that descriptor (its modification
    time a second later, so that a mirror's sync sends it again) and it is renamed
    over the original, only while both names are still the files rotate
    opened: "rotated". --sign-key adds a signature (once per key); rewrap
    keeps the others, and one that is not in the new file is named in a
    warning and in "dropped_signatures"; so is a file a raw key authenticated
    that is no longer (new keys that are identities only, no --sign-key):
    a warning, and "sender_authenticated": false; and a file with other hard links,
    which keep it as it was: a warning, and "other_links": their number.
DIR (and every directory above it) must not be writable by a user other than
the one running rotate or root, unless sticky; nor may such a user be able to
replace a key file (--old-key-file, --new-key-file, --sign-key, --signer-file:
the file, its directory or one above, README "Shared directories");
--allow-shared-dir overrides both.
One JSON line per file on standard output; what an encpipe run on a file says
besides its error (a warning) goes to standard error, each line after
"encpipe-rotate: FILE: "; so, with --progress, are rewrap's progress lines
("verifying" as it checks the file, then "rewrap") and those of the check of
the new file ("verify"; README "Progress"), never on standard output. Safe to interrupt and re-run: a
file only ever changes by rename, after verification, and a file renamed is
reported (a signal from its rename on waits for its line); temporary files
left by a killed run are removed by the next one (those of the same user: a
file another user put under such a name is "ignored"). Keys are passed as file paths only;
one given as /dev/fd/N, or as the path of a named FIFO or a device, is read
once and lent to each encpipe at a /dev/fd/N; one given as standard input (-,
/dev/stdin, /dev/fd/0) is refused (64).

Environment: ENCPIPE, the encpipe command (default: this Python's encpipe, run as -m would, never
a module of the working directory's; split into words like a shell, e.g. "/opt/encpipe/bin/encpipe").
Exit status: 0 every encpipe file is under the new keys; 1 some file could not
be rotated or was refused, or a directory under DIR could not be listed (see its line); 64 usage error; 66 DIR, a key file or ENCPIPE is unusable;
73 another user can write DIR, or could replace a key file; 74 the report cannot be written (141 when its
reader went away: the files done so far are rotated, the others not yet);
75 DIR's lock is held (a backup, a rotation, a migration); 128 + N the encpipe keyid of the
key files was killed by signal N; 130, 143, 129 interrupted by SIGINT, SIGTERM or SIGHUP (the
files reported rotated are, the others not yet).
"""

import argparse
import os
import sys

from . import dirlock, pathwalk, safefile
from .argwords import option_words
from .cli import Io, child_command, print_text
from .errors import EncpipeError
from .format import MAGIC
from .fdsecrets import FdSecrets
from .sigdefer import Commit
from .keys import warn_secret_modes
from .keyargs import load_signers, public_forms, secret_fds_open
from .keyplace import refuse_replaceable
from .inplace import kept, links_left, owner_not_kept
from .rotatechild import Encpipe, Failure
from .rotatewalk import TEMP_PREFIX, TEMP_SUFFIX, report, walk
from .textform import shown_name
from .usage_errors import argparse_message, first_empty_parsed, parse_quietly

PROG = "encpipe-rotate"


def err(message, hint=None):
    Io(None, None, sys.stderr, None, prog=PROG).error(message, hint)


def warn(message):
    Io(None, None, sys.stderr, None, prog=PROG).warn(message)


class ArgumentParser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._optionals.title = "options"  # as from Python 3.10 on: "optional arguments" before

    def print_help(self, file=None):  # argparse would ignore a failed write and exit 0
        status = print_text(PROG, self.format_help().rstrip("\n"))
        if status:
            raise SystemExit(status)

    def error(self, message):
        err(argparse_message(message), hint=f"see {PROG} --help")
        raise SystemExit(64)


def parse_args(argv):
    parser = ArgumentParser(prog=PROG, description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old-key-file", action="append", default=[], metavar="FILE",
                        help="keyring holding the key(s) or identities to rotate away from; without it, "
                        "nothing is removed (escrow recipients, signatures and new keys are added)")
    parser.add_argument("--new-key-file", action="append", required=True, metavar="FILE",
                        help="keyring holding the new key(s) or identities (identities get public-key slots)")
    parser.add_argument("--escrow-recipient", action="append", default=[], metavar="PUBKEY",
                        help="public key (encpipe1...) that every file must also be sealed to")
    parser.add_argument("--sign-key", action="append", default=[], metavar="FILE",
                        help="sign every rotated file with the signing key in FILE (a regular file)")
    parser.add_argument("--signer", action="append", default=[], metavar="KEY",
                        help="refuse a file not signed by this verify key (encpipesign1...); else ENCPIPE_SIGNER")
    parser.add_argument("--signer-file", action="append", default=[], metavar="FILE",
                        help="as --signer, for each verify key in FILE")
    parser.add_argument("--dry-run", action="store_true", help="report what would change, change nothing")
    parser.add_argument("--progress", action="store_true",
                        help="report each file's rewrap and its check on standard error, after its name")
    parser.add_argument("--allow-shared-dir", action="store_true",
                        help="work in a directory, and read key files from places, other users can write "
                        "(refused by default)")
    parser.add_argument("dir", metavar="DIR")
    args = parse_quietly(parser, argv)
    empty = first_empty_parsed(args)
    if empty:
        parser.error(str(empty))
    return args


class Rotation:
    def __init__(self, options, encpipe):
        self.options, self.encpipe = options, encpipe
        self.old_ids = set(encpipe.key_ids(options.old_key_file))
        self.new_ids = set(encpipe.key_ids(options.new_key_file))
        # one slot per key: a new key file given twice, or an escrow key in upper and in lower case,
        # got two (rewrap takes each --add-... it is given)
        files = {}  # each file by where it really is, the first name it was given under
        for name in options.new_key_file:
            files.setdefault(os.path.realpath(name), name)
        options.new_key_file = list(files.values())
        self.escrow = {}  # {public key: key id}, the first spelling of each key
        for pub, key_id in encpipe.recipient_ids(options.escrow_recipient).items():
            if key_id not in self.escrow.values():
                self.escrow[pub] = key_id
        if self.old_ids & (self.new_ids | set(self.escrow.values())):
            raise Failure("a key is both old and new (or escrow)", 64)
        # each --sign-key file with the ids of every key it holds (one file may hold several)
        self.sign_files = [(f, encpipe.key_ids([f], "--sign-key")) for f in options.sign_key]
        self.sign_ids = [i for _, ids in self.sign_files for i in ids]
        trusted = load_signers(options.signer, options.signer_file, os.environ)
        self.trusted = {key.key_id.hex() for key in trusted}
        self.signer_args = option_words("--signer", trusted)
        self.errors = 0

    def file(self, path, dir_fd):
        """`path`, by its name in the directory listed (open as `dir_fd`, whatever its name leads to now)."""
        try:
            src, inspected = safefile.open_source(path, dir_fd)  # not through a link, nor a FIFO swapped in
            with src:
                magic = src.read(len(MAGIC))
                before = self.encpipe.inspect(src.fileno(), path) if magic == MAGIC else None
        except Failure as e:
            return self.fail(path, "inspect", e)
        except EncpipeError as e:
            return self.fail(path, "read", Failure(str(e), 66))
        except OSError as e:
            return self.fail(path, "read", Failure(e.strerror or str(e), 66))
        if magic != MAGIC:
            return report(path, "foreign", reason="not an encpipe file; left alone")
        # planted by another user (its time theirs), root's or a group's: renamed over, it would be the caller's
        refused = owner_not_kept(inspected, os.fstat(dir_fd), "rotate", "rotated")
        if refused:
            return self.fail(path, "owner", Failure(refused, 73))
        present = {slot.get("key_id") for slot in before["slots"]} - {None}
        signed = before.get("signers") or []
        if self.trusted and not self.trusted & set(signed):
            by = f" (signed by {', '.join(signed)})" if signed else ""
            return self.fail(path, "signer", Failure(f"not signed by a trusted signer{by}; left alone", 67))
        stale = self.old_ids & present
        missing = [pub for pub, key_id in self.escrow.items() if key_id not in present]
        sign, coming = [], set(signed)  # each key once: a FILE given twice, or whose keys another gives, is not
        for f, ids in self.sign_files:
            if not coming.issuperset(ids):
                sign.append((f, [i for i in ids if i not in coming]))
                coming.update(ids)
        if before.get("version") == 1 and not sign:  # with --sign-key: refused, its error says so
            warn(f"{path}: a version 1 file: its maker is not authenticated (any holder of one of its keys could "
                 "have made it) and it cannot be signed; re-seal it (encpipe open | encpipe seal) to make it "
                 "version 2")
        if not (stale or missing or sign or self.new_ids - present):
            return report(path, "skipped", reason="already under the new key")
        if not present & (self.old_ids | self.new_ids):
            return self.fail(path, "inspect", Failure("no slot for an old or new key", 77))
        if self.options.dry_run:
            if before.get("version") == 1 and sign:  # as rewrap refuses it (before, `would-rotate`, then 67)
                return self.fail(path, "rewrap", Failure("a version 1 file carries no signature and cannot be "
                                                         "signed; left alone", 67))
            try:  # as the rename's step checks it (before, `would-rotate`, then 73)
                safefile.check_open_directory(dir_fd, os.path.dirname(pathwalk.absolute(path)),
                                              self.options.allow_shared_dir)
            except EncpipeError as e:
                return self.fail(path, "rename", Failure(str(e), e.exit_code))
            added = self.new_ids | set(self.escrow.values())
            return report(path, "would-rotate", remove=sorted(stale), add=sorted(added),
                          sign=[i for _, ids in sign for i in ids])
        with Commit() as commit:  # renamed and reported in one step: a signal waits for the line
            raw = before.get("version") != 1 and any(  # a slot whose authenticator vouched for its maker
                s.get("type") == "raw-key" and s.get("key_id") in self.old_ids | self.new_ids for s in before["slots"])
            return self.rotated(path, (stale, sign, present, signed, inspected, raw), dir_fd, commit)

    def rotated(self, path, seen, dir_fd, commit):
        """`seen`: what the inspect found (and the stat of the file it read), which the
        rewrap must still be reading: its slots decide which are made anew."""
        stale, sign, present, signed, inspected, raw = seen
        try:
            anew = (self.new_ids | set(self.escrow.values())) & present  # made anew: one could wrap another key
            after = self.rewrap(path, stale | anew, list(self.escrow), [f for f, _ in sign], dir_fd, commit.hold,
                                inspected)
        except Failure as e:
            return self.fail(path, e.step, e)
        except OSError as e:
            return self.fail(path, "rewrap", Failure(e.strerror or str(e), 74))
        slots = [slot.get("key_id") for slot in after["slots"]]
        extra = {"signed_by": after["signed_by"]} if "signed_by" in after else {}
        dropped = sorted(set(signed) - set(after.get("signed_by") or []))
        if dropped:
            many = len(dropped) > 1
            warn(f"{path}: the signature{'s' * many} by {', '.join(dropped)} {'were' if many else 'was'} dropped")
            extra["dropped_signatures"] = dropped
        if left := links_left(path, inspected.st_nlink, "rotate"):
            warn(left)
            extra["other_links"] = inspected.st_nlink - 1
        if raw and after.get("sender_authenticated") is False and not after.get("signed_by"):
            warn(f"{path}: the rotated file's maker is not authenticated (only an x25519 identity of --new-key-file "
                 "opens it, and it carries no signature): encpipe-restore refuses it (67) without "
                 "--allow-unauthenticated; keep a raw key among the new keys, or give --sign-key")
            extra["sender_authenticated"] = False
        return report(path, "rotated", removed=sorted(stale), slots=slots, plaintext_bytes=after["plaintext_bytes"],
                      **extra)

    def rewrap(self, path, remove, add_recipients, sign_keys, dir_fd, committed, inspected):
        opts = self.options
        # each value one word with its option: a file named -h is a file, not rewrap's --help
        args = ["rewrap", *option_words("--key-file", opts.old_key_file + opts.new_key_file),
                *option_words("--add-key-file", opts.new_key_file), *option_words("--add-recipient", add_recipients),
                *option_words("--remove", sorted(remove)), *option_words("--sign-key", sign_keys), *self.signer_args,
                *["--progress"] * opts.progress]
        src, original = step(safefile.open_source, "rewrap", path, dir_fd)
        # another file, or rewritten since its slots were read (its owner can set its times back, not its ctime)
        if not safefile.unchanged(original, inspected) or original.st_ctime_ns != inspected.st_ctime_ns:
            src.close()
            raise Failure(f"{path} changed after it was inspected; left alone", 75, "rewrap")
        checked = {}

        def still_inspected(dir_fd):  # rewritten in place while rewrap read it: safefile.unchanged misses a ctime
            try:
                now = os.stat(os.path.basename(path), dir_fd=dir_fd, follow_symlinks=False)
            except OSError:
                return  # gone, or another: the rename's own check says so
            if now.st_ctime_ns != inspected.st_ctime_ns:
                raise Failure(f"{path} changed after it was inspected; left alone", 75, "rename")

        def verify(fd):
            checked["after"] = step(self.encpipe.verify_fd, "verify", fd, opts.new_key_file, self.signer_args,
                                    path if opts.progress else None)
            check_result(checked["after"], self.new_ids | set(self.escrow.values()), self.old_ids, self.sign_ids)

        with src:
            try:
                safefile.write_atomically(
                    path, lambda out: step(self.encpipe.run, "rewrap", args, stdin=src, stdout=out, about=path),
                    verify=verify, **kept(src.fileno(), original),  # mode, ACL (a reader it names), owner
                    # a second later than the original: a mirror's sync (size and time) sends it again,
                    # and a file older than its name stays so (README "Off-site copies" under rotate)
                    times_ns=(original.st_atime_ns, original.st_mtime_ns + 1_000_000_000), replaces=inspected,
                    before_rename=still_inspected,
                    allow_shared=opts.allow_shared_dir, prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX,
                    dir_fd=dir_fd, committed=committed)
            except EncpipeError as e:
                raise Failure(str(e), e.exit_code, "rename") from None
        return checked["after"]

    def fail(self, path, where, failure):
        self.errors += 1
        report(path, "error", step=where, exit=failure.status, error=str(failure))


def step(function, name, *args, **kwargs):
    try:
        return function(*args, **kwargs)
    except Failure as e:
        e.step = name
        raise
    except OSError as e:
        raise Failure(f"{e.strerror or e}", 74, name) from None
    except EncpipeError as e:
        raise Failure(str(e), e.exit_code, name) from None


def check_result(result, wanted, unwanted, sign_ids):
    ids = {slot.get("key_id") for slot in result["slots"]}
    if not result.get("verified") or not wanted <= ids or ids & unwanted:
        raise Failure("the rewrapped file does not hold the expected slots", 70, "verify")
    if not set(sign_ids) <= set(result.get("signed_by") or []):
        raise Failure("the rewrapped file is not signed by every --sign-key", 70, "verify")


def main(argv):
    os.umask(0o077)
    options = parse_args(argv)  # SIGINT, SIGTERM, SIGHUP: an exception, then death by it (cli.run_script)
    try:
        public_forms("--escrow-recipient", options.escrow_recipient)  # a secret pasted: 64, before any child
        public_forms("--signer", options.signer, "verify key")
        secret_fds_open({"--signer-file": options.signer_file})  # read later: closed is 66 now, before FdSecrets
        files = ("old_key_file", "new_key_file", "sign_key")
        key_files = {f"--{o.replace('_', '-')}": getattr(options, o) for o in (*files, "signer_file")}
        refuse_replaceable(key_files, tuple(key_files), options.allow_shared_dir)  # 73, before any is read
        secrets = FdSecrets(vars(options), files)  # before DIR takes an fd; one on standard input: 64 first
        # once, not once per file
        warn_secret_modes([p for o in files for p in getattr(options, o) or []], warn, secrets.others_bits)
        if not os.path.isdir(options.dir):
            raise Failure(f"{shown_name(options.dir, what='DIR')} is not a directory", 66)
        encpipe = Encpipe(child_command(os.environ), secrets, ["--allow-shared-dir"] * options.allow_shared_dir)
        held = os.open(options.dir, os.O_RDONLY | os.O_DIRECTORY)
        dirlock.hold(held, options.dir, lambda: safefile.check_directory(options.dir, options.allow_shared_dir),
                     Failure, PROG)
        rotation = Rotation(options, encpipe)
        walk(options.dir, held, rotation, options.dry_run)
        os.close(held)
    except Failure as e:
        err(str(e), e.hint)
        return 66 if e.status in (65, 77, 78) else e.status
    except EncpipeError as e:
        err(str(e), e.hint)
        return e.exit_code
    except BrokenPipeError:  # the reader of the report went away: quietly, as encpipe
        return 141
    except OSError as e:  # DIR gone or changed meanwhile
        err(f"cannot use {e.filename}: {e.strerror or e}")
        return 66
    if rotation.errors:
        err(f"{rotation.errors} file(s) could not be rotated")
        return 1
    return 0

