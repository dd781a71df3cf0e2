"""encpipe-rotate against a holder of one key slot: a holder of an old key who can
write DIR makes a file whose escrow slot wraps another key (the escrow slot is a
public-key slot: no key rotate is given can check it). Rotate kept it (an escrow
recipient the file lacked was added, one it had kept) and reported the file
rotated, its slots holding the escrow recipient's id: the escrow key opened
nothing. Now a rewritten file's escrow slots are all made anew from the file key
the given keys opened."""

import io
import json
import os

from cliutil import ok, run
from test_rotate import World, rotate

import encpipe
from encpipe import envelope
from encpipe.x25519 import parse_recipient


class WrongKey:
    """A recipient that wraps a random key instead of the file key."""

    def __init__(self, recipient):
        self.recipient = recipient

    def wrap(self, file_key):
        return self.recipient.wrap(os.urandom(len(file_key)))


def test_rotate_makes_the_escrow_slot_anew_so_that_the_escrow_key_opens_every_rotated_file(tmp_path):
    world = World(tmp_path)
    data = os.urandom(3000)
    sealed = ok(run(["seal", "--chunk-size", "16K", "--key-file", world.old_a], data))
    crafted = io.BytesIO()
    envelope.rewrap(io.BytesIO(sealed), crafted, [encpipe.RawKey(bytes.fromhex(world.old_hex))],
                    add=[WrongKey(parse_recipient(world.escrow_pub, "test"))])
    path = world.dir / "a.enc"
    path.write_bytes(crafted.getvalue())
    escrow_id = world.ids(world.escrow_id)[0]
    assert escrow_id in {s["key_id"] for s in json.loads(ok(run(["inspect", "--json"], path.read_bytes())))["slots"]}
    code, out, _ = run(["open", "--identity", world.escrow_id], path.read_bytes())
    assert (code, out) == (65, b"")  # the escrow slot opens nothing (its key fails the header's MAC)
    done = rotate(world.args())
    assert done.returncode == 0, done.stderr
    [record] = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert record["status"] == "rotated" and escrow_id in record["slots"]
    rotated = path.read_bytes()
    assert ok(run(["open", "--key-file", world.new], rotated)) == data
    assert ok(run(["open", "--identity", world.escrow_id], rotated)) == data
