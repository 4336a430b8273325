"""Declarative Subscription resources (dapr.io v1alpha1 / v2alpha1) as TopicSubscriptions for a gRPC app.

The documents come raw from runtime.subscriptions_docs; only those scoped to this app are kept. A malformed
document is logged with its name and field and skipped (the HTTP delivery reports it too).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from capabilities.delivery.grpc.topics import Rule, TopicSubscription

if TYPE_CHECKING:
    from capabilities.runtime import Runtime

log = logging.getLogger(__name__)


def parse_subscription(doc: dict[str, Any]) -> TopicSubscription:
    name = (doc.get("metadata") or {}).get("name", "<unnamed>")
    spec = doc.get("spec")
    if not isinstance(spec, dict):
        raise ValueError(f"Subscription {name}: spec must be a mapping")
    pubsub = spec.get("pubsubname") or spec.get("pubsubName")
    topic = spec.get("topic")
    if not isinstance(pubsub, str) or not pubsub:
        raise ValueError(f"Subscription {name}: spec.pubsubname is required")
    if not isinstance(topic, str) or not topic:
        raise ValueError(f"Subscription {name}: spec.topic is required")
    routes = spec.get("routes") or {}
    rules = tuple(
        Rule(str(r.get("match", "")), str(r.get("path", "")))
        for r in routes.get("rules") or []
        if isinstance(r, dict)
    )
    bulk = spec.get("bulkSubscribe") or {}
    return TopicSubscription(
        pubsub_name=pubsub,
        topic=topic,
        metadata={str(k): str(v) for k, v in (spec.get("metadata") or {}).items()},
        rules=rules,
        default_path=str(routes.get("default") or spec.get("route") or ""),
        dead_letter_topic=str(spec.get("deadLetterTopic") or ""),
        bulk_enabled=bool(bulk.get("enabled", False)),
        bulk_max_messages=int(bulk.get("maxMessagesCount") or 100),
        bulk_max_await_ms=int(bulk.get("maxAwaitDurationMs") or 1000),
    )


def declarative_subscriptions(runtime: Runtime) -> list[TopicSubscription]:
    out: list[TopicSubscription] = []
    for doc in getattr(runtime, "subscriptions_docs", None) or []:
        scopes = doc.get("scopes") or []
        if scopes and runtime.app_id not in scopes:
            continue
        try:
            out.append(parse_subscription(doc))
        except (ValueError, TypeError, AttributeError) as exc:
            log.error("skipping declarative subscription: %s", exc)
    return out
