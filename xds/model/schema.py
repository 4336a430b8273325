"""A tiny declarative schema: type checks, unknown-field errors and 'not supported yet' warnings.

Each object field is declared with its type and whether the translator honours it. The same table answers
`honoured_fields(kind)` for `mecha analyze`, so what we claim to support and what we check never drift.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

# (severity, field path, message, code); severity is "error" or "warning"
Report = Callable[[str, str, str, str], None]

DURATION_RE = re.compile(r"^(?:\d+(?:\.\d+)?(?:h|m|s|ms|us|µs|ns))+$")


class Spec:
    name = "value"

    def check(self, value: Any, path: str, report: Report) -> bool:
        raise NotImplementedError

    def children(self) -> Iterator[tuple[str, Spec, bool]]:
        return iter(())

    def _wrong(self, value: Any, path: str, report: Report) -> bool:
        report("error", path, f"expected {self.name}, got {type(value).__name__} {value!r:.40}", "wrong-type")
        return False


class _Scalar(Spec):
    def __init__(self, name: str, test: Callable[[Any], bool]) -> None:
        self.name, self._test = name, test

    def check(self, value: Any, path: str, report: Report) -> bool:
        return True if self._test(value) else self._wrong(value, path, report)


Str = _Scalar("a string", lambda v: isinstance(v, str))
Bool = _Scalar("a boolean", lambda v: isinstance(v, bool))
Int = _Scalar("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool))
UInt = _Scalar("a non-negative integer", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0)
Port = _Scalar(
    "a port number 1-65535", lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 < v < 65536
)
Num = _Scalar("a number", lambda v: isinstance(v, int | float) and not isinstance(v, bool))
Duration = _Scalar(
    "a duration like 1s, 250ms or 1.5s", lambda v: isinstance(v, str) and bool(DURATION_RE.match(v))
)
AnyValue = _Scalar("any value", lambda v: True)


class _Regex(Spec):
    """A string Envoy compiles as RE2: refused here when Envoy would refuse it (xds/model/regex.py)."""

    name = "an RE2 regex"

    def check(self, value: Any, path: str, report: Report) -> bool:
        from xds.model.regex import regex_problem

        if not isinstance(value, str):
            return self._wrong(value, path, report)
        if value == "*":  # istiod: a header regex "*" means "present" (no regex reaches Envoy)
            return True
        problem = regex_problem(value)
        if problem is not None:
            report("error", path, problem, "bad-regex")
            return False
        return True


Regex = _Regex()
AnyMap = _Scalar("a map", lambda v: isinstance(v, dict))


class Enum(Spec):
    def __init__(self, *values: str) -> None:
        self.values = values
        self.name = "one of " + ", ".join(values)

    def check(self, value: Any, path: str, report: Report) -> bool:
        return True if value in self.values else self._wrong(value, path, report)


class ListOf(Spec):
    def __init__(self, item: Spec) -> None:
        self.item = item
        self.name = "a list"

    def check(self, value: Any, path: str, report: Report) -> bool:
        if not isinstance(value, list):
            return self._wrong(value, path, report)
        ok = True
        for i, item in enumerate(value):
            ok = self.item.check(item, f"{path}[{i}]", report) and ok
        return ok

    def children(self) -> Iterator[tuple[str, Spec, bool]]:
        yield "[]", self.item, True


class MapOf(Spec):
    def __init__(self, value: Spec) -> None:
        self.value = value
        self.name = "a map"

    def check(self, value: Any, path: str, report: Report) -> bool:
        if not isinstance(value, dict):
            return self._wrong(value, path, report)
        ok = True
        for k, v in value.items():
            if not isinstance(k, str):
                report("error", f"{path}.{k}", "map keys must be strings", "wrong-type")
                ok = False
            ok = self.value.check(v, f"{path}.{k}", report) and ok
        return ok


@dataclass
class F:
    """A declared field: honoured=False means 'accepted by Istio, not translated by Mecha yet' (note: why);
    differs says how an honoured field behaves differently from istiod (empty = the same)."""

    spec: Spec
    honoured: bool = True
    note: str = ""
    differs: str = ""

    @property
    def status(self) -> str:
        return "unsupported" if not self.honoured else ("differs" if self.differs else "honoured")

    @property
    def why(self) -> str:
        return self.differs if self.honoured else self.note


@dataclass
class Obj(Spec):
    fields: dict[str, F]
    name: str = "a map"
    lenient: bool = False  # accept unknown keys (k8s metadata, free-form Dapr parts)
    one_of: tuple[str, ...] = field(default=())  # at most one of these may be set

    def check(self, value: Any, path: str, report: Report) -> bool:
        if not isinstance(value, dict):
            return self._wrong(value, path, report)
        ok = True
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            declared = self.fields.get(key) if isinstance(key, str) else None
            if declared is None:
                if not self.lenient:
                    report("error", where, "unknown field", "unknown-field")
                    ok = False
                continue
            if item is None:
                continue  # explicit null == unset, as in protobuf JSON
            ok = declared.spec.check(item, where, report) and ok
            if not declared.honoured:
                extra = f" ({declared.note})" if declared.note else ""
                report("warning", where, f"not supported yet: ignored{extra}", "unsupported")
        present = [k for k in self.one_of if value.get(k) is not None]
        if len(present) > 1:
            report("error", path, f"only one of {', '.join(present)} may be set", "one-of")
            ok = False
        return ok

    def children(self) -> Iterator[tuple[str, Spec, bool]]:
        for key, declared in self.fields.items():
            yield key, declared.spec, declared.honoured

    def declared(self) -> Iterator[tuple[str, F]]:
        yield from self.fields.items()


def honoured_paths(spec: Spec, prefix: str = "") -> list[tuple[str, bool]]:
    """Every field path below spec, and whether it is honoured (ignored subtrees are not expanded)."""
    out: list[tuple[str, bool]] = []
    for key, child, honoured in spec.children():
        path = f"{prefix}{key}" if key == "[]" else (f"{prefix}.{key}" if prefix else key)
        if key != "[]":
            out.append((path, honoured))
        if honoured:
            out.extend(honoured_paths(child, path))
    return out


def field_table(spec: Spec, prefix: str = "") -> list[tuple[str, F]]:
    """Every declared field path below spec with its declaration (ignored subtrees are not expanded)."""
    out: list[tuple[str, F]] = []
    if isinstance(spec, ListOf):
        return field_table(spec.item, f"{prefix}[]")
    if isinstance(spec, MapOf):
        return field_table(spec.value, f"{prefix}.*")
    if isinstance(spec, Obj):
        for key, declared in spec.declared():
            path = f"{prefix}.{key}" if prefix else key
            out.append((path, declared))
            if declared.honoured:
                out.extend(field_table(declared.spec, path))
    return out


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def camelize(value: Any, spec: Spec) -> Any:
    """Istio specs are protobuf JSON, which also accepts the proto field names (`source_labels` for
    `sourceLabels`, as old Istio samples write them). Rename such keys of declared fields; map keys (labels,
    header names) are data and stay as written. Returns value itself when nothing changes."""
    if isinstance(spec, ListOf) and isinstance(value, list):
        items = [camelize(v, spec.item) for v in value]
        return items if any(a is not b for a, b in zip(items, value, strict=True)) else value
    if isinstance(spec, MapOf) and isinstance(value, dict):
        mapped = {k: camelize(v, spec.value) for k, v in value.items()}
        return mapped if any(mapped[k] is not value[k] for k in value) else value
    if not isinstance(spec, Obj) or not isinstance(value, dict):
        return value
    out: dict[Any, Any] = {}
    changed = False
    for key, item in value.items():
        name = key
        if isinstance(key, str) and key not in spec.fields and "_" in key and _camel(key) in spec.fields:
            name = _camel(key)
            changed = changed or name not in value
        declared = spec.fields.get(name) if isinstance(name, str) else None
        new = camelize(item, declared.spec) if declared is not None else item
        changed = changed or new is not item or name != key
        if name in out:  # both spellings given: keep the camelCase one, the other is an unknown field
            out[key] = item
            continue
        out[name] = new
    return out if changed else value
