"""encpipe-rotate rewraps the file it inspected, never one put in its place after.

Rotate reads a file's slots (`encpipe inspect`) to decide which of them its rewrap
makes anew: a slot of a new key or an escrow recipient the file already has is
removed and made again from the file key (a holder of an old key could have made
one that wraps another key: tests/test_rotate_escrow.py). It then opened the file
a second time for the rewrap, and renamed the result in as long as the name was
still the file of that second open. A holder of an old key who can write the
backup directory (or the file) puts in, between the inspect and that open, a file
of its own under the old key whose escrow slot wraps a random key: the inspect
had seen no escrow slot, so the rewrap kept the planted one and added a genuine
one after it; the escrow identity opens the first slot of its id and fails the
header's MAC (65): the escrow key opened nothing, and rotate said `rotated`.
Now the file rewrapped must be the one inspected, unchanged (else `error`, 75,
left as it is, and a rerun inspects it anew)."""

import io
import json
import os
import shlex
import sys

from cliutil import ok, run
from test_rotate import World, lines, rotate, rotate_env
from test_rotate_escrow import WrongKey

import encpipe
from encpipe import envelope
from encpipe.x25519 import parse_recipient

CHANGED = 75

# encpipe, which once (the first `inspect --json` without --verify) replaces
# $RACE_FILE by $RACE_WITH after the real inspect has reported on it.
RACER = """
import os, subprocess, sys
code = subprocess.run([sys.executable, "-m", "encpipe", *sys.argv[1:]]).returncode
if sys.argv[1] == "inspect" and "--verify" not in sys.argv and not os.path.exists(os.environ["RACE_DONE"]):
    how = os.environ["RACE_HOW"]
    with open(os.environ["RACE_WITH"], "rb") as f:
        data = f.read()
    if how == "rename":
        with open(os.environ["RACE_FILE"] + ".swap", "wb") as f:
            f.write(data)
        os.rename(os.environ["RACE_FILE"] + ".swap", os.environ["RACE_FILE"])
    else:  # rewritten in place: the same inode
        before = os.stat(os.environ["RACE_FILE"])
        with open(os.environ["RACE_FILE"], "r+b") as f:
            f.write(data)
            f.truncate()
        if how == "same-look":  # its owner sets its times back: only its ctime tells
            assert os.stat(os.environ["RACE_FILE"]).st_size == before.st_size
            os.utime(os.environ["RACE_FILE"], ns=(before.st_atime_ns, before.st_mtime_ns))
    open(os.environ["RACE_DONE"], "w").close()
sys.exit(code)
"""


def planted(world, data):
    """A file under the old key whose escrow slot wraps a random key (its maker holds the old key)."""
    sealed = ok(run(["seal", "--chunk-size", "16K", "--key-file", world.old_a], data))
    crafted = io.BytesIO()
    envelope.rewrap(io.BytesIO(sealed), crafted, [encpipe.RawKey(bytes.fromhex(world.old_hex))],
                    add=[WrongKey(parse_recipient(world.escrow_pub, "test"))])
    return crafted.getvalue()


def raced(world, how):
    data = os.urandom(3000)
    path = world.add("a.enc", "--key-file", world.old_a, size=3000)  # no escrow slot yet
    swap_in = world.tmp / "planted.enc"
    crafted = planted(world, data)
    if how == "same-look":  # as long as the file it replaces: one chunk, its plaintext shorter by the slot
        data = data[:len(data) - (len(crafted) - path.stat().st_size)]
        crafted = planted(world, data)
    swap_in.write_bytes(crafted)
    racer = world.tmp / "racer.py"
    racer.write_text(RACER)
    done_mark = world.tmp / "raced"
    env = rotate_env(RACE_FILE=str(path), RACE_WITH=str(swap_in), RACE_DONE=str(done_mark), RACE_HOW=how)
    env["ENCPIPE"] = f"{shlex.quote(sys.executable)} {shlex.quote(str(racer))}"
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    done = rotate(world.args(), env=env)
    assert done_mark.exists(), done.stderr.decode()  # the race was run
    return path, swap_in.read_bytes(), data, done


