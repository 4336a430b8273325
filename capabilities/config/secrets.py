"""Resolve secretKeyRef metadata of a Component through the secret stores already initialised."""

from __future__ import annotations

from typing import Any

from capabilities.config.documents import ConfigError, RawComponent
from capabilities.daprspec.component import ComponentSpec


async def resolve_component(raw: RawComponent, secret_stores: dict[str, Any], app_id: str) -> ComponentSpec:
    """ComponentSpec of `raw` with every secretKeyRef replaced by the secret's value.

    The store is `auth.secretstore`; without it, the only configured secret store (Dapr defaults to
    'kubernetes', which a Mecha process does not have).
    """
    if not raw.needs_secrets:
        return raw.to_spec({}, app_id)
    where = f"{raw.source}: Component {raw.name!r}"
    if raw.secret_store is not None:
        store_name = raw.secret_store
        if store_name not in secret_stores:
            known = ", ".join(sorted(secret_stores)) or "none"
            raise ConfigError(
                f"{where}: auth.secretstore {store_name!r} is not a loaded secret store (known: {known})"
            )
    elif len(secret_stores) == 1:
        store_name = next(iter(secret_stores))
    else:
        raise ConfigError(
            f"{where}: uses secretKeyRef but has no auth.secretstore and "
            f"{len(secret_stores)} secret stores are loaded; set auth.secretstore"
        )
    store = secret_stores[store_name]
    resolved: dict[str, str] = {}
    for item in raw.items:
        if item.secret_name is None:
            continue
        try:
            secret = await store.get_secret(item.secret_name, {})
        except Exception as exc:
            raise ConfigError(
                f"{where}: spec.metadata {item.name}: secretKeyRef {item.secret_name!r} in secret store "
                f"{store_name!r}: {exc}"
            ) from None
        key = item.secret_key or item.secret_name
        if key in secret:
            resolved[item.name] = secret[key]
        elif len(secret) == 1 and item.secret_key is None:
            resolved[item.name] = next(iter(secret.values()))
        else:
            raise ConfigError(
                f"{where}: spec.metadata {item.name}: secret {item.secret_name!r} in {store_name!r} "
                f"has no key {key!r}"
            )
    return raw.to_spec(resolved, app_id)
