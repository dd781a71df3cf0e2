"""Format v2 against the holder of one slot, at its edges: what rewrap vouches for,
a v2 file rewritten as v1, and the spelling of keys. Each test failed on the code
before its fix."""

import io
import json

import pytest

from cliutil import assert_one_line_error, ok, run, seal_v1, secret_file
from test_provenance import DATA, EVIL, NOT_SIGNED, forge, identity
from test_rotate import World as RotateWorld, lines, rotate

from encpipe import envelope, provenance
from encpipe.primitives import header_mac, payload_key
from encpipe.stream import seal_payload

VOUCHING = {
    "raw key": lambda w, new: ["--add-key-file", new],
    "passphrase": lambda w, new: ["--add-passphrase-file", w.P, "--work-factor", "10"],
    "signature": lambda w, new: ["--sign-key", w.S1],
}


@pytest.mark.parametrize("how", sorted(VOUCHING))
def test_rewrap_does_not_vouch_for_a_file_anyone_with_the_public_key_made(world, tmp_path, how):
    """Before: rewrap opened such a file with the escrow identity and gave the slot it
    added an authenticator over the payload (or signed it), so a file anyone with
    the public key made opened as made by the new key's holder: sender-authenticated,
    and past `open --refuse-unauthenticated` and encpipe-restore."""
    planted = world.seal(EVIL, "--recipient", world.X_pub)
    new = secret_file(tmp_path, "new.key", "5e" * 32 + "\n")
    result = run(["rewrap", "--identity", world.X, *VOUCHING[how](world, new)], planted)
    assert (result.code, result.stdout) == (NOT_SIGNED, b""), result.stderr
    assert_one_line_error(result.stderr)
    assert "its maker is not authenticated" in result.stderr
    path = tmp_path / "planted.enc"
    path.write_bytes(planted)
    in_place = run(["rewrap", "--in-place", str(path), "--identity", world.X, *VOUCHING[how](world, new)])
    assert in_place.code == NOT_SIGNED and path.read_bytes() == planted


def test_rewrap_of_such_a_file_may_add_a_recipient_and_vouches_with_a_trusted_signer(world, tmp_path):
    planted = world.seal(EVIL, "--recipient", world.X_pub)
    other = str(tmp_path / "other.id")
    other_pub = ok(run(["keygen", "--x25519", "-o", other])).decode().strip()
    added = ok(run(["rewrap", "--identity", world.X, "--add-recipient", other_pub], planted))
    assert ok(run(["open", "--identity", other], added)) == EVIL
    # signed by a trusted signer: the new key's authenticator vouches for what the signer made
    signed = world.seal(DATA, "--recipient", world.X_pub, "--sign-key", world.S1)
    new = secret_file(tmp_path, "new.key", "5e" * 32 + "\n")
    moved = ok(run(["rewrap", "--identity", world.X, "--add-key-file", new, "--signer", world.V1], signed))
    report = json.loads(ok(run(["inspect", "--json", "--verify", "--key-file", new], moved)))
    assert report["sender_authenticated"] is True
    # a raw key whose own authenticator checks vouches for the file as before
    both = world.seal(DATA, "--key-file", world.K, "--recipient", world.X_pub)
    assert ok(run(["open", "--key-file", new], ok(run(["rewrap", "--key-file", world.K, "--add-key-file", new],
                                                       both)))) == DATA
    forged = forge(both, identity(world.X))
    assert run(["rewrap", "--identity", world.X, "--add-key-file", new], forged)[:2] == (NOT_SIGNED, b"")


def test_rotate_with_the_escrow_identity_does_not_launder_a_planted_file(tmp_path):
    """encpipe-rotate --old-key-file escrow.id (the operations key lost): a file that
    anyone with the escrow public key planted is refused, not given the new key's
    authenticator."""
    w = RotateWorld(tmp_path)
    w.add("planted.enc", "--recipient", w.escrow_pub)
    done = rotate(["--old-key-file", w.escrow_id, "--new-key-file", w.new, str(w.dir)])
    got = lines(done)["planted.enc"]
    assert (done.returncode, got["status"], got["exit"]) == (1, "error", NOT_SIGNED), done.stderr
    assert (w.dir / "planted.enc").read_bytes() == w.originals["planted.enc"]


def as_version_1(sealed, opener, payload):
    """What the holder of one slot of a v2 file can make of it: the same slots (so
    every other key still unwraps the same file key) in a v1 header, which has no
    authenticators, MAC'd under the file key it knows, and a payload of its choice."""
    parsed = envelope.read_header(io.BytesIO(sealed))
    file_key, _ = envelope.unlock(parsed, [opener])
    header = parsed.header._replace(version=1, sig_count=0)
    header = header._replace(mac=header_mac(file_key, header))
    out = io.BytesIO()
    out.write(header.encode())
    seal_payload(io.BytesIO(payload), out, payload_key(file_key, header), header.chunk_size)
    return out.getvalue()


