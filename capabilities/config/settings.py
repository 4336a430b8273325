"""Process settings, read from Dapr's environment variables and daprd-like flags."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024


def _int(env: Mapping[str, str], name: str, default: int | None) -> int | None:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} must be an integer") from None


@dataclass
class Settings:
    app_id: str = ""
    http_port: int = 3500
    http_host: str = "127.0.0.1"
    grpc_port: int = 50001
    api_token: str | None = None  # DAPR_API_TOKEN: required from callers when set
    app_api_token: str | None = None  # APP_API_TOKEN: sent to the app when set
    app_port: int | None = None
    app_url: str | None = None  # where the app is reached (in a mesh: the app proxy's inbound listener)
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    control_plane: str | None = None  # MECHA_CONTROL_PLANE base URL
    resources_paths: list[str] = field(default_factory=list)
    namespace: str = "default"

    def __post_init__(self) -> None:
        if self.app_url is None and self.app_port:
            self.app_url = f"http://127.0.0.1:{self.app_port}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        env = os.environ if env is None else env
        paths = [p for p in env.get("MECHA_RESOURCES_PATH", "").split(os.pathsep) if p]
        values: dict[str, object] = {
            "app_id": env.get("APP_ID", ""),
            "http_port": _int(env, "DAPR_HTTP_PORT", 3500),
            "grpc_port": _int(env, "DAPR_GRPC_PORT", 50001),
            "api_token": env.get("DAPR_API_TOKEN") or None,
            "app_api_token": env.get("APP_API_TOKEN") or None,
            "app_port": _int(env, "APP_PORT", None),
            "app_url": env.get("MECHA_APP_URL") or None,
            "max_body_bytes": _int(env, "MECHA_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES),
            "control_plane": env.get("MECHA_CONTROL_PLANE") or None,
            "resources_paths": paths,
            "namespace": env.get("NAMESPACE", "default"),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]
