"""Where a label agrees with a name in database and time but the name still lies.

A local user who can write the backup directory (no key) can rename a file, or
put in a copy of an old backup (it authenticates: same key, same maker):

- A plain dump renamed to the custom archive's name of the same database and
  time (`db_T.sql.zst.enc` to `db_T.dump.enc`), or an archive to a plain dump's
  name: its label (an archive's header) names that database and time, so it was
  counted in the other series, and `--keep-last` removed that series' real
  backups. A label is a plain dump's and a header an archive's: verify, prune and
  check --verify refuse one under the other series' name (65).
- An old unlabelled backup put under the name of the first labelled dump of a
  series with another suffix (`db_T.sql.zst.enc` beside `db_T.sql.enc`): a genuine
  unlabelled dump is older than the first labelled one, not of the same second,
  but it was counted, sorted the newer of the two, and `--keep-last 1` removed
  the real, labelled, backup.
- A plain dump with no label sealed under a custom archive's name: it holds no
  archive (not PGDMP first), yet counted as an unlabelled one of that series, its
  newest. verify, prune and check --verify refuse it (65).
- Each labelled dump copied to another name: a copy is never counted, so the
  series looked unlabelled and an old unlabelled backup put under a newer name
  counted again. A labelled copy that authenticates settles it as well.

Files sealed by hand (no PostgreSQL), as in tests/test_backup_label_series.py.
"""

import os

import pytest

from test_backup_dir import ENV, run as backups
from test_backup_label import SQL
from test_backup_label_series import REASON, A, dump, left_line, put
from test_check_verify import check

COPY = ": a copy of another backup put under this name?"
PLAIN_AS_CUSTOM = "holds a plain dump, not a custom archive (its name's kind)" + COPY
CUSTOM_AS_PLAIN = "holds a custom archive, not a plain dump (its name's kind)" + COPY


pytestmark = pytest.mark.usefixtures("dated_from_now")  # dump()'s hours count back from the test's start


def renamed(directory, name, kind):
    """`name` moved to its database's and time's name of another `kind` (what the attacker does)."""
    stem = name.split(".", 1)[0]
    os.rename(directory / name, directory / f"{stem}.{kind}.enc")
    return f"{stem}.{kind}.enc"


def test_plain_dumps_renamed_as_custom_archives_do_not_make_prune_remove_the_archives(tmp_path):
    files = [dump(30, True, "dump"), dump(20, True, "dump"), dump(3, True), dump(2, True), dump(1, True)]
    directory = put(tmp_path / "b", *files)
    c30, c20, p3, p2, p1 = [name for name, _ in files]
    moved = [renamed(directory, p2, "dump"), renamed(directory, p1, "dump")]
    code, report, err = backups("prune", "--keep-last", "2", str(directory))
    assert code == 65, err
    assert sorted(os.listdir(directory)) == sorted([c30, c20, p3, *moved])  # both real archives survive
    assert sorted(k["filename"] for k in report["kept"]) == sorted([c30, c20, p3])
    assert report["removed"] == []
    assert [(line["filename"], line["series"], line["reasons"]) for line in report["left"]] == [
        (name, "custom", [f"failed verification: {PLAIN_AS_CUSTOM}"]) for name in moved]
    assert err == "".join(f"encpipe-prune: warning: left {name}: failed verification: {PLAIN_AS_CUSTOM}\n"
                          for name in moved)


def test_archives_renamed_as_plain_dumps_do_not_make_prune_remove_the_plain_dumps(tmp_path):
    files = [dump(5, True), dump(4, True), dump(2, True, "dump"), dump(1, True, "dump")]
    directory = put(tmp_path / "b", *files)
    p5, p4, c2, c1 = [name for name, _ in files]
    moved = [renamed(directory, c2, "sql.zst"), renamed(directory, c1, "sql.gz")]
    code, report, err = backups("prune", "--keep-last", "2", str(directory))
    assert code == 65, err
    assert sorted(os.listdir(directory)) == sorted([p5, p4, *moved])
    assert (sorted(k["filename"] for k in report["kept"]), report["removed"]) == (sorted([p5, p4]), [])
    assert [(line["filename"], line["reasons"]) for line in report["left"]] == [
        (name, [f"failed verification: {CUSTOM_AS_PLAIN}"]) for name in sorted(moved)]


@pytest.mark.parametrize("kind, plaintext_kind, why", [("dump", "sql", PLAIN_AS_CUSTOM),
                                                       ("sql", "dump", CUSTOM_AS_PLAIN)])
