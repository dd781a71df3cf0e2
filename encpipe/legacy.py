"""Files from the previous backup tool: the Node.js `.sql.enc` format.

    salt (32 bytes, random, unused) | IV (16) | GCM tag (16) | ciphertext

AES-256-GCM with the 16-byte IV, no associated data, one tag over the whole
dump. The key is the old `BACKUP_ENCRYPTION_KEY` setting: exactly 64 hex
characters is the key itself, anything else a passphrase stretched with
PBKDF2-HMAC-SHA256, 100,000 iterations, salt SHA-256("ediscovery-backup-salt").

The tag sits in front but covers the whole file, so nothing may be written
before every byte has authenticated. The input (file or pipe) is copied, as
ciphertext, to a private unlinked temporary file while it is authenticated,
and then decrypted from that copy: the bytes decrypted are exactly the bytes
that authenticated, even if someone rewrites the file meanwhile. Nor is the
copy trusted: each block read back must match its witness from the first pass
(a GMAC under a key of the run, never written) before its plaintext leaves. Plaintext
never touches the disk; memory use does not depend on the file size.

GCM cannot tell a wrong key from a damaged file. The rule here: a file shorter
than the 64-byte header, or one starting with the encpipe magic, is an
InvalidStream (65); a file that no candidate key authenticates is NoMatchingKey
(77), whose hint says it may also be damaged or truncated.

The one tag means a file is read to its end before anything can be said of it;
a sparse file (holes cost no disk) would make that a terabyte of zeros. No
ciphertext holds ZERO_RUN zero bytes in a row (a chance of 2^-256 at each
offset), and every hole does: the first one seen is an InvalidStream (65).
"""

import hashlib
import os
import re
import stat
from dataclasses import dataclass, field
from os import urandom as get_random_bytes  # what Crypto.Random.get_random_bytes is, without importing Crypto

from Crypto.Cipher import AES

from .errors import EncpipeError, InvalidStream, NoKeyConfigured, NoMatchingKey
from .format import MAGIC, read_exactly
from .childenv import ENV_KEY, ENV_PASSPHRASE, LEGACY_KEY
from .provenance import Witnesses
from .slots import Passphrase, RawKey
from .spool import Tee, private_spool, rewind
from .stream import blocks, count_remaining, flush, seekable, write_all

ENV_LEGACY_KEY = LEGACY_KEY
SALT_LEN = 32
IV_LEN = 16
TAG_LEN = 16
HEADER_LEN = SALT_LEN + IV_LEN + TAG_LEN
KEY_LEN = 32
PBKDF2_SALT = hashlib.sha256(b"ediscovery-backup-salt").digest()
PBKDF2_ITERATIONS = 100_000
SUITE = "AES-256-GCM, 16-byte IV, one tag over the whole file"
BUFFER_SIZE = 1 << 20
ZERO_RUN = 32
MAX_CIPHERTEXT = (2**39 - 256) // 8  # AES-GCM's limit (NIST SP 800-38D): 64 GiB less 32 bytes
_ZEROS = bytes(ZERO_RUN)
_HEX_KEY = re.compile(r"[0-9a-fA-F]{64}")
# What envelope.read_header reads before it can say "not an encpipe file":
# magic, version and header length.
_ENCPIPE_PREFIX_LEN = len(MAGIC) + 3


@dataclass(frozen=True)
class LegacyKey:
    """One candidate AES-256 key, with a label that names its source (never the secret)."""

    key: bytes = field(repr=False)
    label: str


@dataclass(frozen=True)
class LegacyInfo:
    plaintext_bytes: int
    key_label: str
    spooled: bool


# --- keys ------------------------------------------------------------------


