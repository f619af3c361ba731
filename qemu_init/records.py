"""``@record``: the part of ``dataclasses`` the configuration's records use, without its cost.

Importing ``dataclasses`` (it loads ``inspect``) and letting it write each class's methods took
~10–15 ms of every command that reads a guest's files — as much as the rest of ``status``. The
records here (model, paths, reader, registry, cmdline, keys) need only this: fields from the
class's annotations in order, defaults (``field(default_factory=…)`` too), ``frozen``, equality
and hashing over the fields that compare, a repr, ``fields`` and ``replace``. Written the way one writes a
record by hand, generic over the fields, so defining a class costs next to nothing.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, Tuple, TypeVar

    T = TypeVar("T")

_MISSING = object()


class FrozenInstanceError(AttributeError):
    """Assigning to a field of a frozen record."""


class Field:
    __slots__ = ("name", "default", "default_factory", "compare")

    def __init__(self, default: Any = _MISSING, default_factory: Any = _MISSING, compare: bool = True):
        self.name = ""
        self.default = default
        self.default_factory = default_factory
        self.compare = compare


def field(default: Any = _MISSING, default_factory: Any = _MISSING, compare: bool = True) -> Any:
    """A field with a default made anew for each record (``default_factory``), or one that
    equality and hashing leave out (``compare=False``)."""
    return Field(default, default_factory, compare)


def _init(self: Any, *args: Any, **kwargs: Any) -> None:
    fields: Tuple[Field, ...] = type(self)._record_fields
    if len(args) > len(fields):
        raise TypeError(f"{type(self).__name__}() takes {len(fields)} arguments, got {len(args)}")
    setter = object.__setattr__
    for position, f in enumerate(fields):
        if position < len(args):
            if f.name in kwargs:
                raise TypeError(f"{type(self).__name__}() got two values for {f.name!r}")
            value = args[position]
        elif f.name in kwargs:
            value = kwargs.pop(f.name)
        elif f.default is not _MISSING:
            value = f.default
        elif f.default_factory is not _MISSING:
            value = f.default_factory()
        else:
            raise TypeError(f"{type(self).__name__}() is missing {f.name!r}")
        setter(self, f.name, value)
    if kwargs:
        raise TypeError(f"{type(self).__name__}() got an unexpected argument {next(iter(kwargs))!r}")


def _key(self: Any) -> Tuple[Any, ...]:
    return tuple(getattr(self, name) for name in type(self)._record_compare)


def _eq(self: Any, other: Any) -> Any:
    if other.__class__ is not self.__class__:
        return NotImplemented
    return _key(self) == _key(other)


def _hash(self: Any) -> int:
    return hash(_key(self))


def _repr(self: Any) -> str:
    inner = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in type(self)._record_fields)
    return f"{type(self).__name__}({inner})"


def _frozen_setattr(self: Any, name: str, value: Any) -> None:
    raise FrozenInstanceError(f"cannot assign to field {name!r}")


def _frozen_delattr(self: Any, name: str) -> None:
    raise FrozenInstanceError(f"cannot delete field {name!r}")


def record(cls: Any = None, *, frozen: bool = False) -> Any:
    """Class decorator: ``@record`` or ``@record(frozen=True)``, as ``@dataclass`` is used."""

    def wrap(cls: Any) -> Any:
        fields = []
        for name in cls.__dict__.get("__annotations__", {}):
            value = cls.__dict__.get(name, _MISSING)
            f = value if isinstance(value, Field) else Field(default=value)
            f.name = name
            if isinstance(value, Field):
                if f.default is _MISSING:
                    delattr(cls, name)  # else the Field object would read as the value
                else:
                    setattr(cls, name, f.default)
            fields.append(f)
        cls._record_fields = tuple(fields)
        cls._record_compare = tuple(f.name for f in fields if f.compare)
        cls._fields = tuple(f.name for f in fields)
        cls.__init__ = _init
        cls.__repr__ = _repr
        cls.__eq__ = _eq
        if frozen:
            cls.__hash__ = _hash
            cls.__setattr__ = _frozen_setattr
            cls.__delattr__ = _frozen_delattr
        else:
            cls.__hash__ = None  # mutable and compared by value: unhashable, as dataclasses makes it
        return cls

    return wrap if cls is None else wrap(cls)


def fields(cls_or_obj: Any) -> Tuple[Field, ...]:
    """The record's fields in order, each with its ``name`` (as dataclasses.fields)."""
    return cls_or_obj._record_fields


def replace(obj: T, **changes: Any) -> T:
    """A copy of the record ``obj`` with ``changes`` (as dataclasses.replace)."""
    values: Dict[str, Any] = {name: getattr(obj, name) for name in type(obj)._fields}
    unknown = set(changes) - set(values)
    if unknown:
        raise TypeError(f"{type(obj).__name__} has no field {sorted(unknown)[0]!r}")
    values.update(changes)
    return type(obj)(**values)
