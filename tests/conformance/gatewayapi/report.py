"""A ConformanceReport (conformance/apis/v1, gateway.networking.k8s.io/v1) from one run of the ported tests.

As the Go suite groups them: a profile's core tests are those whose features are all core features of the
profile; its extended tests need at least one extended feature, all of them among the features Mecha claims
(`SUPPORTED`). A test of the profile that was not run (not ported, or deselected) counts as skipped and is
listed in skippedTests. Provisional tests run and count as the others do (the suite's
--skip-provisional-tests is false by default); those that passed are also listed in
succeededProvisionalTests."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

UPSTREAM = Path(__file__).resolve().parent / "upstream"
OUTCOMES: dict[str, str] = {}  # ShortName -> passed / failed / skipped, filled by conftest.py

# pkg/features: the core features of each profile this runner attempts
PROFILES: dict[str, frozenset[str]] = {
    "GATEWAY-HTTP": frozenset({"Gateway", "ReferenceGrant", "HTTPRoute"}),
    "GATEWAY-GRPC": frozenset({"Gateway", "ReferenceGrant", "GRPCRoute"}),
    "GATEWAY-TLS": frozenset({"Gateway", "ReferenceGrant", "TLSRoute"}),
    "MESH-HTTP": frozenset({"Mesh", "HTTPRoute"}),
}
MESH_PROFILES = frozenset({"MESH-HTTP"})  # their tests are the suite's mesh tests (sidecars, no Gateway)
# the extended features Mecha claims (docs/gateway-api.md), by profile
GATEWAY_FEATURES = ("GatewayPort8080", "GatewayHTTPListenerIsolation")
SUPPORTED: dict[str, frozenset[str]] = {
    "GATEWAY-HTTP": frozenset(
        {
            "HTTPRouteQueryParamMatching",
            "HTTPRouteMethodMatching",
            "HTTPRouteResponseHeaderModification",
            "HTTPRoutePortRedirect",
            "HTTPRouteSchemeRedirect",
            "HTTPRoutePathRedirect",
            "HTTPRouteHostRewrite",
            "HTTPRoutePathRewrite",
            "HTTPRouteRequestMirror",
            "HTTPRouteRequestMultipleMirrors",
            "HTTPRouteRequestTimeout",
            "HTTPRouteBackendTimeout",
            "HTTPRouteParentRefPort",
            "HTTPRouteBackendRequestHeaderModification",
            "HTTPRoute303RedirectStatusCode",
            "HTTPRoute307RedirectStatusCode",
            "HTTPRoute308RedirectStatusCode",
            "HTTPRouteNamedRouteRule",
            "HTTPRouteDestinationPortMatching",
            "HTTPRouteRequestPercentageMirror",
            "HTTPRouteBackendProtocolWebSocket",
            "HTTPRouteBackendProtocolH2C",
            *GATEWAY_FEATURES,
            "BackendTLSPolicy",
            "BackendTLSPolicySANValidation",
        }
    ),
    # their extended features are Gateway ones (and TLSRoute's Terminate/Mixed modes, not claimed): the
    # suite's one set of supported features, seen through each profile
    "GATEWAY-GRPC": frozenset(GATEWAY_FEATURES),
    "GATEWAY-TLS": frozenset(GATEWAY_FEATURES),
    # GAMMA (docs/gateway-api.md); not claimed: MeshClusterIPMatching (sidecars route by Host, not by the
    # address dialled) and the provisional named-rule and 303/307/308 mesh tests (not ported yet)
    "MESH-HTTP": frozenset(
        {
            "HTTPRouteParentRefPort",
            "HTTPRouteResponseHeaderModification",
            "MeshConsumerRoute",
            "MeshHTTPRouteBackendRequestHeaderModification",
            "MeshHTTPRouteQueryParamMatching",
            "MeshHTTPRouteRedirectPath",
            "MeshHTTPRouteRedirectPort",
            "MeshHTTPRouteRewritePath",
            "MeshHTTPRouteSchemeRedirect",
        }
    ),
}


def upstream_tests() -> dict[str, Any]:
    return dict(json.loads((UPSTREAM / "tests.json").read_text()))


def _status(tests: list[str], outcomes: dict[str, str]) -> dict[str, Any]:
    passed = sorted(t for t in tests if outcomes.get(t) == "passed")
    failed = sorted(t for t in tests if outcomes.get(t) == "failed")
    skipped = sorted(t for t in tests if outcomes.get(t) not in ("passed", "failed"))
    result = "failure" if failed else "partial" if skipped else "success"
    out: dict[str, Any] = {
        "result": result,
        "statistics": {"Failed": len(failed), "Passed": len(passed), "Skipped": len(skipped)},
    }
    if skipped:
        out["skippedTests"] = skipped
    if failed:
        out["failedTests"] = failed
    return out


def _pool(profile: str, index: dict[str, Any]) -> list[dict[str, Any]]:
    """The suite's tests a profile draws from: the mesh tests for MESH-*, the gateway tests otherwise."""
    return [t for t in index["tests"] if bool(t["mesh"]) == (profile in MESH_PROFILES)]


