"""`mecha import`: kubectl exports -> a folder to review that compiles to what the raw export compiles to."""

from __future__ import annotations

from pathlib import Path

import pytest
from kube_export import REVIEWS_PODS, istio_export, kubernetes_export

from xds import pipeline, types
from xds.cli.main import main
from xds.pipeline import SnapshotBuilder, resource_to_dict
from xds.proxy import ProxyIdentity


def _exports(tmp_path: Path) -> tuple[Path, Path]:
    k8s, istio = tmp_path / "k8s.yaml", tmp_path / "istio.yaml"
    k8s.write_text(kubernetes_export())
    istio.write_text(istio_export())
    return k8s, istio


def _decoded_snapshot(paths: list[str]) -> dict[str, dict[str, object]]:
    docs, load_diags = pipeline.load_paths(paths)
    result = pipeline.compile_documents(docs)
    assert result.config is not None, [str(d) for d in [*load_diags, *result.diagnostics]]
    who = ProxyIdentity.from_node("client", {"mecha": {"mode": "sidecar", "namespace": "default"}})
    snap = SnapshotBuilder().build(result.config, [who])[who.id]
    out: dict[str, dict[str, object]] = {}
    for short in ("CDS", "EDS", "RDS", "LDS"):
        url = types.FROM_SHORT[short]
        out[short] = {n: resource_to_dict(url, r.body) for n, r in snap.of(url).items()}
    return out


def test_import_writes_one_file_per_kind_and_namespace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    k8s, istio = _exports(tmp_path)
    out = tmp_path / "imported"
    assert main(["import", "-f", str(k8s), "-f", str(istio), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "wrote 1 DestinationRule, 3 ServiceEntry, 1 VirtualService to 3 file(s)" in printed
    assert sorted(p.name for p in out.iterdir()) == [
        "destinationrule-default.yaml",
        "serviceentry-default.yaml",
        "virtualservice-default.yaml",
    ]
    entries = (out / "serviceentry-default.yaml").read_text()
    assert entries.startswith("# Written by `mecha import` from ")
    assert "# from " + str(k8s) + " doc 0 item 2 (Service default/reviews)" in entries
    assert "managedFields" not in (out / "virtualservice-default.yaml").read_text()
    assert REVIEWS_PODS[0][1] in entries

    # stable: a second run writes the same bytes
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main(["import", "-f", str(k8s), "-f", str(istio), "-o", str(out)]) == 0
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first

    # the reviewed folder compiles to exactly what the raw export compiles to
    assert _decoded_snapshot([str(out)]) == _decoded_snapshot([str(k8s), str(istio)])


def test_import_applies_the_address_map(tmp_path: Path) -> None:
    k8s, _ = _exports(tmp_path)
    mapping = tmp_path / "map.yaml"
    mapping.write_text(f"{REVIEWS_PODS[1][1]}: 127.0.0.1:19082\n")
    out = tmp_path / "imported"
    assert main(["import", "-f", str(k8s), "-o", str(out), "--address-map", str(mapping)]) == 0
    text = (out / "serviceentry-default.yaml").read_text()
    assert REVIEWS_PODS[1][1] not in text and "19082" in text


def test_import_refuses_naming_file_item_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        kubernetes_export().replace(
            "      port: 9080\n      protocol: TCP\n      targetPort: 9080", "      port: 0", 1
        )
    )
    out = tmp_path / "imported"
    assert main(["import", "-f", str(bad), "-o", str(out)]) == 1
    printed = capsys.readouterr().out
    assert f"error: {bad} doc 0 item 0 (Service default/productpage) field spec.ports[0].port" in printed
    assert "nothing written" in printed and not out.exists()


def test_bad_address_map_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    k8s, _ = _exports(tmp_path)
    mapping = tmp_path / "map.yaml"
    mapping.write_text("not-an-ip: 127.0.0.1\n")
    assert main(["import", "-f", str(k8s), "-o", str(tmp_path / "o"), "--address-map", str(mapping)]) == 2
    assert "entry 'not-an-ip'" in capsys.readouterr().out
