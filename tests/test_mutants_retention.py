"""The guards of retention, prune, removal and verify, each broken by hand once (a
condition dropped, a comparison flipped, a bucket changed) with no test failing: the
tests that now see each. retention.plan is called as prune calls it, on records."""

import os
from datetime import datetime, timedelta, timezone

import pytest

from encpipe.backup.retention import (FAILED, KEEP, LEAVE, REMOVE, UNAUTHENTICATED,
                                      UNAUTHENTICATED_REASON, Policy, Record, plan)

from cliutil import ok, secret_file
from cliutil import run as encpipe
from test_backup_dir import KEY, make_corrupt, make_valid, run, stamp
from test_backup_label_globals import DATABASE, _sealed
from test_prune_runs import DB, globals_of, plain, resealed_to

START = datetime(2023, 1, 1, tzinfo=timezone.utc)


def _decided(records, policy, now):
    return {d.record.name: (d.action, d.reasons) for d in plan(records, policy, now)}


def test_daily_days_carry_their_year():
    """--keep-daily buckets by date with its year: March 10th of 2023 and of 2024 are two days."""
    def at(*date):
        return datetime(*date, 12, tzinfo=timezone.utc)

    records = [Record("2024", ("db", "plain"), at(2024, 3, 10)), Record("2023", ("db", "plain"), at(2023, 3, 10))]
    assert _decided(records, Policy(daily=2), at(2024, 3, 11)) == {"2024": (KEEP, ["daily"]),
                                                                   "2023": (KEEP, ["daily"])}


def test_a_backup_the_rules_do_not_keep_goes_as_not_kept_even_when_older_than_max_age():
    """A backup no rule kept goes as `not kept by the policy`, not `max-age`, however old it is."""
    now = START + timedelta(days=10)
    records = [Record("new", ("db", "plain"), now - timedelta(days=1)),
               Record("kept", ("db", "plain"), now - timedelta(days=5)),
               Record("old", ("db", "plain"), now - timedelta(days=6))]
    assert _decided(records, Policy(last=2, max_age=timedelta(days=3)), now) == {
        "new": (KEEP, ["last"]), "kept": (REMOVE, ["max-age"]), "old": (REMOVE, ["not kept by the policy"])}


def test_an_unauthenticated_labelled_dump_whose_runs_globals_file_fails_dates_no_label():
    """An unauthenticated labelled dump whose run's globals file fails never dates its series' labels."""
    now = START + timedelta(days=10)
    at = [START + timedelta(days=n) for n in range(3)]
    records = [Record("shop_0.sql.enc", ("shop", "plain"), at[0], labelled=False),
               Record("shop_1.sql.enc", ("shop", "plain"), at[1], UNAUTHENTICATED, labelled=True),
               Record("shop_1.globals.sql.enc", ("shop", "globals"), at[1], FAILED, "truncated"),
               Record("shop_2.sql.enc", ("shop", "plain"), at[2], labelled=False)]
    decided = _decided(records, Policy(last=1), now)
    assert decided["shop_2.sql.enc"] == (KEEP, ["last"])
    assert decided["shop_1.sql.enc"] == (LEAVE, [UNAUTHENTICATED_REASON])
    assert decided["shop_0.sql.enc"] == (REMOVE, ["not kept by the policy"])


@pytest.mark.usefixtures("dated_from_now")
def test_a_runs_globals_file_that_is_a_copy_whose_maker_is_not_authenticated_refuses_its_dump(tmp_path):
    """A run's globals file that is a copy, its maker not authenticated, leaves its dump (never counted)."""
    d = tmp_path / "b"
    d.mkdir()
    public = ok(encpipe(["keygen", "--x25519", "-o", str(tmp_path / "x.id")])).decode().strip()
    raw = secret_file(tmp_path, "raw.key", KEY.hex() + "\n")
    good, good_globals = plain(d, 2), globals_of(d, 2)
    newest, planted = plain(d, 1), d / globals_of(d, 1)
    resealed_to(public, planted, raw)
    (d / "saved-globals.enc").write_bytes(planted.read_bytes())
    code, report, _ = run("prune", "--keep-last", "1", "--key-file", str(raw), "--identity",
                          str(tmp_path / "x.id"), str(d), env={})
    assert code == 65
    assert {line["filename"]: line["reasons"] for line in report["kept"]} == {good: ["last"], good_globals: ["last"]}
    assert report["removed"] == []
    left = {line["filename"]: line["reasons"] for line in report["left"]}
    assert left[newest] == [f"its run's globals file {planted.name} is the same file as saved-globals.enc and does"
                            " not verify as this run's: a restore refuses this dump without it"]
    assert sorted(os.listdir(d)) == sorted([good, good_globals, newest, planted.name, "saved-globals.enc"])


