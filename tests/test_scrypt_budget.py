"""One scrypt budget per file, over every passphrase attempt on it.

Each passphrase slot is within its own limits (log2(N) <= 20, N*r*p <= 2^24),
but 64 of them used to cost 64 evaluations per passphrase. Now all attempts on
one file together spend at most ENCPIPE_SCRYPT_BUDGET (default 2^24, N*r*p
summed: one attempt at the largest slot cost, eight at the default cost); past
it the file is refused with 65. The tests count scrypt evaluations, not time.
"""

import pytest

import fuzz.craft as craft
from cliutil import KEY_A, assert_one_line_error, run, write_secret
from encpipe import slots
from encpipe.format import SlotRecord
from encpipe.slots import Passphrase, RawKey

PLAINTEXT = b"a small dump\n" * 100
MAX_COST = (20, 8, 2)  # N*r*p = 2^24, the most one slot may cost
DEFAULT_COST = (18, 8, 1)
DEFAULT_SCRYPT_BUDGET = 1 << 24  # as README documents it


@pytest.fixture
def evaluations(monkeypatch):
    """Count scrypt evaluations; decoy slots never open, so those need no real scrypt."""
    calls = []
    real = slots.scrypt_kek

    def counting(passphrase, salt, log2_n, r, p):
        calls.append((log2_n, r, p))
        if salt == b"\x11" * 16:  # a decoy slot (craft.scrypt_body's salt): skip the work
            return b"\x00" * 32
        return real(passphrase, salt, log2_n, r, p)

    monkeypatch.setattr(slots, "scrypt_kek", counting)
    return calls


def decoys(count, cost):
    return [(craft.SLOT_SCRYPT, craft.scrypt_body(*cost)) for _ in range(count)]


def _sealed_with_decoys_first(recipient, decoy_records):
    """A genuine file whose slot for `recipient` comes after every decoy."""
    import io
    import os

    from encpipe import envelope
    from encpipe.primitives import payload_key
    from encpipe.stream import seal_payload

    file_key = os.urandom(32)
    records = [SlotRecord(kind, body) for kind, body in decoy_records] + [recipient.wrap(file_key)]
    header = envelope.build_header(file_key, records, 14, version=1)  # no v2 trailer written here
    out = io.BytesIO(header.encode())
    out.seek(0, 2)
    seal_payload(io.BytesIO(PLAINTEXT), out, payload_key(file_key, header), header.chunk_size)
    return out.getvalue()


def open_with_passphrase(tmp_path, data, env=None, passphrase=b"wrong"):
    path = write_secret(tmp_path / "pass", passphrase)
    return run(["open", "--passphrase-file", path], data, env)


def test_sixty_four_costly_slots_give_up_after_one_evaluation(tmp_path, evaluations):
    data = craft.seal_with(PLAINTEXT, [], extra=decoys(64, MAX_COST))
    result = open_with_passphrase(tmp_path, data)
    assert (result.code, result.stdout) == (65, b"")
    assert len(evaluations) == 1
    assert_one_line_error(result.stderr)
    assert f"scrypt budget of {DEFAULT_SCRYPT_BUDGET}" in result.stderr
    assert "ENCPIPE_SCRYPT_BUDGET=" in result.stderr


@pytest.mark.parametrize(
    "slots, cost, budget, code, count",
    [
        (64, DEFAULT_COST, None, 65, 8),  # eight attempts at the default cost fit the budget
        (2, DEFAULT_COST, None, 77, 2),  # within the budget: a wrong passphrase is still 77
        (64, MAX_COST, 3 << 24, 65, 3),  # ENCPIPE_SCRYPT_BUDGET raises it
    ],
)
def test_evaluations_stop_at_the_budget(tmp_path, evaluations, slots, cost, budget, code, count):
    data = craft.seal_with(PLAINTEXT, [], extra=decoys(slots, cost))
    env = {"ENCPIPE_SCRYPT_BUDGET": str(budget)} if budget else None
    result = open_with_passphrase(tmp_path, data, env)
    assert (result.code, result.stdout) == (code, b"")
    assert len(evaluations) == count


