"""secretstores.local.env: secrets from the process environment (optional metadata prefix)."""

from __future__ import annotations

import os

from capabilities import registry
from capabilities.blocks.secretstores.contract import SecretNotFoundError
from capabilities.components.spec import ComponentSpec


@registry.register("secretstores.local.env")
class LocalEnvSecretStore:
    def __init__(self, spec: ComponentSpec) -> None:
        self.spec = spec
        self.prefix = spec.metadata.get("prefix", "")

    async def init(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def features(self) -> set[str]:
        return set()

    async def get_secret(self, name: str, metadata: dict[str, str]) -> dict[str, str]:
        value = os.environ.get(self.prefix + name)
        if value is None:
            raise SecretNotFoundError(name)
        return {name: value}

    async def bulk_get_secret(self, metadata: dict[str, str]) -> dict[str, dict[str, str]]:
        return {
            key[len(self.prefix) :]: {key[len(self.prefix) :]: value}
            for key, value in os.environ.items()
            if key.startswith(self.prefix) and len(key) > len(self.prefix)
        }
