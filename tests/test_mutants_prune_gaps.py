"""Retention, prune, removal, verify and listing, each broken by hand once more (mutation
review 57: an order dropped, a condition dropped, a field ignored) with no test failing:
the tests that now see each. Files sealed by hand, or by the real CLI (no PostgreSQL)."""

import os
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from encpipe.backup.retention import FAILED, KEEP, LEAVE, REMOVE, Policy, Record, plan

from cliutil import ok, secret_file
from cliutil import run as encpipe
from s3server import rclone_binary
from test_backup_dir import KEY, run
from test_backup_label import _sealed
from test_mutants_retention import _dir_with_two_backups
from test_planted_archives import archive, name

START = datetime(2023, 1, 1, tzinfo=timezone.utc)


def test_plan_gives_its_decisions_per_series_newest_first_left_ones_among_them():
    """plan() gives its decisions series by series, each newest first, a file left in place
    among those counted at its own time (its docstring; prune's report and errors follow)."""
    now = START + timedelta(days=10)
    at = [START + timedelta(days=n) for n in range(4)]
    records = [Record("a0", ("a", "plain"), at[0]), Record("a1", ("a", "plain"), at[1], FAILED, "truncated"),
               Record("a2", ("a", "plain"), at[2]), Record("b3", ("b", "plain"), at[3]),
               Record("a3", ("a", "plain"), at[3], FAILED, "truncated")]
    assert [(d.record.name, d.action) for d in plan(records, Policy(last=1), now)] == [
        ("a3", LEAVE), ("a2", KEEP), ("a1", LEAVE), ("a0", REMOVE), ("b3", KEEP)]


@pytest.mark.usefixtures("dated_from_now")
def test_a_copy_of_an_archive_whose_maker_is_not_authenticated_never_judges_a_remotes_archives(s3, tmp_path):
    """On a remote, a custom archive is judged against those of its series named before it
    that authenticate: never against a copy whose maker is not (anyone with the public key
    made it), whatever its header's time."""
    public = ok(encpipe(["keygen", "--x25519", "-o", str(tmp_path / "x.id")])).decode().strip()
    raw = secret_file(tmp_path, "raw.key", KEY.hex() + "\n")
    local = tmp_path / "gap"
    local.mkdir()
    older, newest, planted = name(3), name(1), name(2)
    _sealed(local, older, archive(3))
    _sealed(local, newest, archive(1))
    forged = ok(encpipe(["seal", "--recipient", public], archive(0.5)))  # made after `newest`, named before it
    (local / planted).write_bytes(forged)
    (local / "saved.enc").write_bytes(forged)
    subprocess.run([rclone_binary(), "copy", str(local), f"{s3.location}/gap"], env={**os.environ, **s3.env},
                   check=True)
    code, report, _ = run("prune", "--keep-last", "1", "--key-file", str(raw), "--identity", str(tmp_path / "x.id"),
                          f"{s3.location}/gap", env={**s3.env, "PATH": os.environ["PATH"]})
    assert code == 65
    assert [(k["filename"], k["reasons"]) for k in report["kept"]] == [(newest, ["last"])]
    assert [r["filename"] for r in report["removed"]] == [older]
    assert [(line["filename"], line["reasons"]) for line in report["left"]] == [
        (planted, ["the same file as saved.enc: a copy, never counted"])]
    assert sorted(os.listdir(Path(s3.bucket_dir) / "gap")) == sorted([newest, planted, "saved.enc"])


def test_a_prunes_removals_are_made_durable_once_made(tmp_path, monkeypatch):
    """Once prune has removed what it removes, the directory is synced (its descriptor's
    fsync): the removals survive a crash as the report says; a dry run syncs nothing."""
    from encpipe import safefile

    d, newest, old = _dir_with_two_backups(tmp_path)
    synced, sync = [], safefile.fsync_directory

    def there(each, dir_fd):
        try:
            return bool(os.lstat(each, dir_fd=dir_fd))
        except FileNotFoundError:
            return False

    def spy(directory, dir_fd=None):  # which of the two names DIR holds as it is synced
        synced.append([each for each in (newest, old) if there(each, dir_fd)])
        return sync(directory, dir_fd=dir_fd)

    monkeypatch.setattr(safefile, "fsync_directory", spy)
    code, report, err = run("prune", "--keep-last", "1", "--dry-run", str(d))
    assert (code, err, [r["filename"] for r in report["removed"]], synced) == (0, "", [old], [])
    code, report, err = run("prune", "--keep-last", "1", str(d))
    assert (code, err, [r["filename"] for r in report["removed"]]) == (0, "", [old])
    assert synced == [[newest]]


