"""`mecha diff` shows what changes inside each resource: a unified diff of the resource as YAML."""

from __future__ import annotations

from xds.cache.snapshot import Snapshot
from xds.cli.tables import content_lines
from xds.controlplane.diff import diff_all
from xds.pipeline import SnapshotBuilder, compile_documents, load_text
from xds.proxy import ProxyIdentity

MESH = """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: reviews, namespace: default}}
spec:
  hosts: [reviews]
  ports: [{{number: 9080, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints:
  - {{address: 127.0.0.1, ports: {{http: 9081}}, labels: {{app: reviews, version: v1}}}}
  - {{address: 127.0.0.1, ports: {{http: 9082}}, labels: {{app: reviews, version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: reviews, namespace: default}}
spec:
  host: reviews
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews, namespace: default}}
spec:
  hosts: [reviews]
  http:
  - route:
    - {{destination: {{host: reviews, subset: v1}}, weight: {v1}}}
    - {{destination: {{host: reviews, subset: v2}}, weight: {v2}}}
"""


def sidecar(proxy_id: str) -> ProxyIdentity:
    meta = {
        "mode": "sidecar",
        "namespace": "default",
        "outbound_port": 15001,
        "labels": {"app": proxy_id.split("-")[0], "version": "v1"},
        "apps": [{"name": proxy_id.split("-")[0], "app_port": 9080, "inbound_port": 15006}],
    }
    return ProxyIdentity.from_node(proxy_id, {"mecha": meta})


def snapshots(v1: int, v2: int) -> dict[str, Snapshot]:
    docs, diags = load_text(MESH.format(v1=v1, v2=v2), "mesh.yaml")
    result = compile_documents(docs)
    assert result.config is not None, [str(d) for d in [*diags, *result.diagnostics]]
    return SnapshotBuilder().build(result.config, [sidecar("productpage-v1"), sidecar("details-v1")])


def test_modified_route_shows_the_changed_weights_as_a_unified_diff() -> None:
    out = diff_all(snapshots(80, 20), snapshots(50, 50), with_content=True)
    rds = out["productpage-v1"]["RDS"]
    assert rds["modified"], out
    text = "".join(rds["content"].values())
    assert text.startswith("--- RDS/") and "\n+++ RDS/" in text, text
    removed = [ln.split() for ln in text.splitlines() if ln.startswith("-") and not ln.startswith("---")]
    added = [ln.split() for ln in text.splitlines() if ln.startswith("+") and not ln.startswith("+++")]
    assert removed == [["-", "weight:", "80"], ["-", "weight:", "20"]], text
    assert added == [["+", "weight:", "50"], ["+", "weight:", "50"]], text
    # nothing but the weights changed: no other +/- line in the route's diff
    changed = [ln for ln in text.splitlines() if ln[:1] in "+-" and not ln.startswith(("---", "+++"))]
    assert all("weight" in ln for ln in changed), changed


def test_added_and_removed_resources_diff_against_nothing() -> None:
    old, new = snapshots(80, 20), snapshots(80, 20)
    out = diff_all({"gone-v1": old["details-v1"]}, {"new-v1": new["details-v1"]}, with_content=True)
    removed = out["gone-v1"]["CDS"]
    name = removed["removed"][0]
    assert removed["content"][name].startswith(f"--- CDS/{name}\n+++ /dev/null\n")
    added = out["new-v1"]["CDS"]
    assert added["content"][name].startswith(f"--- /dev/null\n+++ CDS/{name}\n")
    assert "+name: " in added["content"][name] or "+  name:" in added["content"][name]


def test_names_only_without_content() -> None:
    out = diff_all(snapshots(80, 20), snapshots(50, 50))
    assert "content" not in out["productpage-v1"]["RDS"]


def test_the_same_change_on_many_proxies_is_printed_once() -> None:
    out = diff_all(snapshots(80, 20), snapshots(50, 50), with_content=True)
    lines = content_lines(out)
    headers = [ln for ln in lines if ln.startswith("# proxies: ")]
    assert "# proxies: details-v1, productpage-v1" in headers, lines
    assert sum(ln.split() == ["+", "weight:", "50"] for ln in "\n".join(lines).splitlines()) == 2  # one diff
