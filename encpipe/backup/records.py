"""Compact records for what is kept per listed file (a location may hold many), and
the record classes of the backup modules.

`record` makes what @dataclass(slots=True) makes (and frozen=True, for the
hashable ones) without importing dataclasses, which imports inspect: about 8 ms
at every script's start, more than the classes ever cost."""


class FrozenRecord(AttributeError):
    """A field of a frozen record was assigned (as dataclasses.FrozenInstanceError)."""


class Factory:
    """A field's default made afresh for each record (a list: each its own)."""

    def __init__(self, make):
        self.make = make


_MISSING = object()


def record(cls=None, *, frozen=False):
    """`cls` again with its annotated fields, in order, in __slots__ (no __dict__ per
    object: about a third of the memory), the class's values as their defaults, and
    __init__, __repr__ and __eq__ as a dataclass has them; frozen: no field assigned
    after __init__, and a __hash__ (else none: unhashable, as a dataclass)."""
    if cls is None:
        return lambda c: record(c, frozen=frozen)
    names = tuple(cls.__dict__.get("__annotations__", {}))
    defaults = {name: cls.__dict__[name] for name in names if name in cls.__dict__}
    body = {k: v for k, v in cls.__dict__.items() if k not in (*names, "__dict__", "__weakref__")}
    params, lines, scope = [], [], {"_MISSING": _MISSING, "_set": object.__setattr__}
    for name in names:
        if name in defaults:
            scope[f"_d_{name}"] = defaults[name]
            params.append(f"{name}=_MISSING" if isinstance(defaults[name], Factory) else f"{name}=_d_{name}")
            if isinstance(defaults[name], Factory):
                lines.append(f" if {name} is _MISSING: {name} = _d_{name}.make()")
        elif params and "=" in params[-1]:
            raise TypeError(f"non-default field {name!r} follows a default one")
        else:
            params.append(name)
        lines.append(f" _set(self, {name!r}, {name})")
    exec(f"def __init__(self, {', '.join(params)}):\n" + ("\n".join(lines) or " pass"), scope)
    body.update(__slots__=names, __init__=scope["__init__"], __repr__=_repr, __eq__=_eq,
                __hash__=_hash if frozen else None, _fields=names)
    if frozen:
        body.update(__setattr__=_frozen, __delattr__=_frozen)
    return type(cls)(cls.__name__, cls.__bases__, body)


def _values(obj):
    return tuple(getattr(obj, name) for name in obj._fields)


def _repr(self):
    return f"{type(self).__qualname__}({', '.join(f'{n}={getattr(self, n)!r}' for n in self._fields)})"


def _eq(self, other):
    return _values(self) == _values(other) if other.__class__ is self.__class__ else NotImplemented


def _hash(self):
    return hash(_values(self))


def _frozen(self, name, *value):
    raise FrozenRecord(f"cannot assign to field {name!r}")


def replace(obj, **changes):
    """A copy of record `obj` with `changes` (as dataclasses.replace)."""
    unknown = set(changes) - set(obj._fields)
    if unknown:
        raise TypeError(f"{type(obj).__name__} has no field {sorted(unknown)[0]!r}")
    return type(obj)(**{name: changes.get(name, getattr(obj, name)) for name in obj._fields})


@record
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
