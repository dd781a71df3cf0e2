USAGE = """encpipe-backup's steps after the dump, and encpipe-restore's fetch.

Usage:
  python3 -I -m encpipe.backup upload [--dir DIR] [--to REMOTE] [--allow-shared-dir] TEMP [NAME]
  python3 -I -m encpipe.backup commit [--dir DIR] [--to REMOTE] [--allow-shared-dir] --database DB --kind KIND
             --started TIME [--metrics-file FILE] [--keep-last N] [--keep-daily N] [--keep-weekly N]
             [--keep-monthly N] [--keep N] [--max-age DAYS] [--threads N]
             [--key-file FILE]... [--key-command CMD]... [--identity FILE]...
             [--passphrase-file FILE]... [--passphrase-command CMD]...
             [--signer KEY]... [--signer-file FILE]... [--count-unauthenticated]
             [--globals-temp GTEMP --globals-name GNAME] [--] TEMP NAME
  python3 -I -m encpipe.backup abort [--dir DIR] [--to REMOTE] [--allow-shared-dir]
            --database DB --started TIME [--metrics-file FILE] [--globals-temp GTEMP] TEMP
  python3 -I -m encpipe.backup fetch FILE
  python3 -I -m encpipe.backup systemd-unit SCRIPT [ARG...]

encpipe-backup, which seals into TEMP itself, calls main() for commit, abort and
systemd-unit. upload copies standard input into a new file TEMP in DIR and/or REMOTE at
once; commit renames TEMP to NAME in each, prunes DB's series there (when given a policy),
records the run in the metrics file and prints the backup's JSON line (with --globals-temp,
GTEMP is renamed to GNAME first, so a dump is never stored without its globals; a failed
rename ends it as abort does, with the files it renamed removed again); abort removes TEMP
(and GTEMP, the globals file's, with --globals-temp) and records a failed run, once; fetch
writes a stored file (a path or REMOTE:PATH/NAME) to standard output; systemd-unit prints a
service unit running SCRIPT with ARGs.

Options:
  --dir DIR                 A backup directory.
  --to REMOTE               An rclone REMOTE:PATH.
  --allow-shared-dir        Write in DIR even when another user can write it.
  --database DB             The database backed up.
  --kind KIND               sql, sql.zst, sql.gz, dump or globals.sql.
  --started TIME            Unix time the run started.
  --metrics-file FILE       A node_exporter textfile to update.
  --keep-last N             As for encpipe-prune.
  --keep-daily N            As for encpipe-prune.
  --keep-weekly N           As for encpipe-prune.
  --keep-monthly N          As for encpipe-prune.
  --keep N                  As for encpipe-prune.
  --max-age DAYS            As for encpipe-prune.
  --threads N               Worker threads [default: auto].
  --key-file FILE           As for encpipe.
  --key-command CMD         As for encpipe.
  --identity FILE           As for encpipe.
  --passphrase-file FILE    As for encpipe.
  --passphrase-command CMD  As for encpipe.
  --signer KEY              As for encpipe-prune.
  --signer-file FILE        As for encpipe-prune.
  --count-unauthenticated   As for encpipe-prune (weaker).
  --globals-temp GTEMP      The run's globals file, uploaded as GTEMP...
  --globals-name GNAME      ...to be stored as GNAME.
"""

import json
import math
import os
import sys
import time
from datetime import datetime, timezone

from docopt import DocoptExit, docopt

from ..cli import Io, report_errors
from ..errors import EncpipeError, InputUnavailable, IOFailure, UsageError, ran_out, reason, unreadable
from ..safefile import check_directory
from ..shown import json_value, printable
from ..sigdefer import held, hold_for_good
from ..stdio import discard as discard_output, write_whole
from ..textform import shown_value
from .names import KINDS
from .remotes import refuse_local, split_file
from .storage import CHUNK, Local, discard, open_location, read_back, remove_stale_temps, upload
from .usagetext import for_docopt, help_asked

# What a plain run (commit, abort) does not use is imported where it is used: pruning, the
# metrics file, the unit, the usage error (the encpipe-prune/-list CLI's module); what its
# commit uses (listing) where the commit is. A backup starts pg_dump sooner without them.

_POLICY = ("--keep-last", "--keep-daily", "--keep-weekly", "--keep-monthly", "--keep", "--max-age")


def stores(args, io):
    refuse_local(args["--to"], "--to")
    if args["--dir"]:
        check_directory(args["--dir"], args["--allow-shared-dir"])
    found = ([Local(args["--dir"])] if args["--dir"] else []) + (
        [open_location(args["--to"], io.env)] if args["--to"] else [])
    if not found:
        raise UsageError("give --dir DIR, --to REMOTE:PATH or both")
    return found


