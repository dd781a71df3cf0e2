"""The two AES-256-GCM libraries behind aead.py, each a class with the same calls:
`cryptography` (OpenSSL's fused AES-GCM) and pycryptodome (the reference). Each
imports its library only in load(), which aead.library() calls once."""

import threading

from .format import TAG_LEN

GIL_FREE_CRYPTOGRAPHY = 50  # the first release that detaches from the GIL in AEAD calls


def major(version):
    try:
        return int(version.split(".")[0])
    except ValueError:
        return 0


class Cryptography:
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

        AESGCM = aesgcm_class()
        if not hasattr(AESGCM, "encrypt_into"):
            raise ImportError("cryptography 47 or later is needed (AESGCM.encrypt_into)")
        cls._AESGCM, cls._InvalidTag, cls._keywrap = AESGCM, InvalidTag, keywrap
        cls.in_place = overlap_allowed(AESGCM)

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

        return major(__version__) >= GIL_FREE_CRYPTOGRAPHY and (cls.in_place or cls.wants_out(n))

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
        """Import now what a chunk of n bytes, its tag or not, needs (see relay.run_records)."""
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


def aesgcm_class():
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


def overlap_allowed(aesgcm):
    """Whether this `cryptography` encrypts in place (encrypt_into with its output
    over its input): up to 50 it does; 51 raises ValueError."""
    probe = bytearray(1 + TAG_LEN)
    try:
        aesgcm(bytes(32)).encrypt_into(bytes(12), memoryview(probe)[:1], None, probe)
    except ValueError:
        return False
    return True


class Pycryptodome:
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
