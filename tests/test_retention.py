"""Retention that fails safe: the attacks of a directory an attacker can write
to, restic forget's tiers over 400 synthetic days, and verify's verdict on
emptied and overwritten backups."""

import io
import os
import random
from datetime import datetime, timedelta, timezone

import pytest

from encpipe.backup.retention import (ARCHIVED_EARLIER, FAILED, KEEP, LEAVE, OK, REMOVE, UNAUTHENTICATED,
                                      UNAUTHENTICATED_REASON, Policy, Record, archived_earlier, plan)
from encpipe import RawKey, seal
from test_backup_dir import KEY, make_valid, names, run, sealed_bytes, stamp, write
from test_backup_dir_swaps import GLOBALS

START = datetime(2023, 1, 1, tzinfo=timezone.utc)


def backups(directory, db, moments, ext="sql"):
    made = []
    for moment in moments:
        made.append(f"{db}_{stamp(moment)}.{ext}.enc")
        if ext == "globals.sql":  # what a globals file holds: pg_dumpall's output (verify checks it starts so)
            out = io.BytesIO()
            seal(io.BytesIO(GLOBALS), out, [RawKey(KEY)])
            write(directory, made[-1], out.getvalue())
        else:
            make_valid(directory, made[-1])
    return made


# --- the attacks -------------------------------------------------------------


def test_a_truncated_newest_copy_never_lets_prune_remove_the_good_ones(tmp_path):
    good = backups(tmp_path, "shop", [START + timedelta(days=i) for i in range(11)])
    data, header = sealed_bytes()
    # Cut at a chunk boundary: two whole chunks, a length a complete stream can
    # have, so the header check passes; only authentication sees the missing end.
    write(tmp_path, f"shop_{stamp(START + timedelta(days=20))}.sql.enc", data[: header + 2 * (16384 + 16)])
    code, report, err = run("prune", str(tmp_path), "--keep", "1")
    assert code == 65
    assert [k["filename"] for k in report["kept"]] == [good[-1]]
    assert [r["filename"] for r in report["removed"]] == good[:-1]
    assert report["left"][0]["reasons"][0].startswith("failed verification:")
    assert sorted(names(tmp_path)) == sorted([good[-1], report["left"][0]["filename"]])
    assert "encpipe-prune: warning: left shop_20230121T000000Z.sql.enc: failed verification" in err


def test_an_archive_named_later_but_made_before_one_whose_run_is_refused_never_counts():
    """An archive whose run's globals file fails is not the backup to keep, but its header
    still authenticated: an older archive put under a newer name is judged against it, as
    verify and check --verify judge. Before, prune compared it only with the runs that
    counted, so flipping a byte of the newest run's globals file and uploading an old
    archive under a newer name made --keep-last 1 keep that one and remove the run
    before, the last one a restore takes as it is."""
    now = START + timedelta(days=3)
    at = [START + timedelta(days=n) for n in range(3)]
    records = [Record("shop_a.dump.enc", ("shop", "custom"), at[0], archived=at[0].replace(tzinfo=None)),
               Record("shop_b.dump.enc", ("shop", "custom"), at[1], archived=at[1].replace(tzinfo=None)),
               Record("shop_b.globals.sql.enc", ("shop", "globals"), at[1], FAILED, "tampered"),
               Record("shop_old.dump.enc", ("shop", "custom"), at[2],
                      archived=(at[0] + timedelta(hours=1)).replace(tzinfo=None))]
    decided = {d.record.name: (d.action, d.reasons) for d in plan(records, Policy(last=1), now)}
    assert decided["shop_old.dump.enc"] == (LEAVE, [ARCHIVED_EARLIER % "shop_b.dump.enc"])
    assert decided["shop_a.dump.enc"] == (KEEP, ["last"])
    assert decided["shop_b.dump.enc"][0] == LEAVE


def test_an_archive_is_judged_against_every_archive_of_its_series_named_before_it():
    """Not only the nearest (itself, here, an older archive planted under a newer name):
    prune, verify and check --verify all judge by retention.archived_earlier."""
    at = [START + timedelta(hours=n) for n in range(7)]
    counted = [("a", at[0], at[0]), ("b", at[3], at[3]), ("c", at[4], at[1]), ("d", at[4], at[3])]
    assert archived_earlier(at[5], at[2], counted) == ARCHIVED_EARLIER % "d"  # made last, then named last
    assert archived_earlier(at[5], at[3], counted) is None
    assert archived_earlier(at[4], at[2], counted) == ARCHIVED_EARLIER % "b"  # named at the same time: not before
    assert archived_earlier(at[5], None, counted) is None  # not an archive


