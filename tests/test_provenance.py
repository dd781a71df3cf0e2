"""Issue 14: format v2. Files no other slot holder can forge, signed files, and
what is written (nothing) before a file that will be refused has been found out."""

import io
import json
import os
import subprocess
import sys

import pytest

from cliutil import KEY_A, assert_one_line_error, ok, run, run_process, seal_v1, secret_file

from encpipe import envelope, provenance
from encpipe.primitives import payload_key
from encpipe.stream import seal_payload

CHUNK = 16 * 1024
DATA = os.urandom(3 * CHUNK + 777)
EVIL = b"\\! touch /tmp/pwned\n" + os.urandom(2 * CHUNK)
NOT_SIGNED = 67


class World:
    """Key files: raw key K, escrow identity X, passphrase P, signing keys S1 and S2."""

    def __init__(self, tmp_path):
        self.dir = tmp_path
        self.K = secret_file(tmp_path, "k.key", KEY_A + "\n")
        self.X = str(tmp_path / "x.id")
        self.X_pub = ok(run(["keygen", "--x25519", "-o", self.X])).decode().strip()
        self.P = secret_file(tmp_path, "pass", "correct horse\n")
        self.S1, self.S2 = str(tmp_path / "s1.key"), str(tmp_path / "s2.key")
        self.V1 = ok(run(["keygen", "--sign", "-o", self.S1])).decode().strip()
        self.V2 = ok(run(["keygen", "--sign", "-o", self.S2])).decode().strip()

    def seal(self, data, *args):
        return ok(run(["seal", "--chunk-size", "16K", "--work-factor", "10", *args], data))


def forge(sealed, opener, payload=EVIL, keep_signatures=False, signatures=None):
    """What a holder of one slot (`opener`) can do: keep the header byte for byte (so
    every other slot still unwraps the same file key), write a new payload under that
    file key, and a trailer with a valid trailer MAC, but authenticators it cannot make.
    `signatures`: (VerifyKey, signature) entries of its making, in place of the old ones."""
    parsed = envelope.read_header(io.BytesIO(sealed))
    file_key, _ = envelope.unlock(parsed, [opener])
    header = parsed.header
    out = io.BytesIO()
    out.write(sealed[: parsed.size])
    old = provenance.Trailer.parse(sealed[-parsed.trailer_len :], header)
    # The forger's own authenticator (when its slot has one) it can make; the others it copies.
    positions = provenance.authenticated_slots(header)
    mine = [i for i in positions if hasattr(opener, "authenticator_key") and opener.can_try(parsed.slots[i])]
    keys = [opener.authenticator_key(parsed.slots[i]) for i in mine]
    ledger = provenance.Ledger(header, file_key, keys, sign=header.sig_count > 0)
    seal_payload(io.BytesIO(payload), out, payload_key(file_key, header), header.chunk_size, ledger=ledger)
    made = dict(zip(mine, ledger.authenticators()))
    authenticators = [made.get(i, old.authenticators[n]) for n, i in enumerate(positions)]
    if signatures is None:
        signatures = old.signatures if keep_signatures else ()
    trailer = provenance.Trailer(tuple(authenticators), tuple(signatures))
    assert len(signatures) == header.sig_count, "a forger cannot drop signatures without changing the header"
    out.write(trailer.encode(file_key, header, ledger.tag_commitment()))
    return out.getvalue()


def identity(path):
    from encpipe.keys import parse_keyring

    return parse_keyring(open(path).read(), path)[0]


# --- acceptance 1: a slot holder cannot forge a file another key opens ---------------------


def sealed_with_another_slot(world, other):
    """A file sealed to K and to an escrow recipient or a passphrase; the other
    slot's holder as the library's opener and as CLI options."""
    if other == "escrow":
        return (world.seal(DATA, "--key-file", world.K, "--recipient", world.X_pub), identity(world.X),
                ["--identity", world.X])
    from encpipe.slots import Passphrase

    return (world.seal(DATA, "--key-file", world.K, "--passphrase-file", world.P),
            Passphrase(b"correct horse", log2_n=10), ["--passphrase-file", world.P])


