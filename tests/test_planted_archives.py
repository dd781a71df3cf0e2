"""A custom archive planted by a user who owns it never counts.

A custom archive carries no label: its header gives its time within hours (pg_dump's
local time, in a zone it does not name), so its name's time stands on the file's
modification time, which only the file's owner can set back (listing.older_than_its_name).
A local user who can write a shared backup directory (--allow-shared-dir; sticky: they
can neither rename nor remove the backups) and who has the bytes of an archive removed
since (from the off-site copy, say) planted it under a name newer than the newest
backup, a file of their own, its modification time theirs to give: it authenticated,
its header's time within the window, and counted as the newest; `--keep-last 1` removed
the real newest and `encpipe-check --verify` said OK. A dump whose content does not fix
its name's time (a custom archive, or no label) owned by a user other than the caller,
root and the directory's owner is now left, never counted (prune 65; check --verify a
warning). A labelled plain dump, whose label gives its name's time to the second, still
counts whoever owns it; so does an archive of the directory's owner. Without --verify,
check, which reads headers only (a planter makes one as they like), counts no local file
another user owns. Files sealed by hand here (no PostgreSQL); the attacker's files are
chowned to another user (root only).
"""

import os

import pytest

from dating import at, stamp_at
from test_backup_dir import run as backups
from test_backup_label import SQL, _archive, _prefix, _sealed
from test_check_verify import check

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="the planter is another user: root chowns their files"),
              pytest.mark.usefixtures("dated_from_now")]

A = "shop"
PLANTER = 4242  # a user of no name: said by number
REASON = ("owned by uid 4242, who can give it any modification time, and what it holds does not fix the time its"
          " name says (a custom archive's header gives it within hours)")

def archive(hours):
    """A custom archive of A made `hours` ago (its header's time UTC, as on a UTC host)."""
    made = at(hours)
    return _archive(A.encode(), made=(made.second, made.minute, made.hour, made.day, made.month - 1,
                                      made.year - 1900, 0))


def name(hours, kind="dump"):
    return f"{A}_{stamp_at(hours)}.{kind}.enc"


def planted_world(tmp_path):
    """The genuine archives of 3 h and 1 h ago (the caller's), and the archive of 2 h
    ago, removed since, planted as of half an hour ago by another user."""
    directory = tmp_path / "b"
    directory.mkdir()
    os.chmod(directory, 0o1777)
    older, newest, planted = name(3), name(1), name(0.5)
    _sealed(directory, older, archive(3))
    _sealed(directory, newest, archive(1))
    os.chown(_sealed(directory, planted, archive(2)), PLANTER, PLANTER)  # its time now: written just now
    return directory, older, newest, planted


def test_prune_never_removes_the_newest_archive_for_an_older_one_another_user_planted(tmp_path):
    directory, older, newest, planted = planted_world(tmp_path)
    code, report, err = backups("prune", "--keep-last", "1", str(directory))
    assert code == 65, err
    assert sorted(os.listdir(directory)) == sorted([newest, planted])  # the real newest stays
    assert [(k["filename"], k["reasons"]) for k in report["kept"]] == [(newest, ["last"])]
    assert [r["filename"] for r in report["removed"]] == [older]
    assert [(line["filename"], line["reasons"]) for line in report["left"]] == [(planted, [f"{REASON}: never counted"])]
    assert err == f"encpipe-prune: warning: left {planted}: {REASON}: never counted\n"


def test_check_verify_does_not_count_an_archive_another_user_planted(tmp_path):
    directory, _, newest, planted = planted_world(tmp_path)
    assert check("--max-age", "24", "--verify", str(directory)) == (
        1, f"WARNING: {A}: newest backup {newest} is 1.0 h old; newest file {planted} failed authentication: "
           f"{REASON}\n", "")


def test_an_unlabelled_dump_another_user_owns_is_not_counted_either(tmp_path):
    directory = tmp_path / "b"
    directory.mkdir()
    genuine, planted = name(2, "sql"), name(1, "sql")
    _sealed(directory, genuine, SQL)
    os.chown(_sealed(directory, planted, SQL), PLANTER, PLANTER)
    code, report, _ = backups("prune", "--keep-last", "1", str(directory))
    assert code == 65
    assert [k["filename"] for k in report["kept"]] == [genuine]
    assert [line["filename"] for line in report["left"]] == [planted]
    assert report["left"][0]["reasons"][0].startswith("owned by uid 4242, who can give it any modification time")


def test_a_labelled_plain_dump_counts_whoever_owns_it(tmp_path):
    """Its label gives its name's time to the second: a copy under another name fails."""
    directory = tmp_path / "b"
    directory.mkdir()
    older, newer = name(2, "sql"), name(1, "sql")
    _sealed(directory, older, _prefix("none", A, stamp_at(2)) + SQL)
    os.chown(_sealed(directory, newer, _prefix("none", A, stamp_at(1)) + SQL), PLANTER, PLANTER)
    code, report, err = backups("prune", "--keep-last", "1", str(directory))
    assert (code, err) == (0, "")
    assert ([k["filename"] for k in report["kept"]], [r["filename"] for r in report["removed"]]) == ([newer], [older])


