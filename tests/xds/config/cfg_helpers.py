"""Shared helpers: compile YAML text, build snapshots, decode resources."""

from __future__ import annotations

from typing import Any

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


def warnings(result: CompileResult) -> list[Diagnostic]:
    return [d for d in result.diagnostics if d.severity is Severity.WARNING]


def snapshot_of(text: str, proxy: ProxyIdentity) -> Snapshot:
    result = compile_text(text)
    assert result.config is not None, [str(d) for d in errors(result)]
    return SnapshotBuilder().build(result.config, [proxy])[proxy.id]


def decoded(snap: Snapshot, short: str, snake_case: bool = False) -> dict[str, dict[str, Any]]:
    type_url = types.FROM_SHORT[short]
    return {
        name: resource_to_dict(type_url, r.body, snake_case=snake_case)
        for name, r in sorted(snap.of(type_url).items())
    }


def sidecar(proxy_id: str = "productpage-v1", namespace: str = "default") -> ProxyIdentity:
    return ProxyIdentity.from_node(
        proxy_id,
        {
            "mecha": {
                "mode": "sidecar",
                "namespace": namespace,
                "outbound_port": 15001,
                "dapr_http_port": 3500,
                "dapr_grpc_port": 50001,
                "capabilities_http": "127.0.0.1:3501",
                "capabilities_grpc": "127.0.0.1:50002",
                "labels": {"app": "productpage", "version": "v1"},
                "apps": [{"name": "productpage", "app_port": 9080, "inbound_port": 15006}],
            }
        },
    )
