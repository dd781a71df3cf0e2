"""Compact records for what is kept per listed file (a location may hold many)."""

from dataclasses import dataclass, fields


def slotted(cls):
    """A dataclass again, its fields in __slots__ rather than a per-object __dict__:
    as dataclass(slots=True) makes on Python 3.10 and later (the defaults stay in
    __init__). About a third of the memory per object, none of the behaviour."""
    body = dict(cls.__dict__)
    names = tuple(f.name for f in fields(cls))
    for name in (*names, "__dict__", "__weakref__"):
        body.pop(name, None)
    body["__slots__"] = names
    return type(cls)(cls.__name__, cls.__bases__, body)


@slotted
@dataclass
class Item:
    """A file as a location (localstore.Local, rclonestore.Rclone) lists it."""

    name: str
    size: int = None
    error: str = None  # why it cannot be read as a regular file
    unreadable: bool = False
    identity: tuple = None  # (st_dev, st_ino) of a local regular file
    link: bool = False  # a symbolic link to a file: listed, never removed
    mtime: float = None  # a local file's modification time (only its owner can set it back)
    uid: int = None  # a local file's owner
