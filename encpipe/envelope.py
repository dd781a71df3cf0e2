"""Whole streams: a header of key slots, then the chunked payload.

Everything here works on file-like objects (binary, with read/readinto and
write) and knows nothing of paths, terminals or exit codes.
"""

from collections import namedtuple
from contextlib import ExitStack, contextmanager
from os import urandom as get_random_bytes  # what Crypto.Random.get_random_bytes is, without importing Crypto

from . import format as fmt
from . import provenance as prov
from .errors import InvalidStream, MakerNotAuthenticated, NoKeyConfigured, NoMatchingKey, NotSigned, UsageError
from .primitives import FILE_KEY_LEN, header_mac, payload_key, verify_header_mac
from .slots import (
    SLOT_RAW_KEY,
    SLOT_SCRYPT,
    SLOT_X25519,
    RawKeySlot,
    ScryptBudget,
    ScryptBudgetExceeded,
    ScryptSlot,
)
from .spool import Tee, private_spool, rewind
from .stream import flush, hash_records, open_payload, seal_payload, seekable, write_all

NOT_SENDER_AUTHENTICATED = prov.Provenance(False)


class UnknownSlot(namedtuple("UnknownSlot", "kind body")):
    __slots__ = ()

    def describe(self):
        return {"type": "unknown", "kind": self.kind}


def _decode_x25519(body):
    from .x25519 import X25519Slot  # its heavier imports only when such a slot exists

    return X25519Slot.decode(body)


_DECODERS = {SLOT_RAW_KEY: RawKeySlot.decode, SLOT_SCRYPT: ScryptSlot.decode, SLOT_X25519: _decode_x25519}


def decode_slot(record):
    decode = _DECODERS.get(record.kind)
    return decode(record.body) if decode else UnknownSlot(record.kind, record.body)


class StreamInfo(namedtuple("StreamInfo", "header_bytes plaintext_bytes chunks provenance",
                             defaults=(NOT_SENDER_AUTHENTICATED,))):
    __slots__ = ()


class SealedHeader(namedtuple("SealedHeader", "header slots")):
    """A parsed header with its slots decoded (unknown slot types kept as such)."""

    __slots__ = ()

    @classmethod
    def of(cls, header):
        return cls(header, tuple(decode_slot(record) for record in header.slots))

    @property
    def size(self):
        return self.header.size

    @property
    def trailer_len(self):
        return prov.trailer_len(self.header)


def read_header(src):
    return SealedHeader.of(fmt.read_header(src))


def build_header(file_key, slots, chunk_log2, payload_salt=None, *, version=fmt.VERSION, sig_count=0):
    """A header holding `slots` (decoded slots or raw records), authenticated under `file_key`."""
    records = tuple(s if isinstance(s, fmt.SlotRecord) else s.encode() for s in slots)
    if not records:
        raise UsageError("refusing to write a file with no key slots")
    if len(records) > fmt.MAX_SLOTS:
        raise UsageError(f"a file holds at most {fmt.MAX_SLOTS} key slots")
    salt = payload_salt or get_random_bytes(fmt.SALT_LEN)
    if sig_count > fmt.MAX_SIGNATURES:
        raise UsageError(f"a file holds at most {fmt.MAX_SIGNATURES} signatures")
    header = fmt.Header(chunk_log2, salt, records, version=version, sig_count=sig_count)
    if header.size > fmt.MAX_HEADER_LEN:  # a rewrap adding slots to a file of large unknown ones
        raise UsageError(f"a file's header holds at most {fmt.MAX_HEADER_LEN} bytes; these slots need {header.size}")
    return header._replace(mac=header_mac(file_key, header))


