"""Component type ("state.redis", version "v1") -> factory. Backends register themselves on import.

`create()` imports only the backend module a component needs (the static table BACKEND_MODULES): importing
every backend (and with them redis, nats, aio_pika, asyncpg, aiomqtt, croniter...) costs about a second of
sidecar start-up. A type missing from the table falls back to importing every backend module.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from capabilities.daprspec.component import ComponentSpec
from capabilities.errors import DaprError

if TYPE_CHECKING:
    from capabilities.blocks.component import Component

# A factory builds an (un-initialised) component from its spec; the runtime then awaits its init().
Factory = Callable[[ComponentSpec], "Component"]
FactoryT = TypeVar("FactoryT", bound=Factory)  # @register keeps the decorated class's own type

_FACTORIES: dict[tuple[str, str], Factory] = {}

_loaded = False

_ROOT = "capabilities.components."
# type -> module holding its @register; keep in sync with capabilities/components (a test checks it).
BACKEND_MODULES: dict[str, str] = {
    "bindings.cron": _ROOT + "bindings.cron",
    "bindings.http": _ROOT + "bindings.http",
    "bindings.localstorage": _ROOT + "bindings.localstorage",
    "bindings.mqtt3": _ROOT + "bindings.mqtt3",
    "bindings.postgresql": _ROOT + "bindings.postgresql",
    "bindings.rabbitmq": _ROOT + "bindings.rabbitmq",
    "configuration.in-memory": _ROOT + "configuration.in_memory",
    "configuration.postgresql": _ROOT + "configuration.postgresql",
    "configuration.redis": _ROOT + "configuration.redis",
    "lock.in-memory": _ROOT + "lock.in_memory",
    "lock.postgresql": _ROOT + "lock.postgresql",
    "lock.redis": _ROOT + "lock.redis",
    "pubsub.in-memory": _ROOT + "pubsub.in_memory",
    "pubsub.jetstream": _ROOT + "pubsub.jetstream",
    "pubsub.mqtt3": _ROOT + "pubsub.mqtt3",
    "pubsub.rabbitmq": _ROOT + "pubsub.rabbitmq",
    "pubsub.redis": _ROOT + "pubsub.redis",
    "secretstores.local.env": _ROOT + "secretstores.local_env",
    "secretstores.local.file": _ROOT + "secretstores.local_file",
    "sequencer.in-memory": _ROOT + "sequencer.in_memory",
    "sequencer.postgresql": _ROOT + "sequencer.postgresql",
    "sequencer.redis": _ROOT + "sequencer.redis",
    "state.in-memory": _ROOT + "state.in_memory",
    "state.postgresql": _ROOT + "state.postgresql",
    "state.redis": _ROOT + "state.redis",
    "state.sqlite": _ROOT + "state.sqlite",
}


def register(component_type: str, version: str = "v1") -> Callable[[FactoryT], FactoryT]:
    def deco(factory: FactoryT) -> FactoryT:
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


def _load_backend(component_type: str) -> None:
    """Import the one module that registers `component_type` (all of them for a type not in the table)."""
    module = BACKEND_MODULES.get(component_type)
    if module is None:
        load_backends()
        return
    try:
        importlib.import_module(module)
    except ImportError as exc:  # the backend's client library is not installed
        raise DaprError(
            "ERR_COMPONENT_TYPE_UNKNOWN",
            f"component type {component_type}: its module {module} cannot be imported: {exc}",
            400,
            "INVALID_ARGUMENT",
        ) from exc


def create(spec: ComponentSpec) -> Component:
    factory = _FACTORIES.get((spec.type, spec.version))
    if factory is None:
        _load_backend(spec.type)
        factory = _FACTORIES.get((spec.type, spec.version))
    if factory is None:
        load_backends()  # the error names every known type
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
