"""kubectl's `kind: List` output is read as its items; server-set fields are dropped (issue #14 item 10)."""

from __future__ import annotations

from kube_export import istio_export

from xds.diagnostics import Severity
from xds.pipeline import compile_documents
from xds.sources import load_text


def test_list_items_become_documents_with_their_index() -> None:
    docs, diags = load_text(istio_export(), "istio.yaml")
    assert diags == []
    assert [(d.kind, d.location.document, d.location.item) for d in docs] == [
        ("DestinationRule", 0, 0),
        ("VirtualService", 0, 1),
    ]
    assert str(docs[1].location) == "istio.yaml doc 0 item 1 (VirtualService default/reviews)"


def test_server_set_fields_are_dropped() -> None:
    docs, _ = load_text(istio_export(), "istio.yaml")
    vs = docs[1].body
    assert "status" not in vs
    meta = vs["metadata"]
    for server_field in ("managedFields", "resourceVersion", "uid", "generation"):
        assert server_field not in meta, server_field
    assert "annotations" not in meta  # it held only kubectl's JSON copy of the object
    assert meta["creationTimestamp"] == "2024-05-02T10:13:05Z"  # kept: the oldest VirtualService wins
    assert "managedFields" not in docs[1].source and "3150" not in docs[1].source


def test_user_annotations_are_kept() -> None:
    text = """apiVersion: v1
kind: List
items:
- apiVersion: security.istio.io/v1
  kind: AuthorizationPolicy
  metadata:
    name: deny-all
    namespace: default
    annotations:
      istio.io/dry-run: "true"
      kubectl.kubernetes.io/last-applied-configuration: '{"kind":"AuthorizationPolicy"}'
  spec: {}
"""
    docs, diags = load_text(text, "ap.yaml")
    assert diags == []
    assert docs[0].body["metadata"]["annotations"] == {"istio.io/dry-run": "true"}


def test_an_exported_istio_folder_compiles() -> None:
    reviews = """apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  endpoints:
  - {address: 10.0.0.1, labels: {version: v1}}
  - {address: 10.0.0.2, labels: {version: v2}}
  - {address: 10.0.0.3, labels: {version: v3}}
"""
    docs, diags = load_text(istio_export(), "istio.yaml")
    more, _ = load_text(reviews, "se.yaml")
    result = compile_documents(docs + more)
    assert diags == []
    assert [str(d) for d in result.diagnostics if d.severity is Severity.ERROR] == []
    assert result.config is not None
    assert [v.meta.name for v in result.config.virtual_services] == ["reviews"]


def test_a_bad_item_is_refused_by_file_document_item_and_field() -> None:
    text = """---
apiVersion: v1
kind: List
items:
- apiVersion: networking.istio.io/v1
  kind: DestinationRule
  metadata: {name: fine, namespace: default}
  spec: {host: reviews}
- apiVersion: networking.istio.io/v1
  kind: DestinationRule
  metadata: {name: Not_Valid, namespace: default}
  spec: {host: reviews}
- just a string
"""
    docs, diags = load_text(text, "export.yaml")
    assert [d.location.name for d in docs] == ["fine"]
    assert [(d.location.file, d.location.document, d.location.item, d.field) for d in diags] == [
        ("export.yaml", 0, 1, "metadata.name"),
        ("export.yaml", 0, 2, ""),
    ]
    assert "export.yaml doc 0 item 1" in str(diags[0])
    assert "map" in diags[1].message


def test_list_without_items_list_is_refused() -> None:
    docs, diags = load_text("apiVersion: v1\nkind: List\nitems: {a: 1}\n", "x.yaml")
    assert docs == []
    assert [(d.field, d.severity) for d in diags] == [("items", Severity.ERROR)]
