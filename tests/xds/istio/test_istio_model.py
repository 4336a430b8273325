"""Bad and contradictory Istio input: every problem names file, resource and field; nothing crashes.
Plus scoping/exportTo rules and the `mecha analyze` command."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from pathlib import Path

import pytest
from istio_helpers import compile_text, decoded, errors, proxy, service_entry, snapshot

from xds.cli.main import main as mecha

VS_HEAD = """---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: default}
spec:
  hosts: [web]
  http:
"""

BAD = [
    ("  - route: [{destination: {host: web}}]\n    redirect: {uri: /x}", "spec.http[0]", "contradictory"),
    ("  - directResponse: {status: 99}", "spec.http[0].directResponse.status", "bad-status"),
    (
        "  - directResponse: {status: 200, body: {bytes: '***'}}",
        "spec.http[0].directResponse.body.bytes",
        "bad-base64",
    ),
    ("  - route: [{destination: {host: web}}]\n    fault: {}", "spec.http[0].fault", "bad-fault"),
    (
        "  - route: [{destination: {host: web}}]\n    fault: {abort: {grpcStatus: NOPE}}",
        "spec.http[0].fault.abort.grpcStatus",
        "bad-fault",
    ),
    (
        "  - route: [{destination: {host: web}}]\n"
        "    fault: {delay: {fixedDelay: 1s, percentage: {value: 101}}}",
        "spec.http[0].fault.delay.percentage.value",
        "bad-percent",
    ),
    (
        "  - route: [{destination: {host: web}}]\n    mirror: {host: web}\n    mirrorPercent: 300",
        "spec.http[0].mirrorPercent",
        "bad-percent",
    ),
    ("  - redirect: {uri: /x, redirectCode: 399}", "spec.http[0].redirect.redirectCode", "bad-redirect"),
    ("  - redirect: {port: 1, derivePort: FROM_REQUEST_PORT}", "spec.http[0].redirect", "one-of"),
]


@pytest.mark.parametrize(("route", "field", "code"), BAD)
def test_bad_http_route_is_refused_naming_file_resource_and_field(route: str, field: str, code: str) -> None:
    result = compile_text(service_entry("web") + VS_HEAD + route, "routes.yaml")
    assert result.config is None
    found = [d for d in errors(result) if d.field == field and d.code == code]
    assert found, [str(d) for d in errors(result)]
    assert found[0].location.file == "routes.yaml" and found[0].location.name == "web"
    assert "routes.yaml" in str(found[0]) and "VirtualService default/web" in str(found[0])


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        (
            "kind: Sidecar\nmetadata: {name: s}\nspec: {egress: [{hosts: [nohost]}]}",
            "spec.egress[0].hosts[0]",
        ),
        ("kind: Sidecar\nmetadata: {name: s}\nspec: {egress: [{hosts: []}]}", "spec.egress[0].hosts"),
        (
            "kind: VirtualService\nmetadata: {name: v}\nspec: {hosts: [x], exportTo: [Bad_NS]}",
            "spec.exportTo[0]",
        ),
        (
            "kind: VirtualService\nmetadata: {name: v}\n"
            "spec: {hosts: [x], tls: [{route: [{destination: {host: x}}]}]}",
            "spec.tls[0].match",
        ),
        (
            "kind: DestinationRule\nmetadata: {name: d}\nspec: {host: x, trafficPolicy: {portLevelSettings: "
            "[{port: {number: 80}}, {port: {number: 80}}]}}",
            "spec.trafficPolicy.portLevelSettings[1].port.number",
        ),
        (
            "kind: DestinationRule\nmetadata: {name: d}\nspec: {host: x, trafficPolicy: {loadBalancer: "
            "{simple: RANDOM, consistentHash: {useSourceIp: true}}}}",
            "spec.trafficPolicy.loadBalancer",
        ),
    ],
)
def test_malformed_resources_name_their_field(doc: str, field: str) -> None:
    result = compile_text("apiVersion: networking.istio.io/v1\n" + doc, "bad.yaml")
    assert result.config is None
    assert any(d.field == field and d.location.file == "bad.yaml" for d in errors(result)), [
        str(d) for d in errors(result)
    ]


def test_exportto_hides_service_and_route_from_other_namespaces() -> None:
    text = service_entry("web", exportTo='["."]') + service_entry("api", namespace="team")
    mine = decoded(snapshot(text, proxy(namespace="default")), "CDS")
    theirs = decoded(snapshot(text, proxy("p2", namespace="team")), "CDS")
    assert "outbound|9080||web.default.svc.cluster.local" in mine
    assert "outbound|9080||web.default.svc.cluster.local" not in theirs
    assert "outbound|9080||api.team.svc.cluster.local" in theirs


def test_workload_selected_sidecar_wins_over_namespace_default() -> None:
    text = (
        service_entry("web")
        + service_entry("api", namespace="team")
        + """---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: default}
