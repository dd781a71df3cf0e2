"""encpipe-check reads its --metrics-file only from a place no other user can
write: a user other than root, the caller and the file's owner who can write the
file, its directory (sticky or not) or a directory above it (not sticky) could
plant `encpipe_backup_last_attempt_success` 1 over a failed attempt's 0, or
remove the file, and hide the failure. Such a file is as one that cannot be
read: CRITICAL, one line, exit 2. Before, it was read wherever it was, and check
said OK while the last backup had failed. encpipe-backup writes the file only
where no user but it and root can write (73), so a file it wrote still passes
when check runs as another user (the file's owner is trusted)."""

import importlib
import io
import os
import pathlib
import shutil
import tempfile
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

import pytest

from encpipe.backup import metrics, unit
from encpipe.errors import UnsafeDirectory, UsageError
from encpipe.backup.cli import main
from cliutil import plugin_text
from test_backup_dir import make_valid, stamp

NOBODY, DAEMON = 65534, 1


def _check(tmp_path, prom):
    out, err = io.BytesIO(), io.StringIO()
    code = main(["check", "--max-age", "24", "--metrics-file", str(prom), str(tmp_path / "b")], stdout=out,
                stderr=err, env={})
    assert err.getvalue() == ""
    return code, plugin_text(out.getvalue().decode())


def _place(tmp_path, last_attempt_success=1, mode=0o644, owner=0):
    """A backup of shop 2 h old in tmp_path/b, and tmp_path/m/encpipe.prom saying its last attempt succeeded."""
    (tmp_path / "b").mkdir()
    made = datetime.now(timezone.utc) - timedelta(hours=2)
    make_valid(tmp_path / "b", f"shop_{stamp(made)}.sql.enc")
    (tmp_path / "m").mkdir(mode=0o755)
    prom = tmp_path / "m" / "encpipe.prom"
    prom.write_text(metrics.render({"shop": {"encpipe_backup_last_attempt_success": last_attempt_success}}))
    prom.chmod(mode)
    os.chown(prom, owner, owner)
    return prom, f"OK: shop: newest backup shop_{stamp(made)}.sql.enc is 2.0 h old\n"


@pytest.mark.parametrize("mode", [0o777, 0o1777, 0o775], ids=["o+w", "o+w sticky", "g+w"])
def test_a_metrics_file_in_a_directory_another_user_can_write_is_critical(tmp_path, mode):
    prom, ok = _place(tmp_path)
    assert _check(tmp_path, prom) == (0, ok)
    os.chown(tmp_path / "m", 0, DAEMON)
    (tmp_path / "m").chmod(mode)
    who = "group daemon (mode g+w)" if mode == 0o775 else "every user (mode o+w)"
    assert _check(tmp_path, prom) == (2, f"CRITICAL: cannot read the metrics file: {tmp_path / 'm'} can be written "
                                         f"by {who}, who could hide a failed backup\n")


def test_a_metrics_file_another_user_can_write_is_critical(tmp_path):
    prom, _ = _place(tmp_path, mode=0o666)
    assert _check(tmp_path, prom) == (2, f"CRITICAL: cannot read the metrics file: {prom} can be written by every "
                                         f"user (mode o+w), who could hide a failed backup\n")


def test_a_metrics_file_in_a_directory_of_another_user_than_its_owner_is_critical(tmp_path):
    """A writer of the directory replaced the backups' file with one of its own (here the
    directory's owner is nobody, the file root's: root could be the backups' user)."""
    prom, _ = _place(tmp_path)
    os.chown(tmp_path / "m", NOBODY, NOBODY)
    assert _check(tmp_path, prom) == (2, f"CRITICAL: cannot read the metrics file: {tmp_path / 'm'} can be written "
                                         f"by user nobody (its owner), who could hide a failed backup\n")


