"""Decisions of format v2's provenance and rewrap code (provenance.py, envelope.py's
open and rewrap, inplace.py, commands.py's rewrap and inspect) that a hand-made
mutation review found no test pinning: each test here failed on one mutant of one
product line and passes on the product as it is. Each is pure calls or in-process
runs (tests/cliutil.run).

- test_rewrap_check_first_of_a_v1_file_compares_each_record_with_its_witness:
  rewrap's v1 ledger carries the witnesses (envelope.rewrap's new_ledger): without
  them a v1 record changed between the passes is copied unchecked.
- test_a_version_1_file_is_never_sender_authenticated: open_sealed's v1 provenance
  (NOT_SENDER_AUTHENTICATED), which encpipe-verify, prune and check count by.
- (owner_not_kept's `inherited`, a directory of the file's group that is not set-group-ID:
  tests/test_mutants_stream.py's in-place refusal, its second case)
- test_rewrap_in_place_keeps_a_file_of_a_supplementary_group: owner_not_kept's
  os.getgroups(): a file in one of the caller's other groups is rewrapped, its group
  kept, not refused (73).
- test_rewrap_in_place_leaves_a_file_another_changed_meanwhile: cmd_rewrap's
  `replaces=before` (README exit 75: nothing replaced, the other's file kept).
- test_inspect_verify_reports_the_payload_bytes: cmd_inspect's payload_bytes under
  --verify (README: always reported, without the trailer); `signers` only for a v2
  file (README: "signers (v2 without --verify)").
- test_rewrap_remove_checks_every_value_and_shows_none: cmd_rewrap's `all(...)` over
  --remove: one key typed among good key ids is 64 before anything is read, unshown.
- test_rewrap_from_standard_input_takes_no_secret_from_it: cmd_rewrap's `path is
  None` to _identities: the data on standard input, a key or passphrase from it too
  is 64 (README "Edge rules"), not the ciphertext read as the key.
"""

import io
import json
import os

import pytest

from cliutil import KEY_A, KEY_B, key_env, ok, run, secret_file

from encpipe import envelope, provenance, safefile
from encpipe.errors import InvalidStream
from encpipe.slots import RawKey

K = RawKey(bytes.fromhex(KEY_A))
CHUNK_LOG2, CHUNK = 14, 1 << 14
RECORD = CHUNK + 16
REAL_FCHOWN = os.fchown  # the kernel's, before as_operator stands in for it


def sealed(data, version=2):
    out = io.BytesIO()
    envelope.seal(io.BytesIO(data), out, [K], chunk_log2=CHUNK_LOG2, version=version)
    return out.getvalue()


class _ChangedOnReplay(io.BytesIO):
    """A file that `change(bytes) -> bytes` rewrites when a second pass seeks back."""

    def __init__(self, data, change):
        super().__init__(data)
        self._change, self.replays = change, 0

    def seek(self, offset, whence=0):
        if self.replays == 0 and whence == 0 and self.tell() > offset:
            self.replays += 1
            here = super().tell()
            changed = self._change(self.getvalue())
            self.truncate(0)
            super().seek(0)
            self.write(changed)
            super().seek(here)
        return super().seek(offset, whence)


def test_rewrap_check_first_of_a_v1_file_compares_each_record_with_its_witness():
    data = sealed(os.urandom(2 * CHUNK + 5), version=1)
    head = envelope.read_header(io.BytesIO(data)).size
    flip = head + RECORD + 3  # the second record, its ciphertext

    def change(b):
        return b[:flip] + bytes([b[flip] ^ 1]) + b[flip + 1:]

    src, out = _ChangedOnReplay(data, change), io.BytesIO()
    with pytest.raises(InvalidStream, match=f"^{provenance.CHANGED}: the output stops before"):
        envelope.rewrap(src, out, [K], check_first=True)
    assert src.replays == 1
    assert len(out.getvalue()) <= head + RECORD  # the header and the first record at most


def test_a_version_1_file_is_never_sender_authenticated():
    data = sealed(b"made by whoever holds a slot", version=1)
    info = envelope.unseal(io.BytesIO(data), None, [K])
    assert info.provenance.sender_authenticated is False
    info = envelope.unseal(io.BytesIO(data), io.BytesIO(), [K], verify_first=True)
    assert info.provenance.sender_authenticated is False