def cmd_upload(args, io):
    upload(stores(args, io), args["TEMP"], io.stdin, args["NAME"])
    return 0


def cmd_commit(args, io):
    targets, temp, final, db = stores(args, io), args["TEMP"], args["NAME"], args["--database"]
    if args["--kind"] not in KINDS:
        kinds = ", ".join(KINDS)
        raise UsageError(f"--kind must be {kinds.rpartition(', ')[0]} or {kinds.rpartition(', ')[2]}, "
                         f"not {shown_value(args['--kind'])}")
    renames = [(temp, final)]
    if args["--globals-temp"]:
        renames.insert(0, (args["--globals-temp"], args["--globals-name"]))
    renamed = []
    with held():  # every file renamed, or those renamed taken back: a signal waits for either
        try:
            for old, new in renames:
                for store in reversed(targets):  # the local file last: it is what the run leaves
                    renamed.append((store, new, store.rename(old, new)))
        except EncpipeError as e:  # a store's rename says which one failed
            return _undo(args, io, targets, renames, renamed, e)
        hold_for_good()  # stored: the rest (read back, prune, record, the JSON line) and its status stand
    status, head, lost = 0, None, False  # from here on the backup is stored: what fails is said, the run recorded
    temp_of, written = {new: old for old, new in renames}, args.get("written") or {}
    for store, name, mine in renamed:  # each file, in each store: the globals file and the off-site copy too
        try:
            found, why = read_back(store, name, mine, written.get(temp_of[name]))
        except (EncpipeError, OSError) as e:
            io.error(f"backup written, but cannot read {store.where(name)} back: {reason(e)}")
            status = 1
            continue
        if why:  # not there as stored: the run failed, whatever its renames did
            io.error(f"backup written, but {store.where(name)} does not read back as stored: {why}")
            status, lost = 1, True
        elif store is targets[0] and name == final:  # the JSON line's
            head = found
    line = {
        "filename": final,
        "path": targets[0].where(final),
        "database": db,
        "format": KINDS[args["--kind"]],
        "bytes": head and head.bytes,
        "key_ids": head and head.key_ids,
        "slots": head and head.slots,
        "duration_seconds": None,  # once the prune is done
        "globals": args["--globals-name"],
    }
    if args["--to"]:
        line["remote"] = targets[-1].where(final)
        try:
            remove_stale_temps(targets[-1])
        except (EncpipeError, OSError) as e:  # the next run tries again
            io.warn(f"stale temporary objects not looked for: {reason(e)}")
    if any(args[o] is not None for o in _POLICY):
        status = _prune_after(args, io, targets, db, line) or status
    line["duration_seconds"] = round(_duration(args), 3)  # the whole run's, its prune's too: the metrics' as well
    unrecorded = _record(args, ok=not lost, size=line["bytes"], duration=line["duration_seconds"])
    if unrecorded:  # stored all the same: said, the JSON line printed, 1 as for the other steps after the rename
        io.error(f"backup written, but metrics not written: {unrecorded}", hint=unrecorded.hint)
        status = 1
    try:
        io.print(json.dumps(json_value(line)))
    except BrokenPipeError:  # its reader went away: 141, as for every report
        raise
    except OSError as e:  # a full disk: 74 as for any output, the line saying the backup is stored
        discard_output(0)
        raise IOFailure(f"backup written, but cannot write output: {e.strerror or e}") from None
    return status


def _prune_after(args, io, targets, db, line):
    from .. import commands
    from ..keyplace import refuse_replaceable
    from .cli import policy_from
    from .prune import prune
    from .verify import KeyRing

    policy = policy_from(args)
    line["pruned"], status = [], 0
    try:  # the key files' places, as encpipe-backup judged them at its start (keyplace): again, as for encpipe-prune
        refuse_replaceable(args, allow_shared=args["--allow-shared-dir"])
        keys = KeyRing.from_args(args, io)
    except Exception as e:
        io.error(f"backup written, but not pruned: {e}")
        return 1
    for store in targets:
        try:
            report, code = prune(store, policy, keys, commands.threads(args), datetime.now(timezone.utc),
                                 databases=[db], count_unauthenticated=args["--count-unauthenticated"])
        except Exception as e:  # OSError, rclone's failure; out of memory: the backup is stored all the same
            if not isinstance(e, (EncpipeError, OSError)) and not ran_out(e):
                raise
            io.error(f"backup written, but {store.where('')} not pruned: {ran_out(e) or reason(e)}")
            status = 1
            continue
        line["pruned"] += [r["filename"] for r in report["removed"]]
        for left in report["left"]:
            io.warn(f"left {left['filename']}: {left['reasons'][0]}")
        if code:
            io.error(f"backup written, but pruning {store.where('')} found problems (status {code})")
            status = 1
    return status


