"""Deliver CloudEvents to the app over HTTP and read its verdict (daprd postman/http, in Python).

2xx with `{"status": "SUCCESS"|"RETRY"|"DROP"}` (empty or non-JSON 2xx = SUCCESS), 404 = drop,
any other status or a transport error = retry. Bulk: `{"statuses":[{entryId,status}]}`, missing = RETRY.
"""

from __future__ import annotations

import json
import logging
import uuid
from enum import StrEnum
from typing import Any

from capabilities.blocks.pubsub import envelope

log = logging.getLogger(__name__)


class Verdict(StrEnum):
    SUCCESS = "SUCCESS"
    RETRY = "RETRY"
    DROP = "DROP"


class RetryDelivery(Exception):
    """The app did not take the event (RETRY, 5xx, unreachable): try again / dead-letter."""


def app_path(path: str) -> str:
    return path if path.startswith("/") else "/" + path


def _headers(ce: dict[str, Any]) -> dict[str, str]:
    headers = {"Content-Type": envelope.CLOUDEVENTS_CONTENT_TYPE}
    for key in ("traceparent", "tracestate"):
        value = ce.get(key)
        if isinstance(value, str) and value:
            headers[key] = value
    headers["pubsubname"] = str(ce.get("pubsubname", ""))
    return headers


def verdict_of(status: int, body: bytes) -> tuple[Verdict, str]:
    """The app's answer -> (verdict, reason for logs)."""
    if status == 404:
        return Verdict.DROP, "app returned 404 (no handler): dropping"
    if not 200 <= status < 300:
        return Verdict.RETRY, f"app returned HTTP {status}"
    if not body.strip():
        return Verdict.SUCCESS, ""
    try:
        reply = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return Verdict.SUCCESS, ""  # a 2xx without a JSON status is a success (Dapr)
    status_text = reply.get("status") if isinstance(reply, dict) else None
    if status_text is None or status_text == "":
        return Verdict.SUCCESS, ""
    try:
        return Verdict(str(status_text).upper()), f"app replied status {status_text}"
    except ValueError:
        return Verdict.RETRY, f"app replied unknown status {status_text!r}"


async def deliver(
    app_channel: Any, path: str, ce: dict[str, Any], *, timeout_s: float, trace: dict[str, str] | None = None
) -> Verdict:
    """POST one CloudEvent; return SUCCESS or DROP, raise RetryDelivery otherwise.
    trace: the delivery span's traceparent/tracestate, sent instead of the CloudEvent's (daprd)."""
    try:
        headers = {**_headers(ce), **(trace or {})}
        response = await app_channel.call(
            "POST", app_path(path), body=envelope.encode(ce), headers=headers, timeout=timeout_s
        )
    except Exception as exc:  # app down / timeout: the message must be retried, not lost
        raise RetryDelivery(f"delivering event {ce.get('id')} to {path}: {exc}") from exc
    verdict, reason = verdict_of(response.status, response.body)
    if verdict is Verdict.RETRY:
        raise RetryDelivery(f"event {ce.get('id')} on topic {ce.get('topic')}: {reason}")
    if verdict is Verdict.DROP:
        log.warning(
            "event %s on topic %s dropped: %s", ce.get("id"), ce.get("topic"), reason or "app said DROP"
        )
    return verdict


async def deliver_bulk(
    app_channel: Any,
    path: str,
    entries: list[tuple[str, dict[str, Any]]],
    *,
    pubsub_name: str,
    topic: str,
    timeout_s: float,
) -> dict[str, Verdict]:
    """POST a bulk of (entryId, CloudEvent); return each entry's verdict (transport error = all RETRY)."""
    body = {
        "id": str(uuid.uuid4()),
        "entries": [
            {
                "entryId": entry_id,
                "event": ce,
                "contentType": envelope.CLOUDEVENTS_CONTENT_TYPE,
                "metadata": {},
            }
            for entry_id, ce in entries
        ],
        "metadata": {},
        "pubsubname": pubsub_name,
        "topic": topic,
        "type": "com.dapr.event.sent.bulk",
    }
    all_retry = {entry_id: Verdict.RETRY for entry_id, _ in entries}
    try:
        response = await app_channel.call(
            "POST",
            app_path(path),
            body=json.dumps(body, separators=(",", ":")).encode(),
            headers={"Content-Type": "application/json"},
            timeout=timeout_s,
        )
    except Exception as exc:
        log.warning("bulk delivery of %d events to %s failed: %s", len(entries), path, exc)
        return all_retry
    if response.status == 404:
        return {entry_id: Verdict.DROP for entry_id, _ in entries}
    if not 200 <= response.status < 300:
        return all_retry
    try:
        reply = json.loads(response.body) if response.body.strip() else {}
    except (ValueError, UnicodeDecodeError):
        reply = {}
    statuses = reply.get("statuses") if isinstance(reply, dict) else None
    if not isinstance(statuses, list):
        # No per-entry statuses on a 2xx: Dapr treats the whole bulk as delivered.
        return {entry_id: Verdict.SUCCESS for entry_id, _ in entries}
    result = dict(all_retry)
    for item in statuses:
        if isinstance(item, dict) and item.get("entryId") in result:
            try:
                result[item["entryId"]] = Verdict(str(item.get("status", "")).upper())
            except ValueError:
                result[item["entryId"]] = Verdict.RETRY
    return result