def assert_refused_from_a_file(world, forged, tmp_path):
    """open (plain, --verify-first, --refuse-unauthenticated) and inspect --verify of
    `forged` as a file, with the raw key K: 65 for K's authenticator, nothing
    written, one line."""
    path = tmp_path / "forged.enc"
    path.write_bytes(forged)
    for argv in (["open", "--key-file", world.K, str(path)],
                 ["open", "--key-file", world.K, "--verify-first", str(path)],
                 ["open", "--key-file", world.K, "--refuse-unauthenticated", str(path)],
                 ["inspect", "--verify", "--key-file", world.K, str(path)]):
        result = run(argv)
        assert (result.code, result.stdout) == (65, b""), (argv, result.stderr)
        assert "slot authenticator failed" in result.stderr
        assert_one_line_error(result.stderr)


@pytest.mark.parametrize("other", ["escrow", "passphrase"])
def test_a_holder_of_another_slot_cannot_forge_a_file_the_raw_key_opens(world, other, tmp_path):
    sealed, opener, as_cli = sealed_with_another_slot(world, other)
    forged = forge(sealed, opener)
    # the forger's own key opens the forgery: it holds the file key
    assert ok(run(["open", *as_cli], forged)) == EVIL
    assert_refused_from_a_file(world, forged, tmp_path)
    piped = run_process(["open", "--key-file", world.K, "--verify-first"], stdin=forged)
    assert (piped.returncode, piped.stdout) == (65, b"")
    streamed = run_process(["open", "--key-file", world.K], stdin=forged)  # a pipe, without --verify-first
    assert streamed.returncode == 65 and b"slot authenticator failed" in streamed.stderr
    # the genuine file opens and says who made it
    report = json.loads(ok(run(["inspect", "--json", "--verify", "--key-file", world.K], sealed)))
    assert report["sender_authenticated"] is True and report["authenticated_by"].startswith("raw key ")


def forge_keeping_only(sealed, file_key, keep, payload=EVIL):
    """What a holder of the file key can do besides: write a header of its own (its
    MAC is keyed by the file key) that lists only the slots at `keep`, copied byte
    for byte, here the raw key's, so the file seems to have no other holder; a new
    payload; a trailer with a valid MAC and the kept slots' old authenticators."""
    parsed = envelope.read_header(io.BytesIO(sealed))
    old_header = parsed.header
    old = provenance.Trailer.parse(sealed[-parsed.trailer_len :], old_header)
    positions = provenance.authenticated_slots(old_header)
    header = envelope.build_header(file_key, [old_header.slots[i] for i in keep], old_header.chunk_log2,
                                   payload_salt=old_header.payload_salt)
    out = io.BytesIO()
    out.write(header.encode())
    ledger = provenance.Ledger(header, file_key, [], sign=False)
    seal_payload(io.BytesIO(payload), out, payload_key(file_key, header), header.chunk_size, ledger=ledger)
    kept = tuple(old.authenticators[positions.index(i)] for i in keep if i in positions)
    out.write(provenance.Trailer(kept, ()).encode(file_key, header, ledger.tag_commitment()))
    return out.getvalue()


@pytest.mark.parametrize("other", ["escrow", "passphrase"])
def test_a_holder_of_another_slot_cannot_forge_by_dropping_it_either(world, other, tmp_path):
    """The forger drops its own slot too: the forgery lists one slot, the raw key's,
    copied. One slot listed is not one holder of the file key, so a file is still
    checked whole (the raw key's authenticator) before anything is written."""
    sealed, opener, _ = sealed_with_another_slot(world, other)
    parsed = envelope.read_header(io.BytesIO(sealed))
    file_key, (opened, _, _) = envelope.unlock(parsed, [opener])
    forged = forge_keeping_only(sealed, file_key, [1 - opened])
    assert len(envelope.read_header(io.BytesIO(forged)).slots) == 1
    assert_refused_from_a_file(world, forged, tmp_path)


