"""Checksummed text forms of 32-byte keys: a prefix, then base32 (RFC 4648, no
padding) of key || SHA-256(label || key)[:4]. Public forms are lower case,
secret forms upper case; the characters after the prefix may be in either
case (ASCII only), the prefix must be exact, and padding or non-zero unused bits are
refused; surrounding ASCII white space is ignored. Also what a secret typed in
the wrong place looks like: a key where a command or a name belongs
(secret_kind), a key or passphrase where a file's path belongs (shown_name).
"""

import os
import re

from .errors import UsageError
from .lazyre import Pattern

KEY_LEN = 32
_CHECK_LEN = 4
ASCII_SPACE = " \t\r\n\v\f"  # the white space around a text form that is ignored
# The secret forms' prefixes (key files hold them among raw keys: keys.py tells them apart).
IDENTITY_PREFIX = "ENCPIPE-SECRET-KEY-"
SIGNING_PREFIX = "ENCPIPE-SIGNING-KEY-"


# a secret pasted where a public form belongs: what it is, by its prefix (any case), or a raw key's 64 hex digits
_SECRET_FORMS = ((IDENTITY_PREFIX, "an X25519 identity"), (SIGNING_PREFIX, "a signing key"))
_RAW_KEY = Pattern(r"[0-9a-fA-F]{64}")
RAW_KEY_KIND = "a raw key"
_LINE_END = Pattern(r"\r\n|\r|\n")
_SPACES = Pattern(f"[{ASCII_SPACE}]+")
# what a value given for a secret file's path may be instead: a key or passphrase typed in its place
_SECRET_LIKE = Pattern(r"[0-9a-f]{32,}|encpipe-secret-key-.*|encpipe-signing-key-.*|encpipe1.*|.*\s.*", re.I | re.S)


def nth(option, index, count):
    """`option` as an error line names its `index`-th value (from 1) of `count`: with
    its place when it was given more than once (`--recipient (2nd of 3)`)."""
    if count < 2:
        return option
    suffix = "th" if 10 <= index % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(index % 10, "th")
    return f"{option} ({index}{suffix} of {count})"


def lines(text):
    """(line number, line) of each line of a key, recipient or signer file that is
    neither blank nor a comment (# its first character that is not white space).
    Lines end at LF, CR LF or CR; white space is ASCII_SPACE, and is stripped."""
    for number, line in enumerate(_LINE_END.split(text), 1):
        line = line.strip(ASCII_SPACE)
        if line and not line.startswith("#"):
            yield number, line


def words(line):
    """A line cut at ASCII white space (signer files list several keys on a line)."""
    return _SPACES.split(line.strip(ASCII_SPACE))


def checksum(label, key):
    import hashlib  # here: OpenSSL's libcrypto loads in 2 ms, which a command without a text form spares

    return hashlib.sha256(label + key).digest()[:_CHECK_LEN]


def encode(prefix, label, key, upper):
    import base64  # here, as decode's: a raw key's hex needs none

    text = base64.b32encode(key + checksum(label, key)).decode("ascii").rstrip("=")
    return prefix + (text.upper() if upper else text.lower())


def secret_kind(text):
    """What secret key `text` is, to say so without showing it ("an X25519 identity",
    "a signing key", RAW_KEY_KIND), or None when it is not one."""
    text = text.strip(ASCII_SPACE)
    kind = next((name for prefix, name in _SECRET_FORMS if text[:len(prefix)].upper() == prefix), None)
    return kind or (RAW_KEY_KIND if _RAW_KEY.fullmatch(text) else None)


def may_be_secret(path):
    """True when `path`, given for a secret file, names no file and may be the secret
    typed in its place: it looks like one, or is a bare word (no / and no .)."""
    return not os.path.lexists(path) and bool(_SECRET_LIKE.fullmatch(path) or not ("/" in path or "." in path))


def shown_name(path, prompt=False, secret_file=False, what="FILE"):
    """`path` for a message, unless it names no file and may be a secret typed in
    its place: it looks like one, or -p (which takes no value) was given too, or
    (a `secret_file`'s) it is a bare word (may_be_secret). Hidden, it is `what`
    (FILE, DIR, PATH: the argument's name in the usage) and why it is not shown."""
    hidden = not os.path.lexists(path) and (prompt or _SECRET_LIKE.fullmatch(path))
    if hidden or (secret_file and may_be_secret(path)):
        return f"{what} (its name not shown: it names no file and may be a key or passphrase)"
    return path


VALUE_NOT_SHOWN = "the value given (not shown: it may be a key or passphrase)"
SHOWN_VALUE_MAX = 20  # characters of a bad value an error shows; a longer one may be a passphrase
_WORDS = Pattern(r".*\S\s+\S.*", re.S)  # words with white space between them: a passphrase's look


def hidden_value(text):
    """What an error says instead of `text`, a bad value of an option or a setting (a
    number, a choice) that may be a secret typed in its place, else None: a key is
    said for what it is (secret_kind: `a raw key (a secret, not shown)`); a value
    longer than SHOWN_VALUE_MAX characters, or words with white space between them
    (a passphrase), is VALUE_NOT_SHOWN. A space around one word (`1 `) is shown."""
    if not isinstance(text, str):  # no value given (None): nothing to hide
        return None
    kind = secret_kind(text)
    if kind:
        return f"{kind} (a secret, not shown)"
    return VALUE_NOT_SHOWN if len(text) > SHOWN_VALUE_MAX or _WORDS.fullmatch(text) else None


