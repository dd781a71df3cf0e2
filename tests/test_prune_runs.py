"""Retention never removes the globals file of a dump it keeps.

encpipe-backup stores each run's dump with its globals file beside it (the
roles, their passwords, the database's owner, ACL and settings), and
encpipe-restore refuses a dump whose run's globals file is not there (66) unless
--no-globals, which recreates none of them. prune counts the globals files as a
series of their own, so its rules chose them apart from the dumps: a database
backed up in both formats (a series each, one globals series), or whose newest
dump failed verification (a writer of one backup file can make it fail), had
the globals file of a dump prune kept removed: `--keep-last 1` left the only
good dump refused by a default restore, restorable with --no-globals (no roles)
or another run's globals file given by hand. A globals file whose run's dump
(same database, same time) is kept is now kept with it. Files sealed by hand
(no PostgreSQL).
"""

import json
import os

import pytest

from cliutil import ok, secret_file
from cliutil import run as encpipe
from dating import at, stamp_at
from test_backup_dir import KEY, LEGACY_AVAILABLE, make_corrupt, run as backups
from test_backup_label import _archive
from test_backup_label_globals import DATABASE, _globals, _sealed

from encpipe.backup import label
from encpipe.backup.retention import UNAUTHENTICATED_REASON

DB = "shop"
REASON = "the globals file of a kept dump"
pytestmark = pytest.mark.usefixtures("dated_from_now")


def plain(d, hours):
    return _sealed(d / f"{DB}_{stamp_at(hours)}.sql.enc", label.prefix("none", DB, stamp_at(hours)) + DATABASE, hours)


def custom(d, hours):
    made = at(hours)
    archive = _archive(DB.encode(), made=(made.second, made.minute, made.hour, made.day, made.month - 1,
                                          made.year - 1900, 0))
    return _sealed(d / f"{DB}_{stamp_at(hours)}.dump.enc", archive, hours)


def globals_of(d, hours):
    with pytest.MonkeyPatch.context() as patch:  # _globals dates from this moment: from the test's own
        patch.setattr("test_backup_label_globals.hours_ago", stamp_at)
        return _globals(d, DB, hours)


def kept(report):
    return {line["filename"]: line["reasons"] for line in report["kept"]}


def test_a_plain_and_a_custom_series_keep_each_kept_dumps_globals(tmp_path):
    d = tmp_path / "b"
    d.mkdir()
    plain_dump, plain_globals = plain(d, 2), globals_of(d, 2)
    archive, archive_globals = custom(d, 1), globals_of(d, 1)
    code, report, err = backups("prune", "--keep-last", "1", str(d))
    assert (code, err) == (0, "")
    assert kept(report) == {plain_dump: ["last"], plain_globals: [REASON], archive: ["last"],
                            archive_globals: ["last"]}
    assert report["removed"] == []
    assert sorted(os.listdir(d)) == sorted([plain_dump, plain_globals, archive, archive_globals])


def test_the_globals_of_the_newest_good_dump_stay_when_a_newer_dump_fails(tmp_path):
    d = tmp_path / "b"
    d.mkdir()
    oldest, oldest_globals = plain(d, 3), globals_of(d, 3)
    good, good_globals = plain(d, 2), globals_of(d, 2)
    broken = make_corrupt(d, f"{DB}_{stamp_at(1)}.sql.enc").name  # a writer of that one file flipped a byte
    newest_globals = globals_of(d, 1)
    code, report, _ = backups("prune", "--keep-last", "1", str(d))
    assert code == 65
    assert kept(report) == {good: ["last"], good_globals: [REASON], newest_globals: ["last"]}
    assert sorted(r["filename"] for r in report["removed"]) == sorted([oldest, oldest_globals])
    assert [line["filename"] for line in report["left"]] == [broken]
    assert sorted(os.listdir(d)) == sorted([good, good_globals, broken, newest_globals])
    dry = backups("prune", "--keep-last", "1", "--dry-run", str(d))[1]  # nothing more to remove
    assert (dry["removed"], kept(dry)) == ([], kept(report))


def test_max_age_never_takes_the_globals_of_the_newest_dump(tmp_path):
    d = tmp_path / "b"
    d.mkdir()
    dump, dump_globals = plain(d, 50), globals_of(d, 50)
    broken, newer_globals = make_corrupt(d, f"{DB}_{stamp_at(30)}.sql.enc").name, globals_of(d, 30)
    code, report, _ = backups("prune", "--max-age", "1", str(d))
    assert code == 65
    assert kept(report) == {dump: ["newest authenticated"], dump_globals: [REASON],
                            newer_globals: ["newest authenticated"]}
    assert (json.dumps(report["removed"]), [line["filename"] for line in report["left"]]) == ("[]", [broken])


