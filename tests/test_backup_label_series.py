"""An unlabelled dump named later than a labelled one of its series is not counted.

encpipe-backup labels every dump it makes (README, "The backup's label"), so a
genuine unlabelled dump is older than the first labelled one of its series. A
local user who can write the backup directory (no key) copied an OLD unlabelled
backup of database B, made before labels (it authenticates: same key, same
maker), to a new name in database A's series: no label contradicts its name, so
it counted as A's newest, and `encpipe-prune --keep-last 1` removed A's real
newest. prune, verify and check --verify now refuse it (left, 65; failed, 65; a
warning), whatever order the files are listed or read in, locally and remotely.
A series with no labelled dump, and unlabelled dumps older than every labelled
one, count as before. Files sealed by hand here (no PostgreSQL).
"""

import os
from datetime import datetime, timedelta, timezone

import pytest

from dating import at, stamp_at
from test_backup_dir import ENV, run as backups, stamp
from test_backup_label import SQL, _archive, _prefix, _sealed

A = "shop"
REASON = "unlabelled, but named after a labelled backup of its series: a copy of an older backup?"
pytestmark = pytest.mark.usefixtures("dated_from_now")


def dump(hours, labelled, kind="sql", database=A):
    """(name, plaintext) of `database`'s dump dated `hours` ago: labelled as encpipe-backup
    labels it, or as one made before labels (another database's, under this name)."""
    name = f"{database}_{stamp_at(hours)}.{kind}.enc"
    if kind == "dump":
        made = at(hours)
        archive = _archive(database.encode(), made=(made.second, made.minute, made.hour, made.day, made.month - 1,
                                                   made.year - 1900, 0))
        return name, archive if labelled else _archive(database.encode(), 1, 9)  # 1.9: no database in the header
    return name, (_prefix("none", database, stamp_at(hours)) if labelled else b"") + SQL


def put(directory, *dumps):
    directory.mkdir(exist_ok=True)
    for name, plaintext in dumps:
        _sealed(directory, name, plaintext)
    return directory


def left_line(directory, name, hours, series="plain"):
    return {"filename": name, "database": A, "series": series, "created": at(hours).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "bytes": os.path.getsize(directory / name), "reasons": [REASON]}


@pytest.fixture
def attacked(tmp_path):
    """A's backups: unlabelled ones made before labels (6 h, 5 h), labelled ones (3 h,
    2 h), and B's old unlabelled backup copied in under A's name (1 h)."""
    files = [dump(6, False), dump(5, False), dump(3, True), dump(2, True), dump(1, False)]
    return put(tmp_path / "b", *files), [name for name, _ in files]


def test_prune_leaves_an_old_unlabelled_backup_copied_after_a_labelled_one(attacked):
    directory, (u6, u5, l3, l2, planted) = attacked
    code, report, err = backups("prune", "--keep-last", "1", str(directory))
    assert code == 65, err
    assert sorted(os.listdir(directory)) == sorted([l2, planted])  # A's real newest survives
    assert report["left"] == [left_line(directory, planted, 1)]
    assert ([k["filename"] for k in report["kept"]], sorted(r["filename"] for r in report["removed"])) == (
        [l2], sorted([u6, u5, l3]))
    assert report["kept"][0]["reasons"] == ["last"]
    assert err == f"encpipe-prune: warning: left {planted}: {REASON}\n"


def test_verify_fails_an_old_unlabelled_backup_copied_after_a_labelled_one(attacked):
    directory, (u6, u5, l3, l2, planted) = attacked
    code, report, err = backups("verify", str(directory))
    assert code == 65
    results = {r["filename"]: r for r in report["results"]}
    assert (results[planted]["ok"], results[planted]["exit_code"], results[planted]["error_class"],
            results[planted]["error"], results[planted]["label"]) == (False, 65, "invalid_stream", REASON,
                                                                      "unlabelled")
    assert [(n, results[n]["ok"], results[n]["label"]) for n in (u6, u5, l3, l2)] == [
        (u6, True, "unlabelled"), (u5, True, "unlabelled"), (l3, True, "label"), (l2, True, "label")]
    assert (report["verified"], report["failed"]) == (4, 1)
    assert err == f"encpipe-verify: error: {directory / planted}: {REASON}\n"


def test_check_verify_counts_the_labelled_backup_behind_the_copy(attacked):
    directory, (_, _, _, l2, planted) = attacked
    from test_check_verify import check
    assert check("--max-age", "24", "--verify", str(directory)) == (
        1, f"WARNING: {A}: newest backup {l2} is 2.0 h old; newest file {planted} failed authentication: {REASON}\n",
        "")


