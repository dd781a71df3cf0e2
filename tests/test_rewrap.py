"""encpipe rewrap and keyrings (issue 3, acceptance 2, 3, 4 and 8): new slots
over the same payload, exact slot removal, header authentication after a
rewrap, keys picked by key id, and constant memory on a large file."""

import hashlib
import io
import json
import os
import subprocess
import sys
import zlib

import pytest

from cliutil import assert_one_line_error, ok, run, write_secret

from encpipe import envelope
from encpipe import format as fmt
from encpipe.errors import EncpipeError
from encpipe.keys import KeyLoader, KeySources
from encpipe.slots import RawKey
from encpipe.x25519 import X25519Identity

CHUNK = 16 * 1024
DATA = os.urandom(5 * CHUNK + 321)
MIB = 1024 * 1024


# --- helpers ------------------------------------------------------------------


class Keys:
    """Three raw keys A, B, C and two identities X, Y, each in its own key file."""

    def __init__(self, tmp_path):
        self.dir = tmp_path
        for name in "ABC":
            setattr(self, name, write_secret(tmp_path / f"{name}.key", os.urandom(32).hex() + "\n"))
        for name in "XY":
            path = tmp_path / f"{name}.id"
            public = ok(run(["keygen", "--x25519", "-o", str(path)])).decode().strip()
            setattr(self, name, str(path))
            setattr(self, f"{name}_pub", public)

    def id(self, path):
        (key_id,) = ok(run(["keyid", "--key-file", path])).decode().split()
        return key_id


@pytest.fixture
def keys(tmp_path):
    return Keys(tmp_path)


def seal(data, *key_args):
    return ok(run(["seal", "--chunk-size", "16K", *key_args], data))


def info(sealed):
    return json.loads(ok(run(["inspect", "--json"], sealed)))


def slot_ids(sealed):
    return [s.get("key_id") for s in info(sealed)["slots"]]


def payload(sealed):
    """The STREAM payload: after the header, before the v2 trailer (which a rewrap rewrites)."""
    report = info(sealed)
    return sealed[report["header_bytes"] : report["header_bytes"] + report["payload_bytes"]]


def opens(sealed, *key_args):
    """The exit code of open and, on success, whether the plaintext is exactly DATA."""
    code, out, _ = run(["open", *key_args], sealed)
    if code == 0:
        assert out == DATA
    else:
        assert out == b""
    return code


def rewrap(sealed, *args):
    return ok(run(["rewrap", *args], sealed))


# --- acceptance 2: from key A to key B -----------------------------------------


def test_rewrap_from_a_to_b_keeps_every_payload_byte(keys):
    original = seal(DATA, "--key-file", keys.A)
    rewrapped = rewrap(original, "--key-file", keys.A, "--add-key-file", keys.B, "--remove", keys.id(keys.A))
    assert slot_ids(rewrapped) == [keys.id(keys.B)]
    assert opens(rewrapped, "--key-file", keys.B) == 0
    assert opens(rewrapped, "--key-file", keys.A) == 77
    assert opens(original, "--key-file", keys.A) == 0
    # Same payload bytes, same salt and chunk size; only the header changed.
    assert payload(rewrapped) == payload(original)
    assert len(payload(original)) == 6 * (CHUNK + 16) - CHUNK + 321
    old, new = (fmt.read_header(io.BytesIO(f)) for f in (original, rewrapped))
    assert (new.payload_salt, new.chunk_log2) == (old.payload_salt, old.chunk_log2)
    assert new.mac != old.mac


def test_rewrap_replace_moves_every_slot_to_the_new_key(keys):
    original = seal(DATA, "--key-file", keys.A, "--recipient", keys.X_pub, "--passphrase-file",
                    write_secret(keys.dir / "pw", "pw"), "--work-factor", "10")
    rewrapped = rewrap(original, "--key-file", keys.A, "--replace", "--add-key-file", keys.B)
    assert slot_ids(rewrapped) == [keys.id(keys.B)]
    assert opens(rewrapped, "--key-file", keys.B) == 0
    for old in (["--key-file", keys.A], ["--identity", keys.X], ["--passphrase-file", str(keys.dir / "pw")]):
        assert opens(rewrapped, *old) == 77
    assert payload(rewrapped) == payload(original)


