"""Parse Dapr resource documents (YAML files, folders, control-plane pushes) into raw resources."""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from capabilities.daprspec.component import ComponentSpec
from capabilities.daprspec.durations import parse_duration

log = logging.getLogger(__name__)

RESOURCE_SUFFIXES = (".yaml", ".yml", ".json")


class ConfigError(ValueError):
    """A resource document is invalid; the message names the file, document, field and reason."""


@dataclass(frozen=True)
class MetadataItem:
    name: str
    value: str | None = None
    secret_name: str | None = None  # secretKeyRef.name
    secret_key: str | None = None  # secretKeyRef.key (optional)


@dataclass(frozen=True)
class RawComponent:
    """A Component document whose secretKeyRefs are not yet resolved."""

    name: str
    type: str
    version: str
    namespace: str
    items: tuple[MetadataItem, ...]
    scopes: tuple[str, ...]
    init_timeout_s: float
    ignore_errors: bool
    secret_store: str | None  # auth.secretstore
    source: str
    fingerprint: str  # hash of the document, to detect changes on reload

    @property
    def block(self) -> str:
        return self.type.split(".", 1)[0]

    @property
    def needs_secrets(self) -> bool:
        return any(item.secret_name is not None for item in self.items)

    def to_spec(self, resolved: dict[str, str], app_id: str) -> ComponentSpec:
        """Build the spec from plain values plus `resolved` secret values, expanding Dapr's template tags."""
        metadata: dict[str, str] = {}
        for item in self.items:
            value = resolved[item.name] if item.secret_name is not None else (item.value or "")
            metadata[item.name] = _expand_tags(value, app_id, self.namespace)
        return ComponentSpec(
            name=self.name,
            type=self.type,
            version=self.version,
            namespace=self.namespace,
            metadata=metadata,
            scopes=self.scopes,
            init_timeout_s=self.init_timeout_s,
            ignore_errors=self.ignore_errors,
            source=self.source,
        )


@dataclass
class ResourceSet:
    components: list[RawComponent] = field(default_factory=list)
    subscriptions: list[dict[str, Any]] = field(default_factory=list)
    resiliencies: list[dict[str, Any]] = field(default_factory=list)
    configurations: list[dict[str, Any]] = field(default_factory=list)
    version: str = ""

    def extend(self, other: ResourceSet) -> None:
        self.components.extend(other.components)
        self.subscriptions.extend(other.subscriptions)
        self.resiliencies.extend(other.resiliencies)
        self.configurations.extend(other.configurations)


def _expand_tags(value: str, app_id: str, namespace: str) -> str:
    if "{" not in value:
        return value
    return (
        value.replace("{uuid}", str(uuid.uuid4()))
        .replace("{appID}", app_id)
        .replace("{namespace}", namespace)
        .replace("{podName}", app_id)
    )


def _scalar_to_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return "" if value is None else str(value)


