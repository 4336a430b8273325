"""metadata.generation for Gateway API documents, kept by the config store as the API server keeps it: 1
when first accepted, +1 each time the spec changes. Status reports it as observedGeneration. The loader
drops a written generation (kubectl exports carry the cluster's), so the store's own count is the one."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from xds.gatewayapi.kinds import is_gateway_api
from xds.sources.loader import RawDocument


def _generation(doc: RawDocument | None) -> int:
    meta = doc.body.get("metadata") if doc is not None else None
    found = meta.get("generation") if isinstance(meta, dict) else None
    return found if isinstance(found, int) and not isinstance(found, bool) and found > 0 else 0


def _spec(doc: RawDocument) -> str:
    return json.dumps(doc.body.get("spec"), sort_keys=True, default=str)


def with_generation(doc: RawDocument, old: RawDocument | None) -> RawDocument:
    """doc with metadata.generation set from the stored old version of it (None: first accept)."""
    meta: Any = doc.body.get("metadata")
    if not is_gateway_api(doc.api_version) or not isinstance(meta, dict):
        return doc
    previous = _generation(old)
    generation = previous if old is not None and previous and _spec(old) == _spec(doc) else previous + 1
    if meta.get("generation") == generation:
        return doc
    return replace(doc, body={**doc.body, "metadata": {**meta, "generation": generation}})
