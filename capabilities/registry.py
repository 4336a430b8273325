"""Component type ("state.redis", version "v1") -> factory. Backends register themselves on import."""

from __future__ import annotations

import importlib
import logging
import pkgutil
from collections.abc import Callable
from typing import Any

from capabilities.components.spec import ComponentSpec
from capabilities.errors import DaprError

# A factory builds an (un-initialised) component from its spec; the runtime then awaits its init().
Factory = Callable[[ComponentSpec], Any]

_FACTORIES: dict[tuple[str, str], Factory] = {}

_loaded = False


def register(component_type: str, version: str = "v1") -> Callable[[Factory], Factory]:
    def deco(factory: Factory) -> Factory:
        _FACTORIES[(component_type, version)] = factory
        return factory

    return deco


def load_backends() -> None:
    """Import every module under capabilities.components so each backend's @register runs.

    Backends live in capabilities/components/<block>/<backend>.py (or a package); a backend whose client lib
    is missing fails to import and is reported, without hiding the others.
    """
    global _loaded
    if _loaded:
        return
    _loaded = True
    import capabilities.components as root

    for info in pkgutil.walk_packages(root.__path__, root.__name__ + "."):
        try:
            importlib.import_module(info.name)
        except ImportError as exc:  # an optional client library is not installed
            logging.getLogger(__name__).warning("component module %s not loaded: %s", info.name, exc)


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
