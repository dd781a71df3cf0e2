"""encpipe: streaming authenticated encryption (AES-256-GCM) for backups.

    from encpipe import RawKey, seal, unseal
    seal(src, dst, [RawKey(key)])
    unseal(src, dst, [RawKey(key)])

`src` and `dst` are binary file-like objects; see README "File format".
The names below are imported on first use, so that the command line starts
without loading the cryptography it does not need yet.
"""

__version__ = "1.0.0"

_EXPORTS = {
    "StreamInfo": "envelope",
    "open_sealed": "envelope",
    "read_header": "envelope",
    "rewrap": "envelope",
    "seal": "envelope",
    "unseal": "envelope",
    "EncpipeError": "errors",
    "InputUnavailable": "errors",
    "InvalidStream": "errors",
    "IOFailure": "errors",
    "NoKeyConfigured": "errors",
    "NoMatchingKey": "errors",
    "UsageError": "errors",
    "Passphrase": "slots",
    "RawKey": "slots",
    "X25519Identity": "x25519",
    "X25519Recipient": "x25519",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'encpipe' has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
