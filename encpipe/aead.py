"""AES-256-GCM for the payload chunks, from one of two libraries.

`cryptography` (OpenSSL's fused AES-GCM; `pip install encpipe[fast]`) when it
is installed, else pycryptodome, which is always installed and is the
reference. GCM is deterministic for a given key and nonce, so both write the
same bytes. ENCPIPE_CIPHER=cryptography or ENCPIPE_CIPHER=pycryptodome forces
one; a forced library that cannot be imported is an error, not a fallback.

Nothing is imported until a stream asks for a cipher: `name()` only looks the
package up. Both ciphers work on a chunk buffer, in place or (`cryptography` 51
and later, which refuses to) into a second buffer of the caller's, allocating
nothing per chunk on the way that succeeds.
"""

import os
import threading
from importlib.util import find_spec

from .errors import UsageError, ran_out
from .format import TAG_LEN
from .textform import shown_value

ENV_CIPHER = "ENCPIPE_CIPHER"
CRYPTOGRAPHY = "cryptography"
PYCRYPTODOME = "pycryptodome"
NAMES = (CRYPTOGRAPHY, PYCRYPTODOME)
GIL_FREE_CRYPTOGRAPHY = 50  # the first release that detaches from the GIL in AEAD calls

_installed = {}


def _is_installed(name):
    if name not in _installed:
        _installed[name] = find_spec(name) is not None
    return _installed[name]


def name(env=None):
    """The library seal and open will use, without importing it."""
    env = os.environ if env is None else env
    forced = env.get(ENV_CIPHER, "").strip()
    if forced:
        if forced not in NAMES:
            raise UsageError(f"{ENV_CIPHER} must be {' or '.join(NAMES)}, not {shown_value(forced)}")
        return forced
    return CRYPTOGRAPHY if _is_installed(CRYPTOGRAPHY) else PYCRYPTODOME


def name_in_use(env=None):
    """The library seal and open use, for --version: name(), but pycryptodome when an
    installed `cryptography` cannot be used (its AEAD module cannot be imported, or
    has no AESGCM.encrypt_into: older than 47) and was not forced, as library()
    finds it by the same load(); pycryptodome's ciphers are not imported. A forced
    library that is not installed, or (cryptography) whose package cannot be imported
    or is older than 47, is library()'s UsageError, as for seal and open; a forced one
    that can be used is not imported (its package's version only)."""
    env = os.environ if env is None else env
    chosen = name(env)
    if env.get(ENV_CIPHER, "").strip():
        if chosen == CRYPTOGRAPHY and not (_is_installed(chosen) and _recent_enough()):  # pycryptodome's: Crypto
            library()
    elif chosen == CRYPTOGRAPHY and _unusable(CRYPTOGRAPHY):
        return PYCRYPTODOME
    return chosen


def _unusable(chosen):
    """Load library `chosen`: None, or the ImportError that says it cannot be used. One
    that is memory run out (its shared library cannot be mapped) is raised: out of
    memory (74), no other library tried nor named."""
    try:
        _CIPHERS[chosen].load()
    except ImportError as e:
        if ran_out(e):
            raise
        return e
    return None


def _recent_enough():
    """True when the `cryptography` package imports (its AEAD module not) and is 47 or later."""
    try:
        from cryptography import __version__
    except ImportError:
        return False
    return _major(__version__) >= 47


def checked():
    """name(), still without importing the library, unless it is not installed: then
    library()'s UsageError (or its fallback) now. For a caller that imports it later."""
    chosen = name()
    if not _is_installed(chosen):
        library()
    return chosen


_usable = {}