def build_report(outcomes: dict[str, str], version: str) -> dict[str, Any]:
    index = upstream_tests()
    profiles = []
    for name, core_features in sorted(PROFILES.items()):  # Go lists them in map order: here by name
        supported = SUPPORTED[name]
        pool = _pool(name, index)
        core = [t["shortName"] for t in pool if set(t["features"]) <= core_features]
        extended_all = [
            t
            for t in pool
            if set(t["features"]) & set(_extended(name, index))
            and set(t["features"]) <= core_features | set(_extended(name, index))
        ]
        extended = [t["shortName"] for t in extended_all if set(t["features"]) - core_features <= supported]
        unsupported = sorted(set(_extended(name, index)) - supported)
        core_status, ext_status = _status(core, outcomes), _status(extended, outcomes)
        summary = (
            f"Core tests {core_status['result']} with {core_status['statistics']['Passed']} "
            f"test{'s' if core_status['statistics']['Passed'] != 1 else ''} passed, "
            f"{core_status['statistics']['Failed']} failed, {core_status['statistics']['Skipped']} skipped. "
            f"Extended tests {ext_status['result']} with {ext_status['statistics']['Passed']} passed, "
            f"{ext_status['statistics']['Failed']} failed, {ext_status['statistics']['Skipped']} skipped."
        )
        profiles.append(
            {
                "name": name,
                "summary": summary,
                "core": core_status,
                "extended": {
                    **ext_status,
                    "supportedFeatures": sorted(supported),
                    "unsupportedFeatures": unsupported,
                },
            }
        )
    provisional = sorted(
        t["shortName"]
        for t in index["tests"]
        if t["provisional"] and outcomes.get(t["shortName"]) == "passed"
    )
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "ConformanceReport",
        "implementation": {
            "organization": "mecha",
            "project": "mecha-bridge",
            "url": "https://github.com/mecha-bridge/mecha",
            "version": version,
            "contact": ["https://github.com/mecha-bridge/mecha/issues"],
        },
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "gatewayAPIVersion": index["ref"],
        "gatewayAPIChannel": "standard",
        "mode": "default",
        "profiles": profiles,
        **({"succeededProvisionalTests": provisional} if provisional else {}),
    }


def _extended(profile: str, index: dict[str, Any]) -> list[str]:
    """The profile's extended features: every feature its tests name beyond core (GATEWAY-HTTP: Gateway* and
    HTTPRoute* features, and BackendTLSPolicy*; GATEWAY-GRPC: Gateway* features; GATEWAY-TLS: Gateway* and
    TLSRoute* features; MESH-HTTP: Mesh* and HTTPRoute* features), as pkg/features groups them."""
    core = PROFILES[profile]
    names = {f for t in _pool(profile, index) for f in t["features"]} - core
    if profile == "GATEWAY-HTTP":
        prefixes: tuple[str, ...] = ("Gateway", "HTTPRoute", "BackendTLSPolicy")
    elif profile == "GATEWAY-GRPC":
        prefixes = ("Gateway",)  # GatewayExtendedFeatures
    elif profile == "GATEWAY-TLS":
        prefixes = ("Gateway", "TLSRoute")  # GatewayExtendedFeatures, TLSRouteExtendedFeatures
    elif profile == "MESH-HTTP":
        prefixes = ("Mesh", "HTTPRoute")  # MeshExtendedFeatures, HTTPRouteExtendedFeatures
    else:
        return sorted(names)
    return sorted(f for f in names if f.startswith(prefixes))


def _version() -> str:
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_report(path: str, outcomes: dict[str, str]) -> None:
    Path(path).write_text(yaml.safe_dump(build_report(outcomes, _version()), sort_keys=False))
