"""mTLS on by default (issue #14 item 1): the CA runs unless MECHA_MTLS=0 / --no-mtls, and on a mesh without
a CA config that needs workload certificates is refused (what would answer 503) or warned (what only weakens)
when it is applied, not left to fail at runtime."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from xds.cli.main import build_parser
from xds.controlplane.runtime import ControlPlane
from xds.controlplane.settings import Settings

SERVICE = """apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews}
spec:
  hosts: [reviews]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  endpoints: [{address: 127.0.0.1, labels: {version: v1}}]
"""
# Bookinfo's samples/bookinfo/networking/destination-rule-all-mtls.yaml (reviews)
ISTIO_MUTUAL_DR = """apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}
  subsets: [{name: v1, labels: {version: v1}}]
"""
STRICT_PA = """apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
"""
PORT_STRICT_PA = """apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: reviews}
spec:
  selector: {matchLabels: {app: reviews}}
  mtls: {mode: PERMISSIVE}
  portLevelMtls: {9080: {mode: STRICT}}
"""
PERMISSIVE_PA = """apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: PERMISSIVE}}
"""


def authz(name: str, action: str, source: str) -> str:
    return f"""apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: {name}}}
spec:
  selector: {{matchLabels: {{app: reviews}}}}
  action: {action}
  rules: [{{from: [{{source: {source}}}]}}]
"""


@asynccontextmanager
async def running(state: Path, mtls: bool) -> AsyncIterator[ControlPlane]:
    settings = Settings(xds_port=0, watch=False, state_dir=state, mtls=mtls)
    cp = ControlPlane(settings)
    await cp.start()
    try:
        yield cp
    finally:
        await cp.stop()


def no_ca(outcome: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(d["name"], d["field"], d["severity"]) for d in outcome["diagnostics"] if d["code"] == "no-ca"]


# ---- the default -------------------------------------------------------------------------------------------


def test_the_ca_is_on_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MECHA_MTLS", raising=False)
    monkeypatch.delenv("MECHA_INSECURE_XDS", raising=False)
    assert Settings.from_env().mtls is True


@pytest.mark.parametrize("value", ["0", "false", "no", "off", "OFF"])
def test_mecha_mtls_0_turns_it_off(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("MECHA_MTLS", value)
    assert Settings.from_env().mtls is False


def test_no_mtls_flag_turns_it_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MECHA_MTLS", "1")
    args = build_parser().parse_args(["serve", "--no-mtls"])
    assert args.no_mtls and Settings.from_env(mtls=False if args.no_mtls else None).mtls is False
    assert build_parser().parse_args(["up", "--no-mtls"]).no_mtls


def test_insecure_xds_has_no_ca_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without agents the CA would mint every proxy's key and send it over a plaintext, unauthenticated port:
    on by default only where keys stay with the agents."""
    monkeypatch.delenv("MECHA_MTLS", raising=False)
    assert Settings.from_env(insecure_xds=True).mtls is False
    monkeypatch.setenv("MECHA_INSECURE_XDS", "1")
    assert Settings.from_env().mtls is False
    monkeypatch.setenv("MECHA_MTLS", "1")  # the old opt-in still works, with its warning
    assert Settings.from_env().mtls is True


def test_a_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MECHA_MTLS", "maybe")
    with pytest.raises(ValueError, match="MECHA_MTLS='maybe'"):
        Settings.from_env()


# ---- a mesh without a CA -----------------------------------------------------------------------------------


async def test_bookinfo_istio_mutual_is_refused_without_a_ca(tmp_path: Path) -> None:
    async with running(tmp_path, mtls=False) as cp:
        assert (await cp.apply([("se.yaml", SERVICE)]))["accepted"]
        outcome = await cp.apply([("dr.yaml", ISTIO_MUTUAL_DR)])
        assert not outcome["accepted"]
        assert no_ca(outcome) == [("reviews", "spec.trafficPolicy.tls.mode", "error")]
        assert "MECHA_MTLS=0" in outcome["diagnostics"][0]["message"]
        assert cp.store.config.destination_rules == ()  # nothing served: the last good config stays


