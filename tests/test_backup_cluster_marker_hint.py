"""What the refusal of a cluster marker says will help (backup.cluster.read).

A marker that --new-cluster replaces (garbled, too large, a link, another user's)
offers it; what it never removes (a directory, a FIFO: tests/test_backup_cluster_marker.py;
several objects under the name on a remote, here) does not: the hint says to move it
out of the way (before, it offered --new-cluster there too, which stored the backup and
left the marker unwritten, every run)."""

import io

import pytest

from encpipe.backup import cluster
from encpipe.backup.records import Item
from encpipe.errors import UnsafeDirectory


class Remote:
    """A store whose listing holds `item` under the marker's name."""

    def __init__(self, item):
        self.item = item

    def list(self):
        return [self.item]

    def where(self, name):
        return f"offsite:backups/{name}"

    def trusted_owners(self):
        return None


def test_several_objects_under_the_name_are_not_offered_new_cluster():
    why = (f"cannot read {cluster.MARKER}: the remote lists 2 files under this name (rclone dedupe tells them "
           "apart): which one a read or a removal reaches is not known")
    with pytest.raises(UnsafeDirectory) as refused:
        cluster.read(Remote(Item(cluster.MARKER, 57, error=why, unreadable=True)))
    assert str(refused.value) == f"offsite:backups/{cluster.MARKER} cannot be read as a cluster marker: {why}"
    assert refused.value.hint == ("see whose backups the location holds (encpipe-list); move what is under that "
                                  "name out of the way: --new-cluster replaces a file or a link, never this")


def test_a_garbled_one_is_offered_new_cluster():
    store = Remote(Item(cluster.MARKER, 3))
    store.open = lambda item: io.BytesIO(b"no\n")
    with pytest.raises(UnsafeDirectory) as refused:
        cluster.read(store)
    assert refused.value.hint == ("see whose backups the location holds (encpipe-list); remove the file, or run "
                                  "with --new-cluster to write this server's")