def unlock(sealed, identities):
    """(file key, (slot index, slot, identity)), from the first identity that opens a
    slot, by `cost`: raw keys (key-id matches only), then passphrases on the cheapest
    slots first, all of them within one scrypt budget, then x25519 identities (key-id
    matches only): a slot with an authenticator, when one opens, is the one checked."""
    attempts = [(i, n, s) for i in identities for n, s in enumerate(sealed.slots) if i.can_try(s)]
    attempts.sort(key=lambda attempt: (attempt[0].cost, getattr(attempt[2], "work", 0)))
    with ScryptBudget.for_file(identities) as budget:  # in a run over many files, also the run's (ScryptRun)
        return _unlock(sealed, attempts, budget)


def _unlock(sealed, attempts, budget):
    limit_error = budget_error = None
    for identity, index, slot in attempts:
        if budget_error and isinstance(slot, ScryptSlot) or budget.tried_before(identity, slot):
            continue  # no passphrase attempt past the budget; an identity may still open
        try:
            if isinstance(slot, ScryptSlot):
                budget.charge(slot)
            file_key = identity.unwrap(slot)
        except ScryptBudgetExceeded as e:
            budget_error = e
            continue
        except InvalidStream as e:  # a slot beyond a resource limit; another may still open
            limit_error = limit_error or e
            continue
        if file_key is None:
            budget.result(identity, slot, None)
            continue
        verify_header_mac(file_key, sealed.header)  # first: a slot copied from another file opens nothing
        budget.result(identity, slot, file_key)
        return file_key, (index, slot, identity)
    if budget_error or limit_error:
        raise budget_error or limit_error
    raise NoMatchingKey("no supplied key opens this file", hint=needed_keys_hint(sealed.slots))


def needed_keys_hint(slots):
    return "it can be opened by: " + ", ".join(slot_label(s.describe()) for s in slots)


def slot_label(description):
    """One line for a slot's describe() dictionary, as inspect and error hints show it."""
    kind = description["type"]
    if kind == "passphrase":
        return f"passphrase (scrypt log2(N)={description['log2_n']} r={description['r']} p={description['p']})"
    if kind == "unknown":
        return f"unknown slot type {description['kind']}"
    return f"{kind} {description['key_id']}"


def seal(src, dst, recipients, *, chunk_log2=None, threads=1, on_progress=None, signing_keys=(), version=fmt.VERSION):
    """Encrypt `src` to `dst` for every recipient, signed by every signing key; returns
    a StreamInfo. Without `chunk_log2`, the chunk size is the file or the pipe default
    (by `src.seekable()`). `version=1` writes the old format (for tests and vectors)."""
    if not recipients:
        raise NoKeyConfigured("no key, passphrase or recipient to seal with")
    if chunk_log2 is None:
        chunk_log2 = fmt.FILE_CHUNK_LOG2 if seekable(src) else fmt.PIPE_CHUNK_LOG2
    file_key = get_random_bytes(FILE_KEY_LEN)
    slots = [r.wrap(file_key) for r in recipients]
    if version < 2 and signing_keys:
        raise UsageError("a version 1 file cannot be signed")
    header = build_header(file_key, slots, chunk_log2, sig_count=len(signing_keys), version=version)
    encoded = header.encode()
    write_all(dst, memoryview(encoded))
    key = payload_key(file_key, header)
    if version < 2:
        plaintext, chunks = seal_payload(src, dst, key, header.chunk_size, threads, on_progress)
        flush(dst)
        return StreamInfo(len(encoded), plaintext, chunks)
    ledger = prov.Ledger(header, file_key, prov.authenticator_keys(recipients, slots), sign=bool(signing_keys))
    plaintext, chunks = seal_payload(src, dst, key, header.chunk_size, threads, on_progress, ledger)
    trailer = prov.Trailer(ledger.authenticators(), prov.sign(signing_keys, ledger.commitment()))
    write_all(dst, memoryview(trailer.encode(file_key, header, ledger.tag_commitment())))
    flush(dst)
    return StreamInfo(len(encoded), plaintext, chunks)


def unseal(src, dst, identities, **options):
    """Decrypt `src` to `dst`; see open_sealed."""
    return open_sealed(read_header(src), src, dst, identities, **options)


