"""Mutations of a sealed file beyond tests/test_decoder_agreement.py's, for
tests/test_differential.py: slots reordered, a v2 trailer's parts swapped, dropped
and repeated, a sibling file's records and trailer, payloads a slot's holder seals
anew; and all_mutations, which adds them to that file's (thinned)."""

import hashlib
import random

from Crypto.Cipher import AES

import independent_decoder
from fuzz.craft import fix_crc
from test_decoder_agreement import Shape, as_slot_holder, mutations, relaid

def with_sig_count(data, shape, count):
    return fix_crc(data[:45] + bytes([count]) + data[46:], shape.header_len)


def extra_mutations(data, shape, sibling, signer):
    """Slots reordered; a v2 trailer's authenticators and signature entries
    swapped, dropped, repeated and mixed; a sibling file's records and trailer."""
    bodies = [(kind, data[pos + 3 : pos + 3 + length]) for pos, kind, length in shape.slots]
    if len(bodies) > 1:
        yield "slots reversed", relaid(data, shape, bodies[::-1])
        yield "slots rotated", relaid(data, shape, bodies[1:] + bodies[:1])
        yield "first slot last, twice", relaid(data, shape, bodies[1:] + bodies[:1] * 2)
    head, start = data[: shape.header_len], shape.trailer_start
    payload, trailer = data[shape.header_len : start], data[start:]
    sibling_shape = Shape(sibling)
    sibling_payload = sibling[sibling_shape.header_len : sibling_shape.trailer_start]
    sibling_trailer = sibling[sibling_shape.trailer_start :]
    yield "the sibling's payload", head + sibling_payload + trailer
    if shape.records and sibling_shape.records:
        first, end = sibling_shape.records[0]
        yield "the sibling's first record", head + sibling[first:end] + data[shape.records[0][1] :]
    if shape.version == 1:
        return
    yield "the sibling's trailer", head + payload + sibling_trailer
    yield "the sibling's trailer but its MAC", head + payload + sibling_trailer[:-32] + trailer[-32:]
    auths = [trailer[32 * j : 32 * j + 32] for j in range(shape.authenticated)]
    entries_at = 32 * shape.authenticated
    entries = [trailer[entries_at + 96 * j : entries_at + 96 * j + 96] for j in range(shape.sig_count)]
    mac = trailer[-32:]

    def trailer_of(a, e):
        return b"".join(a) + b"".join(e) + mac

    if len(auths) > 1:
        yield "authenticators swapped", head + payload + trailer_of(auths[::-1], entries)
        yield "first authenticator twice", head + payload + trailer_of([auths[0]] * len(auths), entries)
    for j in range(len(auths)):
        zeroed = auths[:j] + [bytes(32)] + auths[j + 1 :]
        yield f"authenticator {j} zeroed", head + payload + trailer_of(zeroed, entries)
    if len(entries) > 1:
        yield "signature entries swapped", head + payload + trailer_of(auths, entries[::-1])
        mixed = [entries[0][:32] + entries[1][32:], entries[1][:32] + entries[0][32:]]
        yield "signatures swapped, their keys kept", head + payload + trailer_of(auths, mixed)
    for j in range(len(entries)):
        rest = entries[:j] + entries[j + 1 :]
        yield f"signature entry {j} dropped, sig_count too", with_sig_count(head, shape, len(rest)) + payload + \
            trailer_of(auths, rest)
        yield f"signature entry {j} dropped, sig_count kept", head + payload + trailer_of(auths, rest)
        twice = entries[: j + 1] + entries[j:]
        yield f"signature entry {j} twice, sig_count too", with_sig_count(head, shape, len(twice)) + payload + \
            trailer_of(auths, twice)
    another = signer.verify_key.public + signer.sign(b"encpipe v2 signature" + bytes(32))
    yield "a signature entry added, sig_count too", with_sig_count(head, shape, len(entries) + 1) + payload + \
        trailer_of(auths, entries + [another])
    yield "every signature entry dropped, sig_count 0", with_sig_count(head, shape, 0) + payload + \
        trailer_of(auths, [])


def thinned(label, shape, rng):
    """False for most bit flips inside a slot body, a MAC or a trailer field (a
    quarter kept): each ends at the CRC, an unwrap or a MAC as its neighbours do.
    The fixed fields, slot framing and each field's first and last byte are kept."""
    words = label.split()
    if words[1:2] != ["byte"] or words[0] not in ("header", "trailer"):
        return False
    at = int(words[2].rstrip(":"))
    if words[0] == "header":
        framing = {pos + d for pos, _, _ in shape.slots for d in (0, 1, 2, 3)}
        edges = {shape.header_len - 36, shape.header_len - 5, shape.header_len - 4, shape.header_len - 1}
        return at >= 46 and at not in framing | edges and rng.random() >= 0.25
    return at % 32 not in (0, 31) and rng.random() >= 0.25


def resealed(data, shape, key, clear):
    """Payloads a slot holder seals anew under the file key (its trailer kept, then
    its MACs made again by all_mutations): another plaintext, which only an
    authenticator or a signature can tell; an empty final chunk after a full one;
    no final chunk; the first chunk final, the others dropped."""
    size = 1 << shape.chunk_log2
    payload_key = independent_decoder.hkdf(key, data[12:44], b"encpipe v1 payload")

    def sealed(chunks, finals):
        records = b""
        for i, (chunk, last) in enumerate(zip(chunks, finals)):
            cipher = AES.new(payload_key, AES.MODE_GCM, nonce=i.to_bytes(11, "big") + bytes([last]))
            records += b"".join(cipher.encrypt_and_digest(chunk))
        return data[: shape.header_len] + records + data[shape.trailer_start :]

    for label, text in (("a byte more", clear + b"!"), ("a byte less", clear[:-1]), ("empty", b""),
                        ("the first byte changed", bytes([clear[0] ^ 1]) + clear[1:] if clear else b"?")):
        chunks = [text[i : i + size] for i in range(0, len(text), size)] or [b""]
        yield f"resealed: {label}", sealed(chunks, [0] * (len(chunks) - 1) + [1])
    chunks = [clear[i : i + size] for i in range(0, len(clear), size)] or [b""]
    full = (clear + bytes(size))[:size]
    yield "resealed: an empty final chunk after a full one", sealed([full, b""], [0, 1])
    yield "resealed: no final chunk", sealed(chunks, [0] * len(chunks))
    yield "resealed: the first chunk final, the others dropped", sealed(chunks[:1], [1])


def all_mutations(name, data, sibling, key, clear, signer):
    """tests/test_decoder_agreement.py's mutations (thinned), then extra_mutations,
    each as is and as a slot holder, then payloads resealed by a slot holder; each
    distinct input once."""
    seen, shape, rng = set(), Shape(data), random.Random(name)
    for label, mutated in mutations(name, data, key):
        if not thinned(label, shape, rng):
            seen.add(hashlib.sha256(mutated).digest())
            yield label, mutated
    for label, mutated in [*extra_mutations(data, shape, sibling, signer), *resealed(data, shape, key, clear)]:
        for label, mutated in ((label, mutated), (label + ", as a slot holder", as_slot_holder(mutated, key))):
            digest = mutated is not None and hashlib.sha256(mutated).digest()
            if digest and digest not in seen:
                seen.add(digest)
                yield label, mutated
