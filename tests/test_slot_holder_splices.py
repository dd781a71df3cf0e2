"""What a holder of one slot (here the escrow identity X of files sealed to a raw key
K and to X) can write, besides a new payload: any header its file key MACs (slots
copied, broken, reordered or dropped, another sig_count), any trailer its file key
MACs (authenticators and signatures copied from other files, or left out). The
authenticators cover suite, chunk size, payload salt, the file key's commitment and
every record, the signatures the same and every byte; neither covers the slots or
sig_count (README "Format v2"). Each test builds one such file and pins what open,
inspect --verify and prune make of it.
"""

import io
import os
from datetime import datetime, timedelta, timezone

import pytest

from cliutil import KEY_A, assert_one_line_error, ok, plugin_text, run, secret_file
from test_backup_dir import run as backups, stamp
from test_provenance import CHUNK, DATA, EVIL, NOT_SIGNED, World, assert_refused_from_a_file, identity

from encpipe import envelope, provenance
from encpipe import format as fmt
from encpipe.primitives import payload_key
from encpipe.stream import hash_records, seal_payload

AUTHENTICATOR_FAILED = "slot authenticator failed: this file was not made by a holder of the raw key"
UNAUTHENTICATED = ("maker not authenticated: anyone with the public key (or, for a v1 file, any slot holder) could"
                   " have made it; use --signer, or --count-unauthenticated")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return World(tmp_path_factory.mktemp("splices"))


def sealed_to_k_and_x(world, data=DATA, *more):
    return world.seal(data, "--key-file", world.K, "--recipient", world.X_pub, *more)


def parts(sealed):
    """(parsed header, stored payload, trailer) of a v2 file."""
    parsed = envelope.read_header(io.BytesIO(sealed))
    end = len(sealed) - parsed.trailer_len
    return parsed, sealed[parsed.size : end], provenance.Trailer.parse(sealed[end:], parsed.header)


def file_key(sealed, world):
    """What the escrow holder learns from a file sealed to its public key."""
    return envelope.unlock(envelope.read_header(io.BytesIO(sealed)), [identity(world.X)])[0]


def build(key, slots, salt, *, plaintext=None, payload=None, auths=(), sigs=()):
    """A file a holder of `key` can write: a header of `slots` (records, copied or
    made up), a payload sealed from `plaintext` or the stored records `payload`
    copied, and a trailer of the authenticators and signature entries it chose,
    with a valid trailer MAC."""
    header = envelope.build_header(key, slots, 14, salt, sig_count=len(sigs))
    out = io.BytesIO()
    out.write(header.encode())
    ledger = provenance.Ledger(header, key)
    if payload is not None:  # hash_records holds the last trailer_len bytes back as the trailer
        hash_records(io.BytesIO(payload + bytes(provenance.trailer_len(header))), out, header.chunk_size, ledger)
    else:
        seal_payload(io.BytesIO(plaintext), out, payload_key(key, header), header.chunk_size, ledger=ledger)
    out.write(provenance.Trailer(tuple(auths), tuple(sigs)).encode(key, header, ledger.tag_commitment()))
    return out.getvalue()


def broken(slot):
    """The slot with the last byte of its wrapped key flipped: it no longer unwraps."""
    return fmt.SlotRecord(slot.kind, slot.body[:-1] + bytes([slot.body[-1] ^ 1]))


@pytest.mark.parametrize("onto", ["a new payload under the signed file's key", "another genuine file"])
def test_a_signature_moved_onto_other_content_never_verifies(world, onto):
    """A signature covers C: every record and the file key's commitment. Copied
    onto another payload, or onto another file the escrow holder can open (sig_count
    raised, trailer MAC made anew), it does not verify: 65, signer or not."""
    signed = world.seal(DATA, "--recipient", world.X_pub, "--sign-key", world.S1)
    signature = parts(signed)[2].signatures
    target = signed if onto.startswith("a new payload") else world.seal(EVIL, "--recipient", world.X_pub)
    parsed, payload, trailer = parts(target)
    content = {"plaintext": EVIL} if target is signed else {"payload": payload}
    forged = build(file_key(target, world), parsed.header.slots, parsed.header.payload_salt, **content,
                   auths=trailer.authenticators, sigs=signature)
    for extra in ([], ["--signer", world.V1], ["--refuse-unauthenticated", "--signer", world.V1]):
        result = run(["open", "--identity", world.X, *extra], forged)
        assert (result.code, result.stdout) == (65, b""), (extra, result.stderr)
        assert "does not verify: the file was tampered with" in result.stderr
        assert_one_line_error(result.stderr)


