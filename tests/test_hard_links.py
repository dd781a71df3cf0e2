"""A file with other hard links (a snapshot's, a copy made with `cp -l` or `ln`):
`rewrap --in-place` and `encpipe-rotate` put a new file under its name only, so
the other links keep the file as it was, with every slot the run removed: a
retired key still opens them. They say so, in a warning (README "`encpipe
rewrap`", "Rotating a directory"); a file with no other link gets none."""

import json
import os

from cliutil import ok, run
from test_rotate import World, rotate

DATA = os.urandom(70_000)


def test_rewrap_in_place_says_that_a_hard_link_keeps_the_removed_slot(tmp_path):
    world = World(tmp_path)
    path = world.add("a.enc", "--key-file", world.old_a, "--key-file", world.new)
    old_id = world.ids(world.old_a)[0]
    snapshot = tmp_path / "snapshot.enc"
    os.link(path, snapshot)
    before = snapshot.read_bytes()
    done = run(["rewrap", "--in-place", str(path), "--key-file", world.new, "--remove", old_id])
    assert (done.code, done.stdout) == (0, b"")
    assert done.stderr == (f"encpipe: warning: {path}: 1 other hard link to it keeps the file as it was, with every "
                           "slot rewrap removed: rewrap replaces this name only\n")
    assert snapshot.read_bytes() == before  # the retired key still opens the link
    assert ok(run(["open", "--key-file", world.old_a], before)) == world.plain["a.enc"]
    assert run(["open", "--key-file", world.old_a], path.read_bytes()).code == 77


def test_rewrap_in_place_of_a_file_with_no_other_link_warns_nothing(tmp_path):
    world = World(tmp_path)
    path = world.add("a.enc", "--key-file", world.old_a, "--key-file", world.new)
    done = run(["rewrap", "--in-place", str(path), "--key-file", world.new, "--remove", world.ids(world.old_a)[0]])
    assert (done.code, done.stdout, done.stderr) == (0, b"", "")


def test_rotate_says_that_hard_links_elsewhere_keep_the_old_key(tmp_path):
    world = World(tmp_path)
    linked = world.add("a-old.enc", "--key-file", world.old_a)
    alone = world.add("b-old.enc", "--key-file", world.old_a)
    elsewhere = tmp_path / "snapshots"
    elsewhere.mkdir()
    for n in (1, 2):
        os.link(linked, elsewhere / f"a-old.{n}.enc")
    done = rotate(world.args(escrow=False))
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.decode().splitlines()]
    by_name = {os.path.basename(r["file"]): r for r in records}
    assert by_name["a-old.enc"]["status"] == by_name["b-old.enc"]["status"] == "rotated"
    assert by_name["a-old.enc"]["other_links"] == 2 and "other_links" not in by_name["b-old.enc"]
    assert done.stderr.decode() == (f"encpipe-rotate: warning: {linked}: 2 other hard links to it keep the file as "
                                    "it was, with every slot rotate removed: rotate replaces this name only\n")
    for n in (1, 2):
        assert (elsewhere / f"a-old.{n}.enc").read_bytes() == world.originals["a-old.enc"]
    assert ok(run(["open", "--key-file", world.new], alone.read_bytes())) == world.plain["b-old.enc"]