def passphrase_key(passphrase):
    """The previous tool's key for a passphrase (bytes; a str is taken as UTF-8, as Node does).
    Node read its setting as UTF-8, each invalid sequence one U+FFFD, and hashed that
    string's UTF-8: bytes that are not UTF-8 are taken the same way (valid ones unchanged)."""
    if isinstance(passphrase, str):
        passphrase = passphrase.encode("utf-8", "surrogateescape")
    passphrase = passphrase.decode("utf-8", "replace").encode("utf-8")
    return hashlib.pbkdf2_hmac("sha256", passphrase, PBKDF2_SALT, PBKDF2_ITERATIONS, KEY_LEN)


def key_from_setting(value, source=ENV_LEGACY_KEY):
    """The old rule for a BACKUP_ENCRYPTION_KEY value: exactly 64 hex characters is the
    key, anything else a passphrase. An empty value means "not configured": None."""
    if not value:
        return None
    if _HEX_KEY.fullmatch(value):
        return LegacyKey(bytes.fromhex(value), f"{source} (hex key)")
    return LegacyKey(passphrase_key(os.fsencode(value)), f"{source} (passphrase)")


def keys_from_identities(identities):
    """Raw keys are used as the AES key; passphrases go through the old PBKDF2.
    Other identities (x25519) mean nothing to the old format and are left out."""
    keys = []
    for identity in identities:
        if isinstance(identity, RawKey):
            keys.append(LegacyKey(identity.secret, f"key {identity.key_id.hex()}"))
        elif isinstance(identity, Passphrase):
            keys.append(LegacyKey(passphrase_key(identity.secret), "passphrase"))
    return keys


def load_keys(loader, sources, env):
    """Candidate keys from the key options; without any, from ENCPIPE_KEY,
    ENCPIPE_PASSPHRASE and BACKUP_ENCRYPTION_KEY (the old rule), that one first."""
    setting = None if sources.any_given() else env.get(ENV_LEGACY_KEY)
    try:
        identities = loader.load(sources, sealing=False)
    except NoKeyConfigured as e:
        if sources.any_given():
            raise
        if not setting:
            raise NoKeyConfigured(
                str(e),
                hint=f"set {ENV_LEGACY_KEY} (as the previous tool had it), {ENV_KEY} or {ENV_PASSPHRASE}, "
                "or use --key-file or --passphrase-file",
            ) from None
        identities = []
    keys = [key_from_setting(setting)] if setting else []
    unique = {}
    for key in keys + keys_from_identities(identities):
        unique.setdefault(key.key, key)
    if not unique:
        raise NoKeyConfigured("no raw key or passphrase given: x25519 identities cannot open legacy files")
    return list(unique.values())


# --- reading ---------------------------------------------------------------


def _read_header(src):
    header = read_exactly(src, HEADER_LEN)
    if header.startswith(MAGIC):
        raise InvalidStream("this is an encpipe file, not one from the previous tool", hint="open it without --legacy")
    if len(header) < HEADER_LEN:
        what = "empty input" if not header else f"{len(header)} bytes"
        raise InvalidStream(f"not a legacy file: {what}, less than its {HEADER_LEN}-byte header")
    return header[SALT_LEN : SALT_LEN + IV_LEN], header[SALT_LEN + IV_LEN :]


def _ciphers(keys, iv):
    return [(key, AES.new(key.key, AES.MODE_GCM, nonce=iv)) for key in keys]


def _authenticate(src, keys, iv, tag, witness=None):
    """The key whose GCM tag over all of `src` matches; writes nothing (but each
    block's witness, with `witness`: see _witnessed)."""
    candidates = _ciphers(keys, iv)
    buf, scratch = bytearray(BUFFER_SIZE), bytearray(BUFFER_SIZE)
    total = zeros = 0
    for index, block in enumerate(blocks(src, buf)):
        _within_gcm(total + len(block))
        zeros = _no_zero_run(buf, len(block), total, zeros)
        if witness:
            witness(index, block)
        for _, cipher in candidates:
            cipher.decrypt(block, output=memoryview(scratch)[: len(block)])
        total += len(block)
    for key, cipher in candidates:
        try:
            cipher.verify(tag)
        except ValueError:
            continue
        return key, total
    tried = ", ".join(key.label for key in keys)
    raise NoMatchingKey(
        "no supplied key authenticates this legacy file",
        hint=f"the key is wrong, or the file is damaged or truncated (the old format cannot tell which); tried: {tried}",
    )


