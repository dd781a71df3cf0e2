"""encpipe-rotate against a file planted by someone who can write the backup
directory and knows only public things: the new x25519 identity's public key and
the new raw key's key id (key ids are not secret). The planted v2 file is sealed to
that public key and to a raw key of the planter's own, whose slot is relabelled
with the new raw key's id (header MAC recomputed: the planter knows the file key).
Rotate must not turn it into a file the new raw key authenticates: the slot of that
id does not unwrap under the new raw key, so only the identity opens the file, and
a rewrap that would give it an authenticated raw-key slot is refused (67)."""

import io
import json
import os

from cliutil import ok, run, write_secret
from test_rotate import World, lines, rotate

from encpipe import envelope
from encpipe.format import SlotRecord
from encpipe.primitives import header_mac
from encpipe.slots import RawKey

NOT_SIGNED = 67


def relabelled(sealed, fake_hex, key_id):
    """`sealed` with the slot of raw key `fake_hex` now naming `key_id`, its header MAC
    made again under the file key (which the maker of the file knows)."""
    parsed = envelope.read_header(io.BytesIO(sealed))
    file_key, _ = envelope.unlock(parsed, [RawKey(bytes.fromhex(fake_hex))])
    old = parsed.header
    slots = tuple(SlotRecord(s.kind, key_id + s.body[8:]) if s.kind == 1 else s for s in old.slots)
    header = old._replace(slots=slots)
    header = header._replace(mac=header_mac(file_key, header))
    return header.encode() + sealed[len(old.encode()):]


def test_a_planted_file_naming_the_new_raw_key_is_not_laundered(tmp_path):
    w = World(tmp_path)
    new_id_file = str(w.tmp / "keys" / "new.id")
    new_pub = ok(run(["keygen", "--x25519", "-o", new_id_file])).decode().strip()
    fake_hex = os.urandom(32).hex()
    fake = write_secret(w.tmp / "fake.key", fake_hex + "\n")
    genuine = ok(run(["seal", "--key-file", fake, "--recipient", new_pub], b"planted rows\n"))
    new_raw_id = bytes.fromhex(w.ids(w.new)[0])
    planted = relabelled(genuine, fake_hex, new_raw_id)
    shown = json.loads(ok(run(["inspect", "--json"], planted)))
    assert new_raw_id.hex() in [s.get("key_id") for s in shown["slots"]]
    path = w.dir / "planted.enc"
    path.write_bytes(planted)
    done = rotate(["--old-key-file", w.old, "--new-key-file", w.new, "--new-key-file", new_id_file,
                   "--escrow-recipient", w.escrow_pub, str(w.dir)])
    got = lines(done)["planted.enc"]
    assert (done.returncode, got["status"], got["exit"]) == (1, "error", NOT_SIGNED), (got, done.stderr)
    assert path.read_bytes() == planted
    assert w.temps() == []
    # and the new raw key alone never opened it
    assert run(["open", "--key-file", w.new], planted)[:2] == (77, b"")