def test_check_verify_reads_past_a_labelled_dump_of_another_series(tmp_path):
    """Read newest first, a labelled custom archive does not settle an unlabelled plain
    dump named later: only the plain series' labelled dump, read after both, does."""
    (planted, p), (archive, c), (labelled, q) = dump(1, False), dump(1.5, True, "dump"), dump(2, True)
    directory = put(tmp_path / "b", (planted, p), (archive, c), (labelled, q))
    from test_check_verify import check
    assert check("--max-age", "24", "--verify", str(directory)) == (
        1, f"WARNING: {A}: newest backup {archive} is 1.5 h old; newest file {planted} failed authentication: "
           f"{REASON}\n", "")
    code, report, _ = backups("prune", "--keep-last", "1", str(directory))
    assert (code, [line["filename"] for line in report["left"]]) == (65, [planted])
    assert sorted(k["filename"] for k in report["kept"]) == sorted([archive, labelled])


def test_an_archive_counts_as_labelled_and_each_series_is_judged_apart(tmp_path):
    """An unlabelled custom dump named after a custom archive that names its database is
    refused; an unlabelled plain dump is not, while its own series has no labelled dump."""
    files = [dump(3, True, "dump"), dump(1, False, "dump"), dump(2, False), dump(1, False)]
    directory = put(tmp_path / "b", *files)
    (archive, late_custom, plain2, plain1) = [name for name, _ in files]
    code, report, err = backups("prune", "--keep-last", "1", str(directory))
    assert code == 65, err
    assert report["left"] == [left_line(directory, late_custom, 1, "custom")]
    assert sorted(k["filename"] for k in report["kept"]) == sorted([archive, plain1])
    assert [r["filename"] for r in report["removed"]] == [plain2]
    code, report, _ = backups("verify", str(directory))
    assert (code, [r["filename"] for r in report["results"] if r["ok"] is False]) == (65, [late_custom])
    from test_check_verify import check
    assert check("--max-age", "24", "--verify", str(directory)) == (
        1, f"WARNING: {A}: newest backup {plain1} is 1.0 h old; file {late_custom} failed authentication: {REASON}\n",
        "")


def test_unlabelled_dumps_older_than_every_labelled_one_count_as_before(tmp_path):
    files = [dump(9, False), dump(8, False), dump(7, False), dump(2, True), dump(1, True)]
    directory = put(tmp_path / "b", *files)
    u9, u8, u7, l2, l1 = [name for name, _ in files]
    code, report, err = backups("verify", str(directory))
    assert (code, err, report["verified"]) == (0, "", 5)
    code, report, err = backups("prune", "--keep-last", "4", str(directory))
    assert (code, err, report["left"]) == (0, "", [])
    assert (sorted(k["filename"] for k in report["kept"]), [r["filename"] for r in report["removed"]]) == (
        sorted([u8, u7, l2, l1]), [u9])
    assert sorted(os.listdir(directory)) == sorted([u8, u7, l2, l1])


def test_a_series_with_no_labelled_dump_behaves_as_before(tmp_path):
    """Every dump unlabelled (made before labels, or by hand with `encpipe seal`): counted by
    its name, the newest first, by prune, verify and check --verify alike."""
    files = [dump(3, False), dump(2, False), dump(1, False), dump(0.5, True, database="other")]
    directory = put(tmp_path / "b", *files)
    u3, u2, u1, _ = [name for name, _ in files]
    from test_check_verify import check
    assert check("--max-age", "24", "--verify", "--database", A, str(directory))[:2] == (
        0, f"OK: other: newest backup {files[3][0]} is 0.5 h old\nOK: {A}: newest backup {u1} is 1.0 h old\n")
    code, report, err = backups("verify", str(directory))
    assert (code, err, report["verified"]) == (0, "", 4)
    code, report, err = backups("prune", "--keep-last", "1", "--database", A, str(directory))
    assert (code, err, report["left"]) == (0, "", [])
    assert ([k["filename"] for k in report["kept"]], sorted(r["filename"] for r in report["removed"])) == (
        [u1], sorted([u3, u2]))


def test_a_remote_location_refuses_the_copy_too(s3, tmp_path):
    from test_backup_restore import python_env
    from test_remote_listing import upload

    files = [dump(5, False), dump(3, True), dump(2, True), dump(1, False)]
    local = put(tmp_path / "local", *files)
    upload(s3, tmp_path, "labelrule", {name: (local / name).read_bytes() for name, _ in files})
    u5, l3, l2, planted = [name for name, _ in files]
    env = {**python_env(), **s3.env, **ENV}
    where = f"{s3.location}/labelrule"
    code, report, err = backups("verify", where, env=env)
    assert (code, [(r["filename"], r["error"]) for r in report["results"] if r["ok"] is False]) == (
        65, [(planted, REASON)])
    from test_check_verify import check
    assert check("--max-age", "24", "--verify", where, env=env) == (
        1, f"WARNING: {A}: newest backup {l2} is 2.0 h old; newest file {planted} failed authentication: {REASON}\n",
        "")
    code, report, err = backups("prune", "--keep-last", "1", where, env=env)
    assert (code, err) == (65, f"encpipe-prune: warning: left {planted}: {REASON}\n")
    assert report["left"] == [left_line(local, planted, 1)]
    assert ([k["filename"] for k in report["kept"]], sorted(r["filename"] for r in report["removed"])) == (
        [l2], sorted([u5, l3]))
    assert s3.objects("labelrule") == sorted([l2, planted])


