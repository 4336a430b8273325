"""MECHA_INSECURE_XDS and MECHA_MTLS, read one way by the control plane (Settings.from_env) and by `mecha up`,
which must know before the control plane starts whether it will run its CA. Nothing is imported here: `mecha
up` calls this on its start path, where Settings.from_env would load the translator (~0.5 s)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

# the CA, a SPIFFE certificate for every proxy (from its agent), auto-mTLS: on unless 0/false (or --no-mtls)
ENV_MTLS = "MECHA_MTLS"
ENV_INSECURE_XDS = "MECHA_INSECURE_XDS"  # 1: plaintext, unauthenticated xDS (transition; xds/identity)
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def env_flag(env: Mapping[str, str], name: str) -> bool | None:
    """A yes/no environment variable; None when unset or empty (the caller picks the default)."""
    raw = env.get(name, "").strip().lower()
    if not raw:
        return None
    if raw in TRUE_WORDS:
        return True
    if raw in FALSE_WORDS:
        return False
    raise ValueError(f"environment variable {name}={raw!r}: expected 1/true/yes/on or 0/false/no/off")


@dataclass(frozen=True)
class XdsSecurity:
    insecure_xds: bool  # plaintext, unauthenticated xDS: no agents, no workload credentials
    mtls: bool  # the control plane runs its CA


def xds_security(
    env: Mapping[str, str], insecure_xds: bool | None = None, mtls: bool | None = None
) -> XdsSecurity:
    """The environment's answer; insecure_xds / mtls: the command line's (--insecure-xds, --no-mtls), which
    win over the variable (not read then). Invalid values raise ValueError naming the variable."""
    insecure = insecure_xds if insecure_xds is not None else bool(env_flag(env, ENV_INSECURE_XDS))
    if mtls is None:
        # on by default; with --insecure-xds there are no agents, so the CA would have to ship each proxy's
        # private key over a plaintext, unauthenticated port: off unless MECHA_MTLS=1 asks
        explicit = env_flag(env, ENV_MTLS)
        mtls = explicit if explicit is not None else not insecure
    return XdsSecurity(insecure_xds=insecure, mtls=mtls)
