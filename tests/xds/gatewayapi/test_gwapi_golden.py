"""Golden conversions: golden/<case>.in.yaml (Gateway API + registry documents) -> <case>.out.yaml: the
generated Istio Gateways, VirtualService routes (one line each, in served order) and every object's status,
through the real compile pipeline. MECHA_UPDATE_GOLDEN=1 rewrites the outputs (review the diff)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from gwapi_helpers import route_line

from xds.diagnostics import Severity
from xds.gatewayapi.convert import convert
from xds.gatewayapi.documents import read_documents
from xds.gatewayapi.status import render
from xds.model.traffic import L4Route
from xds.pipeline import compile_documents, load_paths

GOLDEN = Path(__file__).parent / "golden"
CASES = sorted(p.name.removesuffix(".in.yaml") for p in GOLDEN.glob("*.in.yaml"))


def _output(case: str) -> dict[str, Any]:
    docs, diags = load_paths([GOLDEN / f"{case}.in.yaml"])
    assert not diags, [str(d) for d in diags]
    result = compile_documents(docs)
    assert result.config is not None, [str(d) for d in result.errors]
    config = result.config
    inputs, _ = read_documents(docs)
    statuses = convert(inputs, config.service_by_host).statuses
    generated = [vs for vs in config.virtual_services if vs.meta.name.startswith("gateway-api.")]
    names = {(s.meta.namespace, s.meta.name) for s in statuses if s.meta.kind == "Gateway"}
    return {
        "diagnostics": [
            f"{d.severity} {d.location.kind} {d.location.namespace}/{d.location.name} {d.field}: {d.message}"
            for d in result.diagnostics
            if d.severity is not Severity.INFO
        ],
        "istioGateways": [
            {"name": f"{c.meta.namespace}/{c.meta.name}", "spec": json.loads(c.spec_json)}
            for c in config.carried
            if c.meta.kind == "Gateway" and (c.meta.namespace, c.meta.name) in names
        ],
        "virtualServices": [
            {
                "name": f"{vs.meta.namespace}/{vs.meta.name}",
                "hosts": list(vs.hosts),
                "gateways": list(vs.gateways),
                "routes": [route_line(r) for r in vs.http],
                **(
                    {"l4": [_l4_line("tls", r) for r in vs.tls] + [_l4_line("tcp", r) for r in vs.tcp]}
                    if vs.tls or vs.tcp
                    else {}
                ),
            }
            for vs in generated
        ],
        "status": [render(s) for s in sorted(statuses, key=lambda s: (s.meta.kind, s.meta.ref))],
    }


def _l4_line(kind: str, route: L4Route) -> str:
    """`tls sni a.example.com port 443 -> host:port@3, ...` (TLSRoute / TCPRoute, in served order)."""
    where = " ".join(
        (f"sni {','.join(m.sni_hosts)} " if m.sni_hosts else "") + f"port {m.port}" for m in route.matches
    )
    dests = ", ".join(
        f"{d.destination.host}:{d.destination.port}" + (f"@{d.weight}" if d.weight is not None else "")
        for d in route.route
    )
    return f"{kind} {where} -> {dests or 'closed'}"


@pytest.mark.parametrize("case", CASES)
def test_golden(case: str) -> None:
    got = yaml.safe_dump(_output(case), sort_keys=False, width=200)
    path = GOLDEN / f"{case}.out.yaml"
    if os.environ.get("MECHA_UPDATE_GOLDEN") == "1":
        path.write_text(got)
    assert path.exists(), f"{path.name} missing: run with MECHA_UPDATE_GOLDEN=1 and review it"
    assert got == path.read_text()