def test_a_v2_file_rewritten_as_v1_by_the_escrow_holder_is_not_opened_in_silence(world):
    """Before: the escrow holder rewrote a raw key + escrow file as v1 (no
    authenticators) and the raw key opened it with status 0 and not a word, though
    the same forgery as v2 is refused."""
    genuine = world.seal(DATA, "--key-file", world.K, "--recipient", world.X_pub)
    downgraded = as_version_1(genuine, identity(world.X), EVIL)
    result = run(["open", "--key-file", world.K], downgraded)
    assert (result.code, result.stdout) == (0, EVIL)
    assert "warning: a version 1 file: the holder of any of its keys can make such a file" in result.stderr
    assert run(["open", "--key-file", world.K, "--refuse-unauthenticated"], downgraded)[:2] == (NOT_SIGNED, b"")
    report = json.loads(ok(run(["inspect", "--json", "--verify", "--key-file", world.K], downgraded)))
    assert report["sender_authenticated"] is False


def test_text_forms_are_ascii_only(world, tmp_path):
    """Before: the base32 was upper-cased as Unicode, so U+0131 (dotless i) and
    U+017F (long s) spelled I and S, and a key had more than one spelling."""
    pub = world.X_pub
    for n, char in enumerate(pub):
        if n >= len("encpipe1") and char in "is":
            spelled = pub[:n] + {"i": "\u0131", "s": "\u017f"}[char] + pub[n + 1:]
            result = run(["seal", "--recipient", spelled], b"x")
            assert (result.code, result.stdout) == (64, b""), spelled
            assert_one_line_error(result.stderr)
    signer = world.V1[:12] + world.V1[12:].replace("i", "\u0131").replace("s", "\u017f")
    if signer != world.V1:
        assert run(["keyid", "--signer", signer])[:2] == (64, b"")
    assert run(["seal", "--recipient", "\u3000" + pub], b"x")[:2] == (64, b"")  # not ASCII white space
    assert run(["seal", "--recipient", " \t" + pub + "\r\n"], b"x")[0] == 0


def test_key_signer_and_recipient_files_have_ascii_lines(world, tmp_path):
    """Before: a line ended at any Unicode line break (form feed, U+0085, U+2028) and a
    signer file's keys were split at any Unicode space, so "one item per line" held
    only for an implementer who guessed the same. Now lines end at LF, CR LF or CR,
    white space is ASCII, and anything else is part of the (then malformed) item."""
    sealed = world.seal(DATA, "--key-file", world.K, "--sign-key", world.S1)
    for separator in ("\n", "\r\n", "\r"):
        ring = secret_file(tmp_path, "ring", f"# keys{separator}{'5e' * 32}{separator}{'aa' * 32}{separator}")
        assert ok(run(["open", "--key-file", ring], sealed)) == DATA, repr(separator)
    for separator in ("\x0c", "\x85", "\u2028", "\u2029", "\x1c"):
        ring = secret_file(tmp_path, "ring", f"{'5e' * 32}{separator}{'aa' * 32}\n")
        assert run(["open", "--key-file", ring], sealed)[:2] == (64, b""), repr(separator)
    for separator in (" ", "\t", "\n"):
        signers = secret_file(tmp_path, "signers", f"{world.V2}{separator}{world.V1}\n")
        assert ok(run(["open", "--key-file", world.K, "--signer-file", signers], sealed)) == DATA
    for separator in ("\xa0", "\u2003", "\x1f"):
        signers = secret_file(tmp_path, "signers", f"{world.V2}{separator}{world.V1}\n")
        assert run(["open", "--key-file", world.K, "--signer-file", signers], sealed)[:2] == (64, b"")
    recipients = secret_file(tmp_path, "recipients", f"{world.X_pub}\u2028{world.X_pub}\n")
    assert run(["seal", "--recipient-file", recipients], b"x")[:2] == (64, b"")


def test_a_passphrase_is_tried_before_an_identity_so_its_authenticator_decides(world):
    """Before: identities came before passphrases, so a file sealed with a passphrase
    and the escrow public key, opened with both, was opened by the identity: not
    sender-authenticated, refused by --refuse-unauthenticated (and encpipe-restore)
    and not counted by retention, though the passphrase authenticates it."""
    sealed = world.seal(DATA, "--recipient", world.X_pub, "--passphrase-file", world.P)
    both = ["--identity", world.X, "--passphrase-file", world.P]
    assert ok(run(["open", "--refuse-unauthenticated", *both], sealed)) == DATA
    report = json.loads(ok(run(["inspect", "--json", "--verify", *both], sealed)))
    assert (report["sender_authenticated"], report["authenticated_by"]) == (True, "passphrase")
    # and a forgery by the escrow holder is refused, as for the passphrase alone
    forged = forge(sealed, identity(world.X))
    assert run(["open", *both], forged)[:2] == (65, b"")


