"""Control-plane knobs: flags override environment variables, which override istiod-like defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from xds.controlplane.security_env import ENV_INSECURE_XDS as ENV_INSECURE_XDS
from xds.controlplane.security_env import ENV_MTLS as ENV_MTLS
from xds.controlplane.security_env import xds_security
from xds.statedir import default_state_dir

DEFAULT_API_PORT = 15010  # HTTP API (istiod serves plaintext xDS here; we serve the API)
DEFAULT_XDS_PORT = 15012  # gRPC xDS (istiod's secure xDS port)

ENV_DEBOUNCE_AFTER = "MECHA_DEBOUNCE_AFTER"  # seconds, like PILOT_DEBOUNCE_AFTER (100ms)
ENV_DEBOUNCE_MAX = "MECHA_DEBOUNCE_MAX"  # seconds, like PILOT_DEBOUNCE_MAX (10s)
ENV_PUSH_THROTTLE = "MECHA_PUSH_THROTTLE"  # concurrent per-proxy pushes, like PILOT_PUSH_THROTTLE
ENV_WATCH_INTERVAL = "MECHA_WATCH_INTERVAL"  # seconds between polls of watched folders
# ENV_MTLS (MECHA_MTLS) and ENV_INSECURE_XDS (MECHA_INSECURE_XDS): xds/controlplane/security_env.py
ENV_TRUST_DOMAIN = "MECHA_TRUST_DOMAIN"  # spiffe://<trust domain>/ns/<ns>/sa/<sa> (cluster.local)
ENV_CERT_TTL = "MECHA_CERT_TTL"  # workload certificate lifetime in seconds (86400); rotated at half of it
ENV_CREDENTIALS_DIR = "MECHA_CREDENTIALS_DIR"  # Gateway credentialName: <dir>/<name>/tls.crt, tls.key, ca.crt
ENV_CA_DIR = "MECHA_CA_DIR"  # where the CA root (cert + 0600 key) is kept across restarts; unset: in memory
ENV_ROUTE_TABLES = "MECHA_ROUTE_TABLES"  # auto | single | scoped (xds/translate/scoped_routes.py)
ROUTE_TABLE_MODES = ("auto", "single", "scoped")
ENV_PATH_NORMALIZATION = "MECHA_PATH_NORMALIZATION"  # meshConfig.pathNormalization (translate/normalize.py)
ENV_STORE = "MECHA_STORE"  # postgresql://... shared by replicas; unset: SQLite in the state folder


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r}: expected a number of seconds") from None
    if value < 0:
        raise ValueError(f"environment variable {name}={raw!r}: must not be negative")
    return value


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r}: expected an integer") from None
    if value < 1:
        raise ValueError(f"environment variable {name}={raw!r}: must be at least 1")
    return value


def _env_choice(name: str, choices: tuple[str, ...]) -> str:
    raw = os.environ.get(name, "").strip().lower() or choices[0]
    if raw not in choices:
        raise ValueError(f"environment variable {name}={raw!r}: expected one of {', '.join(choices)}")
    return raw


def _env_path_normalization() -> str:
    from xds.translate.normalize import parse_path_normalization

    raw = os.environ.get(ENV_PATH_NORMALIZATION, "")
    try:
        return parse_path_normalization(raw).value
    except ValueError as exc:
        raise ValueError(f"environment variable {ENV_PATH_NORMALIZATION}: {exc}") from None


def default_push_throttle() -> int:
    # istiod's auto value: min(15 + 5 * cores, 100)
    return min(15 + 5 * (os.cpu_count() or 1), 100)


@dataclass
class Settings:
    api_host: str = "127.0.0.1"
    api_port: int = DEFAULT_API_PORT
    xds_host: str = "127.0.0.1"
    xds_port: int = DEFAULT_XDS_PORT
    config_dirs: list[Path] = field(default_factory=list)  # loaded at start and watched (GitOps)
    watch: bool = True
    watch_interval: float = 1.0
    debounce_after: float = 0.1
    debounce_max: float = 10.0
    max_concurrent_pushes: int = field(default_factory=default_push_throttle)
    # Settings.from_env (mecha serve / up) turns it on, as istiod always runs its CA; off here so that an
    # in-process control plane built by hand has no CA unless asked
    mtls: bool = False
    trust_domain: str = "cluster.local"
    cert_ttl: float = 86400.0
    ca_dir: Path | None = None
    credentials_dir: Path | None = None  # None: <first config dir>/credentials
    insecure_xds: bool = False  # plaintext xDS, no workload credentials (docs/security.md: transition only)
    route_tables: str = "auto"  # outbound routing: one table, per-service tables (SRDS), or by mesh size
    path_normalization: str = "BASE"  # NONE | BASE | MERGE_SLASHES | DECODE_AND_MERGE_SLASHES (istiod's)
    # config store, API token, CA root (xds/statedir.py: 0700 folder, 0600 files)
    state_dir: Path = field(default_factory=default_state_dir)
    allowed_hosts: list[str] = field(default_factory=list)  # more Host names of the API (also env)
    store: str = ""  # postgresql:// URL of a store shared by replicas; "": <state_dir>/config.db
    replica_poll: float = 2.0  # seconds between head re-reads of a shared store (a lost NOTIFY)
    strict: bool = False  # MECHA_STRICT=1: refuse routes to missing hosts/subsets istiod would accept
    # auto-registered WorkloadEntries outlive their proxy's stream this long (istiod's
    # PILOT_WORKLOAD_ENTRY_GRACE_PERIOD, 10 s): a restarting proxy keeps its entry; MECHA_REGISTRATION_GRACE
    registration_grace: float = 10.0

    def credentials_folder(self) -> Path | None:
        """Where Gateway `tls.credentialName` certificates live (istiod reads Kubernetes Secrets)."""
        if self.credentials_dir is not None:
            return self.credentials_dir
        return Path(self.config_dirs[0]) / "credentials" if self.config_dirs else None

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        # --insecure-xds / --no-mtls (given) win over their variables
        given = {k: bool(v) for k, v in overrides.items() if k in ("insecure_xds", "mtls") and v is not None}
        security = xds_security(os.environ, given.get("insecure_xds"), given.get("mtls"))
        settings = cls(
            debounce_after=_env_float(ENV_DEBOUNCE_AFTER, 0.1),
            debounce_max=_env_float(ENV_DEBOUNCE_MAX, 10.0),
            max_concurrent_pushes=_env_int(ENV_PUSH_THROTTLE, default_push_throttle()),
            watch_interval=_env_float(ENV_WATCH_INTERVAL, 1.0),
            insecure_xds=security.insecure_xds,
            mtls=security.mtls,
            trust_domain=os.environ.get(ENV_TRUST_DOMAIN) or "cluster.local",
            cert_ttl=_env_float(ENV_CERT_TTL, 86400.0),
            ca_dir=Path(os.environ[ENV_CA_DIR]).expanduser() if os.environ.get(ENV_CA_DIR) else None,
            route_tables=_env_choice(ENV_ROUTE_TABLES, ROUTE_TABLE_MODES),
            store=os.environ.get(ENV_STORE, "").strip(),
            strict=os.environ.get("MECHA_STRICT", "").strip().lower() in ("1", "true", "yes", "on"),
            path_normalization=_env_path_normalization(),
            registration_grace=_env_float("MECHA_REGISTRATION_GRACE", 10.0),
            credentials_dir=(
                Path(os.environ[ENV_CREDENTIALS_DIR]).expanduser()
                if os.environ.get(ENV_CREDENTIALS_DIR)
                else None
            ),
        )
        for name, value in overrides.items():
            if value is not None:
                setattr(settings, name, value)
        return settings
