"""Which backups to keep: one pure function over records and a policy.

The tiers follow restic's `forget`: going from the newest backup to the oldest,
`last` keeps each of the N newest, `daily` keeps the newest backup of each of
the N most recent days that have one, likewise `weekly` (ISO weeks) and
`monthly`; a backup kept by any rule is kept, with every rule that kept it as
a reason. Dates are UTC. Only authenticated backups take part: a record that is
future-dated, a copy of another file, failed verification, was not verified, or
verified but whose maker is not authenticated (UNAUTHENTICATED: a file anyone
with the public key could have made), or is an unlabelled dump named no earlier
than a labelled one of its series (LATE_UNLABELLED_REASON), or a custom archive
(of a remote: Record.archived) made before one of its series named earlier
(ARCHIVED_EARLIER), or a dump whose run's
globals file is one a restore refuses (refused_by_run), is left alone (neither
kept nor removed) and reported. `max_age` then removes kept backups older than
that; the newest authenticated backup of a series is always kept, and so is the
globals file of each dump kept (same database, same time: its run's), whatever the
globals series' own rules say.
"""

from collections import defaultdict
from datetime import datetime, timedelta

from .records import Factory, record as record_class, replace

CLOCK_SKEW = timedelta(minutes=5)
OK, FAILED, UNVERIFIED, COPY = "ok", "failed", "unverified", "copy"
# its name's time not borne out: last written before it (an older file under a newer name), or a dump
# whose content does not fix it owned by a user who could give it any time (listing.owned_elsewhere)
RENAMED = "renamed"
UNAUTHENTICATED = "unauthenticated"  # verified, but anyone with the public key (or a v1 slot) could have made it
UNAUTHENTICATED_REASON = ("maker not authenticated: anyone with the public key (or, for a v1 file, any slot holder)"
                          " could have made it; use --signer, or --count-unauthenticated")
# encpipe-backup labels every dump it makes (README, "The backup's label"): a genuine unlabelled
# dump is older than the first labelled one of its series; one named later, or at the same second
# (another suffix), is an old backup (another database's, perhaps) copied under a new name.
LATE_UNLABELLED_REASON = "unlabelled, but named after a labelled backup of its series: a copy of an older backup?"
WITHIN_MAX_AGE = "within max-age"  # max-age alone keeps a file: its reason
# a genuine series' archives were made in the order of their names: one whose header's time is earlier than
# that of an archive named before it is an older archive (removed since) put under a newer name, which a
# header's hours-wide window lets through and, in a bucket, no owner tells (listing.owned_elsewhere: local only)
ARCHIVED_EARLIER = ("made before %s (by the custom archives' headers), though named after it: an older archive "
                    "copied under a newer name?")
KEEP, REMOVE, LEAVE = "keep", "remove", "leave"
# a globals file in these states makes a restore refuse its run's dump (65, 67), when it reads it
_REFUSED = {FAILED: "failed verification", UNAUTHENTICATED: "has a maker not authenticated",
            RENAMED: "was last written before the time its name says (not read)"}
# a dump is restored with its run's globals file (encpipe-restore refuses one without it, 66,
# unless --no-globals): the globals series' own rules never take the globals of a kept dump
GLOBALS_OF_A_KEPT_DUMP = "the globals file of a kept dump"
GLOBALS_OF_A_LEFT_DUMP = "the globals file of a dump left in place"
GLOBALS_OF_A_DUMP_NOT_REMOVED = "the globals file of a dump that could not be removed"


def named_late(created, labelled_since):
    """Whether an unlabelled dump named `created` is named no earlier than the first
    labelled dump of its series (`labelled_since`, None when it has none): not counted."""
    return labelled_since is not None and created >= labelled_since


@record_class(frozen=True)
class Policy:
    last: int = None
    daily: int = None
    weekly: int = None
    monthly: int = None
    max_age: timedelta = None

    def empty(self):
        return all(v is None for v in (self.last, self.daily, self.weekly, self.monthly, self.max_age))

    def rules(self):
        return [(name, count) for name, count in (("last", self.last), ("daily", self.daily),
                                                    ("weekly", self.weekly), ("monthly", self.monthly))
                if count is not None]