def test_a_passphrase_past_the_scrypt_budget_still_lets_the_identity_open(world, tmp_path, monkeypatch):
    """With passphrases tried before identities, the budget must not end the search:
    wrong passphrases that spend it are skipped, the identity still opens the file
    (as it did when identities came first), and only if nothing opens is it 65."""
    import hashlib

    from encpipe import slots
    from encpipe.x25519 import X25519Recipient

    monkeypatch.setattr(slots, "scrypt_kek", lambda pw, salt, *params: hashlib.sha256(pw + salt).digest())
    public = identity(world.X).recipient().public
    costly = slots.Passphrase(b"the right one", log2_n=17, r=32, p=4)  # N*r*p = 2^24: the whole budget
    out = io.BytesIO()
    envelope.seal(io.BytesIO(DATA), out, [costly, X25519Recipient(public)], chunk_log2=14)
    wrong = [secret_file(tmp_path, f"pw{n}", f"wrong {n}\n") for n in range(2)]
    args = [a for path in wrong for a in ("--passphrase-file", path)]
    result = run(["open", *args, "--identity", world.X], out.getvalue())
    assert (result.code, result.stdout) == (0, DATA), result.stderr
    refused = run(["open", *args], out.getvalue())
    assert (refused.code, refused.stdout) == (65, b"") and "scrypt budget" in refused.stderr


def test_a_signature_by_an_untrusted_key_does_not_authenticate_the_maker(world):
    """Pins check(): only a --signer's signature (or the opening slot's authenticator)
    makes a file sender-authenticated. Anyone with the escrow public key can seal a
    file and sign it with a key of their own; verified without --signer, it reports
    its signer but is not sender-authenticated (retention would count it otherwise)."""
    planted = world.seal(DATA, "--recipient", world.X_pub, "--sign-key", world.S2)
    report = json.loads(ok(run(["inspect", "--json", "--verify", "--identity", world.X], planted)))
    signer = ok(run(["keyid", "--signer", world.V2])).decode().split()
    assert (report["sender_authenticated"], report["authenticated_by"], report["signed_by"],
            report["trusted_signer"]) == (False, None, signer, None)
    opened = envelope.unseal(io.BytesIO(planted), io.BytesIO(), [identity(world.X)])
    assert opened.provenance == (False, None, tuple(signer), None)


def test_rewrap_with_a_signer_refuses_a_version_1_file(world):
    """Pins rewrap's refusal, before any key is tried, of a v1 file under --signer
    alone (no --sign-key): it carries no signature, so none can be trusted (67)."""
    old = seal_v1(DATA)
    for extra in ([], ["--add-passphrase-file", world.P, "--work-factor", "10"]):
        result = run(["rewrap", "--key-file", world.K, "--signer", world.V1, *extra], old)
        assert (result.code, result.stdout, result.stderr) == (
            67, b"", "encpipe: error: a version 1 file carries no signature and cannot be signed\n"
                     "encpipe: hint: re-seal it: open | seal\n")


class Trickle(io.RawIOBase):
    """A pipe that delivers at most `step` bytes a read, as a pipe may."""

    def __init__(self, data, step):
        self._data, self._step = io.BytesIO(data), step

    def readable(self):
        return True

    def read(self, n=-1):
        return self._data.read(min(self._step, n if n >= 0 else self._step))


@pytest.mark.parametrize("step", [1, 50, 159, 1 << 20])
def test_the_trailer_of_a_pipe_is_found_however_its_reads_are_cut(world, step):
    """Pins read_to_trailer over a pipe: the trailer (160 bytes here) is the last
    bytes of the input, even when the last read holds only part of it; so inspect
    names the signer of a piped file without a key."""
    signed = world.seal(DATA, "--key-file", world.K, "--sign-key", world.S1)
    src = Trickle(signed, step)
    sealed = envelope.read_header(src)
    remaining, tail = provenance.read_to_trailer(src, sealed)
    assert (remaining, tail) == (len(signed) - sealed.size, signed[-160:])
    signer = ok(run(["keyid", "--signer", world.V1])).decode().split()
    assert provenance.trailer_signers(sealed, tail) == signer


def test_the_opener_authenticator_is_checked_before_the_signatures(world):
    """Pins the order of check(): trailer MAC, then the opening slot's authenticator,
    then signatures, then the required signer. The escrow holder's forgery of a
    signed file, its old signatures kept, fails on the raw key's authenticator,
    named as such, with or without --signer (65, nothing written)."""
    signed = world.seal(DATA, "--key-file", world.K, "--recipient", world.X_pub, "--sign-key", world.S1)
    forged = forge(signed, identity(world.X), keep_signatures=True)
    key_id = ok(run(["keyid", "--key-file", world.K])).decode().strip()
    expected = (f"encpipe: error: slot authenticator failed: this file was not made by a holder of the raw key {key_id}"
                " that opened it\nencpipe: hint: someone who holds another slot's key (an escrow identity, a"
                " passphrase) may have forged it\n")
    for extra in ([], ["--signer", world.V1], ["--signer", world.V2]):
        assert run(["open", "--key-file", world.K, *extra], forged) == (65, b"", expected), extra