def test_a_former_escrow_holder_cannot_forge_a_file_rewrapped_without_its_slot(world, tmp_path):
    """rewrap changes the header only: a file rewrapped to drop the escrow slot keeps
    its file key, which the escrow identity's holder learnt from the original."""
    sealed = world.seal(DATA, "--key-file", world.K, "--recipient", world.X_pub)
    escrow_id = ok(run(["keyid", "--recipient", world.X_pub])).decode().strip()
    rewrapped = ok(run(["rewrap", "--key-file", world.K, "--remove", escrow_id], sealed))
    assert ok(run(["open", "--key-file", world.K], rewrapped)) == DATA
    file_key, _ = envelope.unlock(envelope.read_header(io.BytesIO(sealed)), [identity(world.X)])
    forged = forge_keeping_only(rewrapped, file_key, [0])
    assert len(envelope.read_header(io.BytesIO(forged)).slots) == 1
    assert_refused_from_a_file(world, forged, tmp_path)


def test_a_second_raw_key_holder_cannot_forge_for_the_first(world, tmp_path):
    other = secret_file(tmp_path, "b.key", "5e" * 32 + "\n")
    sealed = world.seal(DATA, "--key-file", world.K, "--key-file", other)
    forged = forge(sealed, identity(other))
    assert ok(run(["open", "--key-file", other], forged)) == EVIL
    assert run(["open", "--key-file", world.K], forged)[:2] == (65, b"")


def test_a_raw_key_in_a_keyring_with_the_escrow_identity_is_tried_first(world, tmp_path):
    sealed = world.seal(DATA, "--key-file", world.K, "--recipient", world.X_pub)
    forged = forge(sealed, identity(world.X))
    ring = secret_file(tmp_path, "ring", open(world.X).read() + KEY_A + "\n")
    assert run(["open", "--key-file", ring], forged)[:2] == (65, b"")


def test_an_identity_opens_with_a_warning_that_anyone_could_have_made_it(world):
    sealed = world.seal(DATA, "--recipient", world.X_pub)
    result = run(["open", "--identity", world.X], sealed)
    assert (result.code, result.stdout) == (0, DATA)
    assert "anyone with its public key can make such a file" in result.stderr and "--signer" in result.stderr
    report = json.loads(ok(run(["inspect", "--json", "--verify", "--identity", world.X], sealed)))
    assert report["sender_authenticated"] is False and report["authenticated_by"] is None


# --- acceptance 2: the signer matrix -------------------------------------------------------


@pytest.mark.parametrize("threads", ["1", "4"])
@pytest.mark.parametrize("via", ["file", "pipe"])
def test_signer_matrix(world, tmp_path, threads, via):
    signed = world.seal(DATA, "--key-file", world.K, "--sign-key", world.S1)
    unsigned = world.seal(DATA, "--key-file", world.K)
    cases = [(signed, ["--signer", world.V1], 0), (signed, ["--signer", world.V2], NOT_SIGNED),
             (unsigned, ["--signer", world.V1], NOT_SIGNED), (signed, ["--signer", world.V2, "--signer", world.V1], 0)]
    for number, (data, signer, expected) in enumerate(cases):
        argv = ["open", "--threads", threads, "--key-file", world.K, *signer]
        if via == "file":
            path = tmp_path / f"{number}.enc"
            path.write_bytes(data)
            done = run_process([*argv, str(path)])
        else:
            done = run_process(argv, stdin=data)
        assert done.returncode == expected, (number, done.stderr)
        assert done.stdout == (DATA if expected == 0 else b""), number
        if expected:
            assert_one_line_error(done.stderr)