@record_class(frozen=True)
class Record:
    name: str
    series: tuple  # (database, "plain" | "custom" | "globals")
    created: datetime
    state: str = OK  # OK, FAILED, UNVERIFIED, UNAUTHENTICATED, COPY or RENAMED
    detail: str = None  # why it failed; for a COPY, the other file; for RENAMED, when it was written
    labelled: bool = None  # a dump that verified (OK, or a COPY): whether it is labelled; None: not known
    run: bool = False  # FAILED for its run's globals file (detail says so), not itself
    archived: datetime = None  # a custom archive that verified: its header's time (naive, pg_dump's)
    taken: bool = None  # a globals file that is a COPY: whether it verified as its run's (a restore takes it)


@record_class
class Decision:
    record: Record
    action: str  # KEEP, REMOVE or LEAVE
    reasons: list = Factory(list)


_BUCKETS = {
    "daily": lambda t: (t.year, t.month, t.day),
    "weekly": lambda t: tuple(t.isocalendar())[:2],
    "monthly": lambda t: (t.year, t.month),
}


def plan(records, policy, now):
    """One Decision per record, in series then newest-first order."""
    series = defaultdict(list)
    for record in _runs_judged(records):
        series[record.series].append(record)
    decisions = []
    for key in sorted(series):
        group = sorted(series[key], key=lambda r: (r.created, r.name), reverse=True)
        decisions += _plan_series(group, policy, now)
    # a run (its database and its name's time) whose dump stays, kept or left: a dump left for
    # now (a copy of it planted, a read that failed) counts again later, and a restore refuses
    # it without its globals file (before, only a kept dump's was kept: once the copy was gone,
    # that dump was the newest of its series, and its run's globals file was gone too)
    runs = {}  # a run with a dump kept and another left (its custom archive and its plain dump): kept
    for d in decisions:
        if d.action != REMOVE and d.record.series[1] != "globals":
            run = (d.record.series[0], d.record.created)
            runs[run] = KEEP if KEEP in (d.action, runs.get(run)) else d.action
    for decision in decisions:
        stays = runs.get((decision.record.series[0], decision.record.created))
        if decision.action == REMOVE and decision.record.series[1] == "globals" and stays:
            decision.action = KEEP
            decision.reasons = [GLOBALS_OF_A_KEPT_DUMP if stays == KEEP else GLOBALS_OF_A_LEFT_DUMP]
    return decisions


def _runs_judged(records):
    """`records`, each dump that counts (OK) failed when its run's globals file (same
    database, same time) is there but failed or its maker is not authenticated: a
    restore reads it and refuses the dump (65, 67), unless told --no-globals or given
    another run's; it is not the backup to remove an older run for. One last written
    before its name's time is not read (an older run's renamed, which a restore refuses
    by its label): the dump does not count either; nor when it is a copy (COPY) that does
    not verify as its run's (not `taken`): another run's globals file copied over it made
    both copies, neither read, and its dump counted."""
    broken = {(r.series[0], r.created): r for r in records if r.series[1] == "globals" and
              (r.state in _REFUSED or r.state == COPY and not r.taken)}
    judged = []
    for record in records:
        globals_file = broken.get((record.series[0], record.created))
        if record.series[1] != "globals" and record.state == OK and globals_file:
            why = refused_by_run(globals_file.name, globals_file.state) or (
                f"its run's globals file {globals_file.name} is the same file as {globals_file.detail} and does not"
                " verify as this run's: a restore refuses this dump without it")
            record = replace(record, state=FAILED, detail=why, run=True)
        judged.append(record)
    return judged


def refused_by_run(globals_name, state):
    """Why a dump does not count for its run's globals file `globals_name`, in `state`
    (prune's, for it); None when a restore takes that file."""
    if state not in _REFUSED:
        return None
    return f"its run's globals file {globals_name} {_REFUSED[state]}: a restore refuses this dump without it"


def first_labelled(records, now):
    """When the oldest labelled dump that authenticated (OK, or a COPY prune verified,
    or one whose run's globals file a restore refuses (run): its own label authenticated;
    dated in the past) was made; None if none. Before, a run's globals file tampered
    with let an old unlabelled dump planted under a newer name count as the newest."""
    return min((r.created for r in records
                if (r.state in (OK, COPY) or r.run) and r.labelled and r.created <= now + CLOCK_SKEW), default=None)