def test_a_dry_run_leaves_a_killed_prunes_hold_directory_as_it_is(tmp_path):
    """A dry run changes nothing in DIR: what a killed prune left in its hold directory
    (`.encpipe-removing.*`, its marker and the file) stays there for the next real prune,
    which takes DIR's lock and puts it back."""
    from encpipe.backup.removal import HOLD_MARKER, HOLD_PREFIX

    d, newest, old = _dir_with_two_backups(tmp_path)
    hold = d / (HOLD_PREFIX + "0123456789abcdef")
    hold.mkdir(mode=0o700)
    (hold / HOLD_MARKER).write_bytes(b"")
    os.rename(d / old, hold / old)
    code, report, err = run("prune", "--keep-last", "1", "--dry-run", str(d))
    assert (code, err) == (0, "")
    assert ([k["filename"] for k in report["kept"]], report["removed"], report["errors"]) == ([newest], [], [])
    assert sorted(p.name for p in d.iterdir()) == sorted([newest, hold.name])
    assert sorted(p.name for p in hold.iterdir()) == sorted([HOLD_MARKER, old])
    code, report, err = run("prune", "--keep-last", "1", str(d))
    assert (code, err, [r["filename"] for r in report["removed"]]) == (0, "", [old])
    assert [p.name for p in d.iterdir()] == [newest]


@pytest.mark.usefixtures("dated_from_now")
def test_verify_judges_an_unlabelled_dump_against_the_first_labelled_one_not_the_last(tmp_path):
    """An unlabelled dump named between two labelled ones of its series is named after the
    first: encpipe-verify fails it (65), as prune leaves it."""
    from test_backup_label_series import REASON, dump, put

    files = [dump(3, True), dump(2, False), dump(1, True)]
    directory = put(tmp_path / "b", *files)
    l3, planted, l1 = (each for each, _ in files)
    code, report, err = run("verify", str(directory))
    assert (code, err) == (65, f"encpipe-verify: error: {directory / planted}: {REASON}\n")
    results = {r["filename"]: r for r in report["results"]}
    assert [(n, results[n]["ok"], results[n]["error"]) for n in (l3, planted, l1)] == [
        (l3, True, None), (planted, False, REASON), (l1, True, None)]
    assert (report["verified"], report["failed"]) == (2, 1)


def test_an_unlabelled_globals_files_properties_line_across_its_last_two_chunks_is_read(tmp_path):
    """Verify reads an unlabelled globals file's last line (its properties) from the end of
    its last two chunks: one that starts in the chunk before the last still names the run
    that made it, and another run's globals file under this name fails (65)."""
    import json

    from test_backup_dir_hostile import hours_ago
    from test_backup_label_globals import CLUSTER, _sealed as sealed

    d = tmp_path / "b"
    d.mkdir()
    stamp, other = hours_ago(2), hours_ago(3)
    props = json.dumps({"comment": "", "name": "shop", "owner": "postgres", "run": f"shop_{other}"}, sort_keys=True)
    line = f"-- encpipe-database-properties: {props}\n".encode()
    pad = (16384 + 40 - len(line) - len(CLUSTER)) * b"-"  # the line ends 40 bytes into the second 16 KiB chunk
    name = sealed(d / f"shop_{stamp}.globals.sql.enc", CLUSTER + pad + b"\n" + line, 2)
    why = f"was made by run shop_{other} (another run's globals file under this name?)"
    code, report, err = run("verify", str(d))
    assert (code, err) == (65, f"encpipe-verify: error: {d / name}: {why}\n")
    assert [(r["filename"], r["ok"], r["error"]) for r in report["results"]] == [(name, False, why)]


@pytest.mark.parametrize("mode, uid", [(0o750, None), (0o770, None), (0o700, 65534)],
                         ids=["0750", "0770", "another-user"])