def _undo(args, io, targets, renames, renamed, error):
    """A rename failed: leave what a failed run leaves (cmd_abort), in every store:
    the files this run renamed removed again (only if still the very files), the
    temporary files removed, the failed run recorded; its status, and one error
    line that says both (a file left in place, or not removed, a warning before it)."""
    left = getattr(error, "left_in_place", False)  # a copy a remote's rename made, which it could not take back
    for store, name, mine in reversed(renamed):
        try:
            store.take_back(name, mine)
        except (EncpipeError, OSError) as e:
            left = True
            io.warn(f"{store.where(name)} left in place: {reason(e)}")
    unrecorded = _abort(args, targets, [old for old, _ in renames], io)
    # not "nothing was stored" beside a file left under its final name (before, both were said)
    stored = "not all of it could be taken back" if left else "nothing was stored"
    io.error(f"backup of {args['--database']} failed (status {error.exit_code}): {error}; {stored}"
             f"{metrics_not_written(unrecorded)}", hint=error.hint)
    return error.exit_code


def cmd_abort(args, io, targets=None):
    """abort; `targets`: the stores, already open (encpipe-backup's own: what each removal
    left, said in its `unremoved`, is then the last try's), else those of the options."""
    temps = [args["--globals-temp"], args["TEMP"]] if args["--globals-temp"] else [args["TEMP"]]
    unrecorded = _abort(args, targets or stores(args, io), temps, io)
    if unrecorded:  # its own status and line: the run's, if any, is its caller's (encpipe-backup folds it in)
        raise unrecorded
    return 0


def metrics_not_written(error):
    """What a failed run's one line ends with when its --metrics-file could not be written."""
    return f"; metrics not written: {error}" if error else ""


def _abort(args, targets, temps, io):
    """Remove the temporary files (a warning for each left), and record the failed run in
    --metrics-file; the error (EncpipeError) that kept it from being recorded, else None."""
    for store in targets:
        for temp in temps:
            note = discard(store, temp)  # kept in store.unremoved too (encpipe-backup's line)
            if note:
                io.warn(note)
    return _record(args, ok=False)


def _duration(args):
    """Seconds since the run started: on the monotonic clock when its caller, in this
    process, gave it (encpipe-backup: a clock stepped back during the run gave a duration
    below 0), else since --started (Unix time, a script's: the wall clock's difference)."""
    clock = args.get("clock")
    return time.monotonic() - clock if clock is not None else time.time() - float(args["--started"])


def _unix_time(started):
    """Whether `started` (--started, None where a command takes none) is one: a finite number."""
    try:
        return started is None or math.isfinite(float(started))
    except ValueError:
        return False


def record_failed_run(words, clock=None):
    """Record a run that failed before it made a file (DIR refused, its lock held) in
    --metrics-file, if `words` (encpipe-backup's --metrics-file=, --database=,
    --started=) give one; the error that kept it from being recorded, else None."""
    args = {"--metrics-file": None, **dict(word.partition("=")[::2] for word in words), "clock": clock}
    return _record(args, ok=False)


def _record(args, ok, size=None, duration=None):
    """Record the run in --metrics-file, if given (`duration`, else the run's until now);
    the error (EncpipeError) that kept it from being recorded, else None."""
    if args["--metrics-file"]:
        try:
            from . import metrics  # loaded here, its module file read: out of descriptors, not recorded either

            # recorded, the run's status stands (a failed run's too: its line names it), whatever signal comes
            metrics.record(args["--metrics-file"], args["--database"], ok=ok, finished=time.time(),
                           duration=_duration(args) if duration is None else duration, size=size,
                           committed=hold_for_good)
        except EncpipeError as e:
            return e
        except OSError as e:
            return IOFailure(f"cannot write {args['--metrics-file']}: {e.strerror or e}")
    return None


def cmd_fetch(args, io):
    where, name = split_file(args["FILE"])
    store = open_location(where, io.env)
    item = store.stat(name)
    if item.error:
        raise InputUnavailable(item.error)
    try:
        src = store.open(item)
    except OSError as e:
        raise unreadable(f"cannot read {args['FILE']}: {e.strerror or e}", e) from None
    with src:
        while True:
            try:
                block = src.read(CHUNK)
            except OSError as e:
                raise IOFailure(f"cannot read {args['FILE']}: {e.strerror or e}") from None
            if not block:
                break
            write_whole(io.stdout, block)  # a full TMPDIR fails the fetch, not what reads the copy
    io.stdout.flush()
    return 0


