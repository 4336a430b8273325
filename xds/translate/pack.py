"""Serialization helpers: the betterproto2 cached-validator patch, the memo, and byte-level concatenation.

betterproto2 0.9.1 builds a fresh pydantic SchemaValidator on every bytes()/parse()/to_dict() (1-2 ms per
Cluster, envoy-facts.md §4). The patch below caches one validator per message class: same checks, ~7x
faster. It is applied once, on import of this module (every translate module imports it).
"""

from __future__ import annotations

import hashlib
import operator
from collections.abc import Callable, Hashable, Sequence
from functools import cache
from typing import Any, TypeVar

import betterproto2
import pydantic_core

from xds.types import Resource

T = TypeVar("T")

_validators: dict[type, Any] = {}
_is_pydantic: dict[type, bool] = {}
_original_is_pydantic = betterproto2.Message._is_pydantic


def _cached_is_pydantic(self: betterproto2.Message) -> bool:
    cls = type(self)
    known = _is_pydantic.get(cls)
    if known is None:
        known = _is_pydantic[cls] = _original_is_pydantic(self)
    return known


def _cached_validate(self: betterproto2.Message) -> None:
    cls = type(self)
    validator = _validators.get(cls)
    if validator is None:
        schema = cls.__pydantic_core_schema__  # type: ignore[attr-defined]
        validator = _validators[cls] = pydantic_core.SchemaValidator(schema)
    values = self.__dict__.copy()
    values.pop("_unknown_fields", None)
    validator.validate_python(values)


_IMMUTABLE = (type(None), bool, int, float, str, bytes)
_EMPTY_LIST = object()  # marker: the default is a fresh empty list
_defaults: dict[tuple[type, str], Any] = {}
_original_default = betterproto2.Message._get_field_default


def _cached_field_default(self: betterproto2.Message, field_name: str) -> Any:
    """The original wraps every call in warnings.catch_warnings() (~10 us, dozens per message).

    Immutable defaults (None, 0, "", enums) are cached per class; lists/messages still get a fresh value.
    """
    key = (type(self), field_name)
    try:
        value = _defaults[key]
    except KeyError:
        value = _original_default(self, field_name)
        if isinstance(value, _IMMUTABLE):
            _defaults[key] = value
        elif type(value) is list and not value:
            _defaults[key] = _EMPTY_LIST
        return value
    return [] if value is _EMPTY_LIST else value


def install() -> None:
    """Idempotent; keeps validation on (a bad assignment still fails at serialization)."""
    betterproto2.Message._validate = _cached_validate  # type: ignore[method-assign]
    betterproto2.Message._is_pydantic = _cached_is_pydantic  # type: ignore[method-assign]
    betterproto2.Message._get_field_default = _cached_field_default  # type: ignore[method-assign]


install()


def resource(type_url: str, name: str, msg: betterproto2.Message) -> Resource:
    return Resource.make(type_url, name, bytes(msg))


# ---- protobuf wire helpers: a repeated message field can be appended as pre-serialized bytes -----------


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        bits = value & 0x7F
        value >>= 7
        if value:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


@cache
def field_number(cls: type[betterproto2.Message], name: str) -> int:
    """The proto field number of a dataclass field (read from betterproto2's metadata, never hard-coded)."""
    # betterproto2 types its classproperty's owner as type[Never]: any class argument is refused
    return int(cls._betterproto.meta_by_field_name[name].number)  # type: ignore[arg-type]


def field_bytes(field_number: int, body: bytes) -> bytes:
    """One length-delimited field (wire type 2) holding body."""
    return varint(field_number << 3 | 2) + varint(len(body)) + body


def repeated_field(field_number: int, bodies: Sequence[bytes]) -> bytes:
    """Concatenated encodings of a repeated message field: equal to serializing the list in the message."""
    tag = varint(field_number << 3 | 2)
    return b"".join(tag + varint(len(b)) + b for b in bodies)


def digest(*parts: bytes) -> str:
    h = hashlib.blake2b(digest_size=8)
    for p in parts:
        h.update(p)
    return h.hexdigest()


# ---- memo ---------------------------------------------------------------------------------------------


