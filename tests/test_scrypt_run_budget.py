"""A run over many files (encpipe-verify, -prune, -check --verify) and the scrypt
work of their passphrase slots (README, "Resource limits").

Each file alone may cost one scrypt budget (default 2^24: eight attempts at the
default cost); a writer of a backup location could plant many files of costly
passphrase slots and make one run take hours. So a run remembers the slots a
passphrase failed to open (a copy costs nothing more), and once it has spent one
budget on files no passphrase opened, each later file gets what a genuine one
needs. The tests count scrypt evaluations, not time."""

import io
import json
import struct

import pytest

import fuzz.craft as craft
from cliutil import write_secret
from test_backup_dir import OLD_ARCHIVE
from encpipe import slots
from encpipe.backup.cli import main
from encpipe.slots import Passphrase

PLAINTEXT = OLD_ARCHIVE + b"a small dump\n" * 100  # under a custom archive's name: it starts as one
DEFAULT_COST = (18, 8, 1)
DECOY = b"\x11" * 12  # the salts of the planted slots start so: they never open, so need no real scrypt


@pytest.fixture
def evaluations(monkeypatch):
    calls = []
    real = slots.scrypt_kek

    def counting(passphrase, salt, log2_n, r, p):
        calls.append(salt)
        return b"\x00" * 32 if salt.startswith(DECOY) else real(passphrase, salt, log2_n, r, p)

    monkeypatch.setattr(slots, "scrypt_kek", counting)
    return calls


def planted(number, count=8):
    """A file of `count` default-cost passphrase slots no passphrase opens, each its own salt."""
    extra = [(craft.SLOT_SCRYPT, craft.scrypt_body(*DEFAULT_COST, salt=DECOY + struct.pack(">HH", number, n)))
             for n in range(count)]
    return craft.seal_with(PLAINTEXT, [], extra=extra)


def name(day):
    return f"db_202401{day:02d}T000000Z.dump.enc"


def verify(tmp_path, directory, passphrase):
    out, err = io.BytesIO(), io.StringIO()
    path = write_secret(tmp_path / "passphrase", passphrase)
    code = main(["verify", "--passphrase-file", str(path), str(directory)], stdout=out, stderr=err, env={})
    return code, json.loads(out.getvalue()), err.getvalue()


def test_copies_of_a_planted_file_cost_one_files_attempts(tmp_path, evaluations):
    directory = tmp_path / "backups"
    directory.mkdir()
    data = planted(0)
    for day in range(1, 7):
        (directory / name(day)).write_bytes(data)
    code, report, _ = verify(tmp_path, directory, b"wrong")
    assert code == 77
    assert [r["exit_code"] for r in report["results"]] == [77] * 6
    assert len(evaluations) == 8  # the first copy's eight slots, once: not 6 * 8


def five_planted_and_a_genuine(tmp_path):
    """A directory of five planted files (days 1 to 5) and a genuine one (day 6, passphrase "right")."""
    directory = tmp_path / "backups"
    directory.mkdir()
    for day in range(1, 6):
        (directory / name(day)).write_bytes(planted(day))
    (directory / name(6)).write_bytes(craft.seal_with(PLAINTEXT, [Passphrase(b"right", 10, 8, 1)]))
    return directory


def test_planted_files_cost_what_a_genuine_one_does_once_a_budget_is_spent(tmp_path, evaluations):
    directory = five_planted_and_a_genuine(tmp_path)
    evaluations.clear()
    code, report, err = verify(tmp_path, directory, b"right")
    results = report["results"]
    assert len(evaluations) == 8 + 4 + 1  # not 5 * 8 + 1
    assert [r["exit_code"] for r in results] == [77, 65, 65, 65, 65, None]
    assert results[5]["ok"] is True  # the genuine file still verifies
    assert "this run already spent 16777216 on files no passphrase opened" in results[1]["error"]
    assert code == 77 and f"{name(2)}: the passphrase attempts" in err


def test_a_raised_budget_raises_what_the_run_spends_first(tmp_path, evaluations):
    directory = tmp_path / "backups"
    directory.mkdir()
    for day in range(1, 4):
        (directory / name(day)).write_bytes(planted(day))
    out, err = io.BytesIO(), io.StringIO()
    path = write_secret(tmp_path / "passphrase", b"wrong")
    code = main(["verify", "--passphrase-file", str(path), str(directory)], stdout=out, stderr=err,
                env={"ENCPIPE_SCRYPT_BUDGET": str(1 << 25)})
    assert code == 77
    assert len(evaluations) == 8 + 8 + 2  # two files in full, then an eighth of the budget (2^22: two attempts)


def test_prune_holds_planted_files_to_the_same_rule(tmp_path, evaluations):
    directory = five_planted_and_a_genuine(tmp_path)
    evaluations.clear()
    out, err = io.BytesIO(), io.StringIO()
    path = write_secret(tmp_path / "passphrase", b"right")
    code = main(["prune", "--keep-last", "1", "--count-unauthenticated", "--passphrase-file", str(path),
                 str(directory)], stdout=out, stderr=err, env={})
    report = json.loads(out.getvalue())
    assert code == 65  # the planted files are left, never counted, never removed
    assert len(evaluations) == 8 + 4 + 1
    assert [k["filename"] for k in report["kept"]] == [name(6)]
    assert sorted(k["filename"] for k in report["left"]) == [name(day) for day in range(1, 6)]


def verify_with(tmp_path, directory, *passphrases):
    paths = [write_secret(tmp_path / f"passphrase{n}", p) for n, p in enumerate(passphrases)]
    out, err = io.BytesIO(), io.StringIO()
    code = main(["verify", *(a for p in paths for a in ("--passphrase-file", str(p))), str(directory)], stdout=out,
                stderr=err, env={})
    return code, json.loads(out.getvalue()), err.getvalue()


