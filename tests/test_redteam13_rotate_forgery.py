"""encpipe-rotate --sign-key never signs a file it has not authenticated: a backup
under the old raw key and the escrow recipient, rewritten by the escrow identity's
holder (who learns the file key: a payload and trailer MAC of its choice, the old
key's authenticator copied, as it cannot make one), is refused by the rewrap (65),
left byte for byte, and no signed copy of it is ever renamed in."""

from cliutil import ok, run
from test_provenance import forge, identity
from test_rotate import World, lines, rotate


def test_rotate_with_a_sign_key_does_not_sign_an_escrow_holders_forgery(tmp_path):
    w = World(tmp_path)
    sign = str(w.tmp / "keys" / "s.sign")
    ok(run(["keygen", "--sign", "-o", sign]))
    genuine = w.add("a.enc", "--key-file", w.old_a, "--recipient", w.escrow_pub).read_bytes()
    forged = forge(genuine, identity(w.escrow_id))
    (w.dir / "a.enc").write_bytes(forged)
    assert run(["open", "--key-file", w.old_a], forged)[:2] == (65, b"")  # the old key's holder refuses it
    for extra in ([], ["--escrow-recipient", w.escrow_pub]):
        done = rotate(["--old-key-file", w.old, "--new-key-file", w.new, "--sign-key", sign, *extra, str(w.dir)])
        got = lines(done)["a.enc"]
        assert (done.returncode, got["status"], got["step"], got["exit"]) == (1, "error", "rewrap", 65), got
        assert (w.dir / "a.enc").read_bytes() == forged
        assert w.temps() == []
