"""Load YAML config documents from files, folders and text into RawDocuments (one per YAML document).

Each multi-document file is split on `---` lines first, so one malformed document yields one Diagnostic
(with file, document index and line) and the other documents of the file still load.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from xds.diagnostics import Diagnostic, Location, Severity

try:  # the C loader is ~10x faster on big meshes
    _Loader: Any = yaml.CSafeLoader
    _Dumper: Any = yaml.CSafeDumper
except AttributeError:  # pragma: no cover - libyaml missing
    _Loader = yaml.SafeLoader
    _Dumper = yaml.SafeDumper


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A map with the same key twice (PyYAML keeps the last one silently); marks are chunk-relative."""

    def __init__(self, key: object, first: yaml.Mark, second: yaml.Mark) -> None:
        super().__init__(None, None, f"duplicate key {key!r}", second)
        self.key = key
        self.first_mark = first


class _StrictLoader(_Loader):  # type: ignore[misc,valid-type]
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_at: dict[object, yaml.Mark] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                earlier = first_at.setdefault(key, key_node.start_mark)
            except TypeError:  # an unhashable key: SafeConstructor reports it
                continue
            if earlier is not key_node.start_mark:
                raise DuplicateKeyError(key, earlier, key_node.start_mark)
        return super().construct_mapping(node, deep)  # type: ignore[no-any-return]


# Kubernetes' object names (apimachinery validation): names are DNS-1123 subdomains, namespaces labels
_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def name_problem(value: str, namespace: bool) -> str | None:
    """Why a metadata.name / metadata.namespace is refused (it becomes part of Envoy names and file paths)."""
    if namespace:
        limit, pattern, what = 63, _DNS1123_LABEL, "label"
    else:
        limit, pattern, what = 253, _DNS1123_SUBDOMAIN, "subdomain"
    if len(value) > limit:
        return f"{len(value)} characters: a DNS-1123 {what} has at most {limit}"
    if not pattern.fullmatch(value):
        allowed = "lowercase letters, digits and '-'" + ("" if namespace else " in dot-separated parts")
        return f"{value!r} is not a DNS-1123 {what} ({allowed}, starting and ending with a letter or digit)"
    return None


_SEPARATOR = re.compile(r"^---(?:[ \t].*)?$")
YAML_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True, eq=False)
class RawDocument:
    """One YAML document as written (body untouched), plus where it came from."""

    location: Location
    api_version: str
    kind: str
    body: dict[str, Any] = field(repr=False)
    source: str = field(default="", repr=False)  # the document's YAML text: a cheap content fingerprint

    @property
    def key(self) -> tuple[str, str, str]:
        """(kind, namespace, name): the identity the control plane merges applied documents on."""
        return (self.kind, self.location.namespace, self.location.name)

    @property
    def group(self) -> str:
        return self.api_version.rsplit("/", 1)[0] if "/" in self.api_version else ""

    @property
    def version(self) -> str:
        return self.api_version.rsplit("/", 1)[-1]


def _split_documents(text: str) -> list[tuple[int, str]]:
    """Split on document markers; returns (first line number 0-based, chunk text) per document."""
    chunks: list[tuple[int, str]] = []
    start = 0
    lines: list[str] = []
    for i, line in enumerate(text.splitlines()):
        if _SEPARATOR.match(line):
            chunks.append((start, "\n".join(lines)))
            rest = line[3:].strip()
            # "--- {a: 1}" keeps content on the marker line; a comment does not count as content
            lines = [rest] if rest and not rest.startswith("#") else []
            start = i if lines else i + 1
        else:
            lines.append(line)
    chunks.append((start, "\n".join(lines)))
    # the leading chunk before a first '---' is a document only if it holds something
    return [(s, c) for s, c in chunks if c.strip() and not all(_is_blank(x) for x in c.splitlines())]


def _is_blank(line: str) -> bool:
    stripped = line.strip()
    return not stripped or stripped.startswith("#") or stripped == "..."


def load_text(text: str, filename: str = "<inline>") -> tuple[list[RawDocument], list[Diagnostic]]:
    docs: list[RawDocument] = []
    diags: list[Diagnostic] = []
    for index, (first_line, chunk) in enumerate(_split_documents(text)):
        where = Location(file=filename, document=index)
        try:
            body = yaml.load(chunk, Loader=_StrictLoader)
        except DuplicateKeyError as exc:
            assert exc.problem_mark is not None
            line, first = first_line + exc.problem_mark.line + 1, first_line + exc.first_mark.line + 1
            msg = f"duplicate key {exc.key!r} at line {line} (first at line {first}; the last would win)"
            diags.append(Diagnostic(where, str(exc.key), msg, Severity.ERROR, "duplicate-key"))
            continue
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
            line = first_line + mark.line + 1 if mark is not None else first_line + 1
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            diags.append(
                Diagnostic(where, "", f"malformed YAML at line {line}: {problem}", Severity.ERROR, "yaml")
            )
            continue
        if body is None:
            continue
        for item_where, item_body, item_source in _list_items(body, where, chunk, diags):
            doc, problem = _to_document(item_body, item_where, item_source)
            if problem is not None:
                diags.append(problem)
            if doc is not None:
                docs.append(doc)
    return docs, diags