def open_sealed(
    sealed, src, dst, identities, *, threads=1, verify_first=False, signers=(), on_progress=None, on_check=None,
    tmpdir=None, require_maker=False, peek=None, named=False
):
    """Decrypt the payload that follows `sealed` in `src` to `dst` (None: authenticate
    only); returns a StreamInfo. Each chunk reaches `dst` only after it authenticated.

    Nothing reaches `dst` before all of `src`, its trailer and signatures included,
    has verified when `verify_first` or `signers` (a first pass checks it, every
    chunk's tag too with `verify_first` or from a pipe, else only its trailer (and
    the tag of a record that may hold a hole); a pipe is spooled as
    ciphertext meanwhile to an unlinked file in `tmpdir`); nor, for a v2 file opened
    by a raw key or passphrase or carrying signatures, from a seekable `src`, before
    such a first pass has checked the trailer (see _authenticates). The second pass
    decrypts and lets out each record only once it matched its witness from the
    first (prov.Witnesses): a file changed in between yields no byte of the
    change, and InvalidStream. From a
    pipe, otherwise, the trailer is checked at the end. `signers`: VerifyKeys, one
    of which must have signed it. `require_maker`: refuse (MakerNotAuthenticated, 67)
    before any output a file whose maker is not authenticated (a v1 file; a v2 file
    opened by an x25519 identity without `signers`), and check the trailer of any
    other before any output, as with `signers`. `named`: `src` is a FILE argument,
    checked whole first as a file is whatever it turns out to be (a FIFO, or a link
    to one, put under a backup's name: spooled as a pipe is under `signers`).
    `peek(counter, data)`: each chunk's
    plaintext once it authenticated (memory only: what a file holds, not its name).
    `on_progress(plaintext bytes)` is called as the pass that writes goes (with 0
    as it begins after a first pass), `on_check(plaintext bytes)` during a first."""
    header, signers = sealed.header, frozenset(signers)
    if header.version < 2 and signers:  # known from the header, before any key is tried
        raise NotSigned("not signed by a trusted signer: a version 1 file carries no signature")
    if require_maker and header.version < 2:
        _refuse_unauthenticated("a version 1 file can be made by the holder of any of its keys")
    file_key, opened = unlock(sealed, identities)
    if require_maker and not signers and opened[1].kind not in prov.AUTHENTICATED_KINDS:
        _refuse_unauthenticated("opened with an x25519 identity, and anyone with its public key can make such a file")
    key = payload_key(file_key, header)

    def payload(source, out, report=None, check_only=False, first=None, witnesses=None):
        if header.version < 2:
            ledger = prov.Ledger(header, file_key, witnesses=witnesses) if witnesses else None
            counts = open_payload(source, out, key, header.chunk_size, threads, report, ledger, peek)
            return counts + (NOT_SENDER_AUTHENTICATED, None)
        ledger = prov.opening_ledger(header, file_key, opened, witnesses=witnesses, again=first is not None)
        if check_only:
            hash_records(source, None, header.chunk_size, ledger, threads, _as_plaintext(report, header.chunk_size),
                         key=key, holes=True)  # a hole's record: its tag, so that a file of holes ends at the first
            counts = (None, None)
        else:
            counts = open_payload(source, out, key, header.chunk_size, threads, report, ledger, peek)
        provenance = first[2] if first is not None else prov.check(file_key, header, ledger, opened, signers)
        return counts + (provenance, ledger.trailer)

    strict = verify_first or bool(signers) or require_maker
    if dst is None or not (strict or ((named or seekable(src)) and _authenticates(header, opened))):
        return _second_pass(sealed, payload(src, dst, on_progress), None, dst)
    # Two passes: the first checks and writes nothing; the second decrypts, and lets
    # out no record before it matched its witness from the first (see Witnesses). A
    # spooled input (a pipe, a FIFO) has every tag checked in the first: it may never end.
    check_only = not verify_first and seekable(src)
    with _two_passes(src, tmpdir) as (witnesses, first_source, replay):
        try:
            first = payload(first_source, None, on_check, check_only=check_only, witnesses=witnesses)
        except NotSigned:
            if check_only:  # README: every chunk is read before the signers, so one that fails is 65, not 67
                payload(replay(), None)  # raises one or the other, in that order
            raise
        if on_progress:
            on_progress(0)  # the pass that writes begins
        return _second_pass(sealed, payload(replay(), dst, on_progress, first=first, witnesses=witnesses), first, dst)