def test_verify_and_check_refuse_a_dump_under_the_other_series_name(tmp_path, kind, plaintext_kind, why):
    (name, plaintext), (real, real_plaintext) = dump(1, True, plaintext_kind), dump(3, True, kind)
    directory = put(tmp_path / "b", (name, plaintext), (real, real_plaintext))
    moved = renamed(directory, name, kind)
    code, report, err = backups("verify", str(directory))
    results = {r["filename"]: r for r in report["results"]}
    assert code == 65
    assert (results[moved]["ok"], results[moved]["exit_code"], results[moved]["error_class"],
            results[moved]["error"], results[moved]["label"]) == (False, 65, "invalid_stream", why, None)
    assert (results[real]["ok"], report["verified"], report["failed"]) == (True, 1, 1)
    assert err == f"encpipe-verify: error: {directory / moved}: {why}\n"
    assert check("--max-age", "24", "--verify", str(directory)) == (
        1, f"WARNING: {A}: newest backup {real} is 3.0 h old; newest file {moved} failed authentication: {why}\n",
        "")


def test_an_unlabelled_copy_of_the_same_second_as_the_first_labelled_dump_is_not_counted(tmp_path):
    """The first labelled dump is `.sql` (--compress none); the copy, `.sql.zst`, sorted the newer."""
    files = [dump(5, False), dump(1, True), dump(1, False, "sql.zst")]
    directory = put(tmp_path / "b", *files)
    u5, l1, planted = [name for name, _ in files]
    code, report, err = backups("prune", "--keep-last", "1", str(directory))
    assert code == 65, err
    assert sorted(os.listdir(directory)) == sorted([l1, planted])  # the real newest survives
    assert ([(k["filename"], k["reasons"]) for k in report["kept"]], [r["filename"] for r in report["removed"]]) == (
        [(l1, ["last"])], [u5])
    assert report["left"] == [left_line(directory, planted, 1)]
    assert err == f"encpipe-prune: warning: left {planted}: {REASON}\n"
    code, report, err = backups("verify", str(directory))
    assert (code, [(r["filename"], r["exit_code"], r["error"]) for r in report["results"] if not r["ok"]]) == (
        65, [(planted, 65, REASON)])
    assert err == f"encpipe-verify: error: {directory / planted}: {REASON}\n"


def test_check_verify_does_not_count_an_unlabelled_copy_of_the_same_second(tmp_path):
    """Read first (newest first, then by name), the copy was counted as the newest backup."""
    files = [dump(5, False), dump(1, True, "sql.zst"), dump(1, False)]
    directory = put(tmp_path / "b", *files)
    _, l1, planted = [name for name, _ in files]
    assert check("--max-age", "24", "--verify", str(directory)) == (
        1, f"WARNING: {A}: newest backup {l1} is 1.0 h old; file {planted} failed authentication: {REASON}\n", "")


def test_labelled_dumps_copied_elsewhere_still_settle_an_unlabelled_backup_named_later(tmp_path):
    """Each labelled dump copied to another name (a copy is never counted) made the series
    look unlabelled: the old unlabelled backup put under a newer name counted as its
    newest, `--keep-last 1` removed the real unlabelled ones, and check called it the newest."""
    files = [dump(6, False), dump(5, False), dump(3, True), dump(2, True), dump(1, False)]
    directory = put(tmp_path / "b", *files)
    u6, u5, l3, l2, planted = [name for name, _ in files]
    for number, name in enumerate((l3, l2)):
        (directory / f"copy{number}").write_bytes((directory / name).read_bytes())
    code, report, err = backups("prune", "--keep-last", "1", str(directory))
    assert code == 65, err
    assert sorted(os.listdir(directory)) == sorted(["copy0", "copy1", u5, l3, l2, planted])
    assert ([k["filename"] for k in report["kept"]], [r["filename"] for r in report["removed"]]) == ([u5], [u6])
    assert [(line["filename"], line["reasons"]) for line in report["left"]] == [
        (l3, ["the same file as copy0: a copy, never counted"]), (l2, ["the same file as copy1: a copy, never counted"]),
        (planted, [REASON])]
    assert err.splitlines()[-1] == f"encpipe-prune: warning: left {planted}: {REASON}"
    assert check("--max-age", "24", "--verify", str(directory)) == (
        1, f"WARNING: {A}: newest backup {u5} is 5.0 h old; newest file {planted} failed authentication: {REASON}\n",
        "")