def test_a_marked_hold_directory_not_the_callers_alone_stays_as_it_is(tmp_path, mode, uid):
    """A prune puts back only what is in a hold directory as it makes one: the caller's,
    mode 0700. One that others may read (0750) or write (0770), or another user's, though
    marked and holding one file, is not one: left as it is, the file in it neither moved
    into DIR nor pruned."""
    from encpipe.backup.removal import HOLD_MARKER, HOLD_PREFIX

    d, newest, old = _dir_with_two_backups(tmp_path)
    hold = d / (HOLD_PREFIX + "0123456789abcdef")
    hold.mkdir()
    (hold / HOLD_MARKER).write_bytes(b"")
    os.rename(d / old, hold / old)
    os.chmod(hold, mode)
    if uid is not None:
        os.chown(hold, uid, uid)
    code, report, err = run("prune", "--keep-last", "1", str(d))
    assert (code, err) == (0, "")
    assert ([k["filename"] for k in report["kept"]], report["removed"], report["errors"]) == ([newest], [], [])
    assert sorted(p.name for p in d.iterdir()) == sorted([newest, hold.name])
    assert sorted(p.name for p in hold.iterdir()) == sorted([HOLD_MARKER, old])


@pytest.mark.skipif(os.geteuid() != 0, reason="another user's file: root chowns it")
@pytest.mark.usefixtures("dated_from_now")
def test_a_globals_file_another_user_owns_counts_by_its_label(tmp_path):
    """Only a dump whose content does not fix its name's time (a custom archive, or no
    label) stands on its owner: a labelled globals file of another user's (4242) in a
    shared directory counts, and so does the dump of its run."""
    from test_prune_runs import globals_of, plain

    d = tmp_path / "b"
    d.mkdir()
    os.chmod(d, 0o1777)
    old, old_globals = plain(d, 48), globals_of(d, 48)
    newest, newest_globals = plain(d, 1), globals_of(d, 1)
    os.chown(d / newest_globals, 4242, 4242)
    code, report, err = run("prune", "--keep-last", "1", str(d))
    assert (code, err, report["left"]) == (0, "", [])
    assert {k["filename"]: k["reasons"] for k in report["kept"]} == {newest: ["last"], newest_globals: ["last"]}
    assert sorted(r["filename"] for r in report["removed"]) == sorted([old, old_globals])
    assert sorted(os.listdir(d)) == sorted([newest, newest_globals])


def test_every_plain_kind_is_one_series(tmp_path):
    """`sql`, `sql.zst` and `sql.gz` are one series (plain dumps): `--keep-last 1` keeps the
    newest of the three kinds and removes the others, and list says `plain` of each."""
    from test_backup_dir import make_valid
    from test_backup_dir_hostile import hours_ago

    d = tmp_path / "b"
    d.mkdir(mode=0o700)
    names = [f"shop_{hours_ago(h)}.{kind}.enc" for h, kind in ((72, "sql"), (48, "sql.zst"), (1, "sql.gz"))]
    for each in names:
        make_valid(d, each)
    assert [e["dump_format"] for e in run("list", str(d))[1]] == ["plain"] * 3
    code, report, err = run("prune", "--keep-last", "1", str(d))
    assert (code, err) == (0, "")
    assert [(k["filename"], k["series"], k["reasons"]) for k in report["kept"]] == [(names[2], "plain", ["last"])]
    assert sorted(r["filename"] for r in report["removed"]) == sorted(names[:2])
    assert [p.name for p in d.iterdir()] == [names[2]]


def test_a_partial_upload_of_a_backup_whose_database_name_holds_a_newline_is_never_read(tmp_path):
    """What a killed rclone leaves (`NAME.<8 hex>.partial`) is partial whatever NAME holds,
    a newline included (a database's name may): never read, so a truncated one fails no verify."""
    from test_backup_dir import make_truncated, make_valid
    from test_backup_dir_hostile import hours_ago

    d = tmp_path / "b"
    d.mkdir()
    good = make_valid(d, f"shop_{hours_ago(1)}.sql.enc").name
    partial = make_truncated(d, f"a\nb_{hours_ago(1)}.sql.enc.0123abcd.partial").name
    assert {e["filename"]: e["status"] for e in run("list", str(d))[1]} == {good: "sealed", partial: "partial"}
    code, report, err = run("verify", str(d))
    assert (code, err, report["verified"], report["failed"], report["not_verified"]) == (0, "", 1, 0, 1)