def test_the_budget_covers_all_passphrases_together(tmp_path, evaluations):
    data = craft.seal_with(PLAINTEXT, [], extra=decoys(3, DEFAULT_COST))
    paths = [write_secret(tmp_path / f"p{i}", f"wrong {i}") for i in range(5)]
    result = run(["open", *[w for p in paths for w in ("--passphrase-file", p)]], data)
    assert result.code == 65
    assert len(evaluations) == 8  # not 5 * 3 = 15


@pytest.mark.parametrize("value", ["lots", "-1", "1000", "33_554_432", " 33554432", "\u0663" * 8, "+33554432",
                                   pytest.param("9" * 5000, id="5000 digits"),  # over int()'s 4300 digits
                                   pytest.param("", id="empty")])  # set but empty: not the default, as ENCPIPE_LOCK_WAIT
def test_a_bad_budget_is_a_usage_error(tmp_path, value):
    data = craft.seal_with(PLAINTEXT, [], extra=decoys(1, DEFAULT_COST))
    result = open_with_passphrase(tmp_path, data, {"ENCPIPE_SCRYPT_BUDGET": value})
    assert result.code == 64
    assert "ENCPIPE_SCRYPT_BUDGET" in result.stderr


# scrypt of b"the passphrase" with this salt at MAX_COST, worked out once (slots.scrypt_kek):
# the seal below takes it from here, the open runs scrypt itself, and only the right
# value opens.
KNOWN_SALT = bytes(range(16))
KNOWN_KEK = bytes.fromhex("13f6767e349d23769937373baf9218bc157aa7bc22070e122978b0e861691ffb")


@pytest.mark.slow
def test_a_genuine_file_at_the_maximum_slot_cost_still_opens(tmp_path, evaluations, monkeypatch):
    genuine = Passphrase(b"the passphrase", *MAX_COST)
    with monkeypatch.context() as m:  # the seal's own scrypt at the maximum cost skipped
        counting = slots.scrypt_kek
        m.setattr(slots, "get_random_bytes", lambda n: KNOWN_SALT)
        m.setattr(slots, "scrypt_kek", lambda passphrase, salt, *cost: (
            KNOWN_KEK if (passphrase, salt, cost) == (b"the passphrase", KNOWN_SALT, MAX_COST)
            else counting(passphrase, salt, *cost)))
        data = craft.seal_with(PLAINTEXT, [genuine])
    evaluations.clear()
    result = open_with_passphrase(tmp_path, data, passphrase=b"the passphrase")
    assert (result.code, result.stdout) == (0, PLAINTEXT), result.stderr
    assert evaluations == [MAX_COST]


def test_cheap_slots_are_tried_first(tmp_path, evaluations):
    genuine = Passphrase(b"the passphrase", 10, 8, 1)
    data = _sealed_with_decoys_first(genuine, decoys(63, MAX_COST))
    evaluations.clear()
    result = open_with_passphrase(tmp_path, data, passphrase=b"the passphrase")
    assert (result.code, result.stdout) == (0, PLAINTEXT), result.stderr
    assert evaluations == [(10, 8, 1)]


def test_a_key_id_match_costs_no_scrypt_at_all(tmp_path, evaluations):
    key = RawKey(bytes.fromhex(KEY_A))
    data = _sealed_with_decoys_first(key, decoys(63, MAX_COST))
    pass_path = write_secret(tmp_path / "pass", "wrong")
    key_path = write_secret(tmp_path / "key", KEY_A)
    result = run(["open", "--passphrase-file", pass_path, "--key-file", key_path], data)
    assert (result.code, result.stdout) == (0, PLAINTEXT), result.stderr
    assert evaluations == []


def test_past_the_budget_the_budget_is_the_error_said_not_a_slot_over_a_limit(tmp_path, evaluations):
    """Both a slot over a limit and the budget stopped: the budget's error (its hint) is said."""
    data = craft.seal_with(PLAINTEXT, [], extra=decoys(1, (1, 8, 1)) + decoys(9, DEFAULT_COST))
    result = open_with_passphrase(tmp_path, data)
    assert result.code == 65
    assert f"scrypt budget of {DEFAULT_SCRYPT_BUDGET}" in result.stderr and "over a resource limit" not in result.stderr
    assert "ENCPIPE_SCRYPT_BUDGET=" in result.stderr
    assert len(evaluations) == 8