def test_rewrap_in_place_from_a_to_b(keys, tmp_path):
    original = seal(DATA, "--key-file", keys.A)
    target = tmp_path / "backup.enc"
    target.write_bytes(original)
    code, out, err = run(["rewrap", "--in-place", str(target), "--key-file", keys.A,
                          "--replace", "--add-key-file", keys.B])
    assert (code, out) == (0, b""), err
    rewrapped = target.read_bytes()
    assert opens(rewrapped, "--key-file", keys.B) == 0
    assert opens(rewrapped, "--key-file", keys.A) == 77
    assert payload(rewrapped) == payload(original)
    assert sorted(os.listdir(tmp_path)) == sorted(
        ["A.key", "B.key", "C.key", "X.id", "Y.id", "backup.enc"]
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="gives the file to another user")
def test_rewrap_in_place_keeps_the_files_owner_group_mode_and_time(keys, tmp_path):
    """FILE came out root's, mode 0600, its time now: the backups' user and the group's
    readers of a file root rewrapped lost it, and its time was no longer its name's.
    It keeps them, as encpipe-rotate's, the time with one second more (a mirror's sync
    sees the change: README, "Rotating a directory")."""
    target = tmp_path / "backup.enc"
    target.write_bytes(seal(DATA, "--key-file", keys.A))
    os.chown(target, 12345, 12346)
    os.chmod(target, 0o640)
    os.utime(target, ns=(1_700_000_000_000_000_000, 1_735_689_600_000_000_000))
    code, out, err = run(["rewrap", "--in-place", str(target), "--key-file", keys.A, "--replace",
                          "--add-key-file", keys.B])
    assert (code, out) == (0, b""), err
    info = os.stat(target)
    assert (info.st_uid, info.st_gid, info.st_mode & 0o7777) == (12345, 12346, 0o640)
    assert info.st_mtime_ns == 1_735_689_601_000_000_000
    assert opens(target.read_bytes(), "--key-file", keys.B) == 0


def test_rewrap_in_place_with_a_wrong_key_leaves_the_file_and_no_temp(keys, tmp_path):
    original = seal(DATA, "--key-file", keys.A)
    target = tmp_path / "backup.enc"
    target.write_bytes(original)
    before = sorted(os.listdir(tmp_path))
    code, out, err = run(["rewrap", "--in-place", str(target), "--key-file", keys.C, "--add-key-file", keys.B])
    assert (code, out) == (77, b"")
    assert_one_line_error(err)
    assert target.read_bytes() == original
    assert sorted(os.listdir(tmp_path)) == before


# --- acceptance 3: adding and removing slots ------------------------------------


def test_add_recipient_keeps_the_old_key_and_adds_the_new(keys):
    original = seal(DATA, "--key-file", keys.A)
    rewrapped = rewrap(original, "--key-file", keys.A, "--add-recipient", keys.X_pub)
    assert slot_ids(rewrapped) == [keys.id(keys.A), keys.id(keys.X)]
    assert [s["type"] for s in info(rewrapped)["slots"]] == ["raw-key", "x25519"]
    assert opens(rewrapped, "--key-file", keys.A) == 0
    assert opens(rewrapped, "--identity", keys.X) == 0
    assert opens(rewrapped, "--identity", keys.Y) == 77
    assert payload(rewrapped) == payload(original)
    # The old key's slot is kept byte for byte.
    old, new = (fmt.read_header(io.BytesIO(f)) for f in (original, rewrapped))
    assert new.slots[0] == old.slots[0]


def test_add_several_kinds_at_once(keys):
    original = seal(DATA, "--key-file", keys.A)
    pw = write_secret(keys.dir / "pw", "new passphrase\n")
    rewrapped = rewrap(original, "--key-file", keys.A, "--add-key-file", keys.B, "--add-recipient", keys.X_pub,
                       "--add-recipient", keys.Y_pub, "--add-passphrase-file", pw, "--work-factor", "10")
    assert len(info(rewrapped)["slots"]) == 5
    for opener in (["--key-file", keys.A], ["--key-file", keys.B], ["--identity", keys.X],
                   ["--identity", keys.Y], ["--passphrase-file", pw]):
        assert opens(rewrapped, *opener) == 0, opener