def cmd_unit(args, io):
    from . import unit

    script = os.path.abspath(args["SCRIPT"])
    io.print(unit.render(script, args["ARG"]))
    python = unit.interpreter(script)
    if why := unit.hidden(script):  # printed all the same: a test's, or one installed elsewhere later
        io.warn(f"ExecStart={script}: {why}: every run would fail", hint=unit.HIDDEN_HINTS["ExecStart"])
    elif python and (why := unit.hidden(python)):  # a venv made by a python3 under /root (pyenv's): 126
        io.warn(f"ExecStart={script} runs the python3 beside it, {python}: {why}: every run would fail",
                hint=unit.HIDDEN_HINTS["python3"])
    for warning, hint in unit.replaceable(script, args["ARG"], judge_script=not unit.hidden(script)):
        io.warn(warning, hint=hint)
    return 0


COMMANDS = {"upload": cmd_upload, "commit": cmd_commit, "abort": cmd_abort, "fetch": cmd_fetch,
            "systemd-unit": cmd_unit}


_LISTS = ("--key-file", "--key-command", "--identity", "--passphrase-file", "--passphrase-command", "--signer",
          "--signer-file")
_FLAGS = ("--allow-shared-dir", "--count-unauthenticated")
_VALUES = ("--dir", "--to", "--database", "--kind", "--started", "--metrics-file", "--threads", "--globals-temp",
           "--globals-name", *_POLICY)


def commit_args(argv):
    """The dictionary docopt makes of `argv`, a commit's words as encpipe-backup builds them
    (`commit`, each option one word, --OPTION=VALUE (argwords) or a flag, `--`, TEMP, NAME),
    without parsing USAGE (milliseconds of each backup); None for any other shape (main()
    parses it as before). tests/test_pg_parts.py holds it to docopt's."""
    if argv[:1] != ["commit"] or len(argv) < 4 or argv[-3] != "--":
        return None
    args = {**dict.fromkeys(COMMANDS, False), "commit": True, "--": True, "ARG": [], "FILE": None, "SCRIPT": None,
            "TEMP": argv[-2], "NAME": argv[-1], **dict.fromkeys(_VALUES), **dict.fromkeys(_FLAGS, False),
            **{option: [] for option in _LISTS}}
    given = set()
    for word in argv[1:-3]:
        option, eq, value = word.partition("=")
        if not eq and option in _FLAGS and option not in given:
            args[option] = True
        elif eq and option in _LISTS:
            args[option].append(value)
        elif eq and option in _VALUES and option not in given:
            args[option] = value
        else:
            return None
        given.add(option)
    if args["--threads"] is None:
        args["--threads"] = "auto"
    required = args["--database"] and args["--kind"] and args["--started"]
    return args if required and (args["--globals-temp"] is None) == (args["--globals-name"] is None) else None


# the steps are encpipe-backup's (its errors say so), run by hand as python3 -I -m encpipe.backup STEP
HINT = "see python3 -I -m encpipe.backup --help"


def main(argv=None, *, stdin=None, stdout=None, stderr=None, env=None, stores=None, clock=None, written=None):
    """The job command of `argv`; `stores`: an abort's, already open (cmd_abort); `clock`:
    time.monotonic() when the run started (encpipe-backup's), which its duration is measured from;
    `written`: a commit's, what encpipe-backup wrote under each temporary name (storage.read_back)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    io = Io(stdin or sys.stdin.buffer, stdout or sys.stdout.buffer, stderr or sys.stderr,
            os.environ if env is None else env, prog="encpipe-backup")
    if argv[:1] == ["systemd-unit"] and len(argv) > 1:  # ARGs are another command's options
        return report_errors(io, lambda: cmd_unit({"SCRIPT": argv[1], "ARG": argv[2:]}, io))
    if help_asked(argv):  # a full standard output: one line and 74, as for any output
        return report_errors(io, lambda: io.print(USAGE.rstrip("\n")) or 0)
    try:
        args = commit_args(argv) or docopt(for_docopt(USAGE), argv=argv, default_help=False)
    except DocoptExit as e:
        from .cli import usage_message

        io.error(usage_message(argv, e, COMMANDS), hint=HINT)
        return 64
    if not _unix_time(args.get("--started")):  # a script's: its duration is measured from it
        io.error(f"--started must be Unix time in seconds, not {printable(shown_value(args['--started']))}",
                 hint=HINT)
        return 64
    args["clock"], args["written"] = clock, written
    if stores is not None and argv[0] == "abort":
        return report_errors(io, lambda: cmd_abort(args, io, stores))
    return report_errors(io, lambda: COMMANDS[argv[0]](args, io))
