"""prune and a name whose file was replaced, while it was being removed, by a
directory that got the file's inode number (ext4 gives a freed inode to the next
file or directory made): the name's (st_dev, st_ino) is the listed file's, and
that was all removal.remove_listed compared. Before, the directory was moved
into prune's hold directory and the unlink failed: `cannot remove NAME: Is a
directory` (74), with the directory left out of place in a
`.encpipe-removing.*` directory. Now a directory is never the listed file (a
listed file is a regular file or a link): NAME changed while pruning, left in
place, 74 as for any other file changed meanwhile."""

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from test_backup_dir import ENV, make_valid
from test_backup_dir_hostile import hours_ago, script

from encpipe.backup import removal


@pytest.fixture
def on_disk():
    """A directory on the machine's disk (/var/tmp): ext4 gives a freed inode to the next
    file made, a tmpfs never (its numbers only grow), and scripts/test gives the tests a
    tmpfs /tmp."""
    made = tempfile.mkdtemp(dir="/var/tmp")
    yield Path(made)
    shutil.rmtree(made, ignore_errors=True)


def test_prune_says_a_name_became_a_directory_with_the_files_inode_and_leaves_it(on_disk):
    tmp_path = on_disk
    # ext4 gives the freed inode to the next file or directory made, here or in any other
    # process at that moment (a busy machine): a new directory each time, a few times
    for attempt in range(30):  # a busy machine (tests in parallel) takes the freed inode now and then
        d = tmp_path / f"b{attempt}"
        d.mkdir()
        old, newest = (f"shop_{hours_ago(h)}.sql.enc" for h in (48, 24))
        for name in (old, newest):
            make_valid(d, name)
        inodes = tmp_path / f"inodes{attempt}"
        hook = (f'[ "$1" = removing ] && [ "$3" = {old} ] && cd {d} && stat -c %i {old} > {inodes} && rm {old} '
                f'&& mkdir {old} && stat -c %i {old} >> {inodes}; true')
        done = script("prune", "--keep-last", "1", d, env={**ENV, "ENCPIPE_TEST_HOOK": hook})
        before, after = inodes.read_text().split()
        if before == after:
            break
    else:
        pytest.fail(f"the file system never gave the directory the file's inode in {attempt + 1} tries")
    assert done.returncode == 74, done.stderr
    assert done.stderr.decode() == f"encpipe-prune: error: {old} changed while pruning; left in place\n"
    assert sorted(os.listdir(d)) == sorted([old, newest]) and os.path.isdir(d / old)


def test_remove_listed_never_takes_a_directory_for_the_listed_file(tmp_path):
    """The same, whatever the file system: the name is a directory with the listed identity."""
    (tmp_path / "a.enc").mkdir()
    info = os.lstat(tmp_path / "a.enc")
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(OSError) as raised:
            removal.remove_listed(fd, str(tmp_path), "a.enc", (info.st_dev, info.st_ino))
    finally:
        os.close(fd)
    assert str(raised.value) == "a.enc changed while pruning; left in place"
    assert os.listdir(tmp_path) == ["a.enc"] and os.path.isdir(tmp_path / "a.enc")
