"""What binds where, and file modes: Envoy admin on loopback from every bootstrap path, the gateway's node
metadata `bind` (mecha up: 127.0.0.1; istiod's 0.0.0.0 stays the default), bootstraps 0600 in 0700."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import yaml

from xds import types
from xds.bootstrap import BootstrapParams, write
from xds.demo.config import demo_config, make_layout
from xds.pipeline import compile_documents, load_text
from xds.proxy import ProxyIdentity, ProxyIdentityError
from xds.translate.builder import SnapshotBuilder
from xds.translate.decode import resource_to_dict

_ports = itertools.count(21000)


def _gateway_listener_address(extra_metadata: dict[str, str]) -> dict[str, object]:
    layout = make_layout("sidecar", lambda _role, _index: next(_ports))
    assert layout.gateway is not None
    metadata = {**layout.gateway.metadata(), **extra_metadata}
    gw = ProxyIdentity.from_node(layout.gateway.id, {"mecha": metadata})
    docs, diags = load_text(demo_config(layout), "demo.yaml")
    compiled = compile_documents(docs)
    assert not diags and compiled.config is not None
    snap = SnapshotBuilder().build(compiled.config, [gw])[gw.id]
    (listener,) = snap.of(types.LISTENER).values()
    return resource_to_dict(types.LISTENER, listener.body)["address"]["socketAddress"]  # type: ignore[no-any-return]


def test_gateway_binds_where_its_node_metadata_says() -> None:
    assert _gateway_listener_address({})["address"] == "0.0.0.0"  # istiod's default
    assert _gateway_listener_address({"bind": "127.0.0.1"})["address"] == "127.0.0.1"


def test_a_bad_bind_address_names_the_field() -> None:
    try:
        ProxyIdentity.from_node("gw", {"mecha": {"mode": "gateway", "bind": "localhost:80"}})
    except ProxyIdentityError as exc:
        assert "node.metadata.mecha.bind" in str(exc)
    else:
        raise AssertionError("bind 'localhost:80' accepted")


def test_written_bootstrap_is_private_and_admin_is_loopback(tmp_path: Path) -> None:
    meta = {"dapr_api_token": "s3cret"}
    path = write(BootstrapParams("p", 15012, 15000, meta), tmp_path / "state" / "bootstrap" / "p.yaml")
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    admin = yaml.safe_load(path.read_text())["admin"]["address"]["socket_address"]
    assert admin["address"] == "127.0.0.1"


def test_mecha_bootstrap_admin_defaults_to_loopback() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "xds.cli", "bootstrap", "--id", "r", "--app", "reviews:9081:15006"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    admin = yaml.safe_load(out.stdout)["admin"]["address"]["socket_address"]
    assert admin["address"] == "127.0.0.1"


def _node_outbound_address(extra_metadata: dict[str, str]) -> str:
    layout = make_layout("node", lambda _role, _index: next(_ports))
    (node,) = layout.proxies
    proxy = ProxyIdentity.from_node(node.id, {"mecha": {**node.metadata(), **extra_metadata}})
    docs, _ = load_text(demo_config(layout), "demo.yaml")
    compiled = compile_documents(docs)
    assert compiled.config is not None
    snap = SnapshotBuilder().build(compiled.config, [proxy])[proxy.id]
    listeners = {n: resource_to_dict(types.LISTENER, r.body) for n, r in snap.of(types.LISTENER).items()}
    outbound = listeners[f"0.0.0.0_{node.outbound_port}"]
    return str(outbound["address"]["socketAddress"]["address"])


def test_node_mode_outbound_listener_binds_where_its_node_metadata_says() -> None:
    assert _node_outbound_address({}) == "0.0.0.0"  # node mode serves other hosts by default
    assert _node_outbound_address({"bind": "127.0.0.1"}) == "127.0.0.1"  # mecha up: one machine