def _within_gcm(size):
    """Refuse a ciphertext longer than AES-GCM allows: no file of the previous tool is
    (65 at once, not the cipher library's error after 64 GiB were read)."""
    if size > MAX_CIPHERTEXT:
        raise InvalidStream(f"not a file of the previous tool: longer than AES-GCM allows ({MAX_CIPHERTEXT} "
                            "bytes of ciphertext)")


def _no_zero_run(buf, length, offset, before=0):
    """Refuse ZERO_RUN zero bytes in a row in buf[:length] (ciphertext from `offset`):
    a hole of a sparse file, or zeros written as one, never a ciphertext. `before`: the
    zero bytes that ended the ciphertext before it, so that a run across two blocks
    counts too; returns those that end this one (at most ZERO_RUN - 1)."""
    head = min(ZERO_RUN - before, length)
    if before and buf[:head] == _ZEROS[:head]:
        if head < ZERO_RUN - before:  # a short block (the last), zeros only: the run goes on
            return before + head
        raise _zero_run(offset - before)
    at = buf.find(_ZEROS, 0, length)
    if at >= 0:
        raise _zero_run(offset + at)
    tail = buf[max(0, length - ZERO_RUN + 1) : length]
    return len(tail) - len(tail.rstrip(b"\0"))


def _zero_run(offset):
    return InvalidStream(f"not a file of the previous tool: {ZERO_RUN} zero bytes in a row at byte "
                         f"{HEADER_LEN + offset} (a hole?), which no ciphertext holds")


def _witnessed(witnesses):
    """witness(index, block): a GMAC of each block under the run's random key (never
    written anywhere), stored by the first pass, compared by the second before the
    block's plaintext leaves (provenance.Witnesses): the spool read back is trusted
    no more than a file read twice, as for a v2 file. pycryptodome's, as the rest
    of this module: no second cipher library loaded for it."""
    key = witnesses.key
    return lambda index, block: witnesses.add(
        AES.new(key, AES.MODE_GCM, nonce=index.to_bytes(12, "big")).update(block).digest())


def _decrypt(src, dst, key, iv, tag, expected, witness, witnesses):
    cipher = AES.new(key.key, AES.MODE_GCM, nonce=iv)
    buf, out = bytearray(BUFFER_SIZE), memoryview(bytearray(BUFFER_SIZE))
    total = 0
    for index, block in enumerate(blocks(src, buf)):
        witness(index, block)  # InvalidStream before any byte of a block that changed
        cipher.decrypt(block, output=out[: len(block)])
        write_all(dst, out[: len(block)])
        total += len(block)
    witnesses.end()  # every block met: none missing
    flush(dst)
    try:
        if total != expected:
            raise ValueError
        cipher.verify(tag)
    except ValueError:
        raise InvalidStream("the spooled copy changed after it authenticated: do not trust the output") from None
    return total


def open_legacy(src, dst, keys, *, tmpdir=None):
    """Decrypt a legacy file from `src` to `dst` (None: only authenticate); a LegacyInfo.

    Nothing reaches `dst` before all of `src` has authenticated under one of
    `keys` (LegacyKey). `src` is read once, spooled as ciphertext to an unlinked
    temporary file in `tmpdir` (default: TMPDIR) on the way, and the output is
    decrypted from that copy. Memory use is constant."""
    if not keys:
        raise NoKeyConfigured("no key to open a legacy file with")
    iv, tag = _read_header(src)
    return _open_payload(src, dst, keys, iv, tag, tmpdir)