@pytest.mark.usefixtures("dated_from_now")
def test_a_copy_of_a_labelled_dump_whose_maker_is_not_authenticated_dates_no_label(tmp_path):
    """A copy of a labelled dump whose maker is not authenticated never dates its series' labels."""
    from dating import stamp_at
    from encpipe.backup import label

    d = tmp_path / "b"
    d.mkdir()
    public = ok(encpipe(["keygen", "--x25519", "-o", str(tmp_path / "x.id")])).decode().strip()
    raw = secret_file(tmp_path, "raw.key", KEY.hex() + "\n")
    older = _sealed(d / f"{DB}_{stamp_at(3)}.sql.enc", DATABASE, 3)  # made before labels
    newest = _sealed(d / f"{DB}_{stamp_at(1)}.sql.enc", DATABASE, 1)
    planted = d / _sealed(d / f"{DB}_{stamp_at(2)}.sql.enc", label.prefix("none", DB, stamp_at(2)) + DATABASE, 2)
    resealed_to(public, planted, raw)
    (d / "junk").write_bytes(planted.read_bytes())
    code, report, _ = run("prune", "--keep-last", "1", "--key-file", str(raw), "--identity",
                          str(tmp_path / "x.id"), str(d), env={})
    assert code == 65
    assert {line["filename"]: line["reasons"] for line in report["kept"]} == {newest: ["last"]}
    assert [line["filename"] for line in report["removed"]] == [older]
    assert [line["filename"] for line in report["left"]] == [planted.name]


def _dir_with_two_backups(tmp_path):
    d = tmp_path / "b"
    d.mkdir(mode=0o700)
    newest, old = (f"shop_{stamp(START + timedelta(days=n))}.sql.enc" for n in (2, 1))
    for name in (newest, old):
        make_valid(d, name)
    return d, newest, old


def test_a_prune_never_empties_a_subdirectory_that_is_no_hold_directory(tmp_path):
    """A prune never moves into DIR the files of a subdirectory not named `.encpipe-removing.*`."""
    d, newest, old = _dir_with_two_backups(tmp_path)
    own = d / "private"
    own.mkdir(mode=0o700)
    saved = f"shop_{stamp(START)}.sql.enc"
    make_valid(own, saved)
    code, report, err = run("prune", "--keep-last", "1", str(d))
    assert (code, err) == (0, "")
    assert [r["filename"] for r in report["removed"]] == [old]
    assert sorted(p.name for p in d.iterdir()) == sorted([newest, "private"])
    assert [p.name for p in own.iterdir()] == [saved]


@pytest.mark.parametrize("uid, mode", [(None, 0o750), (65534, 0o700)])
def test_a_hold_directory_another_could_have_written_is_never_emptied(tmp_path, uid, mode):
    """A hold directory not the caller's, or writable by others, is never emptied into DIR."""
    from encpipe.backup.removal import HOLD_PREFIX

    d, newest, old = _dir_with_two_backups(tmp_path)
    hold = d / (HOLD_PREFIX + "0123456789abcdef")
    hold.mkdir()
    planted = f"shop_{stamp(START)}.sql.enc"
    make_valid(hold, planted)
    os.chmod(hold, mode)
    if uid is not None:
        os.chown(hold, uid, uid)
    code, report, err = run("prune", "--keep-last", "1", str(d))
    assert (code, err) == (0, "")
    assert [r["filename"] for r in report["removed"]] == [old]
    assert sorted(p.name for p in d.iterdir()) == sorted([newest, hold.name])
    assert [p.name for p in hold.iterdir()] == [planted]


def test_a_file_not_verified_never_counts_even_with_count_unauthenticated(tmp_path, monkeypatch):
    """A backup-named file not verified (`ok` null) never counts, even with --count-unauthenticated."""
    import random

    from encpipe.backup import verify

    monkeypatch.setattr(verify.KeyRing, "legacy", lambda self: None)  # as when encpipe.legacy is absent
    d, newest, old = _dir_with_two_backups(tmp_path)
    unread = f"shop_{stamp(START + timedelta(days=3))}.sql.enc"
    (d / unread).write_bytes(random.Random(2).randbytes(300))
    code, report, _ = run("prune", "--keep-last", "1", "--count-unauthenticated", str(d))
    assert code == 65
    assert [(r["filename"], r["reasons"]) for r in report["kept"]] == [(newest, ["last"])]
    assert [r["filename"] for r in report["removed"]] == [old]
    assert [r["filename"] for r in report["left"]] == [unread]
    assert sorted(p.name for p in d.iterdir()) == sorted([newest, unread])