def _same(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    """Identity first (unchanged documents yield the very same IR objects), deep equality as fallback."""
    if len(a) != len(b):
        return False
    if all(map(operator.is_, a, b)):
        return True
    return all(x is y or x == y for x, y in zip(a, b, strict=True))


class Memo:
    """name-keyed memo: slot -> (inputs, value). A value is reused when its IR inputs are unchanged.

    Bounded to the live set: `prune()` drops every slot not used since the last `start()`.
    """

    def __init__(self) -> None:
        self._slots: dict[Hashable, tuple[tuple[Any, ...], Any]] = {}
        self._used: set[Hashable] = set()
        self._children: dict[Hashable, frozenset[Hashable]] = {}  # group slot -> slots its build used
        self._recording: list[set[Hashable]] = []
        self.hits = 0
        self.misses = 0

    def get(self, slot: Hashable, inputs: tuple[Any, ...], build: Callable[[], T]) -> T:
        self._used.add(slot)
        if self._recording:
            self._recording[-1].add(slot)
        found = self._slots.get(slot)
        if found is not None and _same(found[0], inputs):
            self.hits += 1
            return found[1]  # type: ignore[no-any-return]
        self.misses += 1
        value = build()
        self._slots[slot] = (inputs, value)
        return value

    def group(self, slot: Hashable, inputs: tuple[Any, ...], build: Callable[[], T]) -> T:
        """get() for a value assembled from many other slots (a walk over every service): when its inputs
        are unchanged the walk is skipped and the slots it used are kept alive for the next miss."""
        found = self._slots.get(slot)
        if found is not None and _same(found[0], inputs):
            children = self._children.get(slot, frozenset())
            self._used.add(slot)
            self._used.update(children)
            if self._recording:
                self._recording[-1].update(children)
                self._recording[-1].add(slot)
            self.hits += 1
            return found[1]  # type: ignore[no-any-return]
        self._recording.append(set())
        try:
            value = self.get(slot, inputs, build)
        finally:
            used = self._recording.pop()
        self._children[slot] = frozenset(used)
        if self._recording:
            self._recording[-1].update(used)
        return value

    def start(self) -> None:
        self._used = set()

    def prune(self) -> None:
        if len(self._used) == len(self._slots):
            return  # every slot was used (get() stores each slot it marks): nothing to drop
        for slot in [s for s in self._slots if s not in self._used]:
            del self._slots[slot]
            self._children.pop(slot, None)

    def __len__(self) -> int:
        return len(self._slots)


def compose(msg: betterproto2.Message, **raw: bytes | Sequence[bytes]) -> bytes:
    """bytes(msg) plus message fields given pre-serialized (a list for a repeated field).

    Protobuf allows fields in any order, so this decodes to exactly the message with those fields set;
    shared sub-messages (a retry policy, a route action) are then serialized once instead of per use.
    """
    cls = type(msg)
    out = [bytes(msg)]
    for name, value in raw.items():
        number = field_number(cls, name)
        if isinstance(value, bytes | bytearray):
            out.append(field_bytes(number, bytes(value)))
        else:
            out.append(repeated_field(number, value))
    return b"".join(out)


Scalar = str | bytes | bool | int


def encode(cls: type[betterproto2.Message], **fields: Scalar | Sequence[Scalar] | None) -> bytes:
    """Hand-encode a message from strings, pre-serialized sub-messages (bytes), bools and non-negative ints.

    For the hot, simple shells (route names, matches, domains) where building a pydantic dataclass per
    value costs ~30 us. Field numbers come from betterproto2's metadata. Zero/False/None are omitted, as
    proto3 does; do not use it for wrapper types (BoolValue, UInt32Value), which need explicit presence.
    """
    out: list[bytes] = []
    for name, value in fields.items():
        if value is None:
            continue
        number = field_number(cls, name)
        for v in value if isinstance(value, list | tuple) else (value,):
            if isinstance(v, bool | int):
                if v:
                    out.append(varint(number << 3) + varint(int(v)))
            elif isinstance(v, str):
                out.append(field_bytes(number, v.encode()))
            else:
                out.append(field_bytes(number, v))
    return b"".join(out)
