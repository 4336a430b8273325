"""Component type ("state.redis", version "v1") -> factory. Backends register themselves on import."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from capabilities.components.spec import ComponentSpec
from capabilities.errors import DaprError

# A factory builds an (un-initialised) component from its spec; the runtime then awaits its init().
Factory = Callable[[ComponentSpec], Any]

_FACTORIES: dict[tuple[str, str], Factory] = {}

# Modules that register backends. Each block's package lists its backends here; import is lazy so a missing
# optional client library only breaks the components that need it.
BACKEND_MODULES: list[str] = []


def register(component_type: str, version: str = "v1") -> Callable[[Factory], Factory]:
    def deco(factory: Factory) -> Factory:
        _FACTORIES[(component_type, version)] = factory
        return factory

    return deco


def load_backends() -> None:
    for mod in BACKEND_MODULES:
        importlib.import_module(mod)


def create(spec: ComponentSpec) -> Any:
    load_backends()
    factory = _FACTORIES.get((spec.type, spec.version))
    if factory is None:
        known = sorted(f"{t}/{v}" for t, v in _FACTORIES)
        raise DaprError(
            "ERR_COMPONENT_TYPE_UNKNOWN",
            f"{spec.source}: component {spec.name!r}: spec.type {spec.type}/{spec.version} is not supported "
            f"(known: {', '.join(known)})",
            400,
            "INVALID_ARGUMENT",
        )
    return factory(spec)


def known_types() -> list[tuple[str, str]]:
    load_backends()
    return sorted(_FACTORIES)