def test_a_dump_whose_runs_globals_file_fails_never_counts_for_removing_an_older_run(tmp_path):
    """A restore of a dump reads its run's globals file and refuses the dump when that
    fails (65): a writer of that one file flipped a byte in it, and `--keep-last 1`
    counted its dump as the newest and removed the run before it, the last one a
    restore takes as it is. The dump is now left (65) and the run before it kept."""
    d = tmp_path / "b"
    d.mkdir()
    oldest, oldest_globals = plain(d, 3), globals_of(d, 3)
    good, good_globals = plain(d, 2), globals_of(d, 2)
    newest = plain(d, 1)
    broken = make_corrupt(d, f"{DB}_{stamp_at(1)}.globals.sql.enc").name
    code, report, err = backups("prune", "--keep-last", "1", str(d))
    assert code == 65
    assert kept(report) == {good: ["last"], good_globals: ["last"]}
    assert sorted(r["filename"] for r in report["removed"]) == sorted([oldest, oldest_globals])
    left = {line["filename"]: line["reasons"] for line in report["left"]}
    assert left[newest] == [f"its run's globals file {broken} failed verification: a restore refuses this dump"
                            " without it"]
    assert left[broken][0].startswith("failed verification: ")
    assert sorted(os.listdir(d)) == sorted([good, good_globals, newest, broken])


def test_check_verify_does_not_count_a_dump_whose_runs_globals_file_fails(tmp_path):
    from test_check_verify import check
    d = tmp_path / "b"
    d.mkdir()
    good, _ = plain(d, 2), globals_of(d, 2)
    newest, broken = plain(d, 1), make_corrupt(d, f"{DB}_{stamp_at(1)}.globals.sql.enc").name
    assert check("--max-age", "24", "--verify", str(d)) == (
        1, f"WARNING: {DB}: newest backup {good} is 2.0 h old; newest file {newest} failed authentication: its run's"
           f" globals file {broken} failed verification: a restore refuses this dump without it\n", "")
    os.unlink(d / broken)  # no globals file at all (a run of --no-globals): the dump counts, as before
    assert check("--max-age", "24", "--verify", str(d))[:2] == (0, f"OK: {DB}: newest backup {newest} is 1.0 h old\n")


def test_a_dump_whose_runs_globals_file_has_an_unauthenticated_maker_never_counts(tmp_path):
    """Nor when that globals file authenticates but its maker does not (sealed to the
    x25519 public key, which a writer of the location can do: a restore refuses it,
    67): the dump is left and the run before it kept, not removed."""
    d = tmp_path / "b"
    d.mkdir()
    public = ok(encpipe(["keygen", "--x25519", "-o", str(tmp_path / "x.id")])).decode().strip()
    raw = secret_file(tmp_path, "raw.key", KEY.hex() + "\n")
    good, good_globals = plain(d, 2), globals_of(d, 2)
    newest, planted = plain(d, 1), d / globals_of(d, 1)
    resealed_to(public, planted, raw)
    code, report, _ = backups("prune", "--keep-last", "1", "--key-file", str(raw), "--identity",
                              str(tmp_path / "x.id"), str(d), env={})
    assert code == 65
    assert kept(report) == {good: ["last"], good_globals: ["last"]}
    assert report["removed"] == []
    left = {line["filename"]: line["reasons"] for line in report["left"]}
    assert left == {newest: [f"its run's globals file {planted.name} has a maker not authenticated: a restore"
                             " refuses this dump without it"],
                    planted.name: [UNAUTHENTICATED_REASON]}
    assert sorted(os.listdir(d)) == sorted([good, good_globals, newest, planted.name])


def test_a_dump_whose_runs_globals_file_is_a_copy_of_another_runs_never_counts(tmp_path):
    """A copy is never counted, and was never read either: a writer of the newest run's
    globals file who gave it the bytes of the run before's made both files copies of
    each other, so neither run's dump was refused for its globals file, and `--keep-last
    1` kept the newest dump, whose globals file a restore refuses (another run's), and
    removed the run before, the last one a restore takes as it is. A globals file that
    is a copy is now read: one that does not verify as its run's (its label names
    another) refuses its dump, as check --verify and encpipe-restore do."""
    d = tmp_path / "b"
    d.mkdir()
    oldest, oldest_globals = plain(d, 3), globals_of(d, 3)
    good, good_globals = plain(d, 2), globals_of(d, 2)
    newest, copied = plain(d, 1), globals_of(d, 1)
    (d / copied).write_bytes((d / good_globals).read_bytes())
    code, report, _ = backups("prune", "--keep-last", "1", str(d))
    assert code == 65
    assert kept(report) == {good: ["last"], oldest_globals: ["last"]}
    assert [r["filename"] for r in report["removed"]] == [oldest]
    left = {line["filename"]: line["reasons"] for line in report["left"]}
    assert left == {newest: [f"its run's globals file {copied} is the same file as {good_globals} and does not verify"
                             " as this run's: a restore refuses this dump without it"],
                    copied: [f"the same file as {good_globals}: a copy, never counted"],
                    good_globals: [f"the same file as {copied}: a copy, never counted"]}
    assert sorted(os.listdir(d)) == sorted([good, good_globals, newest, copied, oldest_globals])