def library():
    """The library in use, imported once: the chosen one, or pycryptodome when
    `cryptography` is installed but cannot be used. UsageError when a library
    that ENCPIPE_CIPHER forces (or pycryptodome itself) cannot be imported.
    Call it before any output."""
    chosen = name()
    if chosen not in _usable:
        e = _unusable(chosen)
        if e is None:
            _usable[chosen] = chosen
        elif chosen == PYCRYPTODOME or os.environ.get(ENV_CIPHER, "").strip():
            raise UsageError(
                f"{ENV_CIPHER}={chosen}, but it cannot be imported: {e}",
                hint=f"pip install 'encpipe[fast]' for cryptography, or unset {ENV_CIPHER}",
            ) from None
        else:
            _Pycryptodome.load()
            _usable[chosen] = PYCRYPTODOME
    return _usable[chosen]


def parallel(chunk_size):
    """True when the library in use lets other threads run while it seals or opens
    a chunk of `chunk_size` bytes: pycryptodome does, and `cryptography` from
    version 50 on in its AEAD calls (not in update_into by pieces)."""
    return _CIPHERS[library()].parallel(chunk_size)


def buffers_per_chunk(chunk_size):
    """Buffers a thread holds for chunks of `chunk_size` bytes: 2 where the cipher
    seals and opens into a second one (wants_out), else 1."""
    return 2 if _CIPHERS[library()].wants_out(chunk_size) else 1


def _major(version):
    try:
        return int(version.split(".")[0])
    except ValueError:
        return 0


def gcm(key):
    """An AES-256-GCM cipher under `key`, with `seal(nonce, buf, n, out=None)` and
    `open(nonce, buf, n, out=None)` (in place, or into `out`, which `wants_out(n)` asks
    for), and `prepare(n)`, which imports what a chunk of n bytes needs (in the caller's
    thread: two worker threads importing at once under memory exhaustion spun for ever
    in importlib)."""
    return _CIPHERS[library()](key)


def gmac(key):
    """GMAC under `key`: a function of (nonce, data) giving the 16-byte GCM tag of an
    empty plaintext with `data` as associated data (format v2's record MACs)."""
    return _CIPHERS[library()].gmac(key)


def wrap_key(kek, key):
    """AES key wrap (RFC 3394) of `key` under `kek`."""
    return _CIPHERS[library()].wrap_key(kek, key)


def unwrap_key(kek, wrapped):
    """The key wrapped in `wrapped`, or None when `kek` is not the key that wrapped it."""
    return _CIPHERS[library()].unwrap_key(kek, wrapped)