def test_remove_drops_exactly_that_slot(keys):
    original = seal(DATA, "--key-file", keys.A, "--key-file", keys.B, "--recipient", keys.X_pub)
    a, b, x = keys.id(keys.A), keys.id(keys.B), keys.id(keys.X)
    assert slot_ids(original) == [a, b, x]
    old_records = fmt.read_header(io.BytesIO(original)).slots
    for victim, left in ((a, [b, x]), (b, [a, x]), (x, [a, b])):
        opener = keys.B if victim == a else keys.A
        rewrapped = rewrap(original, "--key-file", opener, "--remove", victim)
        assert slot_ids(rewrapped) == left
        kept = [r for r, i in zip(old_records, [a, b, x]) if i != victim]
        assert list(fmt.read_header(io.BytesIO(rewrapped)).slots) == kept  # untouched, in order
        for key_id, opener_args in ((a, ["--key-file", keys.A]), (b, ["--key-file", keys.B]),
                                    (x, ["--identity", keys.X])):
            assert opens(rewrapped, *opener_args) == (77 if key_id == victim else 0)
        assert payload(rewrapped) == payload(original)


def test_remove_accepts_upper_case_key_id(keys):
    original = seal(DATA, "--key-file", keys.A, "--key-file", keys.B)
    rewrapped = rewrap(original, "--key-file", keys.A, "--remove", keys.id(keys.B).upper())
    assert slot_ids(rewrapped) == [keys.id(keys.A)]


def test_remove_an_unknown_key_id_is_64(keys):
    original = seal(DATA, "--key-file", keys.A)
    code, out, err = run(["rewrap", "--key-file", keys.A, "--remove", keys.id(keys.B)], original)
    assert (code, out) == (64, b"")
    assert_one_line_error(err)


@pytest.mark.parametrize("how", ["remove", "replace", "remove-both"])
def test_removing_the_last_slot_is_refused(keys, tmp_path, how):
    if how == "remove-both":
        original = seal(DATA, "--key-file", keys.A, "--key-file", keys.B)
        args = ["--remove", keys.id(keys.A), "--remove", keys.id(keys.B)]
    else:
        original = seal(DATA, "--key-file", keys.A)
        args = ["--remove", keys.id(keys.A)] if how == "remove" else ["--replace"]
    code, out, err = run(["rewrap", "--key-file", keys.A, *args], original)
    assert (code, out) == (64, b"")
    assert_one_line_error(err)
    assert "no key slots" in err
    target = tmp_path / "backup.enc"
    target.write_bytes(original)
    before = sorted(os.listdir(tmp_path))
    code, out, err = run(["rewrap", "--in-place", str(target), "--key-file", keys.A, *args])
    assert (code, out) == (64, b"")
    assert target.read_bytes() == original
    assert sorted(os.listdir(tmp_path)) == before


def test_remove_and_add_in_one_call_moves_from_a_to_b_keeping_escrow(keys):
    original = seal(DATA, "--key-file", keys.A, "--recipient", keys.X_pub)
    rewrapped = rewrap(original, "--key-file", keys.A, "--remove", keys.id(keys.A), "--add-key-file", keys.B)
    assert slot_ids(rewrapped) == [keys.id(keys.X), keys.id(keys.B)]
    assert opens(rewrapped, "--identity", keys.X) == 0
    assert opens(rewrapped, "--key-file", keys.A) == 77


# --- acceptance 4: the header stays authenticated ---------------------------------


def _flip(data, position, mask, fix_crc):
    forged = bytearray(data)
    forged[position] ^= mask
    if fix_crc:
        size = int.from_bytes(data[8:10], "big")
        forged[size - 4:size] = zlib.crc32(bytes(forged[:size - 4])).to_bytes(4, "big")
    return bytes(forged)


