"""What a signature `encpipe-rotate --sign-key` adds vouches for (README, "Rotating
a directory", Signed files). A file made by a holder of the old raw key (the key
being rotated away from, perhaps because it leaked) authenticates under that key
as any backup does: without trusted signers rotate signs it; with --signer it is
refused (67) and left byte for byte. A file forged by the holder of another slot
(an escrow identity) is refused either way: tests/test_redteam13_rotate_forgery.py for an escrow identity,
here for a passphrase."""

import json

from cliutil import ok, run, write_secret
from test_provenance import forge
from test_rotate import World, lines, rotate

import encpipe

NOT_SIGNED = 67


def made_by_the_old_keys_holder(tmp_path):
    world = World(tmp_path)
    sign = str(world.tmp / "keys" / "s.sign")
    pub = ok(run(["keygen", "--sign", "-o", sign])).decode().strip()
    genuine = world.add("genuine.enc", "--key-file", world.old_a, "--sign-key", sign)
    made = world.add("made.enc", "--key-file", world.old_a)  # by whoever holds old_a: unsigned
    return world, sign, pub, genuine, made


def test_with_a_signer_a_file_only_the_old_key_authenticates_is_refused_not_signed(tmp_path):
    world, sign, pub, genuine, made = made_by_the_old_keys_holder(tmp_path)
    done = rotate(["--sign-key", sign, "--signer", pub, *world.args()])
    got = lines(done)
    assert (got["made.enc"]["status"], got["made.enc"]["exit"]) == ("error", NOT_SIGNED)
    assert got["genuine.enc"]["status"] == "rotated"
    assert done.returncode == 1
    assert made.read_bytes() == world.originals["made.enc"]


def test_without_a_signer_it_is_signed_on_the_strength_of_the_old_key(tmp_path):
    world, sign, pub, genuine, made = made_by_the_old_keys_holder(tmp_path)
    done = rotate(["--sign-key", sign, *world.args()])
    assert done.returncode == 0, done.stderr
    assert lines(done)["made.enc"]["status"] == "rotated"
    report = json.loads(ok(run(["inspect", "--verify", "--json", "--key-file", world.new, "--signer", pub],
                               made.read_bytes())))
    assert report["trusted_signer"] is not None


def test_without_a_signer_a_passphrase_holders_forgery_is_still_refused(tmp_path):
    """The holder of a passphrase slot knows the file key and writes a payload of its
    own, its passphrase slot's authenticator made anew, the old key's copied: the old
    key's authenticator fails, and nothing is signed (65, left byte for byte)."""
    world = World(tmp_path)
    sign = str(world.tmp / "keys" / "s.sign")
    ok(run(["keygen", "--sign", "-o", sign]))
    passphrase = write_secret(world.tmp / "keys" / "dba.pass", "the dba's passphrase\n")
    genuine = world.add("a.enc", "--key-file", world.old_a, "--passphrase-file", passphrase, "--work-factor", "10")
    forged = forge(genuine.read_bytes(), encpipe.Passphrase("the dba's passphrase"))
    genuine.write_bytes(forged)
    assert run(["open", "--passphrase-file", passphrase], forged)[0] == 0  # its own slot checks
    done = rotate(["--sign-key", sign, *world.args()])
    got = lines(done)["a.enc"]
    assert (done.returncode, got["status"], got["step"], got["exit"]) == (1, "error", "rewrap", 65), got
    assert genuine.read_bytes() == forged
    assert world.temps() == []
