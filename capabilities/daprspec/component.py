"""A Dapr Component resource (dapr.io/v1alpha1), with secretKeyRefs already resolved.

Here, with the other Dapr documents, rather than in capabilities/components (the backends): the config
reader, the registry, the runtime and the building blocks all read it, and none of them should import the
backends' package to do so (components implement the blocks' contracts, not the other way round)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ComponentSpec:
    name: str
    type: str  # e.g. "state.redis", "pubsub.nats", "bindings.cron"
    version: str = "v1"
    namespace: str = "default"
    metadata: dict[str, str] = field(default_factory=dict)
    scopes: tuple[str, ...] = ()
    init_timeout_s: float = 5.0
    ignore_errors: bool = False
    source: str = "<inline>"  # file (or API push) it came from, for error messages

    @property
    def block(self) -> str:
        """The building block: the part of type before the first dot (state, pubsub, bindings, ...)."""
        return self.type.split(".", 1)[0]

    def scoped_to(self, app_id: str) -> bool:
        return not self.scopes or app_id in self.scopes