def test_a_dump_whose_runs_globals_file_has_a_copy_elsewhere_still_counts(tmp_path):
    """A copy of a run's own globals file kept under another name makes both copies, but
    the file under the run's name still verifies as its run's: a restore takes it, and
    the dump counts."""
    d = tmp_path / "b"
    d.mkdir()
    good, good_globals = plain(d, 2), globals_of(d, 2)
    newest, newest_globals = plain(d, 1), globals_of(d, 1)
    (d / "saved-globals.enc").write_bytes((d / newest_globals).read_bytes())
    code, report, _ = backups("prune", "--keep-last", "1", str(d))
    assert code == 65  # the copy, left
    assert kept(report) == {newest: ["last"], good_globals: ["last"]}
    assert [r["filename"] for r in report["removed"]] == [good]


@pytest.mark.skipif(not LEGACY_AVAILABLE, reason="the legacy reader is not available")
def test_a_file_of_the_previous_tool_under_a_runs_globals_name_fails_and_its_dump_never_counts(tmp_path):
    """The previous tool made no globals file, and a restore opens a run's globals file
    as encpipe's (a file of the previous tool there is `not an encpipe file`, 65). One
    under a globals file's name authenticated with the legacy key, so verify passed it
    and prune counted its run's dump: put over the newest run's globals file, `--keep-last
    1` kept that dump, which a restore refuses, and removed the run before."""
    import io

    from encpipe.legacy import seal_legacy

    d = tmp_path / "b"
    d.mkdir()
    good, good_globals = plain(d, 2), globals_of(d, 2)
    newest, replaced = plain(d, 1), globals_of(d, 1)
    with open(d / replaced, "wb") as dst:
        seal_legacy(io.BytesIO(b"DROP TABLE orders;\n" * 100), dst, KEY)
    why = ("holds a file of the previous tool, which made no globals file (another backup under a globals file's"
           " name?)")
    code, report, err = backups("verify", str(d))
    assert (code, err) == (65, f"encpipe-verify: error: {d / replaced}: {why}\n")
    code, report, _ = backups("prune", "--keep-last", "1", str(d))
    assert code == 65
    assert kept(report) == {good: ["last"], good_globals: ["last"]}
    assert report["removed"] == []
    left = {line["filename"]: line["reasons"] for line in report["left"]}
    assert left == {newest: [f"its run's globals file {replaced} failed verification: a restore refuses this dump"
                             " without it"], replaced: [f"failed verification: {why}"]}


@pytest.mark.skipif(not LEGACY_AVAILABLE, reason="the legacy reader is not available")
def test_a_file_of_the_previous_tool_under_a_custom_archives_name_fails(tmp_path):
    """The previous tool made plain dumps only, and a restore of a `.dump` runs
    pg_restore, which refuses plain SQL: like any file under a custom archive's name
    whose content does not start with PGDMP, verify fails it (it passed, authenticated
    with the legacy key) and prune never counts it."""
    import io

    from encpipe.legacy import seal_legacy

    d = tmp_path / "b"
    d.mkdir()
    dump = plain(d, 2)  # no archive in the custom series: no label dates it
    planted = f"{DB}_{stamp_at(1)}.dump.enc"
    with open(d / planted, "wb") as dst:
        seal_legacy(io.BytesIO(b"DROP TABLE orders;\n" * 100), dst, KEY)
    why = "holds a file of the previous tool, which made plain dumps only: not a custom archive (its name's kind)"
    code, _, err = backups("verify", str(d))
    assert (code, err) == (65, f"encpipe-verify: error: {d / planted}: {why}\n")
    code, report, _ = backups("prune", "--keep-last", "1", str(d))
    assert (code, kept(report)) == (65, {dump: ["last"]})
    assert {line["filename"]: line["reasons"] for line in report["left"]} == {planted: [f"failed verification: {why}"]}


