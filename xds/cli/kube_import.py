"""`mecha import -f EXPORT -o FOLDER`: kubectl exports -> reviewable mesh config, one file per kind/namespace.

Kubernetes Services (+ their EndpointSlices and Pods) become ServiceEntries; Istio documents are written as
they are, without the fields the API server set. `mecha apply --address-map` uses the same conversion.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml

from xds.controlplane.report import diag_line
from xds.diagnostics import Diagnostic, Severity
from xds.kube import AddressMap, AddressMapError, registry_documents
from xds.sources.kinds import KIND_TABLE
from xds.sources.loader import RawDocument, load_paths

ADDRESS_MAP_HELP = "YAML map 'pod IP[:port]' or 'namespace/pod[:port]' -> 'host[:port]' (imported endpoints)"


class ImportUsageError(RuntimeError):
    """Bad arguments (missing file, unreadable address map): exit 2."""


class ImportRefused(RuntimeError):
    """The input has errors (each line names file, document, item, field): exit 1, nothing sent."""


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "import", help="convert kubectl exports (Services, EndpointSlices, Pods, Istio config) to a folder"
    )
    p.add_argument("-f", "--file", action="append", required=True, help="kubectl -o yaml file or folder")
    p.add_argument("-o", "--output", required=True, help="folder to write the converted documents to")
    p.add_argument("--address-map", default=None, help=ADDRESS_MAP_HELP)


def load_address_map(path: str | None) -> AddressMap | None:
    if path is None:
        return None
    try:
        return AddressMap.load(path)
    except AddressMapError as exc:
        raise ImportUsageError(str(exc)) from None


def convert_paths(
    paths: list[str], address_map: AddressMap | None
) -> tuple[list[RawDocument], list[Diagnostic]]:
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        raise ImportUsageError(f"-f {missing[0]}: no such file or directory")
    docs, diags = load_paths(paths)
    converted, problems = registry_documents(docs, address_map)
    return converted, [*diags, *problems]


def _is_mesh_config(doc: RawDocument) -> bool:
    return (doc.group, doc.kind) in KIND_TABLE


def _dump(body: dict[str, Any]) -> str:
    return yaml.safe_dump(body, sort_keys=False, default_flow_style=False, allow_unicode=True)


def _origin(doc: RawDocument) -> str:
    return str(doc.location)


def write_folder(docs: list[RawDocument], sources: list[str], folder: Path) -> list[Path]:
    """One file per (kind, namespace), documents sorted by name, each preceded by where it came from."""
    groups: dict[tuple[str, str], list[RawDocument]] = defaultdict(list)
    for doc in docs:
        groups[(doc.kind, doc.location.namespace)].append(doc)
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for (kind, namespace), found in sorted(groups.items()):
        path = folder / f"{kind.lower()}-{namespace}.yaml"
        parts = [
            f"# Written by `mecha import` from {', '.join(sources)}: {kind} of namespace {namespace}.\n"
            "# Kubernetes Services became MESH_INTERNAL ServiceEntries (endpoints from their\n"
            "# EndpointSlices, labels from their Pods); fields the API server set were dropped.\n"
        ]
        for doc in sorted(found, key=lambda d: d.location.name):
            parts.append(f"---\n# from {_origin(doc)}\n{_dump(doc.body)}")
        path.write_text("".join(parts), encoding="utf-8")
        written.append(path)
    return written


def cmd_import(args: argparse.Namespace) -> int:
    try:
        address_map = load_address_map(args.address_map)
        docs, diags = convert_paths(args.file, address_map)
    except ImportUsageError as exc:
        print(f"mecha import: {exc}")
        return 2
    for diag in diags:
        print(diag_line(diag.to_dict()))
    errors = [diag for diag in diags if diag.severity is Severity.ERROR]
    if errors:
        print(f"nothing written: {len(errors)} error(s)")
        return 1
    kept = [d for d in docs if _is_mesh_config(d)]
    skipped: dict[str, int] = defaultdict(int)
    for d in docs:
        if not _is_mesh_config(d):
            skipped[d.kind] += 1
    written = write_folder(kept, args.file, Path(args.output))
    kinds: dict[str, int] = defaultdict(int)
    for d in kept:
        kinds[d.kind] += 1
    summary = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) or "no documents"
    print(f"wrote {summary} to {len(written)} file(s) in {args.output}")
    if skipped:
        print("skipped (not mesh config): " + ", ".join(f"{n} {k}" for k, n in sorted(skipped.items())))
    return 0


def converted_files(paths: list[str], address_map_path: str) -> list[dict[str, str]]:
    """`mecha apply --address-map`: the files as the API's {"name", "text"} after the conversion (a refusal
    in the input stops here, before anything is sent)."""
    address_map = load_address_map(address_map_path)
    docs, diags = convert_paths(paths, address_map)
    errors = [d for d in diags if d.severity is Severity.ERROR]
    if errors:
        raise ImportRefused("\n".join(diag_line(d.to_dict()) for d in errors))
    by_file: dict[str, list[str]] = defaultdict(list)
    for doc in docs:
        by_file[doc.location.file].append(_dump(doc.body))
    return [{"name": name, "text": "---\n" + "---\n".join(texts)} for name, texts in by_file.items()]
