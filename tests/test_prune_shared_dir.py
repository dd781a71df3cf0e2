"""encpipe-prune removes files, so it judges its directory as encpipe-backup
judges the one it writes in (safefile.check_directory): before, a standalone
prune followed a link that the writer of the backup directory's parent put in its
place and removed backups in a directory of root's, exit 0, nothing said."""

import os

from test_backup_dir import ENV
from test_backup_dir_hostile import one_line_error, script as bare, three_days
from test_shared_dir_scripts import POSTGRES


def archive_behind_a_link(tmp_path):
    """root's archive (0700) and a shared parent (0777) whose `backups` its other
    writer has made a link of theirs to the archive: (link, archive, names)."""
    archive = tmp_path / "archive"
    archive.mkdir(mode=0o700)
    names = three_days(archive)
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    link = shared / "backups"
    link.symlink_to(archive)
    os.lchown(link, *POSTGRES)
    return link, archive, names


def test_prune_refuses_a_directory_reached_by_a_link_another_user_can_point(tmp_path):
    link, archive, names = archive_behind_a_link(tmp_path)
    done = script("prune", "--keep-last", "1", link)
    assert (done.returncode, done.stdout) == (73, b""), done.stderr
    line = one_line_error(done.stderr, "encpipe-prune")
    assert line.endswith(f"the symbolic link {link} can be written by user postgres (its owner), who could lead {link}"
                         " elsewhere; refusing to prune it") and "--allow-shared-dir" in done.stderr.decode()
    assert sorted(os.listdir(archive)) == names


def test_a_dry_run_is_refused_too(tmp_path):  # it says what a run would do there
    link, archive, names = archive_behind_a_link(tmp_path)
    done = script("prune", "--keep-last", "1", "--dry-run", link)
    assert (done.returncode, done.stdout) == (73, b""), done.stderr
    assert sorted(os.listdir(archive)) == names


def test_prune_refuses_a_directory_under_one_every_user_can_write(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    d = shared / "b"
    d.mkdir()
    names = three_days(d)
    done = script("prune", "--keep-last", "1", "--dir", d)
    assert (done.returncode, done.stdout) == (73, b""), done.stderr
    assert one_line_error(done.stderr, "encpipe-prune") == (
        f"encpipe-prune: error: {shared} can be written by every user (mode o+w, not sticky),"
        f" who could lead {d} elsewhere; refusing to prune it")
    assert sorted(os.listdir(d)) == names


def test_root_refuses_to_prune_in_a_directory_under_one_postgres_owns(tmp_path):
    """postgres could rename `b` and put a link to root's archive in its place."""
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    d = home / "b"
    d.mkdir(mode=0o700)
    names = three_days(d)
    os.chown(home, *POSTGRES)
    done = script("prune", "--keep-last", "1", d)
    assert (done.returncode, done.stdout) == (73, b""), done.stderr
    assert "can be written by user postgres (its owner), who could lead" in one_line_error(done.stderr, "encpipe-prune")
    assert sorted(os.listdir(d)) == names


def test_root_prunes_a_directory_postgres_owns(tmp_path):
    """The directory itself may be another's: postgres can change nothing but its own files
    there, each removed only as it was listed (test_planted_archives.py has its rules)."""
    d = tmp_path / "b"
    d.mkdir(mode=0o700)
    names = three_days(d)
    for each in (d, *(d / n for n in names)):
        os.chown(each, *POSTGRES)
    done = script("prune", "--keep-last", "1", d)
    assert (done.returncode, done.stderr) == (0, b"")
    assert sorted(os.listdir(d)) == names[-1:]


def test_allow_shared_dir_is_the_callers_word(tmp_path):
    link, archive, names = archive_behind_a_link(tmp_path)
    done = script("prune", "--keep-last", "1", "--allow-shared-dir", link)
    assert (done.returncode, done.stderr) == (0, b"")
    assert sorted(os.listdir(archive)) == names[-1:]


def test_verify_and_list_still_read_a_shared_directory(tmp_path):
    """They remove nothing: a directory that others can write is read as it is."""
    d = tmp_path / "b"
    d.mkdir()
    three_days(d)
    os.chmod(d, 0o777)
    assert script("verify", d).returncode == 0
    assert script("list", d).returncode == 0


def test_a_directory_that_is_not_there_is_still_66(tmp_path):
    done = script("prune", "--keep-last", "1", tmp_path / "nothing")
    assert (done.returncode, done.stdout) == (66, b""), done.stderr


def script(command, *argv):
    return bare(command, *argv, env=ENV)  # with the key the files were sealed to
