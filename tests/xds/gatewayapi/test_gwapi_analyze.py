"""`mecha analyze` walks a Gateway API document with the Gateway API field table, not the Istio kind of the
same name (a Gateway's gatewayClassName and listeners are honoured fields, not unknown ones)."""

from __future__ import annotations

from gwapi_helpers import GATEWAY

from xds.analyze import analyze_documents
from xds.sources import load_text


def test_analyze_reads_a_gateway_api_gateway_with_its_own_table() -> None:
    docs, _ = load_text(
        GATEWAY.replace(
            "  gatewayClassName: mecha\n", "  gatewayClassName: mecha\n  addresses: [{value: 10.0.0.1}]\n"
        ),
        "gw.yaml",
    )
    report = analyze_documents(docs)
    rows = {f.path: f.status for f in report.fields if f.kind == "Gateway"}
    assert rows["spec.gatewayClassName"] == "honoured"
    assert rows["spec.listeners[0].port"] == "honoured"
    assert rows["spec.addresses"] == "unsupported"
    assert "unknown" not in rows.values(), rows
