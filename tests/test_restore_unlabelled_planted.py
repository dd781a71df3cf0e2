"""An older backup with no label (made before labels, by hand with `encpipe seal`, or a
file of the previous tool that the same raw key opens: migrate's `--keep-originals` keeps
them beside the new ones) put under the name of a labelled run's dump. README (the backup's
label): such a dump is restored "by what its name says, but only while it is older than
every labelled dump of its series"; its run's globals file carries a label, so the run
labelled its dump, and an unlabelled one under its name is a planted copy."""

import shutil

import pytest

from test_backup_restore import backup, databases, encpipe, ensure_small, make_legacy_file, read_key, restore

PLANTED = b"CREATE TABLE planted (x int);\n"
WHY = ("encpipe-restore: error: %s holds no label, though its run's globals file carries one, as encpipe-backup "
       "labels every dump of such a run (a copy of another backup put under this name?); nothing was changed")


@pytest.fixture(scope="module")
def made_small_backup(pg, tools, key_file, tmp_path_factory):
    """A labelled run (a plain dump, zstd), made once for the module."""
    db = ensure_small(pg, "unlabelled_source")
    path, _ = backup(pg, tools, str(tmp_path_factory.mktemp("small") / "b"), db, "--key-file", key_file)
    return path, db


def _planted_restore(pg, tools, key_file, small_backup, make):
    path, _ = small_backup
    make(path)
    pg.dropdb("bk_planted")
    proc = restore(pg, tools, path, "bk_planted", "--key-file", key_file)
    created = "bk_planted" in databases(pg)
    pg.dropdb("bk_planted")
    return proc, created


def test_an_unlabelled_dump_under_a_labelled_runs_name_is_refused(pg, tools, key_file, small_backup):
    def make(path):
        with open(path, "wb") as out:
            out.write(encpipe(["seal", "--key-file", key_file], input=PLANTED, check=True).stdout)
    proc, created = _planted_restore(pg, tools, key_file, small_backup, make)
    assert (proc.returncode, proc.stdout, created) == (65, b"", False), proc.stderr.decode()
    assert proc.stderr.decode().splitlines()[-1] == WHY % small_backup[0]


def test_a_file_of_the_previous_tool_under_a_labelled_runs_name_is_refused(pg, tools, key_file, small_backup,
                                                                           tmp_path):
    def make(path):
        shutil.copyfile(make_legacy_file(tmp_path / "shop_backup_2024.sql.enc", read_key(key_file), PLANTED), path)
    proc, created = _planted_restore(pg, tools, key_file, small_backup, make)
    assert (proc.returncode, proc.stdout, created) == (65, b"", False), proc.stderr.decode()
    assert proc.stderr.decode().splitlines()[-1].startswith(
        "encpipe-restore: error: %s is a file of the previous tool, but its run's globals file " % small_backup[0])
