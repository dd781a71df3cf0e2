"""A remote's listing (`rclone lsjson`: a JSON array, one object a line) is read
entry by entry as rclone writes it, each line bounded (LINE_LIMIT), only each
object's name and size kept: its memory grows with the objects listed by what the
listing keeps of each, not by rclone's whole output and a dict a file on top. Before,
the whole output was read, then parsed at once: several times a local listing's
cost per file. Anything that is not such an array (cut short, junk between
entries, a missing comma, a line past the bound, an entry without a name or a
size) fails the listing (66, one line), never a traceback, never a partial listing.
README, "Off-site copies"."""

import json
import os
import subprocess
import sys

import pytest

from cliutil import measure_peak_rss
from encpipe.backup.lsjson import LINE_LIMIT
from encpipe.backup.rclonestore import NO_SUCH_OBJECT
from encpipe.backup.records import Item
from encpipe.backup.rclonestore import Rclone
from rclone_stand_ins import endless, lsjson
from s3server import rclone_binary
from spies import python_head
from test_backup_dir import ENV, ROOT
from test_backup_restore import python_env
from test_remote_listing import upload

REMOTE = "fake:bucket"
MANY = 300000
# Peak RSS growth allowed from 10 objects to MANY: 115 MiB, about 400 bytes an
# object. What the listing keeps (an Item and its name) takes ~65 MiB; the whole
# output read, then parsed into a dict an object, took ~185.
GROWTH_KIB = 115 * 1024

# An rclone whose `lsjson REMOTE/N` streams a listing of N objects, made as it is
# written (never held whole, in the stand-in or in the test), as rclone writes it.
STREAMING = f"""{python_head()}
import sys
if sys.argv[1] != "lsjson":
    sys.exit(1)
count = int(sys.argv[-1].rsplit("/", 1)[1])
write = sys.stdout.write
write("[\\n")
for n in range(count):
    name = f"shop_{{n:09d}}.sql.enc"
    write((",\\n" if n else "") + f'{{{{"Path":"{{name}}","Name":"{{name}}","Size":{{n}},"ModTime":"","IsDir":false}}}}')
write("\\n]\\n" if count else "]\\n")
"""


def stand_in(tmp_path, listing, status=0, said=""):
    """An rclone whose lsjson writes `listing` (bytes), says `said` and exits `status`."""
    return lsjson(tmp_path, listing, status, said)


def listed(rclone):
    return Rclone(REMOTE, {"PATH": os.environ["PATH"], "RCLONE": rclone}).list()


def encpipe_list(rclone):
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": ROOT, "RCLONE": rclone, **ENV}
    return subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "encpipe-list"), REMOTE],
                          capture_output=True, env=env, stdin=subprocess.DEVNULL, timeout=120)


def test_a_listing_of_many_objects_grows_by_what_it_keeps_of_each(tmp_path):
    rclone = tmp_path / "rclone"
    rclone.write_text(STREAMING)
    rclone.chmod(0o755)
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": ROOT, "RCLONE": str(rclone)}
    program = ("import sys; from encpipe.backup.rclonestore import Rclone; items = Rclone(sys.argv[1]).list(); "
               "print(len(items), items[0], items[-1])")
    peaks = {}
    for count in (10, MANY):
        out = tmp_path / f"out{count}"
        code, peaks[count] = measure_peak_rss([sys.executable, "-c", program, f"{REMOTE}/{count}"],
                                              tmp_path / f"rss{count}", env=env, stdout=open(out, "wb"))
        assert code == 0
        last = f"shop_{count - 1:09d}.sql.enc"
        assert out.read_text() == f"{count} {Item('shop_000000000.sql.enc', 0)} {Item(last, count - 1)}\n"
    assert peaks[MANY] - peaks[10] < GROWTH_KIB, peaks