def test_stripping_the_signatures_drops_the_claim_and_nothing_else(world):
    """sig_count is the header's, which the escrow holder may rewrite; the raw key's
    authenticator does not cover it. Signatures left out, the genuine content still
    opens under K as made by K's holder, and a required signer refuses it (67),
    writing nothing; with a new payload besides, K refuses it (65)."""
    signed = sealed_to_k_and_x(world, DATA, "--sign-key", world.S1)
    parsed, payload, trailer = parts(signed)
    key, salt = file_key(signed, world), parsed.header.payload_salt
    stripped = build(key, parsed.header.slots, salt, payload=payload, auths=trailer.authenticators)
    assert ok(run(["inspect", "--json"], stripped)).count(b'"signers": []') == 1
    assert ok(run(["open", "--key-file", world.K, "--refuse-unauthenticated"], stripped)) == DATA
    result = run(["open", "--key-file", world.K, "--signer", world.V1], stripped)
    assert (result.code, result.stdout) == (NOT_SIGNED, b"")
    assert "not signed by a trusted signer (unsigned)" in result.stderr
    rewritten = build(key, parsed.header.slots, salt, plaintext=EVIL, auths=trailer.authenticators)
    result = run(["open", "--key-file", world.K], rewritten)
    assert (result.code, result.stdout) == (65, b"") and AUTHENTICATOR_FAILED in result.stderr


@pytest.mark.parametrize("first", ["K's slot of another file", "a broken copy of K's slot"])
def test_the_slot_that_opens_is_the_one_checked_wherever_it_stands(world, tmp_path, first):
    """K's slot twice: first K's slot of another file the escrow holder can open
    (so that file's key, and its genuine authenticator in the first place), or a
    copy that no longer unwraps (so K opens the second, which is not at position 0).
    Either way K's authenticator of the slot that opened is checked over this
    payload: 65, nothing written, from a file, with or without options."""
    one, two = sealed_to_k_and_x(world), sealed_to_k_and_x(world, EVIL)
    (p1, _, t1), (p2, _, t2) = parts(one), parts(two)
    k1, x1 = p1.header.slots
    if first == "K's slot of another file":
        forged = build(file_key(two, world), [p2.header.slots[0], k1, x1], p2.header.payload_salt,
                       plaintext=b"evil " + EVIL, auths=(t2.authenticators[0], t1.authenticators[0]))
    else:
        forged = build(file_key(one, world), [broken(k1), k1, x1], p1.header.payload_salt, plaintext=EVIL,
                       auths=t1.authenticators * 2)
    assert_refused_from_a_file(world, forged, tmp_path)


@pytest.mark.parametrize("how", ["slot broken", "slot of an unknown kind"])
def test_a_raw_key_slot_the_escrow_holder_broke_leaves_the_identity_to_open_unauthenticated(world, how):
    """A keyring with K and X: with K's slot broken (or its kind changed), K opens
    nothing and X opens the forgery. It is then what any file X opens is, made by
    anyone with the public key: --refuse-unauthenticated refuses it (67, nothing
    written), open warns, inspect --verify says so; K alone finds no slot (77)."""
    genuine = sealed_to_k_and_x(world)
    parsed, _, trailer = parts(genuine)
    k, x = parsed.header.slots
    slot = broken(k) if how == "slot broken" else fmt.SlotRecord(9, k.body)
    auths = trailer.authenticators if slot.kind == k.kind else ()  # an unknown kind has none
    forged = build(file_key(genuine, world), [slot, x], os.urandom(32), plaintext=EVIL, auths=auths)
    ring = secret_file(world.dir, "ring", open(world.X).read() + KEY_A + "\n")
    result = run(["open", "--key-file", ring, "--refuse-unauthenticated"], forged)
    assert (result.code, result.stdout) == (NOT_SIGNED, b""), result.stderr
    assert "its maker is not authenticated: opened with an x25519 identity" in result.stderr
    assert_one_line_error(result.stderr)
    result = run(["open", "--key-file", ring], forged)
    assert (result.code, result.stdout) == (0, EVIL)
    assert "warning: opened with an x25519 identity: anyone with its public key can make such a file" in result.stderr
    report = ok(run(["inspect", "--json", "--verify", "--key-file", ring], forged))
    assert b'"sender_authenticated": false' in report and b'"authenticated_by": null' in report
    result = run(["open", "--key-file", world.K], forged)
    assert (result.code, result.stdout) == (77, b"") and "no supplied key opens this file" in result.stderr