def shown_value(text):
    """A bad value of an option or a setting as its usage error shows it: quoted, unless
    it may be a secret (hidden_value)."""
    return hidden_value(text) or f"'{text}'"  # quoted, not repr(): the message's escaping (shown.printable) is once


def refuse_key_in_place(value, source, what="command"):
    """UsageError (64), the value not shown, when `value`, given where a `what` belongs
    (a key command, a database's name), is a key pasted in its place: sh would say
    `KEY: not found`, a unit file or the metrics file (readable by every user) would
    hold it. No database's name is one: a key is longer than its 63 bytes."""
    kind = secret_kind(value)
    if kind:
        raise UsageError(f"{source}: {kind} (a secret, not shown), not a {what}",
                         hint="give a key in a file: --key-file FILE, --sign-key FILE")


def refuse_key_as_new_path(path, source, what="file name"):
    """refuse_key_in_place for `path`, a file or directory a command would make
    (-o FILE, --metrics-file, encpipe-backup's DIR), when nothing is there yet: a
    key pasted in its place would name it, for any user who can list its directory
    to read. One that is there already is no new leak."""
    if path and not os.path.lexists(path):
        refuse_key_in_place(path, source, what)


NAME_MAX_BYTES = 63  # PostgreSQL's NAMEDATALEN - 1: no database's name is longer


def refuse_key_as_database(name, source):
    """UsageError (64), not shown, for a key given as a database's name (longer than
    any: 63 bytes): it would be in error lines, a monitor's status and the metrics
    file, which every user may read."""
    if len(name.encode("utf-8", "surrogateescape")) > NAME_MAX_BYTES:
        refuse_key_in_place(name, source, "database name")


def refuse_secret(text, source, what):
    """UsageError (64) when `text`, given where a public form (`what`: "public key",
    "verify key") belongs, is a secret key: the value not shown, the hint saying
    where the public form comes from. The scripts call it before any child is given
    the value on its command line."""
    kind = secret_kind(text)
    if kind and kind != RAW_KEY_KIND:
        raise UsageError(f"{source}: a secret key ({kind}, not shown), not a {what}",
                         hint=f"give the {what} that `encpipe pubkey FILE` prints for the file holding its "
                              f"{'identity' if what == 'public key' else 'signing key'}")
    if kind:
        raise UsageError(f"{source}: a raw key (a secret, not shown), not a {what}",
                         hint=f"a raw key has no {what}: give it in a key file")


def decode(text, prefix, label, what, source):
    """The key in `text`, or UsageError naming what is wrong with it."""
    text = text.strip(ASCII_SPACE)
    if prefix.islower():  # a public form: a secret pasted in its place is said so
        refuse_secret(text, source, what)
    if not text.startswith(prefix):
        raise UsageError(f"{source}: not an encpipe {what} (it must start with {prefix})")
    body = text[len(prefix) :]
    if not body.isascii():  # Unicode upper-casing would spell I and S more ways than one
        raise UsageError(f"{source}: malformed {what}: not base32 (a character that is not ASCII)")
    body = body.upper()
    import base64  # here: a command that reads no key in a text form (a raw key's hex) spares it

    try:
        raw = base64.b32decode(body + "=" * (-len(body) % 8))
    except ValueError:
        raise UsageError(f"{source}: malformed {what}: not base32") from None
    if len(raw) != KEY_LEN + _CHECK_LEN:
        raise UsageError(f"{source}: malformed {what}: wrong length")
    if base64.b32encode(raw).decode("ascii").rstrip("=") != body:
        raise UsageError(f"{source}: malformed {what}: not in canonical form (mistyped last character?)")
    key, check = raw[:KEY_LEN], raw[KEY_LEN:]
    import hmac

    if not hmac.compare_digest(check, checksum(label, key)):
        raise UsageError(f"{source}: malformed {what}: checksum mismatch (mistyped?)")
    return key


# (prefix, what it is, what it is not, its use, the keygen option whose file holds the secret)
_PUBLIC_FORMS = (("encpipesign1", "a verify key", "a signing key", "only checks signatures (--signer, --signer-file)",
                  "the signing key", "--sign"),
                 ("encpipe1", "a public key", "a secret key", "only seals (--recipient, --recipient-file)",
                  "the identity", "--x25519"))


def refuse_public(line, where):
    """UsageError (64) for a public key where a secret one belongs, said as such
    (it is public: its start is shown), not as a mistyped raw key."""
    for prefix, what, wanted, use, secret, flag in _PUBLIC_FORMS:
        if line.lower().startswith(prefix) and len(line) > len(prefix) + 40:
            raise UsageError(f"{where}: {what} ({line[:len(prefix) + 4]}...), not {wanted}",
                             hint=f"{what} {use}; {secret} is in the file `encpipe keygen {flag} -o FILE` wrote")
