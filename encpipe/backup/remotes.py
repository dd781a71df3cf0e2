"""rclone remotes as the scripts take them: REMOTE:PATH, and rclone's connection
strings, a remote with parameters (`remote,param=value:path`) or a backend made
on the fly (`:s3,provider=AWS,env_auth=true:bucket`).

A connection string that gives a credential (`:s3,secret_access_key=...:bucket`;
in an HTTP header of its `headers`; or in a connection string one of its values
holds, `:alias,remote=':s3,secret_access_key=...:b':`) is refused before anything runs: the remote is on rclone's command line (which
`ps` shows to every user), in the JSON line, the metrics file and the systemd
unit. The error names the parameter, never its value.
"""

import os
import re

from ..errors import InputUnavailable, UsageError
from ..lazyre import Pattern
from ..textform import RAW_KEY_KIND, refuse_key_in_place, secret_kind, shown_name

# A configured remote's name, or :backend, as rclone (1.75) takes one: letters and digits
# (any script's), `_`, `.`, `+` and `@`, and `-` and spaces each followed by more (never
# first, nor a space last). Else rclone reads the whole as a local path (a `/` before the
# colon) or refuses it.
_NAME = re.compile(r":?[\w.+@]+(?:[ -]+[\w.+@-]+)*")
NO_SUCH_OBJECT = "no such object"  # Rclone.stat()'s error for a name the remote does not hold


class AnObject(InputUnavailable):
    """A location that names an object, not a folder (Rclone.list): 66, as a local DIR that is a file."""


# The parameters whose value is a secret: every option rclone's backends mark as a
# password or as sensitive that is a credential (`rclone config providers`: IsPassword,
# Sensitive), by name or by the end of it; "public_key" and the like too (harmless).
SECRET_SUFFIXES = ("pass", "password", "password2", "passphrase", "secret", "token", "key", "keys", "key_id",
                   "key_pem", "key_base64", "key_md5", "credentials", "cookies", "mnemonic", "sas_url",
                   "connection_string", "access_grant", "authorization", "session_id")
SECRET_NAMES = ("account",)  # b2's account id, azure's account name: half of a credential
# A URL's user info with a password (`url=https://user:PASS@host`, which Go's HTTP client
# sends as basic auth), in a parameter's value or, unquoted, cut into the path
_URL_PASSWORD = Pattern(r"[A-Za-z][A-Za-z0-9+.\-]*://[^/@\s:]*:[^/@\s]*@")
HINT = ("give the credential in rclone's config file (rclone config), or in the environment as "
        "RCLONE_CONFIG_<NAME>_<PARAM> (or RCLONE_<BACKEND>_<PARAM> for a :backend remote)")


def prefix_end(location):
    """Where the path of remote `location` starts (just after the colon that ends
    its name and parameters); None when it does not name an rclone remote."""
    match = _NAME.match(location)
    if not match:
        return None
    i = match.end()
    while location[i:i + 1] == ",":
        i += 1
        while i < len(location) and location[i] not in ",=:":
            i += 1
        if location[i:i + 1] == "=":
            i = _value_end(location, i + 1)
    return i + 1 if location[i:i + 1] == ":" else None


def _value_end(text, i):
    """The end of a parameter's value starting at `i`: quoted with " or ' (the quote
    doubled inside), else up to the next , or :."""
    quote = text[i:i + 1]
    if quote not in ("'", '"'):
        while i < len(text) and text[i] not in ",:":
            i += 1
        return i
    i += 1
    while i < len(text):
        if text[i] == quote:
            if text[i + 1:i + 2] != quote:
                return i + 1
            i += 1
        i += 1
    return i


def parameters(location):
    """The names of the parameters a connection string gives, in order ([] for a plain REMOTE:PATH)."""
    return [name for name, _ in given(location)]


