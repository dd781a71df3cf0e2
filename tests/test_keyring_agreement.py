"""Key files (README "Edge rules": key files, raw keys, text forms) read by
encpipe and by tests/independent_decoder.py agree: the same raw keys and
identities, in order, or both refuse (64). Seeded: each run writes the same files,
lines drawn from keys and identities in every spelling (case, white space of each
kind around and inside, prefixes and padding changed, the last character's unused
bits set), comments, blank lines, look-alikes, and ended by LF, CR LF, CR and what
ends no line (FF, VT, NEL, U+2028)."""

import hashlib
import random

import independent_decoder
from encpipe import keys, textform
from encpipe.errors import UsageError
from encpipe.slots import RawKey
from encpipe.x25519 import X25519Identity

RAW = [hashlib.sha256(b"keyring agreement %d" % i).hexdigest() for i in range(3)]
IDENTITY = X25519Identity(hashlib.sha256(b"keyring agreement identity").digest())
SPACES = [" ", "\t", "\v", "\f", "\r", "\u00a0", "\u2003", "\u3000", "\ufeff"]
ENDS = ["\n", "\r\n", "\r", "\f", "\v", "\x85", "\u2028", "\n\n", "\r\r\n"]


def spellings(rng):
    """A line's text: most often a key, an identity, a comment or nothing, in a
    spelling encpipe takes; else one it refuses, or a look-alike."""
    key, identity = rng.choice(RAW), str(IDENTITY)
    prefix, body = identity[:20], identity[20:]
    if rng.random() < 0.7:
        return rng.choice([key, key.upper(), key[:10].upper() + key[10:], identity, prefix + body.lower(),
                           "# " + key, "#" + identity, "", rng.choice(SPACES[:5]), "  # mine"])
    return rng.choice([
        "0x" + key[2:], key[:-1], key + "0", key[:31] + " " + key[32:], key[:30] + rng.choice(SPACES) * 2 + key[32:],
        key[:-1] + "\uff41", prefix.lower() + body, identity + "=", identity + "======",
        identity[:-1] + rng.choice("ABCDEFGH234567"), prefix + body[:10] + " " + body[10:],
        identity.replace("I", "\u0131", 1), key + " #", key + " " + key, rng.choice(SPACES), "encpipe1" + body.lower(),
        textform.encode("ENCPIPE-SIGNING-KEY-1", b"encpipe v2 ed25519 secret key", bytes(32), True),
    ])


def key_file(rng):
    text = "\ufeff" if rng.random() < 0.03 else ""
    for _ in range(rng.randrange(1, 4)):
        around = [rng.choice(SPACES) if rng.random() < 0.2 else "" for _ in range(2)]
        end = rng.choice(ENDS[:3]) if rng.random() < 0.85 else rng.choice(ENDS)
        text += around[0] + spellings(rng) + around[1] + (end if rng.random() < 0.9 else "")
    return text


def ours(text):
    """encpipe's reading, as keys to open with: a signing key among them is 64 too."""
    try:
        found = keys.parse_keyring(text, "t")
    except UsageError:
        return None
    raw = [k._key for k in found if isinstance(k, RawKey)]
    identities = [k._secret for k in found if isinstance(k, X25519Identity)]
    return (raw, identities, len(found)) if len(raw) + len(identities) == len(found) else None


def theirs(text):
    try:
        raw, identities = independent_decoder.keyring(text)
    except ValueError:
        return None
    return raw, identities, len(raw) + len(identities)


def test_key_files_read_alike():
    rng, outcomes = random.Random("keyring agreement"), {True: 0, False: 0}
    for _ in range(3000):
        text = key_file(rng)
        assert ours(text) == theirs(text), repr(text)
        outcomes[ours(text) is not None] += 1
    assert min(outcomes.values()) >= 300, outcomes