@pytest.fixture
def rewrapped_pair(keys):
    """A file moved from A to B with escrow X kept, and its own slot's byte range."""
    original = seal(DATA, "--key-file", keys.A, "--recipient", keys.X_pub)
    rewrapped = rewrap(original, "--key-file", keys.A, "--remove", keys.id(keys.A), "--add-key-file", keys.B)
    assert slot_ids(rewrapped) == [keys.id(keys.X), keys.id(keys.B)]
    size = info(rewrapped)["header_bytes"]
    b_slot = range(46 + 3 + 80, 46 + 3 + 80 + 3 + 48)  # v2: after sig_count and the 80-byte x25519 slot
    assert rewrapped[b_slot.start] == 1 and rewrapped[b_slot.start + 3:b_slot.start + 11].hex() == keys.id(keys.B)
    return keys, rewrapped, size, b_slot


def _load(*key_files, sealing=False):
    return KeyLoader(env={}, warn=None).load(KeySources(key_files=list(key_files)), sealing=sealing)


def _core_exit(function, *args, **kwargs):
    """The exit status the CLI gives for this core call: 0, or its error's exit code.
    (The header loops call the core directly: the CLI's argument parsing alone
    would make them slow; every 16th position also goes through the CLI.)"""
    try:
        function(*args, **kwargs)
    except EncpipeError as e:
        return e.exit_code
    return 0


def _open_exit(forged, identities, cli_args, position):
    out = io.BytesIO()
    code = _core_exit(envelope.unseal, io.BytesIO(forged), out, identities)
    assert out.getvalue() == b"", position
    if position % 16 == 0:
        assert run(["open", "--threads", "1", *cli_args], forged)[:2] == (code, b""), position
    return code


def test_every_header_byte_flip_after_rewrap_is_65(rewrapped_pair):
    keys, rewrapped, size, _ = rewrapped_pair
    openers = [(_load(keys.B), ["--key-file", keys.B]), (_load(keys.X), ["--identity", keys.X])]
    for position in range(size):
        identities, cli_args = openers[position % 2]
        for mask in (0x01, 0xFF):
            code = _open_exit(_flip(rewrapped, position, mask, fix_crc=False), identities, cli_args, position)
            assert code == 65, (position, mask)
    assert run(["open", "--key-file", keys.B], rewrapped)[:2] == (0, DATA)


def test_header_flips_with_a_fixed_crc_are_caught_by_the_new_mac(rewrapped_pair):
    """With the CRC recomputed, the rewritten header MAC must catch every change:
    65, except a change to the opening key's own slot, which hides it (77)."""
    keys, rewrapped, size, b_slot = rewrapped_pair
    identities = _load(keys.B)
    for position in range(size - 4):
        for mask in (0x01, 0x80, 0xFF):
            code = _open_exit(_flip(rewrapped, position, mask, fix_crc=True), identities, ["--key-file", keys.B],
                              position)
            assert code in ({65, 77} if position in b_slot else {65}), (position, mask, code)


def test_rewrap_refuses_a_tampered_header_instead_of_re_signing_it(rewrapped_pair):
    keys, rewrapped, size, b_slot = rewrapped_pair
    identities, additions = _load(keys.B), _load(keys.C, sealing=True)
    for position in range(size - 4):
        if position in b_slot:
            continue
        forged = _flip(rewrapped, position, 0x01, fix_crc=True)
        out = io.BytesIO()
        assert _core_exit(envelope.rewrap, io.BytesIO(forged), out, identities, add=additions) == 65, position
        assert out.getvalue() == b""
        if position % 16 == 0:
            assert run(["rewrap", "--key-file", keys.B, "--add-key-file", keys.C], forged)[:2] == (65, b"")


