"""bindings.localstorage: files under `rootPath` (Dapr's bindings.localstorage).

Operations: create (metadata fileName, default a uuid), get, list, delete. A fileName that resolves
outside rootPath (`../x`, absolute paths, symlinks out) is refused.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from pathlib import Path

from capabilities.blocks.bindings.contract import (
    BindingBackendError,
    BindingRequestError,
    Feature,
    InvokeRequest,
    InvokeResponse,
)
from capabilities.blocks.pubsub import metadata as md
from capabilities.daprspec.component import ComponentSpec
from capabilities.registry import register


@register("bindings.localstorage")
class LocalStorageBinding:
    def __init__(self, spec: ComponentSpec):
        self.spec = spec
        self.root = Path(md.get_str(spec, "rootPath", required=True)).resolve()

    async def init(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BindingBackendError(f"rootPath {self.root}: {exc.strerror}") from exc

    def features(self) -> set[str]:
        return {Feature.OUTPUT}

    def operations(self) -> list[str]:
        return ["create", "get", "list", "delete"]

    def _path(self, name: str) -> Path:
        if not name:
            raise BindingRequestError("metadata fileName is required")
        candidate = (self.root / name).resolve()
        if candidate != self.root and self.root not in candidate.parents:
            raise BindingRequestError(f"fileName {name!r} resolves outside rootPath {self.root}: refused")
        return candidate

    async def invoke(self, request: InvokeRequest) -> InvokeResponse:
        op = request.operation
        if op == "create":
            name = request.metadata.get("fileName") or str(uuid.uuid4())
            path = self._path(name)
            await asyncio.to_thread(self._write, path, request.data)
            return InvokeResponse(
                json.dumps({"fileName": name}).encode(), {"fileName": name}, "application/json"
            )
        if op == "list":
            names = await asyncio.to_thread(self._list)
            return InvokeResponse(json.dumps(names).encode(), {}, "application/json")
        path = self._path(request.metadata.get("fileName", ""))
        if not path.is_file():
            raise BindingRequestError(f"file {request.metadata.get('fileName')!r} not found")
        if op == "get":
            return InvokeResponse(await asyncio.to_thread(path.read_bytes), {}, "application/octet-stream")
        await asyncio.to_thread(path.unlink)
        return InvokeResponse()

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def _list(self) -> list[str]:
        out = []
        for dirpath, _dirs, files in os.walk(self.root):
            for file in files:
                out.append(str((Path(dirpath) / file).relative_to(self.root)))
        return sorted(out)

    async def close(self) -> None:
        return None