def test_signer_from_a_file_and_from_the_environment(world, tmp_path):
    signed = world.seal(DATA, "--key-file", world.K, "--sign-key", world.S1)
    listed = secret_file(tmp_path, "signers", f"# ops\n{world.V2}\n{world.V1}\n")
    assert ok(run(["open", "--key-file", world.K, "--signer-file", listed], signed)) == DATA
    env = {"ENCPIPE_SIGNER": f"{world.V2} {world.V1}"}
    assert ok(run(["open", "--key-file", world.K], signed, env)) == DATA
    assert run(["open", "--key-file", world.K], signed, {"ENCPIPE_SIGNER": world.V2})[:2] == (NOT_SIGNED, b"")
    # an explicit option wins over the environment
    assert run(["open", "--key-file", world.K, "--signer", world.V2], signed, env)[:2] == (NOT_SIGNED, b"")
    assert run(["inspect", "--verify", "--key-file", world.K, "--signer", world.V2], signed)[0] == NOT_SIGNED


def test_a_v1_file_is_not_signed(world):
    old = seal_v1(DATA)
    assert run(["open", "--key-file", world.K, "--signer", world.V1], old)[:2] == (NOT_SIGNED, b"")


def test_a_signed_file_from_an_escrow_only_sealer_is_authenticated_by_its_signer(world):
    sealed = world.seal(DATA, "--recipient", world.X_pub, "--sign-key", world.S1)
    result = run(["open", "--identity", world.X, "--signer", world.V1], sealed)
    assert (result.code, result.stdout, result.stderr) == (0, DATA, "")
    # the escrow holder forges, keeping the signatures: they no longer verify
    forged = forge(sealed, identity(world.X), keep_signatures=True)
    assert run(["open", "--identity", world.X], forged)[:2] == (65, b"")
    assert run(["open", "--identity", world.X, "--signer", world.V1], forged)[:2] == (65, b"")


# --- acceptance 3: altered, truncated, trailer removed or changed --------------------------


def _damaged(sealed):
    header = envelope.read_header(io.BytesIO(sealed)).size
    trailer = len(sealed) - envelope.read_header(io.BytesIO(sealed)).trailer_len
    record = CHUNK + 16
    yield "payload byte", sealed[: header + 5] + bytes([sealed[header + 5] ^ 1]) + sealed[header + 6 :]
    for boundary in range(header, trailer, record):
        yield f"cut at {boundary}", sealed[:boundary]
        yield f"cut at {boundary}, trailer kept", sealed[:boundary] + sealed[trailer:]
    yield "trailer removed", sealed[:trailer]
    for offset in range(trailer, len(sealed), 7):
        yield f"trailer byte {offset}", sealed[:offset] + bytes([sealed[offset] ^ 0x40]) + sealed[offset + 1 :]
    yield "trailer cut", sealed[:-1]
    yield "byte appended", sealed + b"\0"


def test_every_damage_is_refused_with_no_output_under_signer(world):
    sealed = world.seal(DATA, "--key-file", world.K, "--sign-key", world.S1, "--sign-key", world.S2)
    for what, data in _damaged(sealed):
        for args in (["--signer", world.V1], []):
            result = run(["open", "--key-file", world.K, *args], data)
            assert result.code == 65 and result.stdout == b"", (what, args, result.stderr)
        piped = run_process(["open", "--threads", "4", "--key-file", world.K, "--signer", world.V2], stdin=data)
        assert (piped.returncode, piped.stdout) == (65, b""), (what, piped.stderr)
        assert run(["inspect", "--verify", "--key-file", world.K], data).code == 65, what


# --- acceptance 5: v1 files still open, and say they are not sender-authenticated ----------


def test_v1_files_open_and_are_not_sender_authenticated(world):
    old = seal_v1(DATA)
    assert ok(run(["open", "--key-file", world.K], old)) == DATA
    for argv in (["inspect", "--json"], ["inspect", "--json", "--verify", "--key-file", world.K]):
        report = json.loads(ok(run(argv, old)))
        assert (report["version"], report["sender_authenticated"]) == (1, False), argv