async def test_strict_peer_authentication_is_refused_without_a_ca(tmp_path: Path) -> None:
    async with running(tmp_path, mtls=False) as cp:
        outcome = await cp.apply([("pa.yaml", STRICT_PA)])
        assert not outcome["accepted"] and no_ca(outcome) == [("default", "spec.mtls.mode", "error")]
        outcome = await cp.apply([("pa.yaml", PORT_STRICT_PA)])
        assert not outcome["accepted"]
        assert no_ca(outcome) == [("reviews", "spec.portLevelMtls.9080.mode", "error")]
        assert (await cp.apply([("pa.yaml", PERMISSIVE_PA)]))["accepted"]  # plaintext keeps working


async def test_authorization_principals_without_a_ca(tmp_path: Path) -> None:
    """An ALLOW on principals would 403 the callers it allows: refused. A DENY on principals would never
    fire (weaker than written): accepted with a warning; a DENY on notPrincipals would deny everyone."""
    principal = "{principals: [cluster.local/ns/default/sa/productpage]}"
    not_principal = "{notPrincipals: [cluster.local/ns/default/sa/productpage]}"
    async with running(tmp_path, mtls=False) as cp:
        refused = await cp.apply([("a.yaml", authz("allow-pp", "ALLOW", principal))])
        assert not refused["accepted"]
        assert no_ca(refused) == [("allow-pp", "spec.rules[0].from[0].source.principals", "error")]
        warned = await cp.apply([("d.yaml", authz("deny-pp", "DENY", principal))])
        assert warned["accepted"]
        assert no_ca(warned) == [("deny-pp", "spec.rules[0].from[0].source.principals", "warning")]
        refused = await cp.apply([("n.yaml", authz("deny-others", "DENY", not_principal))])
        assert not refused["accepted"]
        assert no_ca(refused) == [("deny-others", "spec.rules[0].from[0].source.notPrincipals", "error")]


async def test_with_the_ca_the_same_config_is_accepted(tmp_path: Path) -> None:
    async with running(tmp_path, mtls=True) as cp:
        files = [("se.yaml", SERVICE), ("dr.yaml", ISTIO_MUTUAL_DR), ("pa.yaml", STRICT_PA)]
        outcome = await cp.apply([*files, ("a.yaml", authz("allow-pp", "ALLOW", "{principals: [x]}"))])
        assert outcome["accepted"] and no_ca(outcome) == []


async def test_a_restart_without_the_ca_keeps_serving_and_accepts_unrelated_changes(tmp_path: Path) -> None:
    """The stored config came from a mesh with a CA: its findings are warnings now, a new one is refused."""
    async with running(tmp_path, mtls=True) as cp:
        assert (await cp.apply([("pa.yaml", STRICT_PA)]))["accepted"]
    async with running(tmp_path, mtls=False) as cp:
        outcome = await cp.apply([("se.yaml", SERVICE)])
        assert outcome["accepted"] and no_ca(outcome) == []  # not repeated: counted as an earlier warning
        assert outcome["earlier_warnings"] == 1
        assert (await cp.apply([("pa.yaml", STRICT_PA)]))["accepted"]  # unchanged: still served
        assert not (await cp.apply([("dr.yaml", ISTIO_MUTUAL_DR)]))["accepted"]


async def test_the_accepted_configs_findings_are_computed_once_per_accepted_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Refused changes leave the accepted config as it is: its no-CA findings are not walked again."""
    from xds.validate import no_ca as module

    walked: list[object] = []
    real = module.accepted_findings
    monkeypatch.setattr(module, "accepted_findings", lambda config: walked.append(config) or real(config))
    async with running(tmp_path, mtls=True) as cp:
        assert (await cp.apply([("pa.yaml", STRICT_PA)]))["accepted"]
    async with running(tmp_path, mtls=False) as cp:
        for _ in range(3):
            refused = await cp.apply([("dr.yaml", ISTIO_MUTUAL_DR)])
            assert not refused["accepted"] and refused["earlier_warnings"] == 1
        assert walked == [cp.store.config]
        assert (await cp.apply([("se.yaml", SERVICE)]))["accepted"]  # a new accepted config: walked again
        assert (await cp.apply([("dr.yaml", ISTIO_MUTUAL_DR)]))["earlier_warnings"] == 1
        assert len(walked) == 2 and walked[1] is cp.store.config