class _Cryptography:
    """OpenSSL through `cryptography`: encrypt_into and decrypt_into, in place up to
    50; 51 and later refuse an output over its input, so there a chunk of up to
    SPARE_MAX bytes goes whole into a second buffer of the caller's (`out`), and a
    larger one by GCM's update_into, piece by piece, through a buffer of the thread's."""

    in_place = True  # load() finds out
    _Cipher = None  # GCM's update_into, for a chunk over SPARE_MAX where in_place is not: _load_pieces()

    @classmethod
    def load(cls):
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives import keywrap

        AESGCM = _aesgcm_class()
        if not hasattr(AESGCM, "encrypt_into"):
            raise ImportError("cryptography 47 or later is needed (AESGCM.encrypt_into)")
        cls._AESGCM, cls._InvalidTag, cls._keywrap = AESGCM, InvalidTag, keywrap
        cls.in_place = _overlap_allowed(AESGCM)

    @classmethod
    def wants_out(cls, n):
        """Whether a chunk of n bytes (with its tag or not) is best sealed and opened into
        a second buffer: where this release refuses to work in place, up to SPARE_MAX
        (one call that lets other threads run, where update_into by pieces holds the GIL
        and copies every piece back: 1.4x the CPU on one thread, no gain from a second)."""
        return not cls.in_place and n <= SPARE_MAX + TAG_LEN

    @classmethod
    def parallel(cls, n):
        """Whether a second thread seals or opens chunks of n bytes beside the first: from
        50 on AEAD calls let other threads run (update_into by pieces does not)."""
        from cryptography import __version__

        return _major(__version__) >= GIL_FREE_CRYPTOGRAPHY and (cls.in_place or cls.wants_out(n))

    @classmethod
    def _load_pieces(cls):
        """The Cipher API, imported for the first chunk that goes by pieces: its package
        loads every cipher and mode of `cryptography` (about 7 ms of a start), which
        an input of smaller chunks never needs."""
        if cls._Cipher is None:
            from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

            cls._AES, cls._GCM = algorithms.AES, modes.GCM
            cls._Cipher = Cipher  # last: another thread that sees it set finds the others set

    @classmethod
    def wrap_key(cls, kek, key):
        return cls._keywrap.aes_key_wrap(kek, key)

    @classmethod
    def unwrap_key(cls, kek, wrapped):
        try:
            return cls._keywrap.aes_key_unwrap(kek, wrapped)
        except cls._keywrap.InvalidUnwrap:
            return None

    @classmethod
    def gmac(cls, key):
        encrypt = cls._AESGCM(key).encrypt
        return lambda nonce, data: encrypt(nonce, b"", data)

    def __init__(self, key):
        self._aead, self._key = self._AESGCM(key), bytes(key)
        self._aes, self._scratch = None, threading.local()  # the key's AES, made once (by pieces)

    def prepare(self, n):
        """Import now what a chunk of n bytes, its tag or not, needs (see stream._run)."""
        if not self.in_place and not self.wants_out(n):
            self._load_pieces()

    def _pieces_key(self):
        if self._aes is None:
            self._load_pieces()
            self._aes = self._AES(self._key)
        return self._aes

    def seal(self, nonce, buf, n, out=None):
        """Encrypt buf[:n] and put its tag after it: into out[:n + TAG_LEN], leaving buf
        as it was, when `out` is given (see wants_out), else in place."""
        if out is not None:
            self._aead.encrypt_into(nonce, buf[:n], None, out[: n + TAG_LEN])
            return
        if not self.in_place:
            aes = self._pieces_key()  # first: it imports _Cipher
            encryptor = self._Cipher(aes, self._GCM(nonce)).encryptor()
            self._through(encryptor, buf, n)
            encryptor.finalize()
            buf[n: n + TAG_LEN] = encryptor.tag
            return
        self._aead.encrypt_into(nonce, buf[:n], None, buf[: n + TAG_LEN])

    def open(self, nonce, buf, n, out=None):
        """Decrypt buf[:n] (ciphertext then tag): into out[:n - TAG_LEN] when `out` is
        given, else in place. False when the tag does not verify, with buf[:n] as it was
        (and `out` zeroed: OpenSSL decrypts before it checks)."""
        body = n - TAG_LEN
        if out is not None:
            try:
                self._aead.decrypt_into(nonce, buf[:n], None, out[:body])
                return True
            except self._InvalidTag:
                out[:body] = bytes(body)
                return False
        if not self.in_place:
            return self._open_by_pieces(nonce, buf, body)
        try:
            self._aead.decrypt_into(nonce, buf[:n], None, buf[:body])
            return True
        except self._InvalidTag:
            # OpenSSL decrypted before it checked: encrypting again under the same
            # nonce restores the ciphertext, and the tag is put back.
            tag = bytes(buf[body:n])
            self._aead.encrypt_into(nonce, buf[:body], None, buf[:n])
            buf[body:n] = tag
            return False

    def _open_by_pieces(self, nonce, buf, body):
        tag = bytes(buf[body: body + TAG_LEN])
        aes = self._pieces_key()  # first: it imports _Cipher
        decryptor = self._Cipher(aes, self._GCM(nonce, tag)).decryptor()
        self._through(decryptor, buf, body)
        try:
            decryptor.finalize()
            return True
        except self._InvalidTag:  # decrypted before it was checked: the same keystream restores it
            self._through(self._Cipher(aes, self._GCM(nonce)).encryptor(), buf, body)
            return False

    def _through(self, context, buf, n):
        """buf[:n] through `context` (GCM's keystream), in place by pieces of PIECE
        bytes: `cryptography` 51 and later refuse an output that overlaps the input
        (ValueError), so each piece goes through a buffer of this thread's, which
        stays in the CPU's cache, and is copied back."""
        scratch = self._buffer()
        view = memoryview(buf)
        for start in range(0, n, PIECE):
            end = min(start + PIECE, n)
            done = context.update_into(view[start:end], scratch)
            view[start: start + done] = scratch[:done]

    def _buffer(self):
        """This thread's buffer: a piece and a block (update_into's room: a piece + block - 1)."""
        scratch = getattr(self._scratch, "view", None)
        if scratch is None:
            scratch = self._scratch.view = memoryview(bytearray(PIECE + TAG_LEN))
        return scratch


