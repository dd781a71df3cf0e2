"""Finding a command as shutil.which does, without importing shutil (which imports
bz2, lzma and more: about 2 ms of each start of the scripts that look one up)."""

import os


def which(command):
    """shutil.which(command): `command` itself when it names a directory part, else
    the first of PATH's directories (the system's default path without PATH)
    holding it; either a file, not a directory, that this user may execute. None
    when there is none."""
    if os.path.dirname(command):
        return command if _runnable(command) else None
    path = os.environ.get("PATH")
    if path is None:
        try:
            path = os.confstr("CS_PATH")
        except (AttributeError, ValueError):
            path = os.defpath
    seen = set()
    for directory in (path or "").split(os.pathsep) if path else ():
        if directory not in seen:
            seen.add(directory)
            name = os.path.join(directory, command)
            if _runnable(name):
                return name
    return None


def _runnable(name):
    return os.path.exists(name) and os.access(name, os.X_OK) and not os.path.isdir(name)