class _AsFound:
    """The first `left` bytes of a reader, then its end."""

    def __init__(self, src, left):
        self._src, self._left = src, left

    def readinto(self, view):
        if self._left <= 0:
            return 0
        n = self._src.readinto(memoryview(view)[: self._left])
        self._left -= n or 0
        return n

    def seekable(self):
        return False


def _as_found(src):
    """`src`, read no further than its size now when it is a regular file: a writer
    that extends it as it is read (punching holes behind the reader, its disk use
    stays the same) cannot make the read endless. The tag covers what was there."""
    try:
        info, here = os.fstat(src.fileno()), src.tell()
    except (AttributeError, OSError, ValueError):  # a pipe, or a reader without a descriptor
        return src
    if not stat.S_ISREG(info.st_mode):
        return src
    _within_gcm(info.st_size - here)  # before any byte of it is read, or spooled
    return _AsFound(src, info.st_size - here)


def _open_payload(src, dst, keys, iv, tag, tmpdir):
    src = _as_found(src)
    if dst is None:
        key, total = _authenticate(src, keys, iv, tag)
        return LegacyInfo(total, key.label, spooled=False)
    # A file too: reading it a second time would decrypt whatever it holds by then.
    with private_spool(tmpdir) as spool, private_spool(tmpdir) as store:
        witnesses = Witnesses(store)
        witness = _witnessed(witnesses)
        key, total = _authenticate(Tee(src, spool), keys, iv, tag, witness)
        witnesses.end()
        rewind(spool)
        _decrypt(spool, dst, key, iv, tag, total, witness, witnesses)
    return LegacyInfo(total, key.label, spooled=True)


def inspect_legacy(src, keys=None):
    """A report on a legacy file; with `keys` (LegacyKey), after authenticating all of it."""
    iv, tag = _read_header(src)
    report = {"format": "legacy", "suite": SUITE, "header_bytes": HEADER_LEN}
    if keys is None:
        payload = count_remaining(src)
        return {**report, "payload_bytes": payload, "plaintext_bytes": payload, "verified": False}
    if not keys:
        raise NoKeyConfigured("no key to verify a legacy file with")
    info = _open_payload(src, None, keys, iv, tag, None)
    size = info.plaintext_bytes
    return {**report, "payload_bytes": size, "plaintext_bytes": size, "verified": True, "key": info.key_label}


def legacy_hint(src):
    """For `inspect` on a file without the encpipe magic (read_header has read its
    first bytes): a hint at --legacy when its size fits the old format, else None."""
    try:
        if seekable(src):
            size = src.seek(0, os.SEEK_END)
        else:
            rest = count_remaining(src)
            size = _ENCPIPE_PREFIX_LEN + rest if rest else 0
    except (OSError, EncpipeError):
        return None
    if size < HEADER_LEN:
        return None
    return f"if it is a backup from the previous tool ({size} bytes), try: encpipe inspect --legacy --verify"


# --- writing (tests and benchmarks only) -----------------------------------


def seal_legacy(src, dst, key, *, iv=None, salt=None):
    """Write the previous tool's format, for tests and benchmarks only: never for new
    backups. `dst` must be seekable (the tag goes in front). Returns the plaintext size."""
    if len(key) != KEY_LEN:
        raise ValueError(f"a legacy key is {KEY_LEN} bytes")
    iv = iv or get_random_bytes(IV_LEN)
    salt = salt or get_random_bytes(SALT_LEN)
    start = dst.tell()
    dst.write(salt + iv + bytes(TAG_LEN))
    cipher = AES.new(key, AES.MODE_GCM, nonce=iv)
    total = 0
    for block in blocks(src, bytearray(BUFFER_SIZE)):
        dst.write(cipher.encrypt(block))
        total += len(block)
    end = dst.tell()
    dst.seek(start + SALT_LEN + IV_LEN)
    dst.write(cipher.digest())
    dst.seek(end)
    return total