def given(location):
    """(name, value or None) of each parameter a connection string gives, in order; a
    quoted value unquoted (its doubled quote one)."""
    end = prefix_end(location)
    if end is None:
        return []
    head = location[_NAME.match(location).end():end - 1]
    found, i = [], 0
    while head[i:i + 1] == ",":
        start = i = i + 1
        while i < len(head) and head[i] not in ",=":
            i += 1
        name, value = head[start:i], None
        if head[i:i + 1] == "=":
            at, i = i + 1, _value_end(head, i + 1)
            value = head[at:i]
            if value[:1] in ("'", '"'):
                value = value[1:-1 if value[-1:] == value[0] and len(value) > 1 else None].replace(value[0] * 2,
                                                                                                  value[0])
        found.append((name, value))
    return found


def secret_given(location, depth=0):
    """The name of the first parameter that gives a credential in connection string
    `location`, or in one a parameter's value holds (alias's or crypt's `remote`, each of
    union's space-separated `upstreams`, combine's `DIR=REMOTE:PATH`: rclone makes a
    remote of it); else None."""
    for name, value in given(location):
        if is_secret(name):
            return _shown(name)
        if value and name.strip().lower() == "headers" and (header := _secret_header(value)):
            return f"headers ({_shown(header)})"
        if value and depth < 8:  # a value may hold a connection string, which may hold one...
            for inner in _nested(value):
                if found := secret_given(inner, depth + 1):
                    return found
    return None


def _nested(value):
    """What a parameter's value may hold that rclone makes a remote of, unquoted: the value,
    each of its space-separated words (union's `upstreams`), and what follows each word's
    `=` (combine's `DIR=REMOTE:PATH`)."""
    words = value.split()
    return [inner.strip("'\"") for inner in dict.fromkeys((value, *words, *(w.partition("=")[2] for w in words)))]


def _shown(name):
    """A parameter's or header's name as an error line shows it: one that could be a value, as itself never."""
    return name if re.fullmatch(r"[A-Za-z0-9_\-]{1,64}", name) else "a parameter"


# HTTP headers that carry a credential, given in the `headers` of http, webdav...: NAME,VALUE,NAME,VALUE
SECRET_HEADERS = ("authorization", "proxy-authorization", "cookie")


def _secret_header(value):
    """The first header among `headers`' NAME,VALUE pairs whose value is a credential
    (Authorization, Cookie, or one named as a secret parameter is: X-Api-Key...), else None."""
    import csv  # here: rclone reads the list as CSV ("a,b",c is two fields); only a `headers` needs it

    try:
        names = next(csv.reader([value]), [])[::2]
    except csv.Error:  # rclone refuses such a list too; the fields as the commas cut them
        names = value.split(",")[::2]
    return next((n for n in names if n.strip().lower() in SECRET_HEADERS or is_secret(n)), None)


def is_secret(name):
    name = name.strip().lower().replace("-", "_").lstrip("_")
    return name in SECRET_NAMES or any(name == s or name.endswith("_" + s) for s in SECRET_SUFFIXES)


def is_remote(location):
    return prefix_end(location) is not None and not os.path.exists(location)  # REMOTE:PATH, or with parameters


def split_file(path):
    """(location, name) for a file given as a path or REMOTE:PATH/NAME."""
    if is_remote(path):
        end, cut = prefix_end(path), path.rfind("/")
        if cut < end:  # REMOTE:NAME (a / in a parameter's value is not a folder)
            return path[:end], path[end:]
        return path[:cut if cut > end else cut + 1], path[cut + 1:]  # REMOTE:/NAME: in the root, not REMOTE:
    return os.path.dirname(path) or ".", os.path.basename(path)


def refuse_credentials(location, option):
    """UsageError (64) when `location`, given to `option`, is a connection string
    with a credential in it (an existing local path is a path); so is a remote
    whose path has a . or .. part (refuse_dot_parts)."""
    if not location or os.path.exists(location):
        return
    refuse_dot_parts(location, option)
    if prefix_end(location) is not None and _URL_PASSWORD.search(location):  # url=https://user:PASS@host
        raise UsageError(f"{option}: the remote's connection string gives a password in a URL: a credential would "
                         "be on rclone's command line, where other users can read it", hint=HINT)
    shown = secret_given(location) or _secret_anywhere(location)
    if shown is not None:
        raise UsageError(f"{option}: the remote's connection string gives {shown}: a credential would be on "
                         "rclone's command line, where other users can read it", hint=HINT)
    end = prefix_end(location)
    if end is not None:  # a key pasted in a part of REMOTE:PATH: on rclone's command line,
        for part in _key_places(location, end):  # in every error line, and sent to the remote as a name
            refuse_key_in_place(part, option, "remote's name or path")


