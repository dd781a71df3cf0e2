"""Whole streams: a header of key slots, then the chunked payload.

Everything here works on file-like objects (binary, with read/readinto and
write) and knows nothing of paths, terminals or exit codes.
"""

from typing import NamedTuple

from Crypto.Random import get_random_bytes

from . import format as fmt
from .errors import InvalidStream, NoKeyConfigured, NoMatchingKey, UsageError
from .primitives import FILE_KEY_LEN, header_mac, payload_key, verify_header_mac
from .slots import DEFAULT_SCRYPT_BUDGET, ScryptBudget, ScryptBudgetExceeded, ScryptSlot, decode_slot
from .stream import copy_stream, flush, open_payload, seal_payload, seekable, write_all


class StreamInfo(NamedTuple):
    header_bytes: int
    plaintext_bytes: int
    chunks: int


class SealedHeader(NamedTuple):
    """A parsed header with its slots decoded (unknown slot types kept as such)."""

    header: fmt.Header
    slots: tuple

    @classmethod
    def of(cls, header):
        return cls(header, tuple(decode_slot(record) for record in header.slots))

    @property
    def size(self):
        return self.header.size


def read_header(src):
    return SealedHeader.of(fmt.read_header(src))


def build_header(file_key, slots, chunk_log2, payload_salt=None):
    """A header holding `slots` (decoded slots or raw records), authenticated under `file_key`."""
    records = tuple(s if isinstance(s, fmt.SlotRecord) else s.encode() for s in slots)
    if not records:
        raise UsageError("refusing to write a file with no key slots")
    if len(records) > fmt.MAX_SLOTS:
        raise UsageError(f"a file holds at most {fmt.MAX_SLOTS} key slots")
    salt = payload_salt or get_random_bytes(fmt.SALT_LEN)
    header = fmt.Header(chunk_log2, salt, records)
    return header._replace(mac=header_mac(file_key, header))


def unlock(sealed, identities):
    """The file key, from the first identity that opens a slot: cheap identities
    (and key-id matches) first, then passphrases on the cheapest slots first, all
    of them together within one scrypt budget."""
    attempts = [(i, s) for i in identities for s in sealed.slots if i.can_try(s)]
    attempts.sort(key=lambda attempt: (attempt[0].cost, getattr(attempt[1], "work", 0)))
    limits = [i.budget for i in identities if getattr(i, "budget", None)]
    budget = ScryptBudget(max(limits, default=DEFAULT_SCRYPT_BUDGET))
    limit_error = None
    for identity, slot in attempts:
        try:
            if isinstance(slot, ScryptSlot):
                budget.charge(slot)
            file_key = identity.unwrap(slot)
        except ScryptBudgetExceeded:
            raise
        except InvalidStream as e:  # a slot beyond a resource limit; another may still open
            limit_error = limit_error or e
            continue
        if file_key is not None:
            verify_header_mac(file_key, sealed.header)
            return file_key
    if limit_error:
        raise limit_error
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


def seal(src, dst, recipients, *, chunk_log2=None, threads=1, on_progress=None):
    """Encrypt `src` to `dst` for every recipient; returns a StreamInfo. Without
    `chunk_log2`, the chunk size is the file or the pipe default (by `src.seekable()`)."""
    if not recipients:
        raise NoKeyConfigured("no key, passphrase or recipient to seal with")
    if chunk_log2 is None:
        chunk_log2 = fmt.FILE_CHUNK_LOG2 if seekable(src) else fmt.PIPE_CHUNK_LOG2
    file_key = get_random_bytes(FILE_KEY_LEN)
    header = build_header(file_key, [r.wrap(file_key) for r in recipients], chunk_log2)
    encoded = header.encode()
    write_all(dst, memoryview(encoded))
    plaintext, chunks = seal_payload(
        src, dst, payload_key(file_key, header), header.chunk_size, threads, on_progress
    )
    flush(dst)
    return StreamInfo(len(encoded), plaintext, chunks)


def unseal(src, dst, identities, **options):
    """Decrypt `src` to `dst`; see open_sealed."""
    return open_sealed(read_header(src), src, dst, identities, **options)


def open_sealed(sealed, src, dst, identities, *, threads=1, verify_first=False, on_progress=None):
    """Decrypt the payload that follows `sealed` in `src` to `dst` (None: authenticate
    only). Each chunk reaches `dst` only after it authenticated; with `verify_first`,
    nothing does until all of `src` has (which needs a seekable `src`)."""
    if verify_first and not seekable(src):
        raise UsageError("--verify-first needs a seekable input (a file, not a pipe)")
    file_key = unlock(sealed, identities)
    key = payload_key(file_key, sealed.header)

    def payload(out, report=None):
        return open_payload(src, out, key, sealed.header.chunk_size, threads, report)

    if verify_first and dst is not None:
        start = src.tell()
        payload(None)
        src.seek(start)
    plaintext, chunks = payload(dst, on_progress)
    if dst is not None:
        flush(dst)
    return StreamInfo(sealed.size, plaintext, chunks)


def payload_shape(payload_bytes, chunk_size):
    """(plaintext bytes, chunks) implied by a payload size, or None if no valid stream has it."""
    record = chunk_size + fmt.TAG_LEN
    chunks = max(1, -(-payload_bytes // record))
    plaintext = payload_bytes - chunks * fmt.TAG_LEN
    if plaintext < 0 or (chunks > 1 and plaintext <= (chunks - 1) * chunk_size):
        return None
    return plaintext, chunks


def rewrap(src, dst, identities, *, add=(), remove_ids=(), replace_all=False, on_progress=None):
    """Copy a sealed stream with a new set of slots; the payload is copied, never decrypted.

    Returns the old and the new SealedHeader."""
    sealed = read_header(src)
    file_key = unlock(sealed, identities)
    remove_ids = {k.lower() for k in remove_ids}
    unknown = remove_ids - {slot.describe().get("key_id") for slot in sealed.slots}
    if unknown:
        raise UsageError(f"no slot has key id {', '.join(sorted(unknown))}")
    kept = [
        record
        for record, slot in zip(sealed.header.slots, sealed.slots)
        if not replace_all and slot.describe().get("key_id") not in remove_ids
    ]
    header = build_header(
        file_key, kept + [r.wrap(file_key) for r in add], sealed.header.chunk_log2, sealed.header.payload_salt
    )
    write_all(dst, memoryview(header.encode()))
    copy_stream(src, dst, on_progress)
    flush(dst)
    return sealed, SealedHeader.of(header)
