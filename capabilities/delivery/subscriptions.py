"""Subscriptions: parsed from the app's `GET /dapr/subscribe` answer and from Subscription resources.

Shapes (dapr pkg/runtime/pubsub/subscriptions.go; resource-specs/subscription-schema.md):
programmatic `[{pubsubname, topic, route | routes{rules[{match,path}],default}, metadata, deadLetterTopic,
bulkSubscribe{enabled,maxMessagesCount,maxAwaitDurationMs}}]`; declarative `dapr.io/v2alpha1` (routes) or
`v1alpha1` (route) `kind: Subscription` with `spec` holding the same fields and top-level `scopes`.
A bad entry is reported (naming where and which field) and skipped; the others still work.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from capabilities.delivery.routing import CelError, compile_match, matches

log = logging.getLogger(__name__)


class SubscriptionError(ValueError):
    pass


@dataclass(frozen=True)
class Rule:
    match: str
    path: str


@dataclass(frozen=True)
class BulkSubscribe:
    enabled: bool = False
    max_messages_count: int = 100
    max_await_duration_ms: int = 1000


@dataclass(frozen=True)
class Subscription:
    pubsub_name: str
    topic: str
    rules: tuple[Rule, ...] = ()
    default_path: str = ""
    dead_letter_topic: str = ""
    metadata: tuple[tuple[str, str], ...] = ()
    bulk: BulkSubscribe = field(default_factory=BulkSubscribe)
    kind: str = "PROGRAMMATIC"  # or DECLARATIVE
    source: str = ""

    @property
    def raw_payload(self) -> bool:
        return dict(self.metadata).get("rawPayload", "").lower() == "true"

    def route(self, event: dict[str, Any]) -> str | None:
        """The app path for this event: the first matching rule, else the default (None = no route)."""
        for rule in self.rules:
            if matches(rule.match, event):
                return rule.path
        return self.default_path or None

    def to_metadata(self) -> dict[str, Any]:
        """The /v1.0/metadata `subscriptions[]` entry."""
        rules = [{"match": r.match, "path": r.path} for r in self.rules]
        if self.default_path:
            rules.append({"match": "", "path": self.default_path})
        entry: dict[str, Any] = {
            "pubsubname": self.pubsub_name,
            "topic": self.topic,
            "rules": {"rules": rules},
            "type": self.kind,
        }
        if self.dead_letter_topic:
            entry["deadLetterTopic"] = self.dead_letter_topic
        if self.metadata:
            entry["metadata"] = dict(self.metadata)
        return entry


def _string(obj: dict[str, Any], key: str, where: str, *, required: bool = False) -> str:
    value = obj.get(key)
    if value is None or value == "":
        if required:
            raise SubscriptionError(f"{where}: {key} is required")
        return ""
    if not isinstance(value, str):
        raise SubscriptionError(f"{where}: {key} must be a string, got {type(value).__name__}")
    return value


def _int(obj: dict[str, Any], key: str, default: int, where: str) -> int:
    value = obj.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise SubscriptionError(f"{where}: bulkSubscribe.{key} must be a positive integer, got {value!r}")
    return value


def _routes(obj: dict[str, Any], where: str) -> tuple[tuple[Rule, ...], str]:
    routes = obj.get("routes")
    default = _string(obj, "route", where)
    rules: list[Rule] = []
    if routes is not None:
        if not isinstance(routes, dict):
            raise SubscriptionError(f"{where}: routes must be an object with rules and default")
        default = _string(routes, "default", f"{where}.routes") or default
        raw_rules = routes.get("rules") or []
        if not isinstance(raw_rules, list):
            raise SubscriptionError(f"{where}: routes.rules must be a list")
        for i, rule in enumerate(raw_rules):
            rwhere = f"{where}.routes.rules[{i}]"
            if not isinstance(rule, dict):
                raise SubscriptionError(f"{rwhere}: must be an object with match and path")
            match = _string(rule, "match", rwhere)
            path = _string(rule, "path", rwhere, required=True)
            try:
                compile_match(match)
            except CelError as exc:
                raise SubscriptionError(f"{rwhere}.match: {exc}") from None
            rules.append(Rule(match, path))
    if not rules and not default:
        raise SubscriptionError(f"{where}: a route (v1) or routes.rules/routes.default (v2) is required")
    return tuple(rules), default


def parse_one(obj: Any, where: str, kind: str) -> Subscription:
    if not isinstance(obj, dict):
        raise SubscriptionError(f"{where}: must be an object, got {type(obj).__name__}")
    rules, default = _routes(obj, where)
    meta = obj.get("metadata") or {}
    if not isinstance(meta, dict):
        raise SubscriptionError(f"{where}: metadata must be an object of strings")
    bulk_raw = obj.get("bulkSubscribe") or {}
    if not isinstance(bulk_raw, dict):
        raise SubscriptionError(f"{where}: bulkSubscribe must be an object")
    bulk = BulkSubscribe(
        enabled=bool(bulk_raw.get("enabled", False)),
        max_messages_count=_int(bulk_raw, "maxMessagesCount", 100, where),
        max_await_duration_ms=_int(bulk_raw, "maxAwaitDurationMs", 1000, where),
    )
    return Subscription(
        pubsub_name=_string(obj, "pubsubname", where, required=True),
        topic=_string(obj, "topic", where, required=True),
        rules=rules,
        default_path=default,
        dead_letter_topic=_string(obj, "deadLetterTopic", where),
        metadata=tuple(sorted((str(k), str(v)) for k, v in meta.items())),
        bulk=bulk,
        kind=kind,
        source=where,
    )


def parse_programmatic(payload: Any, errors: list[str]) -> list[Subscription]:
    """The app's /dapr/subscribe JSON; problems are appended to `errors` and the entry skipped."""
    if payload is None:
        return []
    if not isinstance(payload, list):
        errors.append(f"GET /dapr/subscribe: expected a JSON array, got {type(payload).__name__}")
        return []
    subs = []
    for i, obj in enumerate(payload):
        try:
            subs.append(parse_one(obj, f"GET /dapr/subscribe [{i}]", "PROGRAMMATIC"))
        except SubscriptionError as exc:
            errors.append(str(exc))
    return subs