def test_real_rclone_lists_the_objects_as_its_whole_output_parsed_at_once_gives_them(s3, tmp_path):
    files = {"shop_20260101T000000Z.sql.enc": b"x" * 70, "a b": b"", "x<y&z>": b"1", "\u00e9\u2028\U0001f600": b"22",
             "quote\"back\\slash": b"333", "zz": b"4444"}
    upload(s3, tmp_path, "odd", files)
    env = {**python_env(), **s3.env}
    whole = subprocess.run([rclone_binary(), "lsjson", "--files-only", "--no-modtime", "--no-mimetype",
                            f"{s3.location}/odd"], env=env, capture_output=True, check=True).stdout
    assert whole.startswith(b"[\n{") and whole.endswith(b"}\n]\n") and whole.count(b"\n") == len(files) + 2
    before = sorted((f["Name"], f["Size"]) for f in json.loads(whole))
    assert before == sorted((name, len(data)) for name, data in files.items())
    assert Rclone(f"{s3.location}/odd", env).list() == [Item(name, size) for name, size in before]
    assert Rclone(f"{s3.location}/none", env).list() == []  # rclone's "[\n]\n"


@pytest.mark.parametrize("listing, names", [
    (b"[\n]\n", []),
    (b"[]", []),
    (b'[{"Name":"b","Size":2},{"Path":"a","Name":"a","Size":1,"IsDir":false}]', [("a", 1), ("b", 2)]),  # one line
    (b'[\n{"Name":"b","Size":-1},\n{"Name":"a","Size":1}\n]\n', [("a", 1), ("b", -1)]),
    (b' [ \r\n\t{"Name" : "a", "Size" : 1} ,\n {"Name":"c","Size":3}\n\n] \n', [("a", 1), ("c", 3)]),
])
def test_what_rclone_writes_and_the_json_of_a_stand_in_still_list(tmp_path, listing, names):
    assert listed(stand_in(tmp_path, listing)) == [Item(name, size) for name, size in names]


def test_several_objects_under_one_name_are_still_each_unreadable(tmp_path):
    items = listed(stand_in(tmp_path, b'[\n{"Name":"b","Size":2},\n{"Name":"a","Size":1},\n{"Name":"b","Size":3}\n]\n'))
    assert [(i.name, i.size, i.unreadable) for i in items] == [("a", 1, False), ("b", 2, True), ("b", 3, True)]
    assert items[1].error.startswith("cannot read b: the remote lists 2 files under this name")


def test_each_of_three_objects_under_one_name_is_unreadable_and_the_next_name_is_not(tmp_path):
    items = listed(stand_in(tmp_path, b'[\n{"Name":"b","Size":2},\n{"Name":"c","Size":5},\n{"Name":"b","Size":3},\n'
                                      b'{"Name":"b","Size":4}\n]\n'))
    assert [(i.name, i.size, i.unreadable) for i in items] == [("b", 2, True), ("b", 3, True), ("b", 4, True),
                                                               ("c", 5, False)]
    assert all(i.error.startswith("cannot read b: the remote lists 3 files under this name") for i in items[:3])


def test_a_failed_lsjson_is_rclones_failure_not_its_cut_output(tmp_path):
    """rclone writes `[` before it lists: a failure leaves that, which is not the error."""
    assert listed(stand_in(tmp_path, b"[\n", 3, "directory not found")) == []  # a local remote's missing directory
    done = encpipe_list(stand_in(tmp_path, b"[\n{\"Name\":\"a\",", 1, "Failed to lsjson: boom"))
    assert (done.returncode, done.stdout) == (66, b"")
    assert done.stderr == f"encpipe-list: error: cannot list {REMOTE}: rclone lsjson: Failed to lsjson: boom\n".encode()


LONG = b'[\n{"Name":"' + b"a" * (LINE_LIMIT + 1) + b'","Size":1}\n]\n'


