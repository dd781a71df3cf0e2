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
from _thread import RLock
from importlib.util import find_spec

from .errors import UsageError, ran_out
from .gcmlibs import Cryptography, Pycryptodome, major
from .textform import shown_value

ENV_CIPHER = "ENCPIPE_CIPHER"
CRYPTOGRAPHY = "cryptography"
PYCRYPTODOME = "pycryptodome"
NAMES = (CRYPTOGRAPHY, PYCRYPTODOME)

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
    finds it by the same load(); pycryptodome's top module is imported (its ciphers
    are not): one not installed, forced or not, is its ImportError, a missing package
    (69). A forced `cryptography` that is not installed, whose package cannot be
    imported or is older than 47, is library()'s UsageError, as for seal and open; a
    forced one that can be used is not imported (its package's version only)."""
    env = os.environ if env is None else env
    chosen = name(env)
    if env.get(ENV_CIPHER, "").strip():
        if chosen == CRYPTOGRAPHY and not (_is_installed(chosen) and _recent_enough()):  # pycryptodome's: Crypto
            library()
    elif chosen == CRYPTOGRAPHY and _unusable(CRYPTOGRAPHY):
        chosen = PYCRYPTODOME
    if chosen == PYCRYPTODOME:  # named only when it is there: else the ImportError, 69 as for any command
        from .deps import require_installed

        require_installed()
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
    return major(__version__) >= 47


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
    Call it before any output. One thread at a time loads it: encpipe-backup seals
    the dump and the globals in two threads, whose first seals imported the
    library at once; under an address-space limit the two imports of
    cryptography's Rust module hung the run, both threads waiting for ever."""
    chosen = name()
    if chosen not in _usable:
        with _LOADING:
            if chosen not in _usable:
                _load(chosen)
    return _usable[chosen]


_LOADING = RLock()  # made_once() takes it again for its fallback


def _load(chosen):
    e = _unusable(chosen)
    if e is None:
        _usable[chosen] = chosen
    elif chosen == PYCRYPTODOME or os.environ.get(ENV_CIPHER, "").strip():
        raise UsageError(
            f"{ENV_CIPHER}={chosen}, but it cannot be imported: {e}",
            hint=f"pip install 'encpipe[fast]' for cryptography, or unset {ENV_CIPHER}",
        ) from None
    else:
        Pycryptodome.load()
        _usable[chosen] = PYCRYPTODOME


def made_once(made, classes, chosen=None):
    """`classes[library]()` for library `chosen` (default: the cipher's, by name(),
    not imported), kept in `made`; pycryptodome's where the other's import fails:
    the curve arithmetic of x25519.py and signing.py. A `cryptography` older than the
    cipher takes (47) is not used for it either: before 40 it lacks public_bytes_raw,
    and an X25519 or Ed25519 key ended in an internal error."""
    chosen = chosen or name()
    with _LOADING:  # one thread at a time imports a library (library(): a remote listing's threads)
        if chosen == CRYPTOGRAPHY and not _recent_enough():
            chosen = PYCRYPTODOME
        if chosen not in made:
            try:
                made[chosen] = classes[chosen]()
            except ImportError:
                if chosen == PYCRYPTODOME:  # the required library: no other to fall back to
                    raise
                made[chosen] = made_once(made, classes, PYCRYPTODOME)
        return made[chosen]


def parallel(chunk_size):
    """True when the library in use lets other threads run while it seals or opens
    a chunk of `chunk_size` bytes: pycryptodome does, and `cryptography` from
    version 50 on in its AEAD calls (not in update_into by pieces)."""
    return _CIPHERS[library()].parallel(chunk_size)


def buffers_per_chunk(chunk_size):
    """Buffers a thread holds for chunks of `chunk_size` bytes: 2 where the cipher
    seals and opens into a second one (wants_out), else 1."""
    return 2 if _CIPHERS[library()].wants_out(chunk_size) else 1


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


_CIPHERS = {CRYPTOGRAPHY: Cryptography, PYCRYPTODOME: Pycryptodome}
