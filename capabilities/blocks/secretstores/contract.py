"""Secret store contract (components-contrib secretstores.SecretStore)."""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol, runtime_checkable


class Feature(StrEnum):
    MULTIPLE_KEY_VALUES_PER_SECRET = "MULTIPLE_KEY_VALUES_PER_SECRET"


class SecretNotFoundError(KeyError):
    """The store has no secret with that name (mapped to ERR_SECRET_GET with the store's name)."""

    def __str__(self) -> str:
        return f"secret {self.args[0]} not found"


@runtime_checkable
class SecretStore(Protocol):
    async def init(self) -> None: ...
    async def close(self) -> None: ...
    def features(self) -> set[str]: ...

    async def get_secret(self, name: str, metadata: dict[str, str]) -> dict[str, str]:
        """The key/value pairs of one secret; raises SecretNotFoundError."""
        ...

    async def bulk_get_secret(self, metadata: dict[str, str]) -> dict[str, dict[str, str]]: ...
