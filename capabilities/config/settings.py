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
    # The Mecha state folder(s) file components must stay out of; None: $MECHA_STATE_DIR and nearest .mecha/.
    state_dirs: list[str] | None = None
    allowed_file_roots: list[str] = field(default_factory=list)  # MECHA_ALLOWED_FILE_ROOTS, --allow-file-root

    def __post_init__(self) -> None:
        if self.app_url is None and self.app_port:
            self.app_url = f"http://127.0.0.1:{self.app_port}"
        if self.state_dirs is None:
            from capabilities.config.sandbox import find_state_dirs

            self.state_dirs = [str(p) for p in find_state_dirs(os.environ.get("MECHA_STATE_DIR"))]

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        env = os.environ if env is None else env
        paths = [p for p in env.get("MECHA_RESOURCES_PATH", "").split(os.pathsep) if p]
        from capabilities.config.sandbox import ENV_ALLOWED_ROOTS, find_state_dirs

        # Flags add to what the environment says: --allow-file-root to its roots, --state-dir to its folders.
        file_roots = [p for p in env.get(ENV_ALLOWED_ROOTS, "").split(os.pathsep) if p]
        extra_roots = overrides.pop("allowed_file_roots", None)
        if isinstance(extra_roots, list):
            file_roots += [str(p) for p in extra_roots]
        state_dirs = [str(p) for p in find_state_dirs(env.get("MECHA_STATE_DIR"))]
        state_dir = overrides.pop("state_dir", None)
        if state_dir:
            state_dirs.insert(0, str(state_dir))
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
            "state_dirs": state_dirs,
            "allowed_file_roots": file_roots,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]