spec: {egress: [{hosts: ["./*"]}]}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: wide, namespace: default}
spec:
  workloadSelector: {labels: {app: wide}}
  egress: [{hosts: ["*/*"]}]
"""
    )
    narrow = decoded(snapshot(text, proxy(labels={"app": "narrow"})), "CDS")
    wide = decoded(snapshot(text, proxy("w", labels={"app": "wide"})), "CDS")
    assert len(wide) == len(narrow) + 1  # the team/api cluster (no DestinationRule: base cluster only)
    assert "outbound|9080||api.team.svc.cluster.local" in wide
    assert "outbound|9080||api.team.svc.cluster.local" not in narrow


def test_tcp_weighted_route_and_vip_listener_name() -> None:
    text = (
        service_entry("db", port=5432, protocol="TCP", addresses="[10.96.0.5]")
        + """---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: db}
spec: {host: db, subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: db}
spec:
  hosts: [db]
  tcp:
  - match: [{port: 5432}]
    route:
    - {destination: {host: db, subset: v1}, weight: 75}
    - {destination: {host: db, subset: v2}, weight: 25}
"""
    )
    snap = snapshot(text, proxy(tcp_ports={"5432": 25432, "6000": 26000}))
    listeners = decoded(snap, "LDS")
    assert "0.0.0.0_6000" not in listeners  # nothing in scope on 6000: no listener
    tcp = listeners["10.96.0.5_5432"]["filter_chains"][0]["filters"][0]["typed_config"]
    assert tcp["stat_prefix"] == "outbound|5432|v1|db.default.svc.cluster.local"
    assert [(c["name"], c["weight"]) for c in tcp["weighted_clusters"]["clusters"]] == [
        ("outbound|5432|v1|db.default.svc.cluster.local", 75),
        ("outbound|5432|v2|db.default.svc.cluster.local", 25),
    ]


def test_analyze_cli_reports_fields_kinds_and_exit_code(tmp_path: Path) -> None:
    (tmp_path / "mixed.yaml").write_text(
        service_entry("web")
        + VS_HEAD
        + "  - route: [{destination: {host: web}}]\n    fault: {abort: {httpStatus: 500, percent: 10}}\n"
        + "---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {replicas: 1}\n"
        + "---\napiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 80}]}\n"
    )
    out = io.StringIO()
    with redirect_stdout(out):
        rc = mecha(["analyze", "-f", str(tmp_path)])
    text = out.getvalue()
    assert rc == 1, text  # abort.percent would be dropped
    assert "not supported" in text and "spec.http[0].fault.abort.percent" in text
    assert "honoured" in text and "spec.http[0].route[0].destination.host" in text
    assert "apps/v1 Deployment x1" in text and "v1 Service x1" in text
    out = io.StringIO()
    with redirect_stdout(out):
        mecha(["analyze", "-f", str(tmp_path), "-o", "json"])
    data = json.loads(out.getvalue())
    assert data["would_drop"] is True
    assert {"kind": "Deployment", "api_version": "apps/v1"}.items() <= data["skipped"][0].items()


def test_analyze_clean_config_exits_zero(tmp_path: Path) -> None:
    (tmp_path / "ok.yaml").write_text(
        service_entry("web") + VS_HEAD + "  - route: [{destination: {host: web}}]\n"
    )
    out = io.StringIO()
    with redirect_stdout(out):
        rc = mecha(["analyze", "-f", str(tmp_path / "ok.yaml"), "-q"])
    assert rc == 0, out.getvalue()
    assert "nothing is dropped" in out.getvalue()