def test_future_dated_fakes_sealed_with_other_keys_never_count(tmp_path):
    good = backups(tmp_path, "shop", [START + timedelta(days=i) for i in range(5)])
    fakes = [f"shop_2999010{i}T000000Z.sql.enc" for i in (1, 2, 3)]
    for name in fakes:
        make_valid(tmp_path, name, key=os.urandom(32))
    before = names(tmp_path)
    code, report, err = run("prune", str(tmp_path), "--keep", "3")
    assert code == 65
    assert [k["filename"] for k in report["kept"]] == good[2:]
    assert [r["filename"] for r in report["removed"]] == good[:2]
    assert [r["filename"] for r in report["left"]] == fakes
    assert all(r["reasons"] == ["future-dated: never counted, never removed"] for r in report["left"])
    assert set(names(tmp_path)) == set(before) - set(good[:2])
    # Fakes dated in the past, sealed with another key, fail verification: also left.
    past_fake = f"shop_{stamp(START + timedelta(days=30))}.sql.enc"
    make_valid(tmp_path, past_fake, key=os.urandom(32))
    code, report, _ = run("prune", str(tmp_path), "--keep", "1")
    assert [k["filename"] for k in report["kept"]] == [good[-1]]
    assert {r["filename"]: r["reasons"][0] for r in report["left"]}[past_fake] == (
        "failed verification: no supplied key opens this file")


def test_prune_without_a_key_removes_nothing_and_says_why(tmp_path):
    backups(tmp_path, "shop", [START + timedelta(days=i) for i in range(5)])
    before = names(tmp_path)
    code, report, err = run("prune", str(tmp_path), "--keep", "1", env={})
    assert (code, report) == (78, None)
    assert err.startswith("encpipe-prune: error: no key configured: prune removes nothing it has not authenticated")
    assert names(tmp_path) == before


def test_two_databases_and_three_series_are_pruned_apart(tmp_path):
    days = [START + timedelta(days=i) for i in range(4)]
    shop = backups(tmp_path, "shop", days)
    shop_custom = backups(tmp_path, "shop", days, ext="dump")
    shop_globals = backups(tmp_path, "shop", days, ext="globals.sql")
    shop_zst = backups(tmp_path, "shop", [START + timedelta(days=5)], ext="sql.zst")
    crm = backups(tmp_path, "crm", days)
    code, report, _ = run("prune", str(tmp_path), "--keep-last", "2", "--database", "shop")
    assert code == 0
    kept = sorted(k["filename"] for k in report["kept"])
    # sql and sql.zst are one (plain) series; dump and globals.sql each their own.
    assert kept == sorted([shop[-1], *shop_zst, *shop_custom[-2:], *shop_globals[-2:]])
    assert set(crm) <= set(names(tmp_path))
    assert {(k["database"], k["series"]) for k in report["kept"]} == {
        ("shop", "plain"), ("shop", "custom"), ("shop", "globals")}


# --- restic forget's tiers ---------------------------------------------------


def synthetic_history(seed=13, days=400):
    """Backups at random times: some days none, some several."""
    rng, moments = random.Random(seed), []
    for day in range(days):
        for _ in range(rng.choice([0, 1, 1, 1, 2, 3])):
            moments.append(START + timedelta(days=day, seconds=rng.randrange(86400)))
    return sorted(set(moments))


def restic_expected(moments, last, daily, weekly, monthly):
    """restic's rule, stated as it is documented: for each tier, the newest
    snapshot in each of the N most recent periods that have one."""
    newest = sorted(moments, reverse=True)
    keep = set(newest[:last])
    for count, period in ((daily, lambda t: t.date()), (weekly, lambda t: t.isocalendar()[:2]),
                          (monthly, lambda t: (t.year, t.month))):
        periods = []
        for moment in newest:
            if period(moment) not in periods:
                periods.append(period(moment))
        chosen = set(periods[:count])
        keep |= {max(m for m in moments if period(m) == p) for p in chosen}
    return keep


@pytest.mark.parametrize("policy", [(3, 7, 5, 12), (0, 30, 0, 0), (1, 0, 10, 0), (0, 0, 0, 24), (50, 3, 3, 3)])
def test_tiers_match_restic_forget_on_400_days(policy):
    moments = synthetic_history()
    records = [Record(f"db_{stamp(m)}.sql.enc", ("db", "plain"), m) for m in moments]
    last, daily, weekly, monthly = policy
    decisions = plan(records, Policy(last, daily, weekly, monthly), START + timedelta(days=401))
    kept = {d.record.created for d in decisions if d.action == KEEP}
    assert kept == restic_expected(moments, *policy)
    assert all(d.action == REMOVE for d in decisions if d.record.created not in kept)


def test_tiers_on_a_directory_of_400_days(tmp_path):
    moments = synthetic_history(seed=7)
    made = backups(tmp_path, "app", moments)
    code, report, _ = run("prune", str(tmp_path), "--keep-last", "3", "--keep-daily", "7",
                          "--keep-weekly", "5", "--keep-monthly", "12", "--threads", "1")
    assert code == 0
    expected = {f"app_{stamp(m)}.sql.enc" for m in restic_expected(moments, 3, 7, 5, 12)}
    assert {k["filename"] for k in report["kept"]} == expected == set(names(tmp_path))
    assert {r["filename"] for r in report["removed"]} == set(made) - expected
    newest = max(report["kept"], key=lambda k: k["created"])
    assert newest["reasons"] == ["last", "daily", "weekly", "monthly"]