def _key_places(location, end):
    """The parts of REMOTE:PATH (path starting at `end`) where a key pasted is refused: an
    identity's or signing key's text form in any part; 64 hex digits (a raw key's form)
    in the remote's name and parameters, or as the path's first part, where a bucket's
    name is (S3's, GCS's, Azure's: 63 characters at most). Deeper, 64 hex digits are
    a name as well (a SHA-256 folder, a Docker volume's): refused, such a remote could
    not be used at all. The path is split at colons too, as rclone's backends may read one
    (`offsite:KEY:` and `offsite:b:IDENTITY` went on rclone's command line), and the parts
    at commas and equals signs (a parameter's value: `offsite,x=IDENTITY:b`)."""
    head, path = re.split(r"[:/,=]", location[:end]), [part for part in re.split(r"[:/]", location[end:]) if part]
    yield from head + path[:1]
    yield from (part for part in re.split(r"[:/,=]", location[end:]) if secret_kind(part) not in (None, RAW_KEY_KIND))


def _secret_anywhere(location):
    """The name of a credential parameter (`,NAME=` or `:NAME=`) anywhere in `location`,
    its path too: an unquoted value ends at the first colon, so a URL's (`endpoint=http://
    host:9000,secret_access_key=...`) made the rest the path, which no check read, and the
    secret went on rclone's command line and into every error line; else None."""
    for match in re.finditer(r"[,:]\s*([A-Za-z_][\w-]*)\s*=", location):
        if is_secret(match[1]):
            return _shown(match[1])
    return None


def refuse_dot_parts(location, option):
    """UsageError (64) for a remote whose path has a `.` or `..` part: rclone reads it
    one way to store an object and another to list one (S3: `rcat REMOTE:b/../c/NAME`
    stored the key `b/../c/NAME`, `lsjson REMOTE:b/../c` listed elsewhere), so what
    a backup stored there no listing of that path found."""
    if _dot_parts(location):
        raise UsageError(f"{option}: the remote's path has a . or .. part, which rclone stores into and lists "
                         "from in different places", hint="give the remote's path without . and .. parts")


def _dot_parts(location, depth=0):
    """Whether remote `location`'s path, or that of a remote it is made of (alias's, crypt's...
    `remote`, union's or combine's `upstreams`: rclone stored into `remote='R:b/../c'` and
    listed from elsewhere alike), has a . or .. part."""
    end = prefix_end(location)
    if end is None:
        return False
    if any(part in (".", "..") for part in location[end:].split("/")):
        return True
    for name, value in given(location):
        if value and depth < 8 and name.strip().lower() in ("remote", "upstreams"):
            if any(_dot_parts(inner, depth + 1) for inner in _nested(value)):
                return True
    return False


def refuse_local(location, option):
    """UsageError (64) when `location`, given to `option` (--to), names no rclone remote:
    it was taken for a local directory, written with none of what --dir does for one
    (the check that no other user can write it, the lock)."""
    if location and not is_remote(location):
        local = ", and is a local path" if os.path.lexists(location) else ""
        raise UsageError(f"{option}: {shown_name(location, what='REMOTE:PATH')} names no rclone remote "
                         f"(REMOTE:PATH){local}", hint="an rclone remote is REMOTE:PATH (offsite:backups, its colon "
                         "and a path in it); a local directory is --dir's")


def refuse_as_to(location, option="--to"):
    """What encpipe-backup's --to must not be: a connection string with a credential
    (refuse_credentials), a path with a . or .. part, or no rclone remote (refuse_local)."""
    refuse_credentials(location, option)
    refuse_local(location, option)