def test_a_directory_above_that_another_user_can_write_is_critical_unless_sticky(tmp_path):
    prom, ok = _place(tmp_path)
    tmp_path.chmod(0o777)
    assert _check(tmp_path, prom) == (2, f"CRITICAL: cannot read the metrics file: {tmp_path} (above "
                                         f"{tmp_path / 'm'}) can be written by every user (mode o+w, not sticky), "
                                         f"who could hide a failed backup\n")
    tmp_path.chmod(0o1777)  # no other user can rename m away
    assert _check(tmp_path, prom) == (0, ok)


def test_a_file_written_by_the_backups_user_passes_when_another_user_checks(tmp_path):
    """The backups' user (here nobody) owns the file and its directory; check runs as root."""
    prom, ok = _place(tmp_path, owner=NOBODY)
    os.chown(tmp_path / "m", NOBODY, NOBODY)
    assert _check(tmp_path, prom) == (0, ok)
    prom.write_text(metrics.render({"shop": {"encpipe_backup_last_attempt_success": 0}}))
    code, out = _check(tmp_path, prom)
    assert (code, out.splitlines()[0]) == (1, ok.strip().replace("OK", "WARNING") + "; the last backup attempt failed")


def test_a_missing_metrics_file_in_a_directory_another_user_can_write_is_critical(tmp_path):
    """Removing the file would hide a failed attempt as well as replacing it."""
    prom, ok = _place(tmp_path)
    prom.unlink()
    assert _check(tmp_path, prom) == (0, ok)
    (tmp_path / "m").chmod(0o777)
    assert _check(tmp_path, prom) == (2, f"CRITICAL: cannot read the metrics file: {tmp_path / 'm'} can be written "
                                         f"by every user (mode o+w), who could hide a failed backup\n")
    (tmp_path / "m").chmod(0o755)
    os.rmdir(tmp_path / "m")  # no directory either: the first one above that is there counts
    tmp_path.chmod(0o1777)
    assert _check(tmp_path, prom) == (2, f"CRITICAL: cannot read the metrics file: {tmp_path} (above "
                                         f"{tmp_path / 'm'}) can be written by every user (mode o+w), who could "
                                         f"hide a failed backup\n")


