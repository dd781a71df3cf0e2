"""A bucket's writer plants an older genuine custom archive under a newer name.

In a local directory a planted archive is its planter's (listing.owned_elsewhere);
an object has no owner. A custom archive's header gives its time within hours
(pg_dump's local time, in a zone it does not name), so an archive removed since
(its bytes kept by whoever could read the bucket), put back under a name newer
than the newest backup within those hours, authenticated and counted as the
newest: `--keep-last 1` removed the real newest, exit 0, `encpipe-check
--verify` said OK and encpipe-verify 0. A genuine series' archives are made in
the order of their names: one whose header's time is earlier than that of an
archive named before it is left, never counted (retention.ARCHIVED_EARLIER), and
fails encpipe-verify of the folder."""

import os
import subprocess
from pathlib import Path

import pytest

from s3server import rclone_binary
from test_backup_dir import ENV, run as backups
from test_backup_label import _sealed
from test_check_verify import check
from test_planted_archives import A, archive, name

pytestmark = pytest.mark.usefixtures("dated_from_now")


def put(s3, tmp_path, folder, archives):
    """Each {name: hours ago its archive was made} sealed, uploaded into `folder` (through
    the server: its listing is then up to date); the folder as the server keeps it."""
    local = tmp_path / folder
    local.mkdir()
    for each, hours in archives.items():
        _sealed(local, each, archive(hours))
    subprocess.run([rclone_binary(), "copy", str(local), f"{s3.location}/{folder}"], env={**os.environ, **s3.env},
                   check=True)
    return Path(s3.bucket_dir) / folder


def planted(s3, tmp_path, folder):
    """The genuine archives of 3 h and 1 h ago, and that of 2 h ago, removed since, put
    under the name of half an hour ago."""
    older, newest, copy = name(3), name(1), name(0.5)
    place = put(s3, tmp_path, folder, {older: 3, newest: 1, copy: 2})
    return place, older, newest, copy, {**s3.env, **ENV, "PATH": os.environ["PATH"]}


def reason(newest):
    return (f"made before {newest} (by the custom archives' headers), though named after it: an older archive copied"
            " under a newer name?")


def test_prune_of_a_remote_never_removes_the_newest_archive_for_an_older_one_planted_under_a_newer_name(s3, tmp_path):
    place, older, newest, copy, env = planted(s3, tmp_path, "prune")
    code, report, err = backups("prune", "--keep-last", "1", f"{s3.location}/prune", env=env)
    assert (code, err) == (65, f"encpipe-prune: warning: left {copy}: {reason(newest)}\n")
    assert sorted(os.listdir(place)) == sorted([newest, copy])  # the real newest stays
    assert [(k["filename"], k["reasons"]) for k in report["kept"]] == [(newest, ["last"])]
    assert [r["filename"] for r in report["removed"]] == [older]
    assert [(line["filename"], line["reasons"]) for line in report["left"]] == [(copy, [reason(newest)])]


def test_check_verify_of_a_remote_does_not_count_an_older_archive_planted_under_a_newer_name(s3, tmp_path):
    _, _, newest, copy, env = planted(s3, tmp_path, "check")
    assert check("--max-age", "24", "--verify", f"{s3.location}/check", env=env) == (
        1, f"WARNING: {A}: newest backup {newest} is 1.0 h old; newest file {copy} failed authentication: "
           f"{reason(newest)}\n", "")


def test_verify_of_a_remote_fails_an_older_archive_planted_under_a_newer_name(s3, tmp_path):
    place, older, newest, copy, env = planted(s3, tmp_path, "verify")
    code, report, err = backups("verify", f"{s3.location}/verify", env=env)
    assert (code, err) == (65, f"encpipe-verify: error: {s3.location}/verify/{copy}: {reason(newest)}\n")
    results = {r["filename"]: r for r in report["results"]}
    assert (results[copy]["ok"], results[copy]["exit_code"], results[copy]["error_class"], results[copy]["label"]) \
        == (False, 65, "invalid_stream", "archive")
    assert [results[n]["ok"] for n in (older, newest)] == [True, True]
    assert (report["verified"], report["failed"]) == (2, 1)
    assert sorted(os.listdir(place)) == sorted([older, newest, copy])


def test_archives_made_in_the_order_of_their_names_count(s3, tmp_path):
    place = put(s3, tmp_path, "genuine", {name(hours): hours for hours in (3, 2, 1)})
    env = {**s3.env, **ENV, "PATH": os.environ["PATH"]}
    assert check("--max-age", "24", "--verify", f"{s3.location}/genuine", env=env) == (
        0, f"OK: {A}: newest backup {name(1)} is 1.0 h old\n", "")
    code, report, err = backups("verify", f"{s3.location}/genuine", env=env)
    assert (code, err, report["verified"]) == (0, "", 3)
    code, report, err = backups("prune", "--keep-last", "1", f"{s3.location}/genuine", env=env)
    assert (code, err) == (0, "")
    assert os.listdir(place) == [name(1)]


def test_two_planted_archives_are_each_judged_against_every_archive_named_before_them(s3, tmp_path):
    """Two plants, the newer made after the older: each is compared with every archive of
    its series named before it, not only the nearest (itself planted), by check as by
    prune and verify. Before, check --verify compared the newest with the one named just
    before it only, and counted it: OK, the real newest 1 h old a warning never said."""
    plants = {name(0.75): 3, name(0.5): 2}
    place = put(s3, tmp_path, "two", {name(4): 4, name(1): 1, **plants})
    env = {**s3.env, **ENV, "PATH": os.environ["PATH"]}
    said = reason(name(1))
    assert check("--max-age", "24", "--verify", f"{s3.location}/two", env=env) == (
        1, f"WARNING: {A}: newest backup {name(1)} is 1.0 h old; newest file {name(0.5)} failed authentication: "
           f"{said}; file {name(0.75)} failed authentication: {said}\n", "")
    code, report, err = backups("verify", f"{s3.location}/two", env=env)
    assert (code, report["verified"], report["failed"]) == (65, 2, 2)
    assert err == "".join(f"encpipe-verify: error: {s3.location}/two/{plant}: {said}\n" for plant in sorted(plants))
    code, report, err = backups("prune", "--keep-last", "1", f"{s3.location}/two", env=env)
    assert (code, [line["filename"] for line in report["removed"]]) == (65, [name(4)])
    left = [(line["filename"], line["reasons"]) for line in report["left"]]
    assert left == [(plant, [said]) for plant in sorted(plants)]
    assert sorted(os.listdir(place)) == sorted([name(1), *plants])