def test_rewrap_cannot_launder_a_tampered_payload(keys):
    original = seal(DATA, "--key-file", keys.A)
    size = info(original)["header_bytes"]
    expected = {size: "chunk 0 failed authentication", size + CHUNK + 3: "chunk 0 failed authentication",
                len(original) - 65: "chunk 5 failed authentication", len(original) - 33: "trailer authentication failed",
                len(original) - 1: "trailer authentication failed"}
    for position, message in expected.items():
        forged = _flip(original, position, 0x01, fix_crc=False)
        # v2: rewrap checks every chunk's tag and the old trailer, and refuses
        code, _, err = run(["rewrap", "--key-file", keys.A, "--replace", "--add-key-file", keys.B], forged)
        assert code == 65 and message in err, (position, err)


def test_a_header_from_before_the_rewrap_does_not_fit_the_payload_of_another_file(keys):
    """Swapping headers between two files of the same keys is caught by the payload."""
    one = rewrap(seal(DATA, "--key-file", keys.A), "--key-file", keys.A, "--add-key-file", keys.B)
    two = seal(DATA, "--key-file", keys.A, "--key-file", keys.B)
    spliced = one[:info(one)["header_bytes"]] + payload(two)
    assert opens(spliced, "--key-file", keys.B) == 65


# --- keyrings: several keys at once, picked by key id -------------------------------


@pytest.fixture
def ring(keys):
    """A keyring file with comments, 20 unrelated raw keys, identity Y, key B, identity X."""
    parts = ["# operations keyring", ""]
    parts += [os.urandom(32).hex() for _ in range(20)]
    parts += [open(keys.Y).read(), "  " + open(keys.B).read().strip() + "  ", open(keys.X).read()]
    return write_secret(keys.dir / "ring", "\n".join(parts) + "\n")


@pytest.mark.parametrize("sealed_to", ["B", "X"])
def test_open_inspect_and_rewrap_accept_a_keyring(keys, ring, sealed_to):
    sealer = ["--key-file", keys.B] if sealed_to == "B" else ["--recipient", keys.X_pub]
    sealed = seal(DATA, "--key-file", keys.C, *sealer)
    assert opens(sealed, "--key-file", ring) == 0
    assert opens(sealed, "--identity", ring) == 0
    report = json.loads(ok(run(["inspect", "--verify", "--json", "--key-file", ring], sealed)))
    assert (report["verified"], report["plaintext_bytes"]) == (True, len(DATA))
    rewrapped = rewrap(sealed, "--key-file", ring, "--remove", keys.id(keys.C), "--add-recipient", keys.Y_pub)
    assert opens(rewrapped, "--key-file", keys.C) == 77
    assert opens(rewrapped, "--identity", keys.Y) == 0
    assert payload(rewrapped) == payload(sealed)


def test_several_key_options_at_once(keys):
    sealed = seal(DATA, "--recipient", keys.Y_pub)
    many = ["--key-file", keys.A, "--key-file", keys.B, "--identity", keys.X, "--identity", keys.Y]
    assert opens(sealed, *many) == 0
    assert json.loads(ok(run(["inspect", "--verify", "--json", *many], sealed)))["verified"] is True
    # (an x25519 identity opened it: a raw-key slot would vouch for it, test_provenance_edges.py)
    assert slot_ids(rewrap(sealed, *many, "--add-recipient", keys.X_pub)) == [keys.id(keys.Y), keys.id(keys.X)]
    assert opens(sealed, "--key-file", keys.A, "--identity", keys.X) == 77


def test_a_keyring_without_the_key_is_77(keys, ring):
    sealed = seal(DATA, "--key-file", keys.A)
    for argv in (["open", "--key-file", ring], ["inspect", "--verify", "--key-file", ring],
                 ["rewrap", "--key-file", ring, "--add-key-file", keys.C]):
        code, out, err = run(argv, sealed)
        assert (code, out) == (77, b""), argv
        assert_one_line_error(err)
        assert keys.id(keys.A) in err  # the hint names the key id that would open it