def test_a_slot_one_passphrase_failed_is_still_tried_with_another(tmp_path, evaluations):
    """The run remembers (passphrase, slot) pairs that failed: a copy of a genuine file
    whose slot the first passphrase failed to open is still opened by the second."""
    directory = tmp_path / "backups"
    directory.mkdir()
    data = craft.seal_with(PLAINTEXT, [Passphrase(b"right", 10, 8, 1)])
    for day in (1, 2):
        (directory / name(day)).write_bytes(data)
    evaluations.clear()
    code, report, err = verify_with(tmp_path, directory, b"wrong", b"right")
    assert (code, err) == (0, "")
    assert [r["ok"] for r in report["results"]] == [True, True]
    assert len(evaluations) == 2 + 1  # the first file: both passphrases; the copy: the right one only


class _Costly:
    """A passphrase slot of N*r*p = 2^23 (a DECOY salt: the counted scrypt gives it its
    key at no cost): genuine, any passphrase opens it; else no passphrase does."""

    def __init__(self, number, opens=True):
        self.salt, self.opens = DECOY + struct.pack(">I", number), opens

    def wrap(self, file_key):
        return slots.ScryptSlot(self.salt, 20, 8, 1, slots.wrap_file_key(b"\x00" * 32 if self.opens else
                                                                         b"\x01" * 32, file_key))


def test_once_a_budget_is_spent_a_file_may_still_cost_the_costliest_slot_opened_in_the_run(tmp_path, evaluations):
    """The costliest slot opened so far, not the last one: a costly genuine file, a cheap
    one, a planted file that spends the run's budget, then another costly genuine file,
    which still opens (one attempt at 2^23, more than the default 2^21)."""
    directory = tmp_path / "backups"
    directory.mkdir()
    (directory / name(1)).write_bytes(craft.seal_with(PLAINTEXT, [_Costly(1)]))
    (directory / name(2)).write_bytes(craft.seal_with(PLAINTEXT, [Passphrase(b"right", 10, 8, 1)]))
    (directory / name(3)).write_bytes(planted(3))
    (directory / name(4)).write_bytes(craft.seal_with(PLAINTEXT, [_Costly(4)]))
    code, report, err = verify_with(tmp_path, directory, b"right")
    assert [r["exit_code"] for r in report["results"]] == [None, None, 77, None]
    assert [r["ok"] for r in report["results"]] == [True, True, False, True]
    assert code == 77 and err.count("\n") == 1


def test_what_files_a_passphrase_opened_spent_is_not_counted_against_the_run(tmp_path, evaluations):
    """Two costly genuine files spend a whole budget between them, but on files that
    opened: a third may still spend its own budget in full (a slot that fails, then
    the one that opens)."""
    directory = tmp_path / "backups"
    directory.mkdir()
    for day in (1, 2):
        (directory / name(day)).write_bytes(craft.seal_with(PLAINTEXT, [_Costly(day)]))
    (directory / name(3)).write_bytes(craft.seal_with(PLAINTEXT, [_Costly(30, opens=False), _Costly(31)]))
    code, report, err = verify_with(tmp_path, directory, b"right")
    assert (code, err) == (0, "")
    assert [r["ok"] for r in report["results"]] == [True, True, True]


def test_once_a_budget_is_spent_each_passphrase_still_gets_an_attempt(tmp_path, evaluations):
    """Two passphrases: once planted files have spent the run's budget, each later file
    gets one attempt per passphrase (2 * 2^21), not one in all."""
    directory = tmp_path / "backups"
    directory.mkdir()
    for day in range(1, 4):
        (directory / name(day)).write_bytes(planted(day))
    code, report, _ = verify_with(tmp_path, directory, b"wrong", b"also wrong")
    assert code == 65 and [r["exit_code"] for r in report["results"]] == [65, 65, 65]  # 16 attempts > a budget
    assert len(evaluations) == 8 + 2 + 2
    assert report["results"][1]["error"].startswith(
        "the passphrase attempts on this file would pass its scrypt budget of 4194304 ")


def test_a_genuine_slot_copied_into_planted_files_does_not_make_them_free(tmp_path, evaluations):
    """A writer of the location who can read one backup copies its passphrase slot, byte
    for byte, after costly slots of its own into each file it plants. That slot unwraps,
    to the genuine file's key, under which the planted header does not verify (65): the
    file did not open, and what its attempts spent counts against the run as any planted
    file's, or each such file would cost a whole budget (5 * 8 attempts here)."""
    directory = tmp_path / "backups"
    directory.mkdir()
    file_key = b"\x33" * 32
    genuine = slots.ScryptSlot(DECOY + b"gen!", *DEFAULT_COST, slots.wrap_file_key(b"\x00" * 32, file_key)).encode()
    for day in range(1, 6):
        decoys = [(craft.SLOT_SCRYPT, craft.scrypt_body(*DEFAULT_COST, salt=DECOY + struct.pack(">HH", day, n)))
                  for n in range(7)]
        (directory / name(day)).write_bytes(craft.seal_with(PLAINTEXT, [], extra=decoys + [genuine]))
    (directory / name(6)).write_bytes(craft.seal_with(PLAINTEXT, [Passphrase(b"right", 10, 8, 1)]))
    evaluations.clear()
    code, report, _ = verify(tmp_path, directory, b"right")
    results = report["results"]
    assert [r["exit_code"] for r in results] == [65] * 5 + [None]
    assert "header authentication failed" in results[0]["error"]
    assert results[5]["ok"] is True
    assert len(evaluations) == 8 + 4 + 1  # not 5 * 8 + 1