def _list_items(
    body: Any, where: Location, source: str, diags: list[Diagnostic]
) -> Iterator[tuple[Location, Any, str]]:
    """The document itself, or the items of a `kind: List` (kubectl get -o yaml), server fields dropped."""
    if not (isinstance(body, dict) and body.get("kind") == "List" and body.get("apiVersion") == "v1"):
        yield where, *strip_server_fields(body, source)
        return
    items = body.get("items")
    if items is None:
        return
    if not isinstance(items, list):
        msg = f"a List's items must be a list, got {type(items).__name__}"
        diags.append(Diagnostic(where, "items", msg, Severity.ERROR, "bad-document"))
        return
    for index, item in enumerate(items):
        item_where = Location(where.file, where.document, item=index)
        stripped, _ = strip_server_fields(item, "")
        yield item_where, stripped, _dump(stripped) if isinstance(stripped, dict) else ""


# Set by the API server, not by whoever wrote the object: kubectl get prints them, and they change on every
# read (resourceVersion), so they would make an unchanged export look changed. creationTimestamp is kept: it
# orders two VirtualServices for one host as istiod does.
_SERVER_METADATA = ("managedFields", "resourceVersion", "uid", "generation", "selfLink")
_SERVER_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration",)


def strip_server_fields(body: Any, source: str) -> tuple[Any, str]:
    """(body without status and server-set metadata, its text); the text is re-made only when changed."""
    if not isinstance(body, dict):
        return body, source
    meta = body.get("metadata")
    annotations = meta.get("annotations") if isinstance(meta, dict) else None
    noisy = "status" in body or (
        isinstance(meta, dict)
        and (
            any(k in meta for k in _SERVER_METADATA)
            or (isinstance(annotations, dict) and any(a in annotations for a in _SERVER_ANNOTATIONS))
        )
    )
    if not noisy:
        return body, source
    clean = {k: v for k, v in body.items() if k != "status"}
    if isinstance(meta, dict):
        clean_meta = {k: v for k, v in meta.items() if k not in _SERVER_METADATA}
        if isinstance(annotations, dict):
            kept = {k: v for k, v in annotations.items() if k not in _SERVER_ANNOTATIONS}
            if kept:
                clean_meta["annotations"] = kept
            else:
                clean_meta.pop("annotations", None)
        clean["metadata"] = clean_meta
    return clean, _dump(clean)


def _dump(body: dict[str, Any]) -> str:
    return yaml.dump(body, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True)


def _to_document(body: Any, where: Location, source: str) -> tuple[RawDocument | None, Diagnostic | None]:
    def bad(fld: str, msg: str) -> tuple[None, Diagnostic]:
        return None, Diagnostic(where, fld, msg, Severity.ERROR, "bad-document")

    if not isinstance(body, dict):
        return bad("", f"a config document must be a map, got {type(body).__name__}")
    kind, api_version = body.get("kind"), body.get("apiVersion")
    if not isinstance(kind, str) or not kind:
        return bad("kind", "missing or not a string")
    if not isinstance(api_version, str) or not api_version:
        return bad("apiVersion", "missing or not a string")
    meta = body.get("metadata")
    if not isinstance(meta, dict):
        return bad("metadata", "missing or not a map")
    name, namespace = meta.get("name"), meta.get("namespace") or "default"
    if not isinstance(name, str) or not name:
        return bad("metadata.name", "missing or not a string")
    if not isinstance(namespace, str):
        return bad("metadata.namespace", "not a string")
    for fld, value, is_namespace in (("metadata.name", name, False), ("metadata.namespace", namespace, True)):
        problem = name_problem(value, is_namespace)
        if problem is not None:
            return bad(fld, problem)
    loc = Location(where.file, where.document, kind, namespace, name, where.item)
    return RawDocument(loc, api_version, kind, body, source), None


def _hidden(relative: Path) -> bool:
    """Dot entries are not config: editors' swap files, and a Kubernetes ConfigMap mount's `..data` /
    `..<timestamp>` folders, which hold a second copy of every file (loading them would refuse the set as
    duplicates)."""
    return any(part.startswith(".") for part in relative.parts)


def _expand(paths: Iterable[str | Path]) -> tuple[list[Path], list[Diagnostic]]:
    files: list[Path] = []
    diags: list[Diagnostic] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(
                sorted(
                    p
                    for p in path.rglob("*")
                    if p.is_file() and p.suffix in YAML_SUFFIXES and not _hidden(p.relative_to(path))
                )
            )
        elif path.is_file():
            files.append(path)
        else:
            diags.append(Diagnostic(Location(file=str(path)), "", "no such file or directory", code="io"))
    return files, diags


def load_paths(paths: Iterable[str | Path]) -> tuple[list[RawDocument], list[Diagnostic]]:
    """Load files and folders (recursively: *.yaml / *.yml, sorted by path)."""
    files, diags = _expand(paths)
    docs: list[RawDocument] = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            diags.append(Diagnostic(Location(file=str(path)), "", f"cannot read: {exc}", code="io"))
            continue
        more, problems = load_text(text, str(path))
        docs.extend(more)
        diags.extend(problems)
    return docs, diags