def test_encpipe_backup_writes_no_metrics_file_where_check_would_not_read_it(tmp_path):
    """A sticky directory every user can write (/tmp): encpipe-backup wrote its
    metrics file there (a sticky directory passes its check for the files it
    writes), and every encpipe-check of it was CRITICAL. Now the backup refuses
    that place as check does (73: the run's `metrics not written: ...`), before
    making its lock there."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    prom = shared / "encpipe.prom"
    with pytest.raises(UnsafeDirectory) as refused:
        metrics.record(str(prom), "shop", ok=True, finished=2.0, duration=1.0)
    assert (refused.value.exit_code, str(refused.value)) == (
        73, f"{shared} can be written by every user (mode o+w), who could hide a failed backup: "
            "encpipe-check would not read the metrics file there")
    assert os.listdir(shared) == []
    (tmp_path / "m").mkdir(mode=0o755)  # a directory of the backups' user: written, and read by check
    metrics.record(str(tmp_path / "m" / "encpipe.prom"), "shop", ok=True, finished=2.0, duration=1.0)
    assert metrics.read(str(tmp_path / "m" / "encpipe.prom"))["shop"]["encpipe_backup_last_attempt_success"] == 1


@pytest.mark.parametrize("place", ["/tmp/encpipe.prom", "/var/tmp/m/encpipe.prom", "/tmp"])
def test_the_systemd_unit_refuses_a_metrics_file_in_a_temporary_directory(place):
    """The unit's PrivateTmp= gives the service a /tmp of its own: a metrics file
    there was seen by no one (and in the real /tmp check would refuse it)."""
    with pytest.raises(UsageError) as refused:
        unit.render("/usr/local/bin/encpipe-backup", ["--dir", "/var/backups/encpipe", "--metrics-file", place])
    assert str(refused.value) == (f"--metrics-file {place}: the unit's PrivateTmp= gives the service a /tmp and "
                                  "/var/tmp of its own, which no one else sees")
    assert "ReadWritePaths=/var/backups/encpipe /var/lib/encpipe" in unit.render(
        "/usr/local/bin/encpipe-backup", ["--dir", "/var/backups/encpipe", "--metrics-file",
                                          "/var/lib/encpipe/encpipe.prom", "--key-file",
                                          "/etc/encpipe/backup.key"]).splitlines()


def test_a_symbolic_link_on_the_way_that_another_user_can_point_elsewhere_is_critical(tmp_path):
    """FILE's directory was judged where its path really leads only: a link on the
    way (shared/mon -> m) that lives in a directory another user can write is one
    they can point at a directory and a file of their own, whose owner check then
    trusts, and hide a failed attempt. A link they cannot change passes."""
    prom, ok = _place(tmp_path)
    (tmp_path / "shared").mkdir(mode=0o755)
    (tmp_path / "shared" / "mon").symlink_to(tmp_path / "m")
    via = tmp_path / "shared" / "mon" / "encpipe.prom"
    assert _check(tmp_path, via) == (0, ok)
    (tmp_path / "shared").chmod(0o777)
    assert _check(tmp_path, via) == (2, f"CRITICAL: cannot read the metrics file: {tmp_path / 'shared'}, holding the "
                                        f"symbolic link {tmp_path / 'shared' / 'mon'}, can be written by every user "
                                        "(mode o+w, not sticky), who could hide a failed backup\n")
    (tmp_path / "shared").chmod(0o1777)  # sticky: only the link's owner can replace it
    assert _check(tmp_path, via) == (0, ok)
    os.chown(tmp_path / "shared" / "mon", NOBODY, NOBODY, follow_symlinks=False)
    assert _check(tmp_path, via) == (2, f"CRITICAL: cannot read the metrics file: the symbolic link "
                                        f"{tmp_path / 'shared' / 'mon'} can be written by user nobody (its owner), "
                                        "who could hide a failed backup\n")


def test_encpipe_backup_writes_no_metrics_file_through_a_link_another_user_can_point_elsewhere(tmp_path):
    (tmp_path / "m").mkdir(mode=0o755)
    (tmp_path / "shared").mkdir(mode=0o777)
    (tmp_path / "shared").chmod(0o777)
    (tmp_path / "shared" / "mon").symlink_to(tmp_path / "m")
    with pytest.raises(UnsafeDirectory) as refused:
        metrics.record(str(tmp_path / "shared" / "mon" / "encpipe.prom"), "shop", ok=True, finished=2.0, duration=1.0)
    assert (refused.value.exit_code, str(refused.value)) == (
        73, f"{tmp_path / 'shared'}, holding the symbolic link {tmp_path / 'shared' / 'mon'}, can be written by every "
            "user (mode o+w, not sticky), who could hide a failed backup: encpipe-check would not read the metrics "
            "file there")
    assert os.listdir(tmp_path / "m") == []


def test_a_dotdot_that_leaves_a_directory_another_user_can_move_is_refused(tmp_path):
    """m/w/c/../../encpipe.prom leads to m, but who can write m/w, which holds c, can put
    there a c (a link) whose `..` leads to a directory of theirs: the metrics file then
    theirs. Before, only where the path led (m) was judged, as if normalised."""
    (tmp_path / "m" / "w" / "c").mkdir(parents=True)
    via = str(tmp_path / "m" / "w" / "c" / ".." / ".." / "encpipe.prom")
    metrics.refuse_place(via)  # m/w only its owner's: passes
    (tmp_path / "m" / "w").chmod(0o777)
    said = (f"{tmp_path / 'm' / 'w'}, where a .. on the way turns back, can be written by every user (mode o+w, "
            "not sticky), who could hide a failed backup")
    for refuse in (metrics.refuse_place, lambda path: metrics.refuse_shared(path, None)):
        with pytest.raises(UnsafeDirectory) as refused:
            refuse(via)
        assert str(refused.value).startswith(said)
    (tmp_path / "m" / "w").chmod(0o1777)  # sticky: only c's owner can move c
    metrics.refuse_place(via)
    os.chown(tmp_path / "m" / "w" / "c", NOBODY, NOBODY)
    with pytest.raises(UnsafeDirectory, match=r"/m/w/c, where a \.\. on the way turns back, can be written by user "):
        metrics.refuse_place(via)


@contextmanager
def _as_nobody():
    """This process as user nobody (no supplementary group) while in the block."""
    groups, gid = os.getgroups(), os.getegid()
    os.setgroups([])
    os.setegid(NOBODY)
    os.seteuid(NOBODY)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(gid)
        os.setgroups(groups)


def test_a_metrics_file_check_cannot_look_up_is_critical_not_absent(tmp_path):
    """A metrics directory that check's user cannot search (the backups' user's, 0750):
    the file was taken for one that is not there, and check said OK after a failed
    attempt, where a file it cannot open (0600) is CRITICAL."""
    top = tempfile.mkdtemp()  # under the sticky /tmp: nobody reaches it
    try:
        os.chmod(top, 0o755)
        backups = os.path.join(top, "b")
        os.mkdir(backups, 0o755)
        made = datetime.now(timezone.utc) - timedelta(hours=2)
        os.chmod(make_valid(pathlib.Path(backups), f"shop_{stamp(made)}.sql.enc"), 0o644)
        os.mkdir(os.path.join(top, "m"), 0o750)
        prom = os.path.join(top, "m", "encpipe.prom")
        metrics.record(prom, "shop", ok=False, finished=2.0, duration=1.0)
        out = io.BytesIO()
        importlib.import_module("_strptime")  # loaded now: the stdlib's directory may be root's only,
        main(["check", "--max-age", "24", "--metrics-file", prom, backups], stdout=io.BytesIO(),
             stderr=io.StringIO(), env={})  # and the checkout's too (a clone under /root): this run loads the rest
        with _as_nobody():
            code = main(["check", "--max-age", "24", "--metrics-file", prom, backups], stdout=out,
                        stderr=io.StringIO(), env={})
        assert (code, plugin_text(out.getvalue().decode())) == (
            2, f"CRITICAL: cannot read the metrics file: cannot read {prom}: Permission denied\n")
        code, out = _check(pathlib.Path(top), pathlib.Path(prom) / "x")  # a file taken for a directory
        assert (code, out) == (2, f"CRITICAL: cannot read the metrics file: cannot read {prom}/x: Not a directory\n")
    finally:
        shutil.rmtree(top)


def test_a_metrics_file_that_is_no_metrics_file_is_critical(tmp_path):
    """--metrics-file naming another file (a key file, a mistyped path to one) was read
    as no samples: OK, and a failed attempt never showed. The backup refuses to replace
    such a file; check says it cannot read it."""
    prom, ok = _place(tmp_path)
    prom.write_text("c0ffee15" * 8 + "\n")
    assert _check(tmp_path, prom) == (2, f"CRITICAL: cannot read the metrics file: {prom} holds no line of "
                                         "Prometheus' text format (not a metrics file?)\n")
    prom.write_text("")  # empty: no sample yet, as before the first run
    assert _check(tmp_path, prom) == (0, ok)


def test_a_failed_attempt_before_the_newest_backup_is_past(tmp_path):
    """A failed nightly attempt, then a backup made by hand (no --metrics-file) that
    counts: check warned of the failure until the next recorded run. A backup made
    since the failed attempt finished puts it behind; one made before does not."""
    prom, ok = _place(tmp_path)  # the backup: 2 h old
    for hours, expected in ((3, (0, ok)), (1, (1, ok.replace("OK", "WARNING").rstrip("\n")
                                               + "; the last backup attempt failed\n"))):
        failed_at = (datetime.now(timezone.utc) - timedelta(hours=hours)).timestamp()
        prom.write_text(metrics.render({"shop": {"encpipe_backup_last_attempt_success": 0,
                                                 "encpipe_backup_last_attempt_timestamp_seconds": failed_at}}))
        assert _check(tmp_path, prom) == expected