def test_inspects_lines_say_yes_or_no_not_pythons_true_or_false(world):
    """Before, the lines said `sender authenticated: True` (JSON keeps true and false)."""
    lines = ok(run(["inspect"], seal_v1(DATA))).decode().splitlines()
    assert "sender authenticated: no" in lines
    sealed = world.seal(DATA, "--key-file", world.K)
    lines = ok(run(["inspect", "--verify", "--key-file", world.K], sealed)).decode().splitlines()
    assert "sender authenticated: yes" in lines
    assert not [line for line in lines if line.endswith((": True", ": False"))], lines


def test_inspect_lists_signers_without_a_key(world):
    signed = world.seal(DATA, "--key-file", world.K, "--sign-key", world.S1, "--sign-key", world.S2)
    ids = ok(run(["keyid", "--signer", world.V1, "--signer", world.V2])).decode().split()
    report = json.loads(ok(run(["inspect", "--json"], signed, {})))
    assert report["signers"] == ids and report["version"] == 2
    assert run_process(["inspect", "--json"], stdin=signed).stdout == json.dumps(report, indent=2).encode() + b"\n"
    verified = json.loads(ok(run(["inspect", "--json", "--verify", "--key-file", world.K, "--signer", world.V2], signed)))
    assert verified["signed_by"] == ids and verified["trusted_signer"] == ids[1]


# --- acceptance 7: rewrap keeps authenticators and signatures ------------------------------


def test_rewrap_of_a_signed_file_keeps_its_signatures_and_authenticates_new_slots(world, tmp_path):
    signed = world.seal(DATA, "--key-file", world.K, "--recipient", world.X_pub, "--sign-key", world.S1)
    other = secret_file(tmp_path, "b.key", "5e" * 32 + "\n")
    result = run(["rewrap", "--identity", world.X, "--add-key-file", other, "--add-passphrase-file", world.P,
                  "--work-factor", "10", "--signer", world.V1], signed)
    assert result.code == 0 and "warning" not in result.stderr, result.stderr
    rewrapped = result.stdout
    for key in (["--key-file", world.K], ["--key-file", other], ["--passphrase-file", world.P]):
        report = json.loads(ok(run(["inspect", "--json", "--verify", *key, "--signer", world.V1], rewrapped)))
        assert report["sender_authenticated"] and report["authenticated_by"], key
    again = ok(run(["rewrap", "--key-file", world.K, "--remove", _id(world.K), "--sign-key", world.S2], rewrapped))
    both = json.loads(ok(run(["inspect", "--json", "--verify", "--key-file", other], again)))
    assert len(both["signed_by"]) == 2
    assert ok(run(["open", "--key-file", other, "--signer", world.V2], again)) == DATA
    assert run(["open", "--key-file", world.K], again)[0] == 77


def test_rewrap_refuses_a_forgery_and_an_unsigned_file_under_signer(world):
    sealed = world.seal(DATA, "--key-file", world.K, "--recipient", world.X_pub)
    forged = forge(sealed, identity(world.X))
    assert run(["rewrap", "--key-file", world.K, "--add-recipient", world.X_pub], forged)[0] == 65
    assert run(["rewrap", "--key-file", world.K, "--signer", world.V1], sealed)[0] == NOT_SIGNED
    assert run(["rewrap", "--key-file", world.K, "--sign-key", world.S1], seal_v1(DATA))[0] == NOT_SIGNED


def _id(path):
    return ok(run(["keyid", "--key-file", path])).decode().strip()


# --- signing keys ---------------------------------------------------------------------------


def test_signing_keys_have_their_own_text_forms(world, tmp_path):
    assert world.V1.startswith("encpipesign1") and not world.V1.startswith("encpipe1")
    assert oct(os.stat(world.S1).st_mode & 0o777) == "0o600"
    assert ok(run(["pubkey", world.S1])).decode().strip() == world.V1
    assert ok(run(["keyid", "--sign-key", world.S1])) == ok(run(["keyid", "--signer", world.V1]))
    sealed = world.seal(b"x", "--key-file", world.K)
    for wrong in (world.X_pub, world.V1[:-1], world.V1[:-1] + ("a" if world.V1[-1] != "a" else "b")):
        assert run(["open", "--key-file", world.K, "--signer", wrong], sealed)[:2] == (64, b"")
    assert run(["seal", "--recipient", world.V1], b"")[0] == 64  # a verify key is not a recipient
    assert run(["seal", "--key-file", world.S1], b"")[0] == 64  # a signing key is not an encryption key
    assert run(["seal", "--key-file", world.K, "--sign-key", world.K], b"")[0] == 64
    command = ok(run(["seal", "--key-file", world.K, "--sign-key-command", f"cat {world.S1}"], DATA))
    assert ok(run(["open", "--key-file", world.K, "--signer", world.V1], command)) == DATA
    assert run(["keygen", "--sign"])[0] == 64  # the secret goes to a file, never to stdout