def test_the_globals_of_a_dump_left_for_now_stay(tmp_path):
    """A dump left for a run (a copy of it planted by a writer of the directory, and
    removed again; a read that failed) lost its run's globals file, kept only for a
    dump kept: once the copy was gone, the next prune counted that dump as the newest
    of its series and removed the run before it, and the last run left was one a
    restore refuses (66, its globals file missing), which verify and check took for
    good. Its globals file stays with it."""
    d = tmp_path / "b"
    d.mkdir()
    oldest, oldest_globals = plain(d, 4), globals_of(d, 4)
    archive_old, archive_old_globals = custom(d, 3), globals_of(d, 3)
    good, good_globals = plain(d, 2), globals_of(d, 2)
    archive, archive_globals = custom(d, 1), globals_of(d, 1)
    (d / "junk").write_bytes((d / good).read_bytes())  # a copy: neither counts
    code, report, _ = backups("prune", "--keep-last", "1", str(d))
    assert code == 65
    assert [line["filename"] for line in report["left"]] == [good]
    assert kept(report)[good_globals] == ["the globals file of a dump left in place"]
    assert good_globals in os.listdir(d)
    (d / "junk").unlink()
    code, report, _ = backups("prune", "--keep-last", "1", str(d))
    assert code == 0
    assert kept(report)[good] == ["last"] and kept(report)[good_globals] == [REASON]
    assert sorted(r["filename"] for r in report["removed"]) == sorted([oldest, oldest_globals])
    assert sorted(os.listdir(d)) == sorted([good, good_globals, archive, archive_globals])
    assert archive_old not in os.listdir(d) and archive_old_globals not in os.listdir(d)


def test_a_header_alone_is_no_copy(tmp_path):
    """The first 200 bytes of a backup, under any name, made it a copy (its payload
    salt), never counted: anyone who can read headers could stop every prune (65).
    A copy is a whole file that could be the backup itself."""
    d = tmp_path / "b"
    d.mkdir()
    older, older_globals = plain(d, 2), globals_of(d, 2)
    newest, newest_globals = plain(d, 1), globals_of(d, 1)
    (d / "notes.txt").write_bytes((d / newest).read_bytes()[:200])
    code, report, _ = backups("prune", "--keep-last", "1", str(d))
    assert kept(report) == {newest: ["last"], newest_globals: ["last"]}, report
    assert sorted(r["filename"] for r in report["removed"]) == sorted([older, older_globals])
    assert code == 0


def test_a_dump_that_cannot_be_removed_keeps_its_runs_globals_file(tmp_path, monkeypatch):
    """Globals files were removed first (their series sorts before the dumps'): a dump
    whose removal then failed (a remote's error, an immutable file) stayed without its
    globals file, a run a restore refuses, which verify and check took for good. The
    dumps go first, and a run's globals file stays with a dump that could not go."""
    d = tmp_path / "b"
    d.mkdir()
    oldest, oldest_globals = plain(d, 3), globals_of(d, 3)
    older, older_globals = plain(d, 2), globals_of(d, 2)
    newest, newest_globals = plain(d, 1), globals_of(d, 1)
    _removal_fails(monkeypatch, older)
    code, report, _ = backups("prune", "--keep-last", "1", str(d))
    assert code == 74
    assert sorted(r["filename"] for r in report["removed"]) == sorted([oldest, oldest_globals])
    assert kept(report)[older_globals] == ["the globals file of a dump that could not be removed"]
    assert sorted(os.listdir(d)) == sorted([older, older_globals, newest, newest_globals])


def test_a_removal_that_failed_is_the_status_even_with_a_file_left(tmp_path, monkeypatch):
    """A prune that could not remove a file exits 74, not 65, though a file was left too."""
    d = tmp_path / "b"
    d.mkdir()
    older, older_globals = plain(d, 2), globals_of(d, 2)
    newest, newest_globals = plain(d, 1), globals_of(d, 1)
    bad = f"shop_{stamp_at(3)}.sql.enc"
    make_corrupt(d, bad)
    _removal_fails(monkeypatch, older)
    code, report, _ = backups("prune", "--keep-last", "1", str(d))
    assert code == 74
    assert [line["filename"] for line in report["left"]] == [bad]
    assert [e["filename"] for e in report["errors"]] == [older]
    assert sorted(os.listdir(d)) == sorted([bad, older, older_globals, newest, newest_globals])


def _removal_fails(monkeypatch, name):
    """The store's removal of `name` fails as an immutable file's would (EPERM); the others go."""
    from encpipe.backup import localstore

    real = localstore.Local.remove

    def failing(store, item):
        if item.name == name:
            raise OSError(1, "Operation not permitted")
        return real(store, item)

    monkeypatch.setattr(localstore.Local, "remove", failing)


def resealed_to(public, path, raw):
    """`path` sealed again to the x25519 `public` key, as a writer of the location who
    holds only that key can make it (its maker not authenticated), its time kept."""
    plaintext = ok(encpipe(["open", "--key-file", str(raw)], path.read_bytes()))
    written = os.stat(path)
    path.write_bytes(ok(encpipe(["seal", "--recipient", public], plaintext)))
    os.utime(path, (written.st_atime, written.st_mtime))
