"""Helpers for the Istio migration tests: compile YAML, build one proxy's snapshot, decode it."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[1] / "config"))  # the oracle translator
from typing import Any

from translate_oracle import build_naive

from xds import types
from xds.cache.snapshot import Snapshot
from xds.diagnostics import Diagnostic, Severity
from xds.pipeline import CompileResult, SnapshotBuilder, compile_documents, load_text, resource_to_dict
from xds.proxy import ProxyIdentity


def compile_text(text: str, filename: str = "mesh.yaml", strict: bool = False) -> CompileResult:
    docs, diags = load_text(text, filename)
    result = compile_documents(docs, strict=strict)
    result.diagnostics[:0] = diags
    return result


def errors(result: CompileResult) -> list[Diagnostic]:
    return [d for d in result.diagnostics if d.severity is Severity.ERROR]


def proxy(
    proxy_id: str = "client", namespace: str = "default", labels: dict[str, str] | None = None, **extra: Any
) -> ProxyIdentity:
    meta = {"mode": "sidecar", "namespace": namespace, "outbound_port": 15001, "labels": labels or {}}
    meta.update(extra)
    return ProxyIdentity.from_node(proxy_id, {"mecha": meta})


def snapshot(text: str, who: ProxyIdentity | None = None) -> Snapshot:
    """Fast path, checked against the naive reference path (same decoded resources)."""
    result = compile_text(text)
    assert result.config is not None, [str(d) for d in errors(result)]
    who = who or proxy()
    snap = SnapshotBuilder().build(result.config, [who])[who.id]
    naive = build_naive(result.config, who)
    for short in ("CDS", "EDS", "LDS", "RDS"):
        assert decoded(snap, short) == decoded(naive, short), f"{short}: fast path differs from reference"
    return snap


def decoded(snap: Snapshot, short: str) -> dict[str, dict[str, Any]]:
    type_url = types.FROM_SHORT[short]
    return {
        name: resource_to_dict(type_url, r.body, snake_case=True)
        for name, r in sorted(snap.of(type_url).items())
    }


def routes_of(snap: Snapshot, vhost: str, config: str = "outbound") -> list[dict[str, Any]]:
    rc = decoded(snap, "RDS")[config]
    return next(v for v in rc["virtual_hosts"] if v["name"] == vhost)["routes"]


def service_entry(
    name: str, namespace: str = "default", port: int = 9080, protocol: str = "HTTP", **more: Any
) -> str:
    extra = "".join(f"\n  {k}: {v}" for k, v in more.items())
    return f"""---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  hosts: [{name}]
  resolution: STATIC
  ports: [{{number: {port}, name: p{port}, protocol: {protocol}}}]
  endpoints:
  - {{address: 10.0.0.1, labels: {{version: v1}}}}
  - {{address: 10.0.0.2, labels: {{version: v2}}}}{extra}
"""