# --- retention -------------------------------------------------------------------------------


def ago(hours):
    return stamp(datetime.now(timezone.utc) - timedelta(hours=hours))


def backups_of(world, directory, hours=(72, 48, 24)):
    directory.mkdir()
    names = [f"shop_{ago(h)}.sql.enc" for h in hours]
    for h, name in zip(hours, names):
        (directory / name).write_bytes(sealed_to_k_and_x(world, os.urandom(CHUNK + h)))
    return names


@pytest.mark.parametrize("payload", [b"junk" * 13, b"junk"], ids=["a stream's length", "too short"])
def test_a_header_that_borrows_a_backups_payload_salt_makes_it_kept_never_removed(world, tmp_path, payload):
    """Copies are found by payload salt, which is any header's to claim: a junk file
    of one header that borrows the newest backup's salt (no key needed), with a payload
    a stream can have, makes both copies. Both are left (65), neither counts nor goes;
    the policy keeps the next one instead, so no backup it would keep is removed. One
    too short to be a stream is no copy (it is damaged, left): the newest counts."""
    d = tmp_path / "b"
    names = backups_of(world, d)
    salt = envelope.read_header(io.BytesIO((d / names[-1]).read_bytes())).header.payload_salt
    planted = f"shop_{ago(1)}.sql.enc"
    (d / planted).write_bytes(fmt.Header(14, salt, (fmt.SlotRecord(9, b"x"),), mac=bytes(32)).encode() + payload)
    code, report, err = backups("prune", "--keep-last", "1", "--key-file", world.K, str(d), env={})
    assert code == 65, err
    if payload == b"junk":
        assert [(k["filename"], k["reasons"]) for k in report["kept"]] == [(names[2], ["last"])]
        assert sorted(r["filename"] for r in report["removed"]) == sorted(names[:2])
        assert [left["filename"] for left in report["left"]] == [planted]
        return
    assert [(k["filename"], k["reasons"]) for k in report["kept"]] == [(names[1], ["last"])]
    assert [r["filename"] for r in report["removed"]] == [names[0]]
    assert {left["filename"]: left["reasons"] for left in report["left"]} == {
        names[2]: [f"the same file as {planted}: a copy, never counted"],
        planted: [f"the same file as {names[2]}: a copy, never counted"]}
    assert sorted(os.listdir(d)) == sorted([names[1], names[2], planted])


@pytest.mark.parametrize("how", ["K's slot kept", "K's slot broken"])
def test_forgeries_by_the_escrow_holder_never_count_for_prune_with_both_keys(world, tmp_path, how):
    """prune with a keyring holding K and X, and a forgery under the newest name:
    with K's slot kept, K opens it and its authenticator fails; with K's slot broken,
    X opens it and its maker is not authenticated. Either way it is left (65), and
    --keep-last 1 keeps the newest genuine backup."""
    d = tmp_path / "b"
    names = backups_of(world, d)
    genuine = (d / names[-1]).read_bytes()
    parsed, _, trailer = parts(genuine)
    k, x = parsed.header.slots
    slot = k if how == "K's slot kept" else broken(k)
    planted = f"shop_{ago(1)}.sql.enc"
    (d / planted).write_bytes(build(file_key(genuine, world), [slot, x], os.urandom(32), plaintext=EVIL,
                                    auths=trailer.authenticators))
    ring = secret_file(tmp_path, "ring", open(world.X).read() + KEY_A + "\n")
    code, report, err = backups("prune", "--keep-last", "1", "--key-file", ring, str(d), env={})
    assert code == 65, err
    assert [(k["filename"], k["reasons"]) for k in report["kept"]] == [(names[2], ["last"])]
    assert sorted(r["filename"] for r in report["removed"]) == sorted(names[:2])
    assert len(report["left"]) == 1 and report["left"][0]["filename"] == planted
    [reason] = report["left"][0]["reasons"]
    if how == "K's slot kept":
        assert reason.startswith(f"failed verification: {AUTHENTICATOR_FAILED}"), reason
    else:
        assert reason == UNAUTHENTICATED


# --- encpipe-check: a header is its maker's to write; --verify reads the file ----------------


def check(*argv, env=None):
    from encpipe.backup.cli import main

    out, err = io.BytesIO(), io.StringIO()
    code = main(["check", *argv], stdout=out, stderr=err, env=dict(env or {}))
    return code, plugin_text(out.getvalue().decode()), err.getvalue()