def test_rewrap_in_place_keeps_a_file_of_a_supplementary_group(tmp_path, as_operator, monkeypatch):
    from notroot import OPERATOR, READERS

    def fchown(fd, uid, gid):  # the kernel's rule for a caller in both groups
        if uid not in (-1, OPERATOR) or gid not in (-1, OPERATOR, READERS):
            raise PermissionError(1, "Operation not permitted")
        REAL_FCHOWN(fd, uid, gid)

    monkeypatch.setattr(os, "getgroups", lambda: [OPERATOR, READERS])
    monkeypatch.setattr(os, "fchown", fchown)
    path = tmp_path / "f.enc"
    path.write_bytes(sealed(b"data"))
    os.chown(path, OPERATOR, READERS)
    other = secret_file(tmp_path, "other.key", "5e" * 32)
    result = run(["rewrap", "--in-place", str(path), "--add-key-file", other], env=key_env())
    assert (result.code, result.stdout, result.stderr) == (0, b"", "")
    assert (os.stat(path).st_uid, os.stat(path).st_gid) == (OPERATOR, READERS)
    assert ok(run(["open", "--key-file", other, str(path)])) == b"data"


def _at_step(monkeypatch, wanted, action):
    real = safefile.hook

    def hook(step, *details):
        if step == wanted:
            action()
        return real(step, *details)

    monkeypatch.setattr(safefile, "hook", hook)


@pytest.mark.parametrize("how", ["replaced", "rewritten"])
def test_rewrap_in_place_leaves_a_file_another_changed_meanwhile(tmp_path, monkeypatch, how):
    path = tmp_path / "f.enc"
    path.write_bytes(sealed(os.urandom(100)))
    theirs = sealed(b"theirs")

    def change():
        if how == "replaced":
            (tmp_path / "new").write_bytes(theirs)
            os.rename(tmp_path / "new", path)
        else:
            with open(path, "ab") as f:
                f.write(b"theirs")

    _at_step(monkeypatch, "written", change)  # FILE read whole, the new file written: before the rename
    expected = theirs if how == "replaced" else path.read_bytes() + b"theirs"
    result = run(["rewrap", "--in-place", str(path), "--add-key-file", secret_file(tmp_path, "b", KEY_B)],
                 env=key_env())
    assert (result.code, result.stdout) == (75, b""), result.stderr
    assert result.stderr == f"encpipe: error: {path} changed while it was being rewritten; left alone\n"
    assert path.read_bytes() == expected and sorted(os.listdir(tmp_path)) == ["b", "f.enc"]


def test_inspect_verify_reports_the_payload_bytes():
    data = sealed(os.urandom(CHUNK + 7))
    plain = json.loads(ok(run(["inspect", "--json"], data)))
    verified = json.loads(ok(run(["inspect", "--json", "--verify"], data, key_env())))
    assert plain["payload_bytes"] == verified["payload_bytes"] == CHUNK + 7 + 2 * 16
    assert verified["verified"] is True and plain["signers"] == []
    assert "signers" not in json.loads(ok(run(["inspect", "--json"], sealed(b"", version=1))))


def test_rewrap_remove_checks_every_value_and_shows_none():
    data = sealed(b"data")
    good = ok(run(["keyid"], env=key_env())).decode().strip()
    result = run(["rewrap", "--remove", good, "--remove", KEY_B], data, key_env())
    assert (result.code, result.stdout) == (64, b""), result.stderr
    assert KEY_B not in result.stderr and KEY_B.upper() not in result.stderr
    assert "--remove takes a key id" in result.stderr


@pytest.mark.parametrize("secret", [["--key-file", "-"], ["--passphrase-fd", "0"]])
def test_rewrap_from_standard_input_takes_no_secret_from_it(tmp_path, secret):
    added = secret_file(tmp_path, "b", KEY_B)
    result = run(["rewrap", *secret, "--add-key-file", added], sealed(b"data"), {})
    assert (result.code, result.stdout) == (64, b""), result.stderr
    said = "encpipe: error: standard input cannot carry both the data and a key or passphrase\n"
    assert result.stderr.startswith(said), result.stderr