@pytest.mark.parametrize("listing, why", [
    (b"", "line 1: it ends before its array does"),
    (b"[\n", "line 2: it ends before its array does"),
    (b'[\n{"Name":"a","Size":1},\n', "line 3: it ends before its array does"),
    (b'[\n{"Name":"a","Size":1}', "line 2: it ends before its array does"),
    (b'[\n{"Name":"a","Si', "line 2: it ends before its array does"),
    (b'[\n{"Name":"a",\n"Size":1}\n]\n', "line 2: not JSON"),  # an entry on two lines
    (b'[\n{"Name":"a","Size":1},\nx\n{"Name":"b","Size":2}\n]\n', "line 3: not JSON"),
    (b'[\n{"Name":"a","Size":1}\n{"Name":"b","Size":2}\n]\n', "line 3: no comma before the next entry"),
    (b'[\n{"Name":"a","Size":1},,\n{"Name":"b","Size":2}\n]\n', "line 2: not JSON"),
    (b'[\n{"Name":"a","Size":1},\n]\n', "line 3: not JSON"),
    (b'[\n]\n]\n', "line 3: more after its array"),
    (b"[]\n[]\n", "line 2: more after its array"),
    (b'{"Name":"a","Size":1}', "line 1: not a JSON array"),
    (b"null", "line 1: not a JSON array"),
    (b"[1]", "line 1: an entry without a name and a size"),
    (b'[{"Name":"a"}]', "line 1: an entry without a name and a size"),
    (b'[{"Name":3,"Size":1}]', "line 1: an entry without a name and a size"),
    (b'[{"Name":"a","Size":"1"}]', "line 1: an entry without a name and a size"),
    (b'[{"Name":"a","Size":true}]', "line 1: an entry without a name and a size"),
    (b'[{"Name":"a","Size":1.0}]', "line 1: an entry without a name and a size"),
    (b'[\n{"Name":"\xff","Size":1}\n]\n', "line 2: not UTF-8"),
    (LONG, f"line 2: longer than {LINE_LIMIT} bytes"),
])
def test_anything_but_a_listing_fails_the_listing_in_one_line(tmp_path, listing, why):
    done = encpipe_list(stand_in(tmp_path, listing))
    assert (done.returncode, done.stdout) == (66, b""), done.stderr
    assert done.stderr == (f"encpipe-list: error: cannot list {REMOTE}: rclone lsjson: its output is not a listing "
                           f"({why})\n").encode()


def test_a_line_past_the_bound_is_read_no_further(tmp_path):
    """rclone's output past the bound is not read: rclone is stopped, the listing failed,
    whatever rclone had left to write (here 64 MiB on one line, then its end)."""
    done = encpipe_list(endless(tmp_path, "[\\n", "\\n]"))
    assert (done.returncode, done.stdout) == (66, b""), done.stderr
    assert done.stderr == (f"encpipe-list: error: cannot list {REMOTE}: rclone lsjson: its output is not a listing "
                           f"(line 2: longer than {LINE_LIMIT} bytes)\n").encode()
    assert not (tmp_path / "finished").exists()


def test_a_line_of_exactly_the_bound_still_lists(tmp_path):
    """LINE_LIMIT bytes, its line end among them, is within the bound; one more is not
    (test_anything_but_a_listing_fails_the_listing_in_one_line)."""
    entry = b'{"Name":"a","Size":1}'
    line = entry + b" " * (LINE_LIMIT - len(entry) - 1) + b"\n"
    assert len(line) == LINE_LIMIT
    assert listed(stand_in(tmp_path, b"[\n" + line + b"]\n")) == [Item("a", 1)]
    done = encpipe_list(stand_in(tmp_path, b"[\n" + line[:-1] + b" \n]\n"))
    assert (done.returncode, done.stdout) == (66, b""), done.stderr
    assert done.stderr.endswith(f"(line 2: longer than {LINE_LIMIT} bytes)\n".encode()), done.stderr


def test_one_object_is_the_one_of_its_name(tmp_path):
    """stat(name), read from the same listing: the object of that name, of several under
    it the first listed (the one a fetch is then checked against), of none an error."""
    rclone = stand_in(tmp_path, b'[\n{"Name":"a","Size":1},\n{"Name":"b","Size":2},\n{"Name":"c","Size":3},\n'
                                b'{"Name":"b","Size":4}\n]\n')
    store = Rclone(REMOTE, {"PATH": os.environ["PATH"], "RCLONE": rclone})
    assert store.stat("c") == Item("c", 3)
    assert store.stat("b") == Item("b", 2)
    missing = store.stat("d")
    assert (missing.name, missing.size, missing.unreadable, missing.error) == (
        "d", None, True, f"cannot read d: {NO_SUCH_OBJECT}")