def test_archives_of_the_directorys_owner_count_when_another_user_prunes(tmp_path):
    """The backups' user owns the directory and its files; root prunes them."""
    directory, older, newest, planted = planted_world(tmp_path)
    os.chmod(directory, 0o700)
    os.chown(directory, PLANTER, PLANTER)
    for each in (older, newest):
        os.chown(directory / each, PLANTER, PLANTER)
    code, report, err = backups("prune", "--keep-last", "1", str(directory))
    assert (code, err) == (0, "")
    assert [k["filename"] for k in report["kept"]] == [planted]  # the directory's owner's word
    assert sorted(r["filename"] for r in report["removed"]) == sorted([older, newest])
    assert check("--max-age", "24", "--verify", str(directory))[0] == 0


def planted_header(tmp_path):
    """A sticky directory: a genuine plain dump 36 h old, and a newer one 1 h old sealed to a
    key of the planter's (a header they made as they liked), the planter's own."""
    from test_backup_dir import OTHER_KEY, make_valid
    directory = tmp_path / "b"
    directory.mkdir()
    os.chmod(directory, 0o1777)
    genuine, planted = name(36, "sql"), name(1, "sql")
    make_valid(directory, genuine)
    os.chown(make_valid(directory, planted, key=OTHER_KEY), PLANTER, PLANTER)
    return directory, genuine, planted


def test_check_without_verify_does_not_count_a_file_another_user_planted(tmp_path):
    """Without --verify check reads headers, which a planter makes as they like (a raw-key
    slot of their own key here): in a shared directory, a file of theirs under today's name
    made check say OK while the last backup was a day and a half old. Their file is theirs:
    not counted without --verify, a warning when it is the newest."""
    directory, genuine, planted = planted_header(tmp_path)
    assert check("--max-age", "24", str(directory)) == (
        2, f"CRITICAL: {A}: newest backup {genuine} is 36.0 h old, over --max-age 24 h; newest file {planted} is"
           " owned by uid 4242 (not the caller, root or the directory's owner): check reads its header only, which"
           " another user makes as they like (--verify reads the file)\n", "")
    os.chown(directory / planted, 0, 0)  # the caller's (root's) own: counted from its header, as before
    assert check("--max-age", "24", str(directory))[:2] == (0, f"OK: {A}: newest backup {planted} is 1.0 h old\n")


def linked_between_looks(monkeypatch, directory, planted, target):
    """The planter, at the listing's second look at `planted` (a stat that follows links):
    their file moved aside, a link to `target` in its place, their file back once looked at."""
    real_stat, swaps = os.stat, []

    def stat(path, *args, dir_fd=None, follow_symlinks=True):
        if path == planted and dir_fd is not None and follow_symlinks and not swaps:
            swaps.append(path)
            os.rename(directory / planted, directory / ".aside")
            os.symlink(target, directory / planted)
            try:
                return real_stat(path, *args, dir_fd=dir_fd, follow_symlinks=follow_symlinks)
            finally:
                os.replace(directory / ".aside", directory / planted)
        return real_stat(path, *args, dir_fd=dir_fd, follow_symlinks=follow_symlinks)

    monkeypatch.setattr(os, "stat", stat)


def test_a_planted_archive_looked_at_as_a_link_for_a_moment_still_never_counts(tmp_path, monkeypatch):
    """A file was listed by two looks at its name: lstat (which file: its inode) and stat
    (its size, time and owner, a link followed). The planter, who may rename their own
    file in a sticky directory, put a link to the newest backup under the name between
    the two and their archive back after: it was listed as their file (the inode opened
    and authenticated) with the newest backup's owner and time, so counted as the
    newest, and `--keep-last 1` removed the real newest, exit 0. Now a file that is no
    link is listed by one look, its inode, size, time and owner all its own."""
    directory, older, newest, planted = planted_world(tmp_path)
    assert os.path.getsize(directory / planted) == os.path.getsize(directory / newest)
    linked_between_looks(monkeypatch, directory, planted, newest)
    code, report, err = backups("prune", "--keep-last", "1", str(directory))
    assert code == 65, err
    assert sorted(os.listdir(directory)) == sorted([newest, planted])  # the real newest stays
    assert [(k["filename"], k["reasons"]) for k in report["kept"]] == [(newest, ["last"])]
    assert [(line["filename"], line["reasons"]) for line in report["left"]] == [(planted, [f"{REASON}: never counted"])]


def test_check_does_not_count_a_planted_header_looked_at_as_a_link_for_a_moment(tmp_path, monkeypatch):
    """The same two looks, under check without --verify: the planter's header (a key of
    their own) was counted as the caller's, OK while the last backup was 36 h old."""
    directory, genuine, planted = planted_header(tmp_path)
    linked_between_looks(monkeypatch, directory, planted, genuine)
    assert check("--max-age", "24", str(directory)) == (
        2, f"CRITICAL: {A}: newest backup {genuine} is 36.0 h old, over --max-age 24 h; newest file {planted} is"
           " owned by uid 4242 (not the caller, root or the directory's owner): check reads its header only, which"
           " another user makes as they like (--verify reads the file)\n", "")
