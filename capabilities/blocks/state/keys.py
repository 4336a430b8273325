"""Dapr's state key scheme: `<prefix>||<key>`, prefix chosen by component metadata keyPrefix."""

from __future__ import annotations

from functools import lru_cache

from capabilities.errors import DaprError

SEPARATOR = "||"


@lru_cache(maxsize=1024)  # pure, and asked on every state request: the few distinct answers are kept
def key_prefix(
    key_prefix_setting: str | None, app_id: str, store_name: str, namespace: str = "default"
) -> str:
    """Prefix (with trailing '||') for keyPrefix = appid (default) | name | namespace | none | <custom>."""
    setting = (key_prefix_setting or "appid").strip()
    lowered = setting.lower()
    if lowered == "appid":
        return f"{app_id}{SEPARATOR}" if app_id else ""
    if lowered == "name":
        return f"{store_name}{SEPARATOR}"
    if lowered == "namespace":
        return f"{namespace}.{app_id}{SEPARATOR}" if app_id else ""
    if lowered == "none":
        return ""
    if SEPARATOR in setting:
        raise DaprError(
            "ERR_MALFORMED_REQUEST",
            f"state store {store_name}: keyPrefix {setting!r} must not contain '||'",
            400,
        )
    return f"{setting}{SEPARATOR}"


def check_key(key: str, store_name: str) -> None:
    if not key:
        raise DaprError(
            "ERR_MALFORMED_REQUEST", f"state store {store_name}: key is empty", 400, "INVALID_ARGUMENT"
        )
    if SEPARATOR in key:
        raise DaprError(
            "ERR_MALFORMED_REQUEST",
            f"input key/keyPrefix '{key}' can't contain '{SEPARATOR}'",
            400,
            "INVALID_ARGUMENT",
        )