def test_signing_a_file_costs_no_memory_growth_and_seals_through_the_cli_process(world):
    done = subprocess.run([sys.executable, "-m", "encpipe", "seal", "--key-file", world.K, "--sign-key",
                           world.S1], input=DATA, capture_output=True, env={**os.environ})
    assert done.returncode == 0, done.stderr
    assert ok(run(["open", "--key-file", world.K, "--signer", world.V1], done.stdout)) == DATA


def test_verify_with_encpipe_signer_fails_unsigned_backups(world, tmp_path):
    from encpipe.backup.cli import main

    (tmp_path / "db_20240101T000000Z.sql.enc").write_bytes(world.seal(DATA, "--key-file", world.K))
    (tmp_path / "db_20240102T000000Z.sql.enc").write_bytes(
        world.seal(DATA, "--key-file", world.K, "--sign-key", world.S1))
    for signer, code, ok_flags in ((world.V1, 67, [False, True]), (None, 0, [True, True])):
        out = io.BytesIO()
        env = {"ENCPIPE_SIGNER": signer} if signer else {}
        status = main(["verify", "--key-file", world.K, str(tmp_path)], stdout=out, stderr=io.StringIO(), env=env)
        report = json.loads(out.getvalue())
        assert status == code and [r["ok"] for r in report["results"]] == ok_flags, report
        if signer:
            assert report["results"][0]["error_class"] == "not_signed"


def test_a_signing_key_from_a_descriptor_and_never_from_the_data_stream(world):
    fd = os.open(world.S1, os.O_RDONLY)
    try:
        done = subprocess.run([sys.executable, "-m", "encpipe", "seal", "--key-file", world.K, "--sign-key",
                               f"/dev/fd/{fd}"], input=DATA, capture_output=True, pass_fds=(fd,), env={**os.environ})
    finally:
        os.close(fd)
    assert done.returncode == 0, done.stderr
    assert ok(run(["open", "--key-file", world.K, "--signer", world.V1], done.stdout)) == DATA
    refused = run(["seal", "--key-file", world.K, "--sign-key", "-"], DATA)
    assert (refused.code, refused.stdout) == (64, b"") and "standard input" in refused.stderr


def test_key_files_take_no_comment_after_a_key(world, tmp_path):
    ring = secret_file(tmp_path, "ring", KEY_A + " # ops key\n")
    result = run(["seal", "--key-file", ring], b"x")
    assert (result.code, result.stdout) == (64, b"")
    trimmed = secret_file(tmp_path, "pw", "correct horse\r\n\n")
    sealed = world.seal(b"x", "--passphrase-file", trimmed)
    assert ok(run(["open", "--passphrase-file", world.P], sealed)) == b"x"  # CR and LF trimmed alike
    assert run(["seal", "--passphrase-file", secret_file(tmp_path, "empty", "\n")], b"x")[0] == 64


def test_legacy_files_are_never_signed(world, tmp_path):
    from encpipe.legacy import seal_legacy

    out = io.BytesIO()
    seal_legacy(io.BytesIO(DATA), out, bytes.fromhex(KEY_A))
    for argv in (["open", "--legacy"], ["inspect", "--legacy", "--verify"]):
        result = run([*argv, "--key-file", world.K, "--signer", world.V1], out.getvalue())
        assert (result.code, result.stdout) == (NOT_SIGNED, b""), argv