def test_labelled_dumps_copied_elsewhere_whose_runs_globals_fail_still_settle_a_later_unlabelled_one(tmp_path):
    """Both of the above at once: each labelled dump copied to another name, and its run's
    globals file tampered with (a bucket's writer can do both, and plant the old unlabelled
    backup under a newer name). prune left the planted file (a labelled copy shows when the
    series' labels began), but check --verify read a copy only to settle it when it counted
    whole, not when its run's globals file alone refused it: it called the planted file the
    newest backup, OK, exit 0, while the newest one it could count was 30 h old."""
    from dating import stamp_at

    files = [dump(30, False), dump(28, True), dump(27, True), dump(1, False)]
    directory = put(tmp_path / "b", *files)
    u30, l28, l27, planted = [name for name, _ in files]
    for number, (name, hours) in enumerate(((l28, 28), (l27, 27))):
        (directory / f"copy{number}").write_bytes((directory / name).read_bytes())
        (directory / f"{A}_{stamp_at(hours)}.globals.sql.enc").write_bytes(b"tampered: not a sealed file")
    code, report, err = backups("prune", "--keep-last", "1", "--dry-run", str(directory))
    assert code == 65, err
    assert [k["filename"] for k in report["kept"]] == [u30]
    assert (planted, [REASON]) in [(line["filename"], line["reasons"]) for line in report["left"]]
    code, text, _ = check("--max-age", "24", "--verify", str(directory))
    assert code == 2, text
    assert text.startswith(f"CRITICAL: {A}: newest backup {u30} is 30.0 h old, over --max-age 24 h; "
                           f"newest file {planted} failed authentication: {REASON}")


def test_a_bucket_writer_cannot_make_check_count_an_old_unlabelled_dump_by_copies_and_tampered_globals(s3, tmp_path):
    """The same in a bucket, whose writer needs no key for any of it (an object has no
    owner, no modification time that tells): check --verify said OK, exit 0."""
    from dating import stamp_at
    from test_backup_restore import python_env
    from test_remote_listing import upload

    files = [dump(30, False), dump(28, True), dump(1, False)]
    local = put(tmp_path / "local", *files)
    u30, l28, planted = [name for name, _ in files]
    objects = {name: (local / name).read_bytes() for name, _ in files}
    objects.update({"copy0": objects[l28], f"{A}_{stamp_at(28)}.globals.sql.enc": b"tampered: not a sealed file"})
    upload(s3, tmp_path, "copiedlabels", objects)
    where, env = f"{s3.location}/copiedlabels", {**python_env(), **s3.env, **ENV}
    assert check("--max-age", "24", "--verify", where, env=env) == (
        2, f"CRITICAL: {A}: newest backup {u30} is 30.0 h old, over --max-age 24 h; newest file {planted} failed "
           f"authentication: {REASON}\n", "")
    code, report, err = backups("prune", "--keep-last", "1", "--dry-run", where, env=env)
    assert code == 65, err
    assert [k["filename"] for k in report["kept"]] == [u30]


# --- a plain dump with no label under a custom archive's name ---------------------------

NO_ARCHIVE = "holds no custom archive (its name's kind): it does not start with PGDMP" + COPY


def _plain_as_custom(tmp_path):
    """Two custom archives of a header too old to name its database (unlabelled, so a
    series with no labelled dump: every file counts by its name), and a plain SQL dump,
    unlabelled, sealed under the newest custom archive's name. It counted as that
    series' newest archive, and --keep-last 1 removed both real ones."""
    old, older = dump(20, False, "dump"), dump(30, False, "dump")
    planted = (dump(1, False, "dump")[0], SQL)
    return put(tmp_path / "b", older, old, planted), older[0], old[0], planted[0]


def test_prune_leaves_a_plain_dump_under_a_custom_archives_name_and_keeps_the_archive(tmp_path):
    directory, older, old, planted = _plain_as_custom(tmp_path)
    code, report, err = backups("prune", "--keep-last", "1", str(directory))
    assert code == 65, err
    assert [k["filename"] for k in report["kept"]] == [old]
    assert [r["filename"] for r in report["removed"]] == [older]
    assert sorted(os.listdir(directory)) == sorted([old, planted])
    assert [(line["filename"], line["series"], line["reasons"]) for line in report["left"]] == [
        (planted, "custom", [f"failed verification: {NO_ARCHIVE}"])]
    assert err == f"encpipe-prune: warning: left {planted}: failed verification: {NO_ARCHIVE}\n"


def test_verify_and_check_refuse_a_plain_dump_under_a_custom_archives_name(tmp_path):
    directory, older, old, planted = _plain_as_custom(tmp_path)
    code, report, err = backups("verify", str(directory))
    results = {r["filename"]: r for r in report["results"]}
    assert (code, report["verified"], report["failed"]) == (65, 2, 1)
    assert (results[planted]["ok"], results[planted]["exit_code"], results[planted]["error_class"],
            results[planted]["error"], results[planted]["label"]) == (False, 65, "invalid_stream", NO_ARCHIVE, None)
    assert results[old]["label"] == results[older]["label"] == "unlabelled"
    assert err == f"encpipe-verify: error: {directory / planted}: {NO_ARCHIVE}\n"
    assert check("--max-age", "24", "--verify", str(directory)) == (
        1, f"WARNING: {A}: newest backup {old} is 20.0 h old; newest file {planted} failed authentication: "
           f"{NO_ARCHIVE}\n", "")
