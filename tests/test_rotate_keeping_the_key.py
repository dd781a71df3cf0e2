"""encpipe-rotate without --old-key-file: an escrow recipient or a signature added to
every backup of a directory, its key unchanged.

The escrow routine (README "Escrow") has the operator add an escrow key to a backup
host that already has a year of backups, and a signing key may change while the
data key stays. Rotate required --old-key-file, refused the same key as old and
new ("a key is both old and new", 64) and a keyring with no key (64): the only way
to add the escrow slot, or the new signature, to the existing files was a new data
key, or `encpipe rewrap` file by file without rotate's checks, lock and report.
Now --old-key-file may be left out: the files are opened with the new key files,
nothing is removed, and what is missing (a slot of a new key, an escrow
recipient, a --sign-key signature) is added."""

import pytest

from cliutil import ok, run
from test_rotate import World, lines, rotate

NAMES = ("shop_20250101T020000Z.sql.enc", "shop_20250201T020000Z.dump.enc",
         "shop_20250201T020000Z.globals.sql.enc")


@pytest.fixture
def world(tmp_path):
    world = World(tmp_path)
    world.sign_old = str(tmp_path / "keys" / "old.sign")
    world.sign_new = str(tmp_path / "keys" / "new.sign")
    world.verify_old = ok(run(["keygen", "--sign", "-o", world.sign_old])).decode().strip()
    world.verify_new = ok(run(["keygen", "--sign", "-o", world.sign_new])).decode().strip()
    for name in NAMES:
        world.add(name, "--key-file", world.new, "--sign-key", world.sign_old)
    return world


def test_an_escrow_recipient_is_added_to_every_backup_and_the_escrow_identity_alone_opens_them(world):
    done = rotate(["--new-key-file", world.new, "--escrow-recipient", world.escrow_pub, str(world.dir)])
    assert (done.returncode, done.stderr) == (0, b"")
    escrow_id = ok(run(["keyid", "--recipient", world.escrow_pub])).decode().strip()
    for name in NAMES:
        got = lines(done)[name]
        assert (got["status"], got["removed"]) == ("rotated", []), got
        assert got["slots"] == [*world.ids(world.new), escrow_id]
        sealed = (world.dir / name).read_bytes()
        assert ok(run(["open", "--identity", world.escrow_id, "--signer", world.verify_old], sealed)) \
            == world.plain[name]
        assert ok(run(["open", "--key-file", world.new], sealed)) == world.plain[name]
    again = rotate(["--new-key-file", world.new, "--escrow-recipient", world.escrow_pub, str(world.dir)])
    assert again.returncode == 0 and {r["status"] for r in lines(again).values()} == {"skipped"}


def test_a_new_signing_key_signs_every_backup_the_old_one_signed(world):
    done = rotate(["--new-key-file", world.new, "--sign-key", world.sign_new, "--signer", world.verify_old,
                   str(world.dir)])
    assert (done.returncode, done.stderr) == (0, b"")
    new_signer = ok(run(["keyid", "--signer", world.verify_new])).decode().strip()
    for name in NAMES:
        got = lines(done)[name]
        assert got["status"] == "rotated" and new_signer in got["signed_by"], got
        sealed = (world.dir / name).read_bytes()
        assert ok(run(["open", "--key-file", world.new, "--signer", world.verify_new], sealed)) == world.plain[name]


def test_a_file_the_new_keys_do_not_open_is_an_error_and_left(world):
    path = world.add("other_20250301T020000Z.sql.enc", "--key-file", world.old_a)
    done = rotate(["--new-key-file", world.new, "--escrow-recipient", world.escrow_pub, str(world.dir)])
    assert done.returncode == 1
    got = lines(done)[path.name]
    assert (got["status"], got["exit"]) == ("error", 77), got
    assert path.read_bytes() == world.originals[path.name]


def test_neither_old_keys_nor_anything_to_add_is_a_usage_error(world):
    """Nothing to remove and nothing that could be missing but the new key's slot: still
    a run that checks every file holds it; only no --new-key-file at all is refused."""
    done = rotate([str(world.dir)])
    assert (done.returncode, done.stdout) == (64, b"")
    said = done.stderr.decode().splitlines()
    assert [line.split(":")[1] for line in said] == [" error", " hint"], said
    assert "--new-key-file" in said[0]