def test_the_plan_judges_every_record_of_a_series_whatever_their_order():
    """retention.plan, given the records in any order (prune reads them as listed), leaves
    the unlabelled dump named after a labelled one that counts; a labelled dump that
    failed, or whose maker is not authenticated, or of another series, settles nothing."""
    import random

    from encpipe.backup.retention import FAILED, LEAVE, OK, UNAUTHENTICATED, Policy, Record, plan

    now = datetime(2024, 6, 1, tzinfo=timezone.utc)
    plain, custom = (A, "plain"), (A, "custom")

    def record(hours, state=OK, labelled=False, series=plain):
        return Record(f"{A}_{stamp(now - timedelta(hours=hours))}.{'sql' if series == plain else 'dump'}.enc",
                      series, now - timedelta(hours=hours), state, None, labelled)

    records = [record(9), record(5, labelled=True), record(4), record(3.5, labelled=True), record(3, FAILED, True),
               record(2),
               record(1, UNAUTHENTICATED, True), record(1, labelled=True, series=custom), record(0.5, labelled=None)]
    left = {r.name for r in (records[2], records[5])}
    for seed in range(20):
        shuffled = records[:]
        random.Random(seed).shuffle(shuffled)
        decisions = plan(shuffled, Policy(last=1), now)
        refused = {d.record.name for d in decisions if d.reasons == [REASON]}
        assert refused == left
        assert all(d.action == LEAVE for d in decisions if d.record.name in left)
    unsettled = [record(8, FAILED, True), record(7, UNAUTHENTICATED, True), record(6, labelled=True, series=custom),
                 record(2)]
    assert {(d.record.name, d.action) for d in plan(unsettled, Policy(last=1), now) if d.record.state == OK} == {
        (unsettled[3].name, "keep"), (unsettled[2].name, "keep")}


def test_another_databases_labelled_dump_refuses_nothing(tmp_path):
    """A series is a database's: another database labelled earlier (upgraded first, or
    on another host) leaves this one's later unlabelled dumps counted, in every tool."""
    files = [dump(3, True, database="other"), dump(2, False), dump(1, False)]
    directory = put(tmp_path / "b", *files)
    _, u2, u1 = [name for name, _ in files]
    code, report, err = backups("verify", str(directory))
    assert (code, err, report["verified"], report["failed"]) == (0, "", 3, 0)
    code, report, err = backups("prune", "--keep-last", "1", "--database", A, str(directory))
    assert (code, err, report["left"], [k["filename"] for k in report["kept"]]) == (0, "", [], [u1])
    from test_check_verify import check
    assert check("--max-age", "24", "--verify", "--database", A, str(directory))[:2] == (
        0, f"OK: other: newest backup {files[0][0]} is 3.0 h old\nOK: {A}: newest backup {u1} is 1.0 h old\n")


def test_a_labelled_dump_whose_runs_globals_file_fails_still_dates_its_series_labels(tmp_path):
    """A labelled dump that authenticated but does not count, its run's globals file
    tampered with (a restore refuses it), still shows when its series' labels began:
    before, prune and check --verify then counted an old unlabelled dump planted under
    a newer name as the newest (--keep-last 1 removed the genuine older one)."""
    (old, o), (labelled, q), (planted, p) = dump(6, False), dump(3, True), dump(1, False)
    directory = put(tmp_path / "b", (old, o), (labelled, q), (planted, p))
    (directory / f"{A}_{stamp_at(3)}.globals.sql.enc").write_bytes(b"tampered: not a sealed file")
    from test_check_verify import check
    assert check("--max-age", "24", "--verify", str(directory)) == (
        1, f"WARNING: {A}: newest backup {old} is 6.0 h old; newest file {planted} failed authentication: {REASON}; "
           f"file {labelled} failed authentication: its run's globals file {A}_{stamp_at(3)}.globals.sql.enc failed "
           "verification: a restore refuses this dump without it\n", "")
    code, report, err = backups("prune", "--keep-last", "1", str(directory))
    assert code == 65, err
    assert old in os.listdir(directory) and planted in os.listdir(directory)
    assert left_line(directory, planted, 1) in report["left"]
    assert [k["filename"] for k in report["kept"]] == [old] and report["removed"] == []