def parse_declarative(docs: list[dict[str, Any]], app_id: str, errors: list[str]) -> list[Subscription]:
    """Subscription resources scoped to app_id (no scopes = every app)."""
    subs = []
    for i, doc in enumerate(docs):
        name = (doc.get("metadata") or {}).get("name", f"#{i}") if isinstance(doc, dict) else f"#{i}"
        where = f"Subscription {name}"
        if isinstance(doc, dict) and doc.get("source"):
            where = f"{doc['source']}: {where}"
        try:
            if not isinstance(doc, dict) or not isinstance(doc.get("spec"), dict):
                raise SubscriptionError(f"{where}: spec must be an object")
            scopes = doc.get("scopes") or []
            if not isinstance(scopes, list):
                raise SubscriptionError(f"{where}: scopes must be a list of app ids")
            if scopes and app_id not in scopes:
                continue
            subs.append(parse_one(doc["spec"], f"{where}: spec", "DECLARATIVE"))
        except SubscriptionError as exc:
            errors.append(str(exc))
    return subs


def merge(programmatic: list[Subscription], declarative: list[Subscription]) -> list[Subscription]:
    """One subscription per (pubsub, topic): the app's own list wins over resources, like daprd."""
    seen: set[tuple[str, str]] = set()
    out = []
    for sub in [*programmatic, *declarative]:
        key = (sub.pubsub_name, sub.topic)
        if key in seen:
            log.warning("%s: %s/%s is already subscribed; ignored", sub.source, sub.pubsub_name, sub.topic)
            continue
        seen.add(key)
        out.append(sub)
    return out
