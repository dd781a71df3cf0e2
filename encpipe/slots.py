"""Key slots: each wraps the file key for one way of opening a file.

A *recipient* makes a slot (`wrap`); an *identity* opens one (`unwrap`).
`RawKey` and `Passphrase` are both. Public-key slots live in x25519.py.
Slot bodies are parsed once, by `decode_slot`, into the named tuples below.
"""

import struct
from collections import namedtuple
from os import urandom as get_random_bytes  # what Crypto.Random.get_random_bytes is, without importing Crypto

from . import aead
from .errors import InvalidStream, UsageError
from .format import SlotRecord
from .primitives import FILE_KEY_LEN, hkdf
from .textform import shown_value

SLOT_RAW_KEY = 1
SLOT_SCRYPT = 2
SLOT_X25519 = 3

KEY_ID_LEN = 8
WRAPPED_LEN = FILE_KEY_LEN + 8  # AES key wrap (RFC 3394) adds 8 bytes

INFO_KEY_ID = b"encpipe v1 key id"
INFO_RAW_WRAP = b"encpipe v1 raw-key wrap"
INFO_RAW_AUTH = b"encpipe v2 raw-key authenticator"
INFO_SCRYPT_AUTH = b"encpipe v2 passphrase authenticator"
SCRYPT_SALT_LABEL = b"encpipe v1 scrypt"

SCRYPT_SALT_LEN = 16
DEFAULT_SCRYPT_LOG2_N = 18  # about 0.7 s and 256 MiB on the reference machine
MIN_SCRYPT_LOG2_N = 10
MAX_SCRYPT_LOG2_N = 20
MAX_SCRYPT_R = 32
MAX_SCRYPT_P = 16
MAX_SCRYPT_MEMORY = 1 << 30  # 128 * N * r bytes
MAX_SCRYPT_WORK = 1 << 24  # N * r * p: 8x the default (N = 2^18, r = 8, p = 1)
# All passphrase attempts on one file together: N * r * p summed. One attempt at
# the largest cost a slot may have (so every genuine file opens), 8 at the default.
DEFAULT_SCRYPT_BUDGET = MAX_SCRYPT_WORK
ENV_SCRYPT_BUDGET = "ENCPIPE_SCRYPT_BUDGET"


def wrap_file_key(kek, file_key):
    return aead.wrap_key(kek, file_key)


def unwrap_file_key(kek, wrapped):
    """The file key, or None when `kek` is not the key that wrapped it."""
    return aead.unwrap_key(kek, wrapped)


def _split(body, *lengths, kind_name):
    if len(body) != sum(lengths):
        raise InvalidStream(f"malformed {kind_name} slot: {len(body)} bytes")
    parts, pos = [], 0
    for length in lengths:
        parts.append(body[pos : pos + length])
        pos += length
    return parts


class RawKeySlot(namedtuple("RawKeySlot", "key_id wrapped")):
    __slots__ = ()

    kind = SLOT_RAW_KEY

    @classmethod
    def decode(cls, body):
        return cls(*_split(body, KEY_ID_LEN, WRAPPED_LEN, kind_name="raw-key"))

    def encode(self):
        return SlotRecord(self.kind, self.key_id + self.wrapped)

    def describe(self):
        return {"type": "raw-key", "key_id": self.key_id.hex()}


_SCRYPT_PARAMS = struct.Struct(">BBB")


class ScryptSlot(namedtuple("ScryptSlot", "salt log2_n r p wrapped")):
    __slots__ = ()

    kind = SLOT_SCRYPT

    @classmethod
    def decode(cls, body):
        salt, params, wrapped = _split(
            body, SCRYPT_SALT_LEN, _SCRYPT_PARAMS.size, WRAPPED_LEN, kind_name="passphrase"
        )
        return cls(salt, *_SCRYPT_PARAMS.unpack(params), wrapped)

    def encode(self):
        params = _SCRYPT_PARAMS.pack(self.log2_n, self.r, self.p)
        return SlotRecord(self.kind, self.salt + params + self.wrapped)

    def describe(self):
        return {"type": "passphrase", "kdf": "scrypt", "log2_n": self.log2_n, "r": self.r, "p": self.p}

    @property
    def work(self):
        return (1 << min(self.log2_n, 64)) * self.r * self.p

    def check_cost(self):
        """Refuse parameters a crafted header could use to make us spin or swap."""
        n = 1 << min(self.log2_n, 64)
        limits = (
            (MIN_SCRYPT_LOG2_N <= self.log2_n <= MAX_SCRYPT_LOG2_N, f"log2(N) must be {MIN_SCRYPT_LOG2_N}..{MAX_SCRYPT_LOG2_N}"),
            (1 <= self.r <= MAX_SCRYPT_R, f"r must be 1..{MAX_SCRYPT_R}"),
            (1 <= self.p <= MAX_SCRYPT_P, f"p must be 1..{MAX_SCRYPT_P}"),
            (128 * n * self.r <= MAX_SCRYPT_MEMORY, "its memory, 128*N*r bytes, must be at most 1 GiB"),
            (n * self.r * self.p <= MAX_SCRYPT_WORK, "its work, N*r*p, must be at most 2^24"),
        )
        broken = next((rule for ok, rule in limits if not ok), None)
        if broken:
            raise InvalidStream(
                f"passphrase slot over a resource limit: scrypt log2(N)={self.log2_n} r={self.r} p={self.p}; {broken}"
            )


