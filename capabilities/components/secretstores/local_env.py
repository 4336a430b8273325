"""secretstores.local.env: secrets from the process environment (optional metadata prefix).

As Dapr's store: `prefix` limits it to variables starting with it (case-sensitive) and is removed from the
names it returns; APP_API_TOKEN and DAPR_* are never served. Mecha adds its own namespace, MECHA_*: the
capability service runs with the environment of whoever started it (`mecha up` hands on its own, with the
operator's MECHA_TOKEN and MECHA_STORE), so its own settings and tokens, and ones it never reads, are there.
A MECHA_* variable is served only under a prefix that itself starts with MECHA_ (the operator chose to open
that part of the namespace, e.g. MECHA_DEMO_SECRET_), and never if Mecha reads it (MECHA_SETTINGS). A denied
name answers exactly as an unset one.
"""

from __future__ import annotations

import os

from capabilities import registry
from capabilities.blocks.secretstores.contract import SecretNotFoundError
from capabilities.daprspec.component import ComponentSpec

# components-contrib secretstores/local/env isKeyAllowed
DAPR_DENIED = frozenset({"APP_API_TOKEN"})
DAPR_DENIED_PREFIX = "DAPR_"
MECHA_PREFIX = "MECHA_"
# Every MECHA_* setting the capability service, the embedded agent, the control plane and the CLI read
# (tests/capabilities/test_env_secret_store_credentials.py fails when a new one is missing here).
MECHA_SETTINGS = frozenset(
    {
        "MECHA_AGENT_RECORD_DIR",
        "MECHA_ALLOWED_FILE_ROOTS",
        "MECHA_ALLOWED_HOSTS",
        "MECHA_APP_URL",
        "MECHA_BOOTSTRAP_TEMPLATE",
        "MECHA_CA_DIR",
        "MECHA_CA_RELOAD_S",
        "MECHA_CERT_TTL",
        "MECHA_CONTROL_PLANE",
        "MECHA_CONTROL_PLANE_TOKEN",
        "MECHA_CONTROL_PLANE_TOKEN_FILE",
        "MECHA_CREDENTIALS_DIR",
        "MECHA_DEBOUNCE_AFTER",
        "MECHA_DEBOUNCE_MAX",
        "MECHA_DRAIN_SECONDS",
        "MECHA_EVENT_LOOP",
        "MECHA_GRPC_HOST",
        "MECHA_INSECURE_XDS",
        "MECHA_INVOKE_URL",
        "MECHA_MAX_BODY_BYTES",
        "MECHA_MTLS",
        "MECHA_PATH_NORMALIZATION",
        "MECHA_PUSH_THROTTLE",
        "MECHA_REGISTRATION_GRACE",
        "MECHA_RESOURCES_PATH",
        "MECHA_ROUTE_TABLES",
        "MECHA_SERVER",
        "MECHA_SERVING_CERT_TTL",
        "MECHA_STATE_DIR",
        "MECHA_STORE",
        "MECHA_STORE_URL",  # the Kubernetes replicas' install script: the store URL with its password
        "MECHA_STRICT",
        "MECHA_TOKEN",
        "MECHA_TRUST_DOMAIN",
        "MECHA_WATCH_INTERVAL",
    }
)


def served(key: str, prefix: str) -> bool:
    """Whether variable `key` (prefix included) may leave through a store with this prefix."""
    # upper case, as Dapr compares: a lower-case twin of a credential is refused too
    key, prefix = key.upper(), prefix.upper()
    if key in DAPR_DENIED or key.startswith(DAPR_DENIED_PREFIX) or key in MECHA_SETTINGS:
        return False
    return not key.startswith(MECHA_PREFIX) or prefix.startswith(MECHA_PREFIX)


@registry.register("secretstores.local.env")
class LocalEnvSecretStore:
    def __init__(self, spec: ComponentSpec) -> None:
        self.spec = spec
        self.prefix = spec.metadata.get("prefix", "")

    async def init(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def features(self) -> set[str]:
        return set()

    async def get_secret(self, name: str, metadata: dict[str, str]) -> dict[str, str]:
        key = self.prefix + name
        value = os.environ.get(key) if served(key, self.prefix) else None
        if value is None:
            raise SecretNotFoundError(name)
        return {name: value}

    async def bulk_get_secret(self, metadata: dict[str, str]) -> dict[str, dict[str, str]]:
        return {
            key[len(self.prefix) :]: {key[len(self.prefix) :]: value}
            for key, value in os.environ.items()
            if key.startswith(self.prefix) and len(key) > len(self.prefix) and served(key, self.prefix)
        }