def test_plan_leaves_what_is_not_authenticated_and_keeps_the_newest_authenticated():
    now = START + timedelta(days=10)
    records = [Record(f"r{i}", ("db", "plain"), START + timedelta(days=i)) for i in range(5)]
    records += [Record("bad", ("db", "plain"), START + timedelta(days=6), FAILED, "truncated"),
                Record("unknown", ("db", "plain"), START + timedelta(days=7), "unverified"),
                Record("future", ("db", "plain"), now + timedelta(hours=1), OK),
                Record("planted", ("db", "plain"), START + timedelta(days=8), UNAUTHENTICATED)]
    decisions = {d.record.name: (d.action, d.reasons) for d in plan(records, Policy(max_age=timedelta(0)), now)}
    assert decisions["r4"] == (KEEP, ["newest authenticated"])
    assert decisions["bad"] == (LEAVE, ["failed verification: truncated"])
    assert decisions["planted"] == (LEAVE, [UNAUTHENTICATED_REASON])
    assert decisions["unknown"][0] == decisions["future"][0] == LEAVE
    assert all(decisions[f"r{i}"] == (REMOVE, ["max-age"]) for i in range(4))


def test_plan_counts_a_backup_up_to_five_minutes_ahead_and_none_later():
    """Pins the clock-skew bound (retention.CLOCK_SKEW, 5 minutes): a backup dated up
    to it ahead of now counts; one a millisecond past it is left, never counted, so a
    file dated in the future cannot push the genuine newest one out."""
    now = START + timedelta(days=10)
    records = [Record("old", ("db", "plain"), START), Record("skewed", ("db", "plain"), now + timedelta(minutes=5)),
               Record("ahead", ("db", "plain"), now + timedelta(minutes=5, milliseconds=1))]
    decisions = {d.record.name: (d.action, d.reasons) for d in plan(records, Policy(last=1), now)}
    assert decisions == {"ahead": (LEAVE, ["future-dated: never counted, never removed"]),
                         "skewed": (KEEP, ["last"]), "old": (REMOVE, ["not kept by the policy"])}


def test_max_age_removes_only_backups_older_than_it():
    """Pins max-age's bound: a backup exactly DAYS old is not older than DAYS and
    stays; one a millisecond older goes, with max-age as its reason."""
    now = START + timedelta(days=10)
    records = [Record("newest", ("db", "plain"), now - timedelta(days=1)),
               Record("exact", ("db", "plain"), now - timedelta(days=3)),
               Record("older", ("db", "plain"), now - timedelta(days=3, milliseconds=1))]
    decisions = {d.record.name: (d.action, d.reasons) for d in plan(records, Policy(last=3, max_age=timedelta(days=3)), now)}
    assert decisions == {"newest": (KEEP, ["last"]), "exact": (KEEP, ["last"]), "older": (REMOVE, ["max-age"])}


def test_weeks_are_iso_weeks_and_months_carry_their_year():
    """Pins the buckets: weekly goes by ISO week, whose year is not the calendar's
    (2024-12-30 and 2025-01-02 are both 2025-W01: one week); monthly by year and
    month (March 2023 and March 2024, with nothing between, are two months)."""
    def at(*date):
        return datetime(*date, 12, tzinfo=timezone.utc)

    weekly = [Record(name, ("db", "plain"), at(*date))
              for name, date in (("thu", (2025, 1, 2)), ("mon", (2024, 12, 30)), ("fri", (2024, 12, 27)))]
    decisions = {d.record.name: (d.action, d.reasons) for d in plan(weekly, Policy(weekly=2), at(2025, 1, 3))}
    assert decisions == {"thu": (KEEP, ["weekly"]), "mon": (REMOVE, ["not kept by the policy"]),
                         "fri": (KEEP, ["weekly"])}
    monthly = [Record("2024", ("db", "plain"), at(2024, 3, 10)), Record("2023", ("db", "plain"), at(2023, 3, 15))]
    decisions = {d.record.name: (d.action, d.reasons) for d in plan(monthly, Policy(monthly=2), at(2024, 3, 11))}
    assert decisions == {"2024": (KEEP, ["monthly"]), "2023": (KEEP, ["monthly"])}


# --- verify ------------------------------------------------------------------


def test_verify_fails_naming_an_emptied_and_an_overwritten_backup(tmp_path):
    good = backups(tmp_path, "shop", [START + timedelta(days=i) for i in range(3)])
    (tmp_path / good[0]).write_bytes(b"")
    (tmp_path / good[1]).write_text("overwritten with some text\n")
    code, report, err = run("verify", str(tmp_path))
    assert code == 65 and report["failed"] == 2 and report["verified"] == 1
    failed = {r["filename"]: r["error"] for r in report["results"] if r["ok"] is False}
    assert failed == {good[0]: "empty file", good[1]: "not an encpipe file"}
    assert err.splitlines() == [f"encpipe-verify: error: {tmp_path / good[0]}: empty file",
                                f"encpipe-verify: error: {tmp_path / good[1]}: not an encpipe file"]
