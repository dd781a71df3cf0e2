"""encpipe-rotate passes on what an encpipe child run on a file (its inspect, its
rewrap) says on standard error besides its error line, each line after
`encpipe-rotate: FILE: `, once, as the child wrote it, whether the child then
succeeds or fails; files whose children said nothing add nothing. Before, these
children ran quiet: whatever they warned of was read and dropped. (The
verification of the new file, `inspect --verify`, is a check of what rewrap
wrote: its warnings, which rewrap gave, are still dropped.)"""

import json
import os
import stat

import pytest

from cliutil import seal_v1
from spies import python_head
from test_rotate import CHUNK, World, rotate, rotate_env

WARNING = "encpipe: warning: a warning of rewrap's\n"
HINT = "encpipe: hint: what to do about it\n"
WARNS = f"""{python_head()}
# encpipe, but a rewrap of a file named *warn* warns first (its standard input is the file).
import os, sys
args = sys.argv[1:]
if args[:1] == ["rewrap"] and "warn" in os.path.basename(os.readlink("/proc/self/fd/0")):
    sys.stderr.write({WARNING + HINT!r})
    sys.stderr.flush()
os.execv(sys.executable, [sys.executable, "-m", "encpipe", *args])
"""


@pytest.fixture
def world(tmp_path):
    return World(tmp_path)


def test_a_childs_warnings_are_passed_on_naming_the_file(world, tmp_path):
    wrapper = tmp_path / "encpipe-warns"
    wrapper.write_text(WARNS)
    wrapper.chmod(stat.S_IRWXU)
    world.add("a-warn.enc", "--key-file", world.old_a, size=2 * CHUNK + 3)
    world.add("b-quiet.enc", "--key-file", world.old_b)
    world.add("c-new-warn.enc", "--key-file", world.new)  # skipped: no rewrap, no warning
    world.add("sub/d-warn.enc", "--key-file", world.old_a)
    (world.dir / "e-v1.enc").write_bytes(seal_v1(b"old data", key=world.old_hex))  # encpipe rewrap: no warning; rotate's own
    cut = world.add("f-warn-cut.enc", "--key-file", world.old_a, size=3 * CHUNK)
    cut.write_bytes(cut.read_bytes()[:-(CHUNK + 16)])  # rewrap warns, then refuses it
    done = rotate(world.args(escrow=False), env=rotate_env(ENCPIPE=str(wrapper)))
    status = {os.path.relpath(r["file"], world.dir): r["status"] for r in map(json.loads, done.stdout.splitlines())}
    assert status == {"a-warn.enc": "rotated", "b-quiet.enc": "rotated", "c-new-warn.enc": "skipped",
                      "e-v1.enc": "rotated", "f-warn-cut.enc": "error", "sub/d-warn.enc": "rotated"}
    said = "".join(f"encpipe-rotate: {world.dir / name}: {line}" for name in ("a-warn.enc", "f-warn-cut.enc",
                                                                               "sub/d-warn.enc")
                   for line in (WARNING, HINT))
    v1 = (f"encpipe-rotate: warning: {world.dir}/e-v1.enc: a version 1 file: its maker is not authenticated (any "
          "holder of one of its keys could have made it) and it cannot be signed; re-seal it (encpipe open | "
          "encpipe seal) to make it version 2\n")  # rotate's own (tests/test_rotate_hints_v1.py)
    cut = said.index(f"encpipe-rotate: {world.dir}/f-warn-cut.enc")
    said = said[:cut] + v1 + said[cut:]
    assert (done.returncode, done.stderr.decode()) == (1, said + "encpipe-rotate: error: 1 file(s) could not be "
                                                                 "rotated\n")


def test_a_file_name_is_shown_printable(world, tmp_path):
    wrapper = tmp_path / "encpipe-warns"
    wrapper.write_text(WARNS)
    wrapper.chmod(stat.S_IRWXU)
    world.add("a-warn\n\x1b[2J.enc", "--key-file", world.old_a)
    done = rotate(world.args(escrow=False), env=rotate_env(ENCPIPE=str(wrapper)))
    shown = f"encpipe-rotate: {world.dir}/a-warn\\n\\x1b[2J.enc: "
    assert (done.returncode, done.stderr.decode()) == (0, shown + WARNING + shown + HINT)