def archived_earlier(created, archived, counted):
    """For a custom archive named `created` and made `archived` (its header's time; None:
    not an archive), why it does not count (ARCHIVED_EARLIER) when one of `counted`
    ((name, its name's time, its header's time) of the archives of its series that
    authenticated) was named before it but made after it: of those, the one made last
    (then named last) is said. Else None. Prune, verify and `check --verify` judge so."""
    if archived is None:
        return None
    later = [(made, named, name) for name, named, made in counted
             if made is not None and named < created and made > archived]
    return ARCHIVED_EARLIER % max(later)[2] if later else None


def _archived_earlier(record, group, now):
    """archived_earlier for a record that counts (OK), against those of `group` that
    authenticated (OK, or a COPY prune verified) and are not future-dated: one whose
    run's globals file a restore refuses (run) too, as verify and check judge; its
    header authenticated, and else refusing that globals file let an older archive
    under a newer name count as the newest."""
    if record.state != OK or record.archived is None:  # not an archive: no list made (a series may be long)
        return None
    counted = [(r.name, r.created, r.archived) for r in group
               if (r.state in (OK, COPY) or r.run) and r.created <= now + CLOCK_SKEW]
    return archived_earlier(record.created, record.archived, counted)


def _plan_series(group, policy, now):
    decisions, usable = [], []
    labelled_since = first_labelled(group, now)
    for record in group:
        earlier = _archived_earlier(record, group, now)
        if record.created > now + CLOCK_SKEW:
            decisions.append(Decision(record, LEAVE, ["future-dated: never counted, never removed"]))
        elif record.state == COPY:
            decisions.append(Decision(record, LEAVE, [f"the same file as {record.detail}: a copy, never counted"]))
        elif record.state == RENAMED:
            decisions.append(Decision(record, LEAVE, [f"{record.detail}: never counted"]))
        elif record.state == FAILED:
            decisions.append(Decision(record, LEAVE, [record.detail if record.run else  # no error: not read
                                                      f"failed verification: {record.detail}" if record.detail
                                                      else "not verified"]))
        elif record.state == UNAUTHENTICATED:
            decisions.append(Decision(record, LEAVE, [UNAUTHENTICATED_REASON]))
        elif record.state != OK:
            decisions.append(Decision(record, LEAVE, ["not verified"]))
        elif record.labelled is False and named_late(record.created, labelled_since):
            decisions.append(Decision(record, LEAVE, [LATE_UNLABELLED_REASON]))
        elif earlier:
            decisions.append(Decision(record, LEAVE, [earlier]))
        else:
            usable.append(Decision(record, REMOVE))
    _apply_rules(usable, policy)
    if policy.max_age is not None:
        for decision in usable:  # its age, not now - max_age: the largest max-age is before year 1
            if decision.action == KEEP and now - decision.record.created > policy.max_age:
                decision.action, decision.reasons = REMOVE, ["max-age"]
    if usable and usable[0].action == REMOVE:
        usable[0].action, usable[0].reasons = KEEP, ["newest authenticated"]
    for decision in usable:
        if decision.action == REMOVE and not decision.reasons:
            decision.reasons = ["not kept by the policy"]
    return sorted(decisions + usable, key=lambda d: (d.record.created, d.record.name), reverse=True)


def _apply_rules(usable, policy):
    rules = policy.rules()
    if not rules:  # max-age alone: everything young enough stays, and says so (before, with no reason)
        for decision in usable:
            decision.action, decision.reasons = KEEP, [WITHIN_MAX_AGE]
        return
    left = dict(rules)
    last_bucket = {}
    for index, decision in enumerate(usable):
        for rule, _ in rules:
            if left[rule] <= 0:
                continue
            bucket = index if rule == "last" else _BUCKETS[rule](decision.record.created)
            if rule in last_bucket and last_bucket[rule] == bucket:
                continue
            last_bucket[rule] = bucket
            left[rule] -= 1
            decision.action = KEEP
            decision.reasons.append(rule)