class ScryptBudgetExceeded(InvalidStream):
    """The next passphrase attempt would take the file past its scrypt budget."""


class ScryptBudget:
    """The scrypt work (N * r * p) all passphrase attempts on one file may spend; with
    `run` (a ScryptRun), one file among the many a run opens with the same passphrases."""

    def __init__(self, limit=DEFAULT_SCRYPT_BUDGET, run=None):
        self.run, self.spent, self.opened = run, 0, False
        self.limit = limit if run is None else run.file_limit(limit)
        self.pending = set()  # the (passphrase, slot) attempts that failed here

    @classmethod
    def for_file(cls, identities):
        passphrases = [i for i in identities if getattr(i, "budget", None)]
        run = next((i.run for i in passphrases if getattr(i, "run", None)), None)
        return cls(max((i.budget for i in passphrases), default=DEFAULT_SCRYPT_BUDGET), run)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        """The file is opened, or refused: what its passphrase attempts spent goes to the run."""
        if self.run is not None:
            self.run.close(self)

    def charge(self, slot):
        """Account for one attempt on `slot` (after its own limits), or refuse it."""
        slot.check_cost()
        if self.spent + slot.work > self.limit:
            held = self.run is not None and self.run.spent()  # the run's rule, not the file's budget
            raise ScryptBudgetExceeded(
                f"the passphrase attempts on this file would pass its scrypt budget of {self.limit} "
                f"(N*r*p summed over all attempts; {self.spent} spent, the next slot needs {slot.work})"
                + (self.run.why() if held else ""),
                hint=(f"check this file on its own (encpipe inspect --verify FILE), or raise {ENV_SCRYPT_BUDGET}"
                      " (what a run spends on files no passphrase opens; an eighth of it per attempt)" if held else
                      f"for a file you trust, raise the budget: {ENV_SCRYPT_BUDGET}={self.limit * 4}"),
            )
        self.spent += slot.work

    def tried_before(self, identity, slot):
        """Whether `identity` (a passphrase) failed to open this very slot in an earlier
        file of the run (a copy of a file, or slots copied from one): not tried again."""
        return self.run is not None and isinstance(slot, ScryptSlot) and (id(identity), slot) in self.run.failed

    def result(self, identity, slot, file_key):
        if isinstance(slot, ScryptSlot) and self.run is not None:
            if file_key is None:
                self.pending.add((id(identity), slot))
            else:
                self.opened = True
                self.run.opened_work = max(self.run.opened_work, slot.work)


DEFAULT_SCRYPT_WORK = (1 << DEFAULT_SCRYPT_LOG2_N) * 8  # N * r * p of a slot at the default cost
RUN_MEMORY = 4096  # failed (passphrase, slot) attempts a run remembers


