"""The address map as a document the control plane reads (issue #14 item 10): `kind: AddressMap`
(mecha.io/v1alpha1) applied through the API with the raw kubectl exports gives the same registry, and so the
same xDS, as `mecha import --address-map`; a bad one is a 4xx naming the document and field.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from kube_export import RATINGS_POD, REVIEWS_PODS, istio_export, kubernetes_export

from xds import pipeline, types
from xds.cli.main import main
from xds.controlplane.api import start_api
from xds.controlplane.auth import auth_headers
from xds.controlplane.runtime import ControlPlane
from xds.controlplane.settings import Settings
from xds.pipeline import resource_to_dict
from xds.proxy import ProxyIdentity

pytestmark = pytest.mark.asyncio

MAP = {
    RATINGS_POD[1]: "127.0.0.1:19080",
    f"{REVIEWS_PODS[0][1]}:9080": "127.0.0.1:19081",  # one port of a Pod IP
    f"default/{REVIEWS_PODS[1][0]}": "127.0.0.1:19082",  # a Pod by namespace/name
    REVIEWS_PODS[2][1]: "127.0.0.1",  # keeps the port
}
MAP_FILE = "".join(f"{k}: {v}\n" for k, v in MAP.items())
MAP_DOCUMENT = """apiVersion: mecha.io/v1alpha1
kind: AddressMap
metadata: {name: cluster-to-local, namespace: default}
spec:
  addresses:
""" + "".join(f"    {k}: {v}\n" for k, v in MAP.items())
CLIENT = ProxyIdentity.from_node("client", {"mecha": {"mode": "sidecar", "namespace": "default"}})


def _decoded(config: Any) -> dict[str, dict[str, object]]:
    snap = pipeline.SnapshotBuilder().build(config, [CLIENT])[CLIENT.id]
    out: dict[str, dict[str, object]] = {}
    for short in ("CDS", "EDS", "RDS", "LDS"):
        url = types.FROM_SHORT[short]
        out[short] = {n: resource_to_dict(url, r.body) for n, r in snap.of(url).items()}
    return out


def _imported(tmp_path: Path) -> dict[str, dict[str, object]]:
    """What `mecha import --address-map` writes, compiled: the reference."""
    tmp_path.mkdir()
    (tmp_path / "k8s.yaml").write_text(kubernetes_export())
    (tmp_path / "istio.yaml").write_text(istio_export())
    (tmp_path / "map.yaml").write_text(MAP_FILE)
    out = tmp_path / "imported"
    argv = ["import", "-f", str(tmp_path / "k8s.yaml"), "-f", str(tmp_path / "istio.yaml"), "-o", str(out)]
    assert main([*argv, "--address-map", str(tmp_path / "map.yaml")]) == 0
    docs, diags = pipeline.load_paths([out])
    result = pipeline.compile_documents(docs)
    assert result.config is not None and not diags, [str(d) for d in result.errors]
    return _decoded(result.config)


class Api:
    def __init__(self, cp: ControlPlane, url: str, session: aiohttp.ClientSession) -> None:
        self.cp, self.url, self.session = cp, url, session

    async def apply(self, text: str, filename: str) -> tuple[int, dict[str, Any]]:
        headers = {"Content-Type": "application/yaml"}
        params = {"filename": filename}
        url = f"{self.url}/api/v1/apply"
        async with self.session.post(url, data=text, params=params, headers=headers) as r:
            return r.status, await r.json()


@pytest_asyncio.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    state = tmp_path / "state"
    settings = Settings(api_port=0, xds_port=0, config_dirs=[], state_dir=state, insecure_xds=True)
    cp = ControlPlane(settings)
    runner, port = await start_api(cp, "127.0.0.1", 0)
    await cp.start()
    session = aiohttp.ClientSession(headers=auth_headers(tmp_path / "state"))
    try:
        yield Api(cp, f"http://127.0.0.1:{port}", session)
    finally:
        await session.close()
        await cp.stop()
        await runner.cleanup()


async def test_address_map_document_through_the_api_equals_mecha_import(api: Api, tmp_path: Path) -> None:
    expected = _imported(tmp_path / "cli")
    raw = kubernetes_export() + "\n---\n" + istio_export()
    status, body = await api.apply(raw + "\n---\n" + MAP_DOCUMENT, "cluster.yaml")
    assert status == 200 and body["accepted"], body
    served = _decoded(api.cp.store.config)
    assert served == expected
    endpoints = str(served["EDS"])
    assert "19082" in endpoints and all(ip not in endpoints for _pod, ip, _v in REVIEWS_PODS)


async def test_address_map_applied_alone_rewrites_services_applied_before(api: Api, tmp_path: Path) -> None:
    expected = _imported(tmp_path / "cli")
    raw = kubernetes_export() + "\n---\n" + istio_export()
    assert (await api.apply(raw, "cluster.yaml"))[0] == 200
    assert REVIEWS_PODS[0][1] in str(_decoded(api.cp.store.config)["EDS"])  # Pod IPs until the map arrives
    status, body = await api.apply(MAP_DOCUMENT, "map.yaml")
    assert status == 200 and body["accepted"], body
    assert _decoded(api.cp.store.config) == expected


@pytest.mark.parametrize(
    ("addresses", "reason"),
    [
        ("{not-an-ip: 127.0.0.1}", "entry 'not-an-ip'"),
        ("{10.244.0.12: 127.0.0.1:99999}", "port 99999 out of range"),
        ("[10.244.0.12]", "expected a non-empty map"),
    ],
)
async def test_bad_address_map_document_is_refused_naming_the_field(
    api: Api, addresses: str, reason: str
) -> None:
    text = MAP_DOCUMENT.split("  addresses:")[0] + f"  addresses: {addresses}\n"
    status, body = await api.apply(text, "map.yaml")
    assert status == 422 and not body["accepted"]
    [diag] = [d for d in body["diagnostics"] if d["severity"] == "error"]
    assert diag["file"] == "map.yaml" and diag["field"] == "spec.addresses" and reason in diag["message"]


async def test_two_address_maps_disagreeing_on_an_address_are_refused(api: Api) -> None:
    assert (await api.apply(MAP_DOCUMENT, "map.yaml"))[0] == 200
    other = MAP_DOCUMENT.replace("cluster-to-local", "second").replace("127.0.0.1:19080", "127.0.0.2:1")
    status, body = await api.apply(other, "other.yaml")
    assert status == 422, body
    assert any(RATINGS_POD[1] in d["message"] for d in body["diagnostics"])
