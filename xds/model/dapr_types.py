"""Dapr Component types the capability service implements, as (spec.type, spec.version).

The control plane does not import `capabilities`; this copy is checked against its registry by
tests/xds/config/test_cfg_refusals.py, so the two cannot drift.
"""

from __future__ import annotations

DEFAULT_COMPONENT_VERSION = "v1"

KNOWN_COMPONENT_TYPES: frozenset[tuple[str, str]] = frozenset(
    (t, DEFAULT_COMPONENT_VERSION)
    for t in (
        "bindings.cron",
        "bindings.http",
        "bindings.localstorage",
        "bindings.mqtt3",
        "bindings.postgresql",
        "bindings.rabbitmq",
        "configuration.in-memory",
        "configuration.postgresql",
        "configuration.redis",
        "lock.in-memory",
        "lock.postgresql",
        "lock.redis",
        "pubsub.in-memory",
        "pubsub.jetstream",
        "pubsub.mqtt3",
        "pubsub.rabbitmq",
        "pubsub.redis",
        "secretstores.local.env",
        "secretstores.local.file",
        "sequencer.in-memory",
        "sequencer.postgresql",
        "sequencer.redis",
        "state.in-memory",
        "state.postgresql",
        "state.redis",
        "state.sqlite",
    )
)


def component_type_problem(component_type: str, version: str) -> str | None:
    """Why a Component's type is refused (the capability service could never build it), or None."""
    import difflib

    key = (component_type, version or DEFAULT_COMPONENT_VERSION)
    if key in KNOWN_COMPONENT_TYPES:
        return None
    names = sorted({t for t, _ in KNOWN_COMPONENT_TYPES})
    if component_type in names:
        versions = sorted(v for t, v in KNOWN_COMPONENT_TYPES if t == component_type)
        return f"{component_type} has no version {key[1]!r} (supported: {', '.join(versions)})"
    close = difflib.get_close_matches(component_type, names, n=1)
    hint = f"did you mean {close[0]}?" if close else f"supported: {', '.join(names)}"
    return f"component type {component_type!r} is not supported ({hint})"