class ScryptRun:
    """The passphrase attempts of one run that opens many files with the same keys
    (encpipe-verify, -prune, -check --verify), which a writer of the location could
    fill with files of costly passphrase slots. The scrypt work spent on files no
    passphrase opened is summed over the run; once it reaches one file's budget,
    each later file may spend only what a genuine one needs: one attempt per
    passphrase given at the cost of the costliest slot a passphrase opened in the
    run, at least the default cost and an eighth of the budget. A slot a
    passphrase failed to open in an earlier file is not tried again. A single
    file's limits are unchanged."""

    def __init__(self, limit, passphrases):
        self.limit, self.passphrases = limit, max(1, passphrases)
        self.wasted = self.opened_work = 0
        self.failed = set()

    def spent(self):
        return self.wasted >= self.limit

    def file_limit(self, limit):
        floor = max(self.opened_work, DEFAULT_SCRYPT_WORK, self.limit // 8)  # an eighth of the budget: see README
        return min(limit, self.passphrases * floor) if self.spent() else limit

    def why(self):
        return (f"; this run already spent {self.wasted} on files no passphrase opened, so a file now gets what a "
                f"genuine one needs: {self.passphrases} attempt(s) at the cost of the costliest slot opened so far")

    def close(self, budget):
        if not budget.opened:
            self.wasted += budget.spent
        for attempt in budget.pending:
            if len(self.failed) < RUN_MEMORY:
                self.failed.add(attempt)


def parse_budget(text):
    """An ENCPIPE_SCRYPT_BUDGET value: a whole number, at least one default-cost attempt."""
    try:
        value = int(text) if text.isascii() and text.isdigit() else 0  # not int()'s "1_000", " 9" nor "١"
    except ValueError:  # over int()'s 4300 digits
        value = 0
    if value < 1 << (DEFAULT_SCRYPT_LOG2_N + 3):
        raise UsageError(f"{ENV_SCRYPT_BUDGET} must be a whole number of at least {1 << (DEFAULT_SCRYPT_LOG2_N + 3)} "
                         f"(N*r*p of one attempt at the default cost), not {shown_value(text)}")
    return value




def key_id(key):
    """The public fingerprint of a raw key: 8 bytes, shown as 16 hex digits."""
    return hkdf(key, b"", INFO_KEY_ID, KEY_ID_LEN)


class RawKey:
    """A 256-bit symmetric key: recipient and identity."""

    cost = 0

    def __init__(self, key):
        if len(key) != FILE_KEY_LEN:
            raise UsageError(f"a key must be {FILE_KEY_LEN} bytes, not {len(key)}")
        self._key = bytes(key)
        self.key_id = key_id(self._key)
        self._kek = hkdf(self._key, b"", INFO_RAW_WRAP)
        self.label = f"raw key {self.key_id.hex()}"

    def __repr__(self):
        return f"RawKey(id={self.key_id.hex()})"

    @property
    def secret(self):
        """The key itself: only the legacy decoder needs it."""
        return self._key

    def wrap(self, file_key):
        return RawKeySlot(self.key_id, wrap_file_key(self._kek, file_key))

    def can_try(self, slot):
        import hmac  # here, as in primitives: a key's id was made with it

        return isinstance(slot, RawKeySlot) and hmac.compare_digest(slot.key_id, self.key_id)

    def unwrap(self, slot):
        return unwrap_file_key(self._kek, slot.wrapped)

    def authenticator_key(self, slot):
        """The v2 slot authenticator key: from this key, not from the file key."""
        return hkdf(self._key, b"", INFO_RAW_AUTH)


def _passphrase_bytes(passphrase):
    if isinstance(passphrase, str):
        passphrase = passphrase.encode("utf-8")
    if not passphrase:
        raise UsageError("the passphrase is empty")
    return passphrase


def scrypt_kek(passphrase, salt, log2_n, r, p):
    from Crypto.Protocol.KDF import scrypt  # only passphrase slots pay for this import

    return scrypt(passphrase, SCRYPT_SALT_LABEL + salt, 32, N=1 << log2_n, r=r, p=p)


class Passphrase:
    """A passphrase stretched with scrypt: recipient and identity."""

    cost = 1
    label = "passphrase"

    def __init__(self, passphrase, log2_n=DEFAULT_SCRYPT_LOG2_N, r=8, p=1, budget=DEFAULT_SCRYPT_BUDGET, run=None):
        self._passphrase = _passphrase_bytes(passphrase)
        self.log2_n, self.r, self.p = log2_n, r, p
        self.budget, self.run = budget, run  # for opening: see ScryptBudget, ScryptRun
        self._keks = {}  # scrypt outputs by slot salt: the authenticator key needs them again

    def __repr__(self):
        return "Passphrase(***)"

    @property
    def secret(self):
        """The passphrase bytes: only the legacy decoder needs them."""
        return self._passphrase

    def wrap(self, file_key):
        salt = get_random_bytes(SCRYPT_SALT_LEN)
        kek = self._kek(salt, self.log2_n, self.r, self.p)
        return ScryptSlot(salt, self.log2_n, self.r, self.p, wrap_file_key(kek, file_key))

    def _kek(self, salt, log2_n, r, p, again=True):
        """scrypt for a slot; kept, so that its v2 authenticator key needs no second run
        (`again=False`). Every unwrap runs it: the scrypt budget counts each one."""
        key = (salt, log2_n, r, p)
        if again or key not in self._keks:
            self._keks[key] = scrypt_kek(self._passphrase, salt, log2_n, r, p)
        return self._keks[key]

    def can_try(self, slot):
        return isinstance(slot, ScryptSlot)

    def unwrap(self, slot):
        slot.check_cost()
        return unwrap_file_key(self._kek(slot.salt, slot.log2_n, slot.r, slot.p), slot.wrapped)

    def authenticator_key(self, slot):
        """The v2 slot authenticator key: from this slot's scrypt output, not from the file key."""
        slot.check_cost()
        return hkdf(self._kek(slot.salt, slot.log2_n, slot.r, slot.p, again=False), b"", INFO_SCRYPT_AUTH)
