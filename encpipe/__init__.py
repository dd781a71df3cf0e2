"""encpipe: streaming authenticated encryption (AES-256-GCM) for backups.

    from encpipe import RawKey, seal, unseal
    seal(src, dst, [RawKey(key)])
    unseal(src, dst, [RawKey(key)])

`src` and `dst` are binary file-like objects; see README "File format".
"""

__version__ = "1.0.0"

from .envelope import StreamInfo, open_sealed, read_header, rewrap, seal, unseal  # noqa: E402
from .errors import (  # noqa: E402
    EncpipeError,
    InputUnavailable,
    InvalidStream,
    IOFailure,
    NoKeyConfigured,
    NoMatchingKey,
    UsageError,
)
from .slots import Passphrase, RawKey  # noqa: E402

__all__ = [
    "EncpipeError", "InputUnavailable", "InvalidStream", "IOFailure", "NoKeyConfigured",
    "NoMatchingKey", "Passphrase", "RawKey", "StreamInfo", "UsageError", "open_sealed",
    "read_header", "rewrap", "seal", "unseal",
]
