"""A mesh without a CA (`MECHA_MTLS=0`, `--no-mtls`): config that needs workload certificates is refused or
warned when it is applied, never left to fail at runtime.

In Istio every workload holds a certificate, so these are harmless there. Here, without one:
* a DestinationRule's ISTIO_MUTUAL references SDS secrets no proxy has: the cluster never warms (CDS STALE)
  and every request answers 503 -> refused (a Gateway server's ISTIO_MUTUAL is refused on any mesh);
* STRICT PeerAuthentication closes the inbound port to every caller (no client holds a certificate)
  -> refused;
* AuthorizationPolicy peer identities (`principals`, `namespaces`, `source.principal`, `source.namespace`)
  never match a plaintext caller: where that denies callers (an ALLOW rule that needs them, a DENY rule
  that matches on their absence) -> refused; where it only weakens (a DENY that never fires, an ALLOW that
  matches more, AUDIT) -> warned.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import Any

from xds.diagnostics import Diagnostic, Severity
from xds.validate.strict import identity

NO_CA = "no-ca"  # the diagnostics' code
WHY = "this mesh runs without a CA (MECHA_MTLS=0 / --no-mtls): no workload has a certificate"
PEER_FIELDS = {"principals": True, "namespaces": True, "notPrincipals": False, "notNamespaces": False}
PEER_KEYS = ("source.principal", "source.namespace")


def check_without_ca(
    config: Any, earlier: Any = None, before: list[Diagnostic] | None = None
) -> tuple[list[Diagnostic], list[Diagnostic]]:
    """(findings of `config`, a MeshConfig, on a mesh without a CA; those of the accepted config `earlier`,
    as warnings). A finding the accepted config already had is a warning: a change is refused for what it
    brings (a restart with --no-mtls under an mTLS config keeps serving it and accepts unrelated changes), and
    `apply` counts it among the earlier warnings instead of showing it again. `before`: those of `earlier`
    when already known (accepted_findings), so an accepted config is not walked again with every change."""
    if before is None:
        before = accepted_findings(earlier) if earlier is not None else []
    seen = {identity(d) for d in before}
    found = [_as_warning(d) if identity(_as_warning(d)) in seen else d for d in _findings(config)]
    return found, before


def accepted_findings(config: Any) -> list[Diagnostic]:
    """The findings of an accepted config, as warnings (check_without_ca's `before`)."""
    return [_as_warning(d) for d in _findings(config)]


def _as_warning(d: Diagnostic) -> Diagnostic:
    return replace(d, severity=Severity.WARNING)


def _findings(config: Any) -> Iterator[Diagnostic]:
    if not hasattr(config, "destination_rules"):  # a stand-in pipeline's config (tests): nothing to check
        return
    yield from _destination_rules(config)
    for res in config.carried:
        kind = res.meta.kind
        if kind == "PeerAuthentication":
            yield from _peer_authentication(res.meta.location, json.loads(res.spec_json))
        elif kind == "AuthorizationPolicy":
            yield from _authorization_policy(res.meta.location, json.loads(res.spec_json))


def _error(location: Any, field: str, message: str) -> Diagnostic:
    return Diagnostic(location, field, f"{message}; {WHY}", Severity.ERROR, NO_CA)


def _warning(location: Any, field: str, message: str) -> Diagnostic:
    return Diagnostic(location, field, f"{message}; {WHY}", Severity.WARNING, NO_CA)


def _destination_rules(config: Any) -> Iterator[Diagnostic]:
    for dr in config.destination_rules:
        places = [("spec.trafficPolicy", dr.traffic_policy)]
        places += [(f"spec.subsets[{i}].trafficPolicy", s.traffic_policy) for i, s in enumerate(dr.subsets)]
        for base, policy in places:
            if policy is None:
                continue
            blocks = [(f"{base}.tls", policy.tls)]
            levels = enumerate(policy.port_level)
            blocks += [(f"{base}.portLevelSettings[{j}].tls", pl.tls) for j, (_, pl) in levels]
            for where, tls in blocks:
                if tls is not None and tls.mode == "ISTIO_MUTUAL":
                    msg = (
                        "ISTIO_MUTUAL needs the mesh certificates: the cluster would never warm and every "
                        "request to it answer 503 (use DISABLE, or run the mesh with its CA)"
                    )
                    yield _error(dr.meta.location, f"{where}.mode", msg)


def _peer_authentication(location: Any, spec: dict[str, Any]) -> Iterator[Diagnostic]:
    modes = [("spec.mtls.mode", (spec.get("mtls") or {}).get("mode"))]
    modes += [(f"spec.portLevelMtls.{port}.mode", (v or {}).get("mode"))
              for port, v in (spec.get("portLevelMtls") or {}).items()]  # fmt: skip
    for where, mode in modes:
        if mode == "STRICT":
            msg = "STRICT would close the port to every caller (none can present a client certificate)"
            yield _error(location, where, msg)


def _authorization_policy(location: Any, spec: dict[str, Any]) -> Iterator[Diagnostic]:
    action = spec.get("action") or "ALLOW"
    for i, rule in enumerate(spec.get("rules") or ()):
        for where, matches_peer in _peer_conditions(rule, f"spec.rules[{i}]"):
            # matches_peer: the condition holds only for an authenticated peer, so never here
            denies = (action == "ALLOW" and matches_peer) or (action == "DENY" and not matches_peer)
            if denies:
                effect = "never matches, so the callers it allows get 403" if action == "ALLOW" else (
                    "matches every caller, so the rule denies them all")  # fmt: skip
                yield _error(location, where, f"a peer identity {effect}")
            else:
                effect = {
                    "DENY": "never matches, so the rule denies nobody",
                    "ALLOW": "matches every caller, so the rule allows more than it says",
                }.get(action, "is never known, so the audit rule logs by the other conditions only")
                yield _warning(location, where, f"a peer identity {effect}")


def _peer_conditions(rule: dict[str, Any], base: str) -> Iterable[tuple[str, bool]]:
    """(field, True when it needs a matching peer identity / False when it needs a non-matching one)."""
    for j, entry in enumerate(rule.get("from") or ()):
        source = (entry or {}).get("source") or {}
        for key, positive in PEER_FIELDS.items():
            if source.get(key):
                yield f"{base}.from[{j}].source.{key}", positive
    for k, cond in enumerate(rule.get("when") or ()):
        if (cond or {}).get("key") in PEER_KEYS:
            if cond.get("values"):
                yield f"{base}.when[{k}].values", True
            if cond.get("notValues"):
                yield f"{base}.when[{k}].notValues", False
