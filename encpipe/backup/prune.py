"""Pruning a backup location: authenticate, decide (retention.plan), remove.

Every backup-named file of the series concerned is authenticated first: a file
that fails, whose name is dated in the future, or that is a copy of another file
in the location, or that is an unlabelled dump named no earlier than a labelled one
of its series (an old backup copied under a new name), or whose name's time stands
on nothing (last written before it; a custom archive or an unlabelled dump owned by
another user, who can set its time), never counts towards what is kept and is never
removed; it is reported instead. So is a file that verifies but whose maker is not
authenticated (anyone with an x25519 public key, or any slot holder of a v1
file, could have made it), unless `count_unauthenticated`: the operator's
choice to count such files, which lets a writer of the location plant files
that make genuine backups go.

Once a file is removed, the prune is a change made: a signal (SIGINT, SIGTERM,
SIGHUP) then waits for the rest of the removals and the report, and the run's
status stands (sigdefer.hold_for_good); before, it stops the run, nothing removed.
"""

from ..errors import reason
from ..sigdefer import held, hold_for_good
from .listing import copies, older_than_its_name, owned_elsewhere, scan
from .names import iso
from .retention import (CLOCK_SKEW, COPY, GLOBALS_OF_A_DUMP_NOT_REMOVED, KEEP, LEAVE, OK, REMOVE, RENAMED, UNVERIFIED,
                        Record, plan)
from .storage import named
from .verify import is_labelled, standing, verify_entry


def prune(store, policy, keys, workers, now, *, databases=None, dry_run=False, count_unauthenticated=False):
    """(report, exit status). Status 0; 74 a file could not be removed; 65 some
    backup-named file was left in place (failed verification, future-dated, a
    copy, its maker not authenticated, or unlabelled but named after a labelled
    backup of its series)."""
    put_back = None if dry_run else getattr(store, "put_back_held", None)  # a local directory's, its lock held
    stayed = put_back() if put_back else []  # a killed prune's held files: back under their names, first
    scanned = scan(store)
    copied = copies(scanned)  # whatever the other file's name: a copy counts as what its name says
    everything = [e for e in scanned if e.naming == "encpipe" and not e.item.link]
    entries = [e for e in everything if e.database in databases] if databases else everything
    by_name, records, trusted = {e.filename: e for e in entries}, [], store.trusted_owners()
    for entry in entries:
        labelled = taken = None
        if entry.created > now + CLOCK_SKEW:  # left alone whatever it holds: not worth reading
            state, detail = UNVERIFIED, None
        elif entry.filename in copied:
            state, detail = COPY, copied[entry.filename]
            labelled, taken = _copy_read(store, entry, keys, workers, count_unauthenticated)
        elif renamed := older_than_its_name(entry):  # an old backup renamed: it authenticates, but is not itself
            state, detail = RENAMED, renamed
        else:
            result = verify_entry(store, entry, keys, workers)
            state, detail = standing(result, count_unauthenticated), result["error"]
            labelled = is_labelled(entry, result)
            if state == OK and (planted := owned_elsewhere(entry, result["label"], trusted)):
                state, detail, labelled = RENAMED, planted, None  # its name's time stands on nothing
        # every file of a series is authenticated before any is counted (retention.plan): an
        # unlabelled one is judged against every labelled one, wherever it was listed; on a remote
        # (no owners: trusted None) an archive against every one named before it (ARCHIVED_EARLIER)
        records.append(Record(entry.filename, entry.series, entry.created, state, detail, labelled,
                              archived=entry.archived if labelled and trusted is None else None, taken=taken))
    decisions = plan(records, policy, now)
    report = {"location": named(store), "dry_run": dry_run,
              "policy": _describe(policy), "removed": [], "kept": [], "left": [], "unprotected": [],
              "count_unauthenticated": count_unauthenticated,
              "errors": [{"filename": hold, "error": f"{hold}: left by a killed prune, cannot be put back (its name "
                          "is another file's); move it out of DIR, or remove it"} for hold in stayed]}
    # a run's dumps before its globals file, which stays when one of them could not be removed: a
    # restore refuses a dump without it (before, globals first: ('db', 'globals') sorts before the
    # dumps' series, and a dump whose removal failed was left, its run's globals file gone)
    stuck = set()  # the runs (database, time) of dumps that could not be removed
    for decision in sorted(decisions, key=lambda d: d.record.series[1] == "globals"):
        run = (decision.record.series[0], decision.record.created)
        if decision.action == REMOVE and decision.record.series[1] == "globals" and run in stuck:
            decision.action, decision.reasons = KEEP, [GLOBALS_OF_A_DUMP_NOT_REMOVED]
        entry = by_name[decision.record.name]
        line = {"filename": entry.filename, "database": entry.database, "series": entry.dump_format,
                "created": iso(entry.created), "bytes": entry.bytes, "reasons": decision.reasons}
        if decision.action == REMOVE and not dry_run:
            try:
                with held():  # a removal is never cut in two (a file left in the hold directory)
                    store.remove(entry.item)
                    hold_for_good()  # removed: the rest of the plan, the report and its status stand
            except Exception as e:  # OSError, or rclone's failure
                report["errors"].append({"filename": entry.filename, "error": _message(entry, e)})
                stuck.add(run)
                continue
        report[{KEEP: "kept", REMOVE: "removed", LEAVE: "left"}[decision.action]].append(line)
    if report["removed"] and not dry_run:
        store.done()
    kept_series = {(k["database"], k["series"]) for k in report["kept"]}
    report["unprotected"] = sorted({f"{e.database} ({e.dump_format})" for e in entries
                                    if (e.database, e.dump_format) not in kept_series})
    for key in ("removed", "kept", "left"):
        report[key].sort(key=lambda line: line["filename"])
    status = 74 if report["errors"] else 65 if report["left"] else 0
    return report, status


def _copy_read(store, entry, keys, workers, count_unauthenticated):
    """(labelled, taken) for a copy, never counted itself. A dump's labelled: True when it
    is a labelled dump that authenticates as prune counts one (else None); it still shows
    its series was labelled by the time its name says (retention.first_labelled): else
    copying each labelled dump under another name made a series look unlabelled, and an
    old unlabelled backup put under a newer name counted as its newest (--keep-last
    removed the real ones). A globals file's taken: whether it verifies as its run's (a
    restore takes it); else its run's dump does not count (retention._runs_judged)."""
    if entry.dump_format not in ("plain", "custom", "globals"):
        return None, None
    result = verify_entry(store, entry, keys, workers)
    counts = standing(result, count_unauthenticated) == OK
    if entry.dump_format == "globals":
        return None, counts
    return (True if counts and is_labelled(entry, result) else None), None


def _describe(policy):
    described = {f"keep_{name}": count for name, count in policy.rules()}
    if policy.max_age is not None:
        described["max_age_days"] = policy.max_age.total_seconds() / 86400
    return described


def _message(entry, error):
    text = reason(error)
    return text if entry.filename in text else f"cannot remove {entry.filename}: {text}"
