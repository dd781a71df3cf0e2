"""encpipe-rotate says so when a rotated file's maker is no longer authenticated.

A v2 file with a slot of a raw key rotate holds is authenticated by that slot's
authenticator (its maker held the key): encpipe-restore restores it, prune counts
it. Rotated to new keys that are x25519 identities only, without --sign-key, the
raw-key slot is removed and nothing else vouches for the file: anyone with the
public key could have made it, so encpipe-restore refuses it (67) without
--allow-unauthenticated, and prune no longer counts it. Rotate did that in silence,
exit 0: the operator learnt it at the next restore. Now the file's line has
"sender_authenticated": false and a warning names the file; the file is rotated
all the same (the slots asked for are there)."""

import json

from cliutil import ok, run, seal_v1
from test_rotate import World, lines, rotate

WARNING = "the rotated file's maker is not authenticated"


def identity_world(tmp_path):
    world = World(tmp_path)
    new_id = str(world.tmp / "keys" / "new.id")
    ok(run(["keygen", "--x25519", "-o", new_id]))
    return world, new_id


def test_a_raw_key_file_rotated_to_an_identity_only_is_said_unauthenticated(tmp_path):
    world, new_id = identity_world(tmp_path)
    path = world.add("a.enc", "--key-file", world.old_a)
    done = rotate(["--old-key-file", world.old, "--new-key-file", new_id, str(world.dir)])
    assert done.returncode == 0, done.stderr
    got = lines(done)["a.enc"]
    assert (got["status"], got.get("sender_authenticated")) == ("rotated", False), got
    assert done.stderr.decode() == (
        f"encpipe-rotate: warning: {path}: {WARNING} (only an x25519 identity of --new-key-file opens it, and it "
        "carries no signature): encpipe-restore refuses it (67) without --allow-unauthenticated; keep a raw key "
        "among the new keys, or give --sign-key\n")
    assert ok(run(["open", "--identity", new_id], path.read_bytes())) == world.plain["a.enc"]
    assert run(["open", "--identity", new_id, "--refuse-unauthenticated"], path.read_bytes())[:2] == (67, b"")


def test_signed_by_rotate_it_is_not_said(tmp_path):
    world, new_id = identity_world(tmp_path)
    sign = str(world.tmp / "keys" / "s.sign")
    ok(run(["keygen", "--sign", "-o", sign]))
    world.add("a.enc", "--key-file", world.old_a)
    done = rotate(["--old-key-file", world.old, "--new-key-file", new_id, "--sign-key", sign, str(world.dir)])
    assert (done.returncode, done.stderr) == (0, b"")
    got = lines(done)["a.enc"]
    assert got["status"] == "rotated" and "sender_authenticated" not in got, got


def test_a_file_no_raw_key_authenticated_before_is_not_said(tmp_path):
    """Sealed to a public key only (encpipe-backup --recipient): its maker was not
    authenticated before either; rotating it to another identity changes nothing of that."""
    world, new_id = identity_world(tmp_path)
    old_id = str(world.tmp / "keys" / "old.id")
    old_pub = ok(run(["keygen", "--x25519", "-o", old_id])).decode().strip()
    world.add("b.enc", "--recipient", old_pub)
    done = rotate(["--old-key-file", old_id, "--new-key-file", new_id, str(world.dir)])
    assert (done.returncode, done.stderr) == (0, b"")
    got = lines(done)["b.enc"]
    assert got["status"] == "rotated" and "sender_authenticated" not in got, got


def test_a_new_raw_key_keeps_the_file_authenticated_and_nothing_is_said(tmp_path):
    world, new_id = identity_world(tmp_path)
    path = world.add("a.enc", "--key-file", world.old_a)
    done = rotate(["--old-key-file", world.old, "--new-key-file", world.new, "--new-key-file", new_id,
                   str(world.dir)])
    assert (done.returncode, done.stderr) == (0, b"")
    assert "sender_authenticated" not in lines(done)["a.enc"]
    report = json.loads(ok(run(["inspect", "--verify", "--json", "--key-file", world.new], path.read_bytes())))
    assert report["sender_authenticated"] is True


def test_a_version_1_file_gets_its_own_warning_only(tmp_path):
    """A v1 file's maker was never authenticated: rotate's version 1 warning, not this one."""
    world, new_id = identity_world(tmp_path)
    path = world.dir / "v1.enc"
    path.write_bytes(seal_v1(b"rows\n", world.old_hex))
    done = rotate(["--old-key-file", world.old, "--new-key-file", new_id, str(world.dir)])
    assert done.returncode == 0, done.stderr
    assert lines(done)["v1.enc"]["status"] == "rotated" and "sender_authenticated" not in lines(done)["v1.enc"]
    assert b"a version 1 file" in done.stderr and WARNING.encode() not in done.stderr
