"""An object asked for itself (`rclone lsjson --stat`, Rclone.head: an upload's size
check, the final name looked for before a rename) is read as the listing is
to the listing's bound (lsjson.py), never rclone's whole output at once: one
JSON object (or null), as rclone indents it over several lines, of at most
1 MiB. Before, the whole output was read, then parsed: an rclone (or a remote)
that wrote without end grew the run's memory without bound. Anything else
(longer, not JSON, not an object, more after it) fails as a bad listing does:
66, one line, `cannot list REMOTE:PATH/NAME: rclone lsjson: its output is not a
listing (...)`, rclone stopped past the bound. README, "Off-site copies"."""

import os

import pytest

from encpipe.backup.lsjson import LINE_LIMIT
from encpipe.backup.rclonepipe import UNUSED_LIMIT
from encpipe.backup.records import Item
from encpipe.backup.rclonestore import Rclone
from encpipe.errors import InputUnavailable, IOFailure
from rclone_stand_ins import endless, lsjson

REMOTE = "fake:bucket"
NAME = "shop_20260101T000000Z.sql.enc"


def stand_in(tmp_path, stat, status=0, said=""):
    """An rclone whose `lsjson --stat` writes `stat` (bytes), says `said` and exits `status`."""
    return lsjson(tmp_path, stat, status, said, ("lsjson", "--stat"))


def head(rclone, name=NAME):
    return Rclone(REMOTE, {"PATH": os.environ["PATH"], "RCLONE": rclone}).head(name)


def refused(rclone):
    with pytest.raises(InputUnavailable) as e:
        head(rclone)
    assert e.value.exit_code == 66
    return str(e.value)


def not_a_listing(why):
    return f"cannot list {REMOTE}/{NAME}: rclone lsjson: its output is not a listing ({why})"


@pytest.mark.parametrize("stat, size", [
    (b'{"Path":"x","Name":"x","Size":7,"IsDir":false}\n', 7),
    (b' \n{"Name":"x", "Size":7}\r\n\n', 7),
    (b'{\n\t"Path": "x",\n\t"Name": "x",\n\t"Size": 7,\n\t"ModTime": "",\n\t"IsDir": false\n}\n', 7),  # rclone's
    (b'{"Name":"x",\n"Size":7}', 7),
    (b'{"Name":"x","Size":-1}', -1),
    (b'{"Name":"x","Size":"7"}\n', None),
])
def test_an_objects_stat_gives_its_size(tmp_path, stat, size):
    assert head(stand_in(tmp_path, stat)) == Item(NAME, size)


@pytest.mark.parametrize("stat", [b"null\n", b"", b"\n", b'{"Name":"x","Size":0,"IsDir":true}\n'])
def test_no_object_is_said_so(tmp_path, stat):
    item = head(stand_in(tmp_path, stat))
    assert (item.name, item.unreadable, item.error) == (NAME, True, f"cannot read {NAME}: no such object")


LONG = b'{"Name":"' + b"a" * LINE_LIMIT + b'","Size":1}\n'


@pytest.mark.parametrize("stat, why", [
    (b"{not json\n", "line 1: not JSON"),
    (b'{"Name":"x","Size":1', "line 1: not JSON"),
    (b'{\n"Name":"x",\n"Size":1\n', "line 4: not JSON"),
    (b'[{"Name":"x","Size":1}]\n', "line 1: not a JSON object"),
    (b"7\n", "line 1: not a JSON object"),
    (b'{"Name":"x","Size":1} {"Name":"y","Size":2}\n', "line 1: more after its object"),
    (b'{"Name":"x","Size":1}\n\n{"Name":"y","Size":2}\n', "line 3: more after its object"),
    (b'null\nnull\n', "line 2: more after its object"),
    (b'{"Name":"\xff","Size":1}\n', "line 1: not UTF-8"),
    (b'{\n"Name":"\xff","Size":1}\n', "line 2: not UTF-8"),
    (LONG, f"longer than {LINE_LIMIT} bytes"),
])
def test_anything_but_one_object_fails_as_a_bad_listing_does(tmp_path, stat, why):
    assert refused(stand_in(tmp_path, stat)) == not_a_listing(why)


def test_a_failed_stat_is_rclones_failure_not_its_output(tmp_path):
    with pytest.raises(IOFailure) as e:
        head(stand_in(tmp_path, b"{", 3, "boom"))
    assert str(e.value) == f"rclone lsjson {REMOTE}/{NAME}: boom"


def test_an_endless_output_is_read_no_further(tmp_path):
    """rclone's output past the bound is not read: rclone is stopped, whatever it had left
    to write (here 64 MiB on one line, then its end); before, all of it was read."""
    assert refused(endless(tmp_path)) == not_a_listing(f"longer than {LINE_LIMIT} bytes")
    assert not (tmp_path / "finished").exists()


def test_an_output_no_command_writes_is_read_no_further(tmp_path):
    """`rclone deletefile` and `moveto` write nothing on their standard output; one that
    writes without end fails (IOFailure, 74), rclone stopped; before, all of it was read."""
    store = Rclone(REMOTE, {"PATH": os.environ["PATH"], "RCLONE": endless(tmp_path)})
    with pytest.raises(IOFailure) as e:
        store.remove(Item(NAME, 1))
    assert str(e.value) == f"rclone deletefile {REMOTE}/{NAME}: more than {UNUSED_LIMIT} bytes on its standard output"
    assert not (tmp_path / "finished").exists()
    said = store.discard(NAME)
    assert said == (f"{REMOTE}/{NAME} not removed: rclone deletefile: more than {UNUSED_LIMIT} bytes on its "
                    "standard output")
    assert not (tmp_path / "finished").exists()
