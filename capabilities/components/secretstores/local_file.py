"""secretstores.local.file: secrets from a JSON file (metadata secretsFile, nestedSeparator, multiValued)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from capabilities import registry
from capabilities.blocks.secretstores.contract import Feature, SecretNotFoundError
from capabilities.daprspec.component import ComponentSpec


def flatten(value: Any, separator: str, prefix: str = "") -> dict[str, str]:
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for key, child in value.items():
            out.update(flatten(child, separator, f"{prefix}{separator}{key}" if prefix else str(key)))
        return out
    if isinstance(value, list):
        out = {}
        for index, child in enumerate(value):
            out.update(flatten(child, separator, f"{prefix}{separator}{index}" if prefix else str(index)))
        return out
    return {prefix: value if isinstance(value, str) else json.dumps(value)}


@registry.register("secretstores.local.file")
class LocalFileSecretStore:
    def __init__(self, spec: ComponentSpec) -> None:
        self.spec = spec
        self.path = spec.metadata.get("secretsFile", "")
        self.separator = spec.metadata.get("nestedSeparator", ":") or ":"
        self.multi_valued = spec.metadata.get("multiValued", "false").lower() == "true"
        self._secrets: dict[str, dict[str, str]] = {}

    async def init(self) -> None:
        if not self.path:
            raise ValueError("metadata secretsFile is required (path to a JSON file)")
        path = Path(self.path)
        try:
            document = json.loads(path.read_text(encoding="utf-8"))  # noqa: ASYNC240 - small file, read once at init
        except OSError as exc:
            raise ValueError(f"secretsFile {path}: {exc.strerror or exc}") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"secretsFile {path}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
        if not isinstance(document, dict):
            raise ValueError(f"secretsFile {path}: expected a JSON object at the top level")
        if self.multi_valued:
            self._secrets = {
                str(k): flatten(v, self.separator) if isinstance(v, dict) else {str(k): str(v)}
                for k, v in document.items()
            }
        else:
            self._secrets = {k: {k: v} for k, v in flatten(document, self.separator).items()}

    async def close(self) -> None:
        self._secrets = {}

    def features(self) -> set[str]:
        return {Feature.MULTIPLE_KEY_VALUES_PER_SECRET} if self.multi_valued else set()

    async def get_secret(self, name: str, metadata: dict[str, str]) -> dict[str, str]:
        if name not in self._secrets:
            raise SecretNotFoundError(name)
        return dict(self._secrets[name])

    async def bulk_get_secret(self, metadata: dict[str, str]) -> dict[str, dict[str, str]]:
        return {name: dict(values) for name, values in self._secrets.items()}
