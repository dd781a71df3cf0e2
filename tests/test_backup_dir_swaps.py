"""The backup tools against a local user who can write the backup directory (or
only read it) but holds no key: a name swapped at the very moment prune removes
it, the directory's lock held for ever, a file that grows while it is read. Each
race is won deterministically through $ENCPIPE_TEST_HOOK (encpipe.safefile.hook).
Real scripts."""

import os

from test_backup_dir import ENV, make_valid
from test_backup_dir_hostile import hours_ago, script


def test_prune_never_unlinks_a_file_renamed_over_the_name_after_its_last_check(tmp_path):
    """prune checked that the name to remove was still the file it authenticated
    (its inode), then unlinked it by name: a writer of the directory who renamed
    the kept backup over that name between the check and the unlink made prune
    delete the kept backup instead, exit 0. Now the file is first moved, by name,
    into a directory of prune's own that no one else can write, compared there
    (its inode), and only then unlinked; another file found there goes back."""
    d = tmp_path / "b"
    d.mkdir()
    old, kept, newest = (f"shop_{hours_ago(h)}.sql.enc" for h in (72, 48, 24))
    for name in (old, kept, newest):
        make_valid(d, name)
    saved = (d / kept).read_bytes()
    hook = f'[ "$1" = removing ] && [ "$3" = {old} ] && mv {d / kept} {d / old}; true'
    done = script("prune", "--keep-last", "2", d, env={**ENV, "ENCPIPE_TEST_HOOK": hook})
    assert not (d / kept).exists()  # the race was run
    assert (d / old).read_bytes() == saved and sorted(os.listdir(d)) == sorted([old, newest]), done.stderr
    assert done.returncode == 74, done.stderr
    assert done.stderr.decode() == f"encpipe-prune: error: {old} changed while pruning; left in place\n"