PIECE = 64 << 10
SPARE_MAX = 8 << 20  # chunks up to 8 MiB go whole into a second buffer (2 x 8 MiB: see workers.AUTO_BUFFERS)


def _aesgcm_class():
    """`cryptography`'s AESGCM, taken from the compiled module that defines it, which
    its public module (ciphers.aead) only names: importing that one imports its
    package, every cipher and mode of `cryptography` (about 7 ms of each start). By
    the public name where a release keeps it elsewhere."""
    try:
        from cryptography.hazmat.bindings._rust import openssl

        return openssl.aead.AESGCM
    except (ImportError, AttributeError):
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        return AESGCM


def _overlap_allowed(aesgcm):
    """Whether this `cryptography` encrypts in place (encrypt_into with its output
    over its input): up to 50 it does; 51 raises ValueError."""
    probe = bytearray(1 + TAG_LEN)
    try:
        aesgcm(bytes(32)).encrypt_into(bytes(12), memoryview(probe)[:1], None, probe)
    except ValueError:
        return False
    return True


class _Pycryptodome:
    """pycryptodome: one cipher object per chunk, output written in place."""

    @classmethod
    def load(cls):
        from Crypto.Cipher import AES

        cls._AES = AES

    @classmethod
    def wrap_key(cls, kek, key):
        return cls._AES.new(kek, cls._AES.MODE_KW).seal(key)

    @classmethod
    def unwrap_key(cls, kek, wrapped):
        try:
            return cls._AES.new(kek, cls._AES.MODE_KW).unseal(wrapped)
        except ValueError:
            return None

    @classmethod
    def gmac(cls, key):
        key, new, mode = bytes(key), cls._AES.new, cls._AES.MODE_GCM
        return lambda nonce, data: new(key, mode, nonce=nonce).update(data).digest()

    @classmethod
    def wants_out(cls, n):
        """Never: pycryptodome works in place at no cost."""
        return False

    @classmethod
    def parallel(cls, n):
        """Always: it lets other threads run while it seals or opens."""
        return True

    def __init__(self, key):
        self._key = bytes(key)

    def prepare(self, n):
        """Nothing to import for any chunk."""

    def _new(self, nonce):
        return self._AES.new(self._key, self._AES.MODE_GCM, nonce=nonce)

    def seal(self, nonce, buf, n, out=None):
        out = buf if out is None else out
        cipher = self._new(nonce)
        cipher.encrypt(buf[:n], output=out[:n])
        out[n : n + TAG_LEN] = cipher.digest()

    def open(self, nonce, buf, n, out=None):
        body, out = buf[: n - TAG_LEN], buf if out is None else out
        cipher = self._new(nonce)
        cipher.decrypt(body, output=out[: n - TAG_LEN])
        try:
            cipher.verify(buf[n - TAG_LEN : n])
            return True
        except ValueError:
            if out is buf:  # GCM's keystream is its own inverse: restore the ciphertext
                self._new(nonce).encrypt(body, output=body)
            else:
                out[: n - TAG_LEN] = bytes(n - TAG_LEN)
            return False


_CIPHERS = {CRYPTOGRAPHY: _Cryptography, PYCRYPTODOME: _Pycryptodome}