def assert_refused_then_rotated_by_a_rerun(world, path, swapped, data, done):
    got = lines(done)["a.enc"]
    assert (done.returncode, got["status"], got.get("exit")) == (1, "error", CHANGED), (got, done.stderr)
    assert "changed" in got["error"]
    assert path.read_bytes() == swapped
    assert world.temps() == []
    again = rotate(world.args())  # inspects the file now there: its escrow slot is made anew
    assert again.returncode == 0, again.stderr
    assert lines(again)["a.enc"]["status"] == "rotated"
    assert ok(run(["open", "--identity", world.escrow_id], path.read_bytes())) == data


def test_a_file_renamed_in_between_its_inspect_and_its_rewrap_is_left_alone(tmp_path):
    world = World(tmp_path)
    assert_refused_then_rotated_by_a_rerun(world, *raced(world, "rename"))


def test_a_file_rewritten_in_place_between_its_inspect_and_its_rewrap_is_left_alone(tmp_path):
    world = World(tmp_path)
    assert_refused_then_rotated_by_a_rerun(world, *raced(world, "in-place"))


def test_a_file_rewritten_in_place_to_its_size_and_times_between_its_inspect_and_its_rewrap_is_left_alone(tmp_path):
    """Its owner can set a file's times back (utime), never its change time (ctime)."""
    world = World(tmp_path)
    assert_refused_then_rotated_by_a_rerun(world, *raced(world, "same-look"))


def test_without_a_race_the_escrow_key_opens_the_rotated_file(tmp_path):
    """The same files, the planted one there from the start: rotated, escrow slot made anew."""
    world = World(tmp_path)
    data = os.urandom(3000)
    path = world.dir / "a.enc"
    path.write_bytes(planted(world, data))
    done = rotate(world.args())
    assert (done.returncode, lines(done)["a.enc"]["status"]) == (0, "rotated"), done.stderr
    assert ok(run(["open", "--identity", world.escrow_id], path.read_bytes())) == data
    assert json.loads(ok(run(["inspect", "--json"], path.read_bytes())))["version"] == 2


# encpipe, which once, as it is started for `rewrap` (its standard input already the
# file rotate opened and checked), rewrites $RACE_FILE in place to $RACE_WITH, as
# long as it was, its times set back: only its change time tells.
RACER_AT_REWRAP = """
import os, subprocess, sys
if sys.argv[1] == "rewrap" and not os.path.exists(os.environ["RACE_DONE"]):
    before = os.stat(os.environ["RACE_FILE"])
    with open(os.environ["RACE_WITH"], "rb") as f:
        data = f.read()
    with open(os.environ["RACE_FILE"], "r+b") as f:
        f.write(data)
        f.truncate()
    assert os.stat(os.environ["RACE_FILE"]).st_size == before.st_size
    os.utime(os.environ["RACE_FILE"], ns=(before.st_atime_ns, before.st_mtime_ns))
    open(os.environ["RACE_DONE"], "w").close()
sys.exit(subprocess.run([sys.executable, "-m", "encpipe", *sys.argv[1:]]).returncode)
"""


def test_a_file_rewritten_in_place_to_its_size_and_times_as_its_rewrap_starts_is_left_alone(tmp_path):
    """The rewrap's own open passed its check; what it then reads is written over
    (the same inode, size and times): the rename checks the change time too."""
    world = World(tmp_path)
    data = os.urandom(3000)
    path = world.add("a.enc", "--key-file", world.old_a, size=3000)
    crafted = planted(world, data)
    data = data[:len(data) - (len(crafted) - path.stat().st_size)]
    crafted = planted(world, data)
    swap_in = world.tmp / "planted.enc"
    swap_in.write_bytes(crafted)
    racer = world.tmp / "racer.py"
    racer.write_text(RACER_AT_REWRAP)
    done_mark = world.tmp / "raced"
    env = rotate_env(RACE_FILE=str(path), RACE_WITH=str(swap_in), RACE_DONE=str(done_mark))
    env["ENCPIPE"] = f"{shlex.quote(sys.executable)} {shlex.quote(str(racer))}"
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    done = rotate(world.args(), env=env)
    assert done_mark.exists(), done.stderr.decode()
    assert_refused_then_rotated_by_a_rerun(world, path, crafted, data, done)