def test_verify_judges_an_archive_only_against_archives_whose_maker_is_authenticated():
    """verify fails an archive as `made before` another only if that other's maker is authenticated."""
    from encpipe.backup.listing import Entry
    from encpipe.backup.verify import Kept, refuse_archived_earlier

    def entry(name, created, archived):
        return Entry(name, name, database="shop", dump_format="custom", created=created,
                     archived=archived.replace(tzinfo=None))

    def result(name, authenticated):
        return Kept({"filename": name, "path": name, "status": "sealed", "ok": True, "plaintext_bytes": 10,
                     "chunks": 1, "error": None, "exit_code": None, "error_class": None, "note": None,
                     "sender_authenticated": authenticated, "label": "archive"})

    planted = entry("shop_a.dump.enc", START, START + timedelta(hours=5))
    genuine = entry("shop_b.dump.enc", START + timedelta(hours=2), START + timedelta(hours=2))
    found = refuse_archived_earlier([planted, genuine], [result(planted.filename, False),
                                                         result(genuine.filename, True)])
    assert [r["ok"] for r in found] == [True, True]
    found = refuse_archived_earlier([planted, genuine], [result(planted.filename, True),
                                                         result(genuine.filename, True)])
    assert [r["ok"] for r in found] == [True, False]  # the same, its maker authenticated: the genuine one fails


def test_verify_still_fails_a_file_that_failed_authentication_and_is_gone_since(tmp_path, monkeypatch):
    """Only a file unreadable (66) because it is gone becomes a note: one read and refused (65) stays a failure."""
    from encpipe.backup import verifycmd

    d, newest, old = _dir_with_two_backups(tmp_path)
    bad = f"shop_{stamp(START)}.sql.enc"
    make_corrupt(d, bad)
    real = verifycmd.verify_entry

    def then_removed(store, entry, *args, **kwargs):
        result = real(store, entry, *args, **kwargs)
        if entry.filename == bad:
            (d / bad).unlink()  # an operator, meanwhile
        return result

    monkeypatch.setattr(verifycmd, "verify_entry", then_removed)
    code, report, err = run("verify", str(d))
    assert code == 65
    assert (report["verified"], report["failed"], report["not_verified"]) == (2, 1, 0)
    assert [r["filename"] for r in report["results"] if r["ok"] is False] == [bad]
    assert err.startswith(f"encpipe-verify: error: {d / bad}: ")


def test_prune_reads_and_counts_a_backup_dated_exactly_five_minutes_ahead(tmp_path, monkeypatch):
    """prune's own clock-skew bound: a file named exactly 5 minutes ahead is read and counts (kept, the newest)."""
    from encpipe.backup import cli

    now = START + timedelta(days=10)

    class Clock(datetime):
        @classmethod
        def now(cls, tz=None):
            return now

    monkeypatch.setattr(cli, "datetime", Clock)
    d, newest, old = _dir_with_two_backups(tmp_path)
    skewed = f"shop_{stamp(now + timedelta(minutes=5))}.sql.enc"
    make_valid(d, skewed)
    code, report, _ = run("prune", "--keep-last", "1", str(d))
    assert code == 0
    assert [(r["filename"], r["reasons"]) for r in report["kept"]] == [(skewed, ["last"])]
    assert sorted(r["filename"] for r in report["removed"]) == sorted([newest, old])


def test_the_globals_file_of_a_run_with_one_dump_kept_and_another_left_is_a_kept_dumps():
    """A run whose custom archive is kept and whose plain dump is left: its globals file is a kept dump's."""
    now = START + timedelta(days=10)
    made = now - timedelta(days=2)
    records = [Record("shop_T.dump.enc", ("shop", "custom"), made),
               Record("shop_T.sql.enc", ("shop", "plain"), made, FAILED, "truncated"),
               Record("shop_T.globals.sql.enc", ("shop", "globals"), made),
               Record("shop_U.globals.sql.enc", ("shop", "globals"), made + timedelta(days=1))]
    decided = _decided(records, Policy(last=1), now)
    assert decided["shop_T.globals.sql.enc"] == (KEEP, ["the globals file of a kept dump"]), decided
    assert decided["shop_T.dump.enc"][0] == KEEP and decided["shop_T.sql.enc"][0] == LEAVE, decided


def test_a_file_this_encpipe_cannot_read_is_left_as_not_verified(tmp_path, monkeypatch):
    """A file taken for the previous tool's, with that format unreadable here: left, `not verified` (not `None`)."""
    from encpipe.backup import verify

    monkeypatch.setattr(verify.KeyRing, "legacy", lambda self: None)  # as an encpipe without encpipe.legacy
    make_valid(tmp_path, "shop_20230101T000000Z.sql.enc")
    (tmp_path / "shop_20230102T000000Z.sql.enc").write_bytes(bytes(range(256)) + b"\x01" * 44)
    code, report, err = run("prune", "--keep-last", "1", str(tmp_path))
    assert (code, err) == (65, "encpipe-prune: warning: left shop_20230102T000000Z.sql.enc: not verified\n"), err
    [left] = report["left"]
    assert (left["filename"], left["reasons"]) == ("shop_20230102T000000Z.sql.enc", ["not verified"]), report