@contextmanager
def _two_passes(src, tmpdir):
    """(Witnesses, the source of a first pass, replay()): replay() gives the same
    bytes again for a second pass: `src` sought back, or, from a pipe, the spool
    (an unlinked file in `tmpdir`) that the first pass's reads were copied to."""
    with ExitStack() as stack:
        witnesses = prov.Witnesses(stack.enter_context(private_spool(tmpdir)))
        if seekable(src):
            start = src.tell()
            yield witnesses, src, lambda: (src.seek(start), src)[1]
            return
        spool = stack.enter_context(private_spool(tmpdir))
        yield witnesses, Tee(src, spool), lambda: (rewind(spool), spool)[1]


def _as_plaintext(report, chunk_size):
    """A progress callback of hash_records, which counts records (chunk and tag),
    that reports their plaintext instead, as open_payload does."""
    record = chunk_size + fmt.TAG_LEN

    def plaintext(done):
        chunks = -(-done // record)  # every record is whole but the last
        report(done - chunks * fmt.TAG_LEN)

    return plaintext if report else None


def _refuse_unauthenticated(why, hint="open a signed file with --signer (ENCPIPE_SIGNER) naming its signer, or,"
                            " trusting whoever could write the file, without --refuse-unauthenticated"):
    raise MakerNotAuthenticated(f"its maker is not authenticated: {why}", hint=hint)


def _authenticates(header, opened):
    """True when a v2 file has something to say about who made it that its chunk
    tags cannot tell: an authenticator for the raw-key or passphrase slot that
    opened it, or signatures. However many slots the header lists: a header is
    the maker's to write, so a file whose only slot is the opener's may still
    have a file key that others hold (the slot copied from a file that had an
    escrow slot, or left by a rewrap that removed one), and such a holder can
    make chunks whose tags pass. Only the trailer tells, so it is checked first."""
    return header.version >= 2 and (opened[1].kind in prov.AUTHENTICATED_KINDS or header.sig_count > 0)


def _second_pass(sealed, result, first, dst):
    plaintext, chunks, provenance, trailer = result
    if dst is not None:
        flush(dst)
    # Each record was compared with its witness on the way; what is left is the trailer.
    if first is not None and first[3] != trailer:
        raise InvalidStream(f"{prov.CHANGED}: its trailer differs")
    return StreamInfo(sealed.size, plaintext, chunks, provenance)


def rewrap(
    src, dst, identities, *, add=(), remove_ids=(), replace_all=False, on_progress=None, signing_keys=(), signers=(),
    check_first=False, tmpdir=None, on_check=None
):
    """Copy a sealed stream with a new set of slots; the payload is copied unchanged
    (its chunks are checked in memory on the way, nothing else is written).
    With `check_first`, nothing of a file reaches `dst` before all of it checked:
    a first pass checks every chunk's tag and the old trailer (a pipe is spooled as
    ciphertext to an unlinked file in `tmpdir` meanwhile), and the second copies
    each record once it matched its witness from the first (prov.Witnesses).
    `on_progress(payload bytes)` is called as the copy goes (with 0 as it begins
    after a first pass), `on_check(payload bytes)` during a first pass.

    For a v2 file, kept slots keep their authenticators, added raw-key and passphrase
    slots get new ones, signatures are kept (C does not cover the slots)
    and `signing_keys` add more; the old trailer is checked (as by open) once the
    payload has been copied. A file opened by an x25519 identity gets neither a new
    authenticator nor a signature unless `signers` vouch for it (MakerNotAuthenticated,
    before anything is written): anyone with the public key can make one. Returns the old SealedHeader, the new one and the
    old file's Provenance."""
    sealed = read_header(src)
    old = sealed.header
    if old.version < 2 and (signing_keys or signers):
        raise NotSigned("a version 1 file carries no signature and cannot be signed", hint="re-seal it: open | seal")
    file_key, opened = unlock(sealed, identities)
    remove_ids = {k.lower() for k in remove_ids}
    unknown = remove_ids - {slot.describe().get("key_id") for slot in sealed.slots}
    if unknown:
        raise UsageError(f"no slot has key id {', '.join(sorted(unknown))}")
    kept = [
        index
        for index, slot in enumerate(sealed.slots)
        if not replace_all and slot.describe().get("key_id") not in remove_ids
    ]
    added = [r.wrap(file_key) for r in add]
    vouches = signing_keys or any(slot.kind in prov.AUTHENTICATED_KINDS for slot in added)
    if vouches and not signers and old.version >= 2 and opened[1].kind not in prov.AUTHENTICATED_KINDS:
        _refuse_unauthenticated(
            "opened with an x25519 identity, and anyone with its public key can make such a file: a new raw-key"
            " or passphrase slot or a signature would vouch for it",
            hint="give --signer naming its signer, or open it with one of its raw keys or passphrases")
    header = build_header(
        file_key,
        [old.slots[i] for i in kept] + added,
        old.chunk_log2,
        old.payload_salt,
        version=old.version,
        sig_count=old.sig_count + len(signing_keys),
    )
    key = payload_key(file_key, old)

    def new_ledger(witnesses=None, again=False):
        if old.version < 2:  # no trailer: a ledger for the witnesses of two passes only
            return prov.Ledger(old, file_key, witnesses=witnesses)
        if again:
            return prov.opening_ledger(old, file_key, opened, witnesses=witnesses, again=True)
        return prov.opening_ledger(old, file_key, opened, prov.authenticator_keys(add, added),
                                   sign=bool(signing_keys), witnesses=witnesses)

    def checked(source, out, progress=None, witnesses=None):
        """Copy the payload, checking every chunk's tag (so that no endless or damaged
        one is copied); then the old trailer."""
        checking = new_ledger(witnesses)
        hash_records(source, out, old.chunk_size, checking, on_progress=progress, key=key)
        if old.version < 2:
            return checking, NOT_SENDER_AUTHENTICATED
        return checking, prov.check(file_key, old, checking, opened, frozenset(signers))

    if not check_first:
        write_all(dst, memoryview(header.encode()))
        ledger, provenance = checked(src, dst, on_progress)
    else:
        with _two_passes(src, tmpdir) as (witnesses, first_source, replay):
            ledger, provenance = checked(first_source, None, on_check, witnesses=witnesses)
            write_all(dst, memoryview(header.encode()))
            again, source = new_ledger(witnesses, again=True), replay()
            if on_progress:
                on_progress(0)  # the pass that writes begins
            hash_records(source, dst, old.chunk_size, again, on_progress=on_progress)
            if again.trailer != ledger.trailer:
                raise InvalidStream(f"{prov.CHANGED}: its trailer differs")
    if old.version < 2:
        flush(dst)
        return sealed, SealedHeader.of(header), provenance
    trailer = prov.Trailer.parse(ledger.trailer, old)
    positions = prov.authenticated_slots(old)
    authenticators = [trailer.authenticators[positions.index(i)] for i in kept if i in positions]
    authenticators += ledger.new_authenticators()
    new = prov.Trailer(tuple(authenticators), trailer.signatures + prov.sign(signing_keys, ledger.commitment()))
    write_all(dst, memoryview(new.encode(file_key, header, ledger.tag_commitment())))
    flush(dst)
    return sealed, SealedHeader.of(header), provenance