def parse_component(doc: dict[str, Any], source: str) -> RawComponent:
    meta = doc.get("metadata")
    if not isinstance(meta, dict) or not meta.get("name"):
        raise ConfigError(f"{source}: Component: metadata.name is required")
    name = str(meta["name"])
    where = f"{source}: Component {name!r}"
    spec = doc.get("spec")
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: spec is required (a mapping with spec.type)")
    ctype = spec.get("type")
    if not isinstance(ctype, str) or "." not in ctype:
        raise ConfigError(f"{where}: spec.type must look like 'state.redis', got {ctype!r}")
    items: list[MetadataItem] = []
    raw_items = spec.get("metadata") or []
    if not isinstance(raw_items, list):
        raise ConfigError(f"{where}: spec.metadata must be a list of {{name, value}} entries")
    seen: set[str] = set()
    for index, entry in enumerate(raw_items):
        if not isinstance(entry, dict) or not entry.get("name"):
            raise ConfigError(f"{where}: spec.metadata[{index}]: each entry needs a name")
        item_name = str(entry["name"])
        if item_name in seen:
            raise ConfigError(f"{where}: spec.metadata[{index}]: duplicate name {item_name!r}")
        seen.add(item_name)
        ref = entry.get("secretKeyRef")
        if ref is not None:
            if not isinstance(ref, dict) or not ref.get("name"):
                raise ConfigError(
                    f"{where}: spec.metadata[{index}] ({item_name}): secretKeyRef.name is required"
                )
            key = ref.get("key")
            items.append(MetadataItem(item_name, None, str(ref["name"]), str(key) if key else None))
        else:
            items.append(MetadataItem(item_name, _scalar_to_str(entry.get("value"))))
    try:
        init_timeout = parse_duration(spec.get("initTimeout", "5s"), field="spec.initTimeout")
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    scopes = doc.get("scopes") or []
    if not isinstance(scopes, list):
        raise ConfigError(f"{where}: scopes must be a list of app ids")
    ignore_errors = spec.get("ignoreErrors", False)
    if isinstance(ignore_errors, str) and ignore_errors.strip().lower() in ("true", "false"):
        ignore_errors = ignore_errors.strip().lower() == "true"  # a quoted YAML value: "false" is not truthy
    if not isinstance(ignore_errors, bool):
        raise ConfigError(f"{where}: spec.ignoreErrors must be true or false, got {ignore_errors!r}")
    auth = doc.get("auth") or {}
    fingerprint = hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()
    return RawComponent(
        name=name,
        type=ctype,
        version=str(spec.get("version") or "v1"),
        namespace=str(meta.get("namespace") or "default"),
        items=tuple(items),
        scopes=tuple(str(s) for s in scopes),
        init_timeout_s=init_timeout,
        ignore_errors=ignore_errors,
        secret_store=str(auth["secretstore"]) if isinstance(auth, dict) and auth.get("secretstore") else None,
        source=source,
        fingerprint=fingerprint,
    )


def _doc_name(doc: dict[str, Any]) -> str:
    meta = doc.get("metadata")
    return str(meta.get("name", "")) if isinstance(meta, dict) else ""


def parse_documents(docs: Iterable[tuple[Any, str]], app_id: str = "") -> ResourceSet:
    """Sort documents by kind, dropping resources scoped to other apps. Raises ConfigError on bad input."""
    result = ResourceSet()
    names: dict[str, str] = {}
    for doc, source in docs:
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise ConfigError(f"{source}: expected a mapping with apiVersion/kind, got {type(doc).__name__}")
        kind = doc.get("kind")
        scopes = doc.get("scopes") or []
        if app_id and isinstance(scopes, list) and scopes and app_id not in scopes:
            continue
        if kind == "Component":
            component = parse_component(doc, source)
            if component.name in names:
                raise ConfigError(
                    f"{source}: Component {component.name!r} is also defined in {names[component.name]}"
                )
            names[component.name] = source
            result.components.append(component)
        elif kind == "Subscription":
            result.subscriptions.append(doc)
        elif kind == "Resiliency":
            result.resiliencies.append(doc)
        elif kind == "Configuration":
            result.configurations.append(doc)
        elif kind is None:
            raise ConfigError(f"{source}: document has no 'kind'")
        else:
            log.info("%s: ignoring %s %r (not used by the capability service)", source, kind, _doc_name(doc))
    return result


def parse_yaml_text(text: str, source: str) -> list[tuple[Any, str]]:
    import yaml  # only YAML folders/text need it; the control plane sends JSON (yaml costs ~15 ms to import)

    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML: {exc}") from None
    return [(doc, f"{source}#{index}" if len(docs) > 1 else source) for index, doc in enumerate(docs)]


def load_folder(path: str | Path, app_id: str = "") -> ResourceSet:
    """All resource files in `path` (not recursive, like daprd --resources-path), in name order."""
    folder = Path(path)
    if not folder.is_dir():
        raise ConfigError(f"{folder}: resources path is not a directory")
    docs: list[tuple[Any, str]] = []
    for file in sorted(folder.iterdir()):
        if file.suffix in RESOURCE_SUFFIXES and file.is_file():
            docs.extend(parse_yaml_text(file.read_text(encoding="utf-8"), str(file)))
    return parse_documents(docs, app_id)