def planted_with(world, tmp_path, own, genuine):
    """A file sealed to the public key X_pub, as anyone can make one, that claims a
    maker check could count: a slot of the planter's own raw key, a signature by
    its own signing key, or a signature entry naming S1's verify key (key ids are
    not secret) over bytes of its choosing."""
    if own == "raw key":
        return world.seal(EVIL, "--recipient", world.X_pub, "--key-file",
                          secret_file(tmp_path, "own.key", "5e" * 32 + "\n"))
    if own == "signing key":
        return world.seal(EVIL, "--recipient", world.X_pub, "--sign-key", world.S2)
    theirs = world.seal(EVIL, "--recipient", world.X_pub)  # the planter knows its own file's key
    parsed, _, _ = parts(theirs)
    s1, _ = parts(genuine)[2].signatures[0]
    return build(file_key(theirs, world), list(parsed.header.slots), parsed.header.payload_salt, plaintext=EVIL,
                 sigs=[(s1, os.urandom(64))])


def signer(data):
    """The key id of a v2 file's first signature entry, as its trailer names it."""
    return parts(data)[2].signatures[0][0].key_id.hex()


@pytest.mark.parametrize("own", ["raw key", "signing key", "a made-up signature naming S1"])
def test_check_verify_does_not_count_a_file_planted_with_the_planters_own_key(world, tmp_path, own):
    """The write-only setup: backups sealed to the public key and signed by S1;
    the last one two days old. A local user who can write the directory plants a
    fresh file sealed to the same public key, as before the fix of "Files planted
    under backup names" (README), but adds a slot for a raw key of its own, a
    signature by a signing key of its own, or a signature entry naming S1: no
    secret of anyone else needed. check, from headers only, counts it and says OK,
    as README says it does; check --verify (the escrow identity, ENCPIPE_SIGNER
    naming S1, as prune and verify take them) authenticates it, does not count
    it, and says CRITICAL, naming it and why."""
    d = tmp_path / "b"
    d.mkdir()
    genuine = world.seal(DATA, "--recipient", world.X_pub, "--sign-key", world.S1)
    old, planted = f"shop_{ago(48)}.sql.enc", f"shop_{ago(1)}.sql.enc"
    (d / old).write_bytes(genuine)
    (d / planted).write_bytes(planted_with(world, tmp_path, own, genuine))
    if own == "raw key":
        why = "not signed by a trusted signer (unsigned)"
    elif own == "signing key":
        why = f"not signed by a trusted signer (signed by {signer((d / planted).read_bytes())})"
    else:
        why = f"signature by {signer(genuine)} does not verify: the file was tampered with"
    env = {"ENCPIPE_SIGNER": world.V1}
    assert check("--max-age", "24", str(d), env=env) == (0, f"OK: shop: newest backup {planted} is 1.0 h old\n", "")
    code, out, err = check("--max-age", "24", "--verify", "--identity", world.X, str(d), env=env)
    assert (code, err) == (2, "")
    assert out == (f"CRITICAL: shop: newest backup {old} is 48.0 h old, over --max-age 24 h; newest file {planted}"
                   f" failed authentication: {why}\n")
    with_s1 = check("--max-age", "72", "--verify", "--identity", world.X, str(d), env=env)
    young = out.replace("CRITICAL", "WARNING").replace(", over --max-age 24 h", "")
    assert with_s1 == (1, young, "")  # the genuine one counts when young enough


def test_check_verify_without_a_signer_counts_an_x25519_file_only_with_count_unauthenticated(world, tmp_path):
    """A file sealed to the public key and signed, opened by the escrow identity with
    no --signer required: its maker is not authenticated (any signature proves
    nothing until a signer is required), so --verify does not count it, as prune
    does not; --count-unauthenticated counts it, as prune does."""
    d = tmp_path / "b"
    d.mkdir()
    name = f"shop_{ago(1)}.sql.enc"
    (d / name).write_bytes(world.seal(DATA, "--recipient", world.X_pub, "--sign-key", world.S1))
    argv = ["--max-age", "24", "--verify", "--identity", world.X, str(d)]
    said = f"CRITICAL: shop: no backup; newest file {name} failed authentication: {UNAUTHENTICATED}\n"
    assert check(*argv) == (2, said, "")
    assert check(*argv, "--count-unauthenticated") == (0, f"OK: shop: newest backup {name} is 1.0 h old\n", "")
    assert check(*argv, "--signer", world.V1) == (0, f"OK: shop: newest backup {name} is 1.0 h old\n", "")
