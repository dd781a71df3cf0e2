"""encpipe-verify's run, once its options are read (cli.COMMANDS): each PATH (a
location, a backup file, a remote folder or object) authenticated, one JSON
report on standard output, each failure an error line."""

import os

from .. import commands
from ..errors import InputUnavailable
from ..textform import shown_name
from .listing import examine, scan
from .names import parse_name
from .remotes import NO_SUCH_OBJECT, AnObject, is_remote, split_file
from .storage import open_location
from .verify import KeyRing, Kept, refuse_archived_earlier, refuse_late_unlabelled, verify_entry


def command(args, io, where):
    """verify, its options read; `where`: the location, verified when no PATH is given."""
    paths = args["PATH"] or [where]
    workers = commands.threads(args)
    keys = KeyRing.from_args(args, io)
    for path in paths:  # one that is not there at all fails the command (66, nothing on stdout) before any is read
        if not is_remote(path):
            _there(path)
    results, empty = [], None
    for path in paths:
        folder = _is_location(path)
        store = open_location(path, io.env) if folder else None
        try:
            entries = [e for e in scan(store) if e.status != "marker"] if folder else []  # the cluster's, no backup
        except AnObject:  # a remote object whose name is no backup's: verified as a file is
            folder, entries = False, []
        if entries or folder and not _looks_like_a_file(path):
            found = refuse_late_unlabelled(entries, [Kept(_unless_gone(store, e, verify_entry(store, e, keys, workers)))
                                                     for e in entries])
            if store.trusted_owners() is None:  # a remote: no owner vouches for an archive's name
                found = refuse_archived_earlier(entries, found)
            if not any(r["ok"] is not None or r["status"] == "legacy" for r in found):  # notes only, or nothing
                empty = empty or path
            results += found
        else:  # a file, or a remote path that names an object rather than a folder
            where, name = split_file(path)
            store = open_location(where, io.env)
            item = store.stat(name)
            if is_remote(path) and item.unreadable and item.error.endswith(f": {NO_SUCH_OBJECT}"):
                raise InputUnavailable(f"cannot read {path}: {NO_SUCH_OBJECT}")
            results.append(Kept(verify_entry(store, examine(store, item), keys, workers, named=True)))
    failed = [r for r in results if r["ok"] is False]
    nothing = f"{empty}: no backup to verify (--allow-empty accepts that)" if empty else None
    nothing = None if args["--allow-empty"] else nothing
    if nothing and not failed:  # "nothing there" is not "all good": 66, nothing on stdout
        raise InputUnavailable(nothing)
    io.print_json({
        "ok": not failed,
        "files": len(results),
        "verified": sum(r["ok"] is True for r in results),
        "failed": len(failed),
        "not_verified": sum(r["ok"] is None for r in results),
        "results": results,
    }, default=Kept.to_json)
    for result in failed:
        io.error(f"{result['path']}: {result['error']}")
    if nothing:
        io.error(nothing)
    return failed[0]["exit_code"] if failed else 0


GONE = "removed since it was listed (a prune, or another run, meanwhile)"


def _unless_gone(store, entry, result):
    """`result`, or a note for a file of a local directory that could not be read because
    it is no longer there (a prune, encpipe-backup's pruning: verify takes no lock), as
    a file removed before the listing is nothing; a link that leads nowhere is there."""
    lexists = getattr(store, "lexists", None)  # a local directory's (its descriptor's)
    if result["ok"] is not False or result["exit_code"] != 66 or lexists is None:
        return result
    try:
        if lexists(entry.item.name):
            return result
    except OSError:
        return result
    return {**result, "ok": None, "error": None, "exit_code": None, "error_class": None, "note": GONE}


def _there(path):
    """InputUnavailable (66) when local `path` is not there at all (no such file, a
    directory above it missing or not searchable): a location that cannot be read
    is the command's failure, not a file of its report. A link that leads nowhere
    is there: a file that fails (`unreadable`), as in a directory."""
    try:
        os.lstat(path)
    except OSError as e:
        raise InputUnavailable(f"cannot read {shown_name(path, what='PATH')}: {e.strerror or e}") from None


def _looks_like_a_file(path):
    return is_remote(path) and "." in path.rpartition("/")[2].rpartition(":")[2]


def _is_location(path):
    if is_remote(path):
        return not parse_name(path.rpartition("/")[2].rpartition(":")[2]).naming
    return os.path.isdir(path)