def test_keys_go_straight_to_their_slot(keys, ring, monkeypatch):
    """With 23 keys and 4 slots, exactly one unwrap is attempted: the matching key
    on the matching slot (no key is tried on a slot with another key id)."""
    calls = []
    for cls in (RawKey, X25519Identity):
        original = cls.unwrap

        def spy(self, slot, _original=original):
            calls.append((self.key_id, slot.key_id))
            return _original(self, slot)

        monkeypatch.setattr(cls, "unwrap", spy)
    sealed = seal(DATA, "--key-file", keys.A, "--recipient", keys.Y_pub, "--key-file", keys.C,
                  "--recipient", keys.X_pub)
    for argv in (["open", "--key-file", ring], ["inspect", "--verify", "--key-file", ring],
                 ["rewrap", "--key-file", ring, "--add-recipient", keys.X_pub]):
        calls.clear()
        ok(run(argv, sealed))
        assert len(calls) == 1, argv
        assert calls[0][0] == calls[0][1]
    calls.clear()
    assert run(["open", "--key-file", keys.B], sealed)[0] == 77
    assert calls == []  # a key with no slot is never tried at all


# --- acceptance 8: constant memory ---------------------------------------------------


_MEASURE = """
import resource, subprocess, sys
done = subprocess.run(sys.argv[1:], stderr=subprocess.PIPE)
sys.stderr.write(done.stderr.decode())
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss if done.returncode == 0 else -1, file=sys.stderr)
"""


def _peak_rss_kib(argv, stdin, stdout):
    """Peak RSS of encpipe, in KiB. A small Python in between starts it and reads
    RUSAGE_CHILDREN: a child forked straight from pytest would start its count
    from pytest's own size."""
    done = subprocess.run([sys.executable, "-c", _MEASURE, sys.executable, "-m", "encpipe", *argv],
                          stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, check=True)
    *messages, peak = done.stderr.decode().splitlines()
    assert int(peak) > 0, messages
    return int(peak)


def _sha256_from(path, offset, trailer=0):
    """The SHA-256 of the file from `offset` to `trailer` bytes before its end."""
    digest = hashlib.sha256()
    left = os.path.getsize(path) - offset - trailer
    with open(path, "rb") as f:
        f.seek(offset)
        while left and (block := f.read(min(MIB, left))):
            digest.update(block)
            left -= len(block)
    return digest.hexdigest()


def _seal_zeros(path, size, key_file):
    with open(path, "wb") as out:
        feeder = subprocess.Popen(["head", "-c", str(size), "/dev/zero"], stdout=subprocess.PIPE)
        done = subprocess.run([sys.executable, "-m", "encpipe", "seal", "--key-file", key_file],
                              stdin=feeder.stdout, stdout=out)
        feeder.stdout.close()
        assert feeder.wait() == 0 and done.returncode == 0


def test_rewrap_runs_in_constant_memory(keys, tmp_path):
    size = 64 * MIB
    big, small = tmp_path / "big.enc", tmp_path / "small.enc"
    _seal_zeros(big, size, keys.A)
    _seal_zeros(small, MIB, keys.A)
    with open(big, "rb") as f:
        header_bytes = int.from_bytes(f.read(10)[8:10], "big")
    payload_digest = _sha256_from(big, header_bytes, trailer=64)
    args = ["rewrap", "--key-file", keys.A, "--replace", "--add-key-file", keys.B]
    peaks = {}
    for name, path in (("small", small), ("big", big)):
        out = tmp_path / f"{name}.out"
        with open(path, "rb") as src, open(out, "wb") as dst:
            peaks[name] = _peak_rss_kib(args, src, dst)
    peaks["in-place"] = _peak_rss_kib(["rewrap", "--in-place", str(big), *args[1:]], subprocess.DEVNULL,
                                      subprocess.DEVNULL)
    for name in ("big.out", "big.enc"):
        with open(tmp_path / name, "rb") as f:
            new_header = int.from_bytes(f.read(10)[8:10], "big")
        assert _sha256_from(tmp_path / name, new_header, trailer=64) == payload_digest, name
        assert (tmp_path / name).stat().st_size == big.stat().st_size - header_bytes + new_header
    limit_kib = size // 1024 // 2
    assert peaks["big"] < limit_kib and peaks["in-place"] < limit_kib, peaks
    assert peaks["big"] - peaks["small"] < 8 * 1024, peaks  # no growth with the file size
    code, _, err = run(["inspect", "--verify", "--key-file", keys.B, str(big)])
    assert code == 0, err
