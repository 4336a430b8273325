"""`mecha get`: Gateway API objects with the status a real control plane (`mecha serve`) computes, as `kubectl
get` shows them: tables per type, aliases, -n / -A, names, -o yaml|json|wide, unknown types, the API token."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from xds.cli.gateway_kinds import UnknownType, parse_types, resolve
from xds.cli.gateway_tables import human_duration
from xds.cli.main import main
from xds.testing.envoy import free_port

CONFIG = """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: catalog, namespace: shop}
spec:
  hosts: [catalog.shop.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 8080, name: http}]
  endpoints: [{address: 10.0.0.21}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: mecha}
spec: {controllerName: mecha.io/gateway-controller, description: Mecha's gateways}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: shop-gateway, namespace: shop}
spec:
  gatewayClassName: mecha
  listeners:
  - {name: http, port: 80, protocol: HTTP, hostname: shop.example.com}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: other, namespace: default}
spec:
  gatewayClassName: someone-else
  listeners:
  - {name: http, port: 8080, protocol: HTTP}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: catalog, namespace: shop}
spec:
  parentRefs: [{name: shop-gateway}]
  hostnames: [shop.example.com]
  rules:
  - backendRefs: [{name: catalog, port: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: lost, namespace: shop}
spec:
  parentRefs: [{name: no-such-gateway}]
  rules:
  - backendRefs: [{name: catalog, port: 8080}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: istio-gw, namespace: shop}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
"""


@dataclass
class Plane:
    url: str
    token: str

    def get(self, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
        code = main(["get", *argv, "--server", self.url, "--token", self.token])
        out, err = capsys.readouterr()
        return code, out, err


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    root = tmp_path_factory.mktemp("get")
    (root / "cfg").mkdir()
    (root / "cfg" / "shop.yaml").write_text(CONFIG)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "xds.cli", "serve", "--port", str(port), "--xds-port", str(free_port()),
         "--config", str(root / "cfg"), "--state-dir", str(root / "state"), "--no-watch"],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, env={**os.environ, "MECHA_STATE_DIR": ""},
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{url}/readyz", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "mecha serve did not start"
            time.sleep(0.1)
        yield Plane(url, (root / "state" / "api-token").read_text().strip())
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)


def test_gateways_of_a_namespace_as_kubectl_prints_them(
    plane: Plane, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = plane.get(capsys, "gateways", "-n", "shop")
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["NAME", "CLASS", "ADDRESS", "PROGRAMMED", "AGE"]
    assert len(lines) == 2 and lines[1].split()[:3] == ["shop-gateway", "mecha", "True"]
    assert "istio-gw" not in out  # an Istio Gateway is another resource type


def test_the_default_namespace_is_default_and_another_class_stays_unknown(
    plane: Plane, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = plane.get(capsys, "gtw")
    assert code == 0 and out.splitlines()[1].split()[:3] == ["other", "someone-else", "Unknown"]


@pytest.mark.parametrize(
    "alias", ["gtw", "gateway", "gateways", "Gateway", "gateways.gateway.networking.k8s.io"]
)
def test_aliases(plane: Plane, capsys: pytest.CaptureFixture[str], alias: str) -> None:
    code, out, _ = plane.get(capsys, alias, "-n", "shop")
    assert code == 0 and "shop-gateway" in out


def test_several_types_across_namespaces(plane: Plane, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = plane.get(capsys, "gc,gateways,httproutes", "-A")
    assert code == 0
    classes, gateways, routes = out.split("\n\n")
    assert classes.splitlines()[0].split() == ["NAME", "CONTROLLER", "ACCEPTED", "AGE"]  # cluster-scoped
    assert classes.splitlines()[1].split()[:3] == [
        "gatewayclass.gateway.networking.k8s.io/mecha", "mecha.io/gateway-controller", "True"
    ]  # fmt: skip
    assert gateways.splitlines()[0].split()[:2] == ["NAMESPACE", "NAME"]
    assert [row.split()[:2] for row in gateways.splitlines()[1:]] == [
        ["default", "gateway.gateway.networking.k8s.io/other"],
        ["shop", "gateway.gateway.networking.k8s.io/shop-gateway"],
    ]
    assert routes.splitlines()[0].split() == ["NAMESPACE", "NAME", "HOSTNAMES", "AGE"]
    assert routes.splitlines()[1].split()[:3] == [
        "shop", "httproute.gateway.networking.k8s.io/catalog", "shop.example.com"
    ]  # fmt: skip


def test_wide_shows_listeners_parents_and_why_a_route_is_not_accepted(
    plane: Plane, capsys: pytest.CaptureFixture[str]
) -> None:
    _, out, _ = plane.get(capsys, "httproutes", "-n", "shop", "-o", "wide")
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert out.splitlines()[0].split() == ["NAME", "HOSTNAMES", "PARENTS", "ACCEPTED", "AGE"]
    assert rows["catalog"][2:4] == ["shop-gateway", "True"]
    assert rows["lost"][1:3] == ["no-such-gateway", "False(NoMatchingParent)"]
    _, out, _ = plane.get(capsys, "gtw", "-n", "shop", "-o", "wide")
    assert "http:80/HTTP[shop.example.com]" in out
    _, out, _ = plane.get(capsys, "gc", "-o", "wide")
    assert "Mecha's gateways" in out


def test_yaml_is_the_whole_object_with_its_status(plane: Plane, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = plane.get(capsys, "gateway/shop-gateway", "-n", "shop", "-o", "yaml")
    obj = yaml.safe_load(out)
    assert code == 0 and obj["kind"] == "Gateway" and obj["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert obj["metadata"]["generation"] == 1 and obj["metadata"]["creationTimestamp"]
    assert obj["spec"]["listeners"][0]["port"] == 80
    conditions = {c["type"]: c for c in obj["status"]["conditions"]}
    assert (
        conditions["Programmed"]["status"] == "True" and conditions["Programmed"]["observedGeneration"] == 1
    )
    assert obj["status"]["listeners"][0]["attachedRoutes"] == 1


def test_json_lists_are_kubectl_lists(plane: Plane, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = plane.get(capsys, "httproutes", "-n", "shop", "-o", "json")
    doc = json.loads(out)
    assert code == 0 and doc["kind"] == "List" and doc["apiVersion"] == "v1"
    assert sorted(i["metadata"]["name"] for i in doc["items"]) == ["catalog", "lost"]
    lost = next(i for i in doc["items"] if i["metadata"]["name"] == "lost")
    assert lost["status"]["parents"][0]["conditions"][0]["reason"] == "NoMatchingParent"


def test_names_and_a_missing_one(plane: Plane, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = plane.get(capsys, "httproute", "catalog", "nope", "-n", "shop")
    assert code == 1 and "catalog" in out and "lost" not in out
    assert 'httproutes.gateway.networking.k8s.io "nope" not found in namespace "shop"' in err


def test_nothing_here_points_at_other_namespaces(plane: Plane, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = plane.get(capsys, "httproutes")
    assert code == 0 and out == ""
    assert "No resources found in default namespace. (2 in other namespaces: -A lists them)" in err


def test_an_unknown_type_is_named(plane: Plane, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = plane.get(capsys, "gateways,virtualservices")
    assert code == 1 and out == ""
    assert 'resource type "virtualservices"' in err and "gateways (gtw)" in err


def test_a_wrong_token_is_refused(plane: Plane, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["get", "gateways", "--server", plane.url, "--token", "not-the-token"])
    err = capsys.readouterr().err
    assert code == 1 and "the token was refused" in err


def test_type_names() -> None:
    assert [t.kind for t in parse_types("gc,gtw,httproute,grpcroutes,refgrant")] == [
        "GatewayClass", "Gateway", "HTTPRoute", "GRPCRoute", "ReferenceGrant"
    ]  # fmt: skip
    assert [t.kind for t in parse_types("gateways,gtw")] == ["Gateway"]
    with pytest.raises(UnknownType, match='"vs"'):
        resolve("vs")
    with pytest.raises(UnknownType, match="empty"):
        parse_types("gateways,")


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(5, "5s"), (119, "119s"), (200, "3m20s"), (600, "10m"), (3 * 3600 + 60, "3h1m"), (30 * 3600, "30h"),
     (3 * 86400 + 4 * 3600, "3d4h"), (40 * 86400, "40d"), (800 * 86400, "2y70d"), (9 * 365 * 86400, "9y")],
)  # fmt: skip
def test_age_as_kubectl_prints_it(seconds: int, shown: str) -> None:
    assert human_duration(seconds) == shown
    now = datetime.now(UTC)
    assert human_duration((now - (now - timedelta(seconds=seconds))).total_seconds()) == shown
