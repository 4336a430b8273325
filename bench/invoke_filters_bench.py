"""Where the mesh's Envoy time goes on service invocation: two static Envoys configured as the mesh configures
the caller's Dapr listener and the target's inbound listener, then the same with one feature removed at a
time, all in one run.

Run: .venv/bin/python bench/invoke_filters_bench.py [--rate 1000] [--duration 8] [--mtls] [--rounds 2]

Each variant is a pair of static Envoys (--concurrency 1) in front of the same target app, driven by
invoke_bench's open-loop load generator (its own process). Per variant: the two Envoys' CPU time per request
(user+sys from /proc, the figure that holds under load) and added p50/p99 over the app called directly.
Variants (the "mesh" pair copies the fields the control plane emitted for the default `mecha up` config when
issue #17 was filed, as read from a real sidecar's /config_dump; since then the Dapr and inbound listeners run
the router only, i.e. the current tree is the mesh-cors-fault pair):
  bare          listener -> router -> static cluster: the baseline every mesh pays
  mesh          fault + cors + router; normalize_path, escaped slashes KEEP_UNCHANGED; websocket upgrade
                config; Dapr route (prefix + prefix_rewrite, Istio's default retry policy, attempt-count
                header, decorator); LEAST_REQUEST cluster with circuit breakers
  mesh-<x>      the mesh pair without feature x
With --mtls the hop between the two Envoys is mutual TLS (SPIFFE certificates from a throw-away CA) in both
the bare and the mesh pairs, and the target's listener is the PERMISSIVE one (tls_inspector, TLS and
plaintext chains, x-forwarded-client-cert SANITIZE_SET). Variants run in rounds, interleaved, so drift in
the machine's load spreads over all of them; the median per variant is reported.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from invoke_bench import run_loadgen
from mesh_rig import (
    HCM_TYPE,
    PY,
    envoy_argv,
    free_port,
    http_status,
    http_text,
    spawn,
    stop,
    wait_until,
)
from procstat import cpu_seconds

HERE = Path(__file__).resolve()
ROUTER_TYPE = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
TLS_UP = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
TLS_DOWN = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
PREVIOUS_HOSTS = "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"
TLS_INSPECTOR = "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"
IN_MESH_ALPN = ["istio-peer-exchange", "istio"]
INVOKE_PREFIX = "/v1.0/invoke/target/method/"
FEATURES = (
    "fault",
    "cors",
    "normalization",
    "upgrade",
    "retry",
    "attempt_count",
    "decorator",
    "least_request",
)
TLS_FEATURES = ("xfcc", "tls_inspector")


def _filter(name: str, type_url: str) -> dict[str, Any]:
    return {"name": f"envoy.filters.http.{name}", "typed_config": {"@type": type_url}}


FAULT = _filter("fault", "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault")
CORS = _filter("cors", "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors")
ROUTER = _filter("router", ROUTER_TYPE)
RETRY = {  # Istio's default retry policy, as the control plane emits it
    "retry_on": "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
    "num_retries": 2,
    "retry_host_predicate": [{"name": "envoy.retry_host_predicates.previous_hosts", "typed_config": {
        "@type": PREVIOUS_HOSTS}}],
    "host_selection_retry_max_attempts": "5",
    "retriable_status_codes": [503],
}  # fmt: skip


def _addr(port: int) -> dict[str, Any]:
    return {"socket_address": {"address": "127.0.0.1", "port_value": port}}


def _hcm(stat_prefix: str, route: dict[str, Any], vhost: dict[str, Any], on: set[str]) -> dict[str, Any]:
    filters = [f for f, name in ((FAULT, "fault"), (CORS, "cors")) if name in on] + [ROUTER]
    hcm: dict[str, Any] = {
        "@type": HCM_TYPE,
        "stat_prefix": stat_prefix,
        "route_config": {"name": stat_prefix, "validate_clusters": False, "virtual_hosts": [
            {"name": "all", "domains": ["*"], "routes": [route], **vhost}]},
        "http_filters": filters,
    }  # fmt: skip
    if "normalization" in on:
        hcm["normalize_path"] = True
        hcm["path_with_escaped_slashes_action"] = "KEEP_UNCHANGED"
    if "upgrade" in on:
        hcm["upgrade_configs"] = [{"upgrade_type": "websocket"}]
    if "xfcc" in on:
        hcm["forward_client_cert_details"] = "SANITIZE_SET"
        hcm["set_current_client_cert_details"] = {"uri": True}
    return hcm


def _tls_common(certs: Path, who: str, alpn: list[str]) -> dict[str, Any]:
    return {
        "tls_certificates": [{"certificate_chain": {"filename": str(certs / f"{who}.crt")},
                              "private_key": {"filename": str(certs / f"{who}.key")}}],
        "validation_context": {"trusted_ca": {"filename": str(certs / "ca.crt")}},
        "alpn_protocols": alpn,
    }  # fmt: skip


def pair_configs(
    variant: set[str], ports: dict[str, int], app_port: int, certs: Path | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(caller, target) static bootstraps: the caller's Dapr listener and the target's inbound listener."""
    mesh = "mesh" in variant
    on = variant if mesh else set()
    route: dict[str, Any] = {"match": {"prefix": INVOKE_PREFIX if mesh else "/"},
                             "route": {"cluster": "target", "timeout": "0s"}}  # fmt: skip
    if mesh:
        route["route"]["prefix_rewrite"] = "/"
        route["route"]["max_grpc_timeout"] = "0s"
        route["name"] = "invoke/target"
    if "retry" in on:
        route["route"]["retry_policy"] = RETRY
    vhost = {"include_request_attempt_count": True} if "attempt_count" in on else {}
    target_cluster: dict[str, Any] = {
        "name": "target", "type": "STATIC", "connect_timeout": "10s",
        "load_assignment": {"cluster_name": "target", "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": _addr(ports["target_in"])}}]}]},
    }  # fmt: skip
    if "least_request" in on:
        target_cluster["lb_policy"] = "LEAST_REQUEST"
        target_cluster["circuit_breakers"] = {"thresholds": [{
            "max_connections": 4294967295, "max_pending_requests": 4294967295,
            "max_requests": 4294967295, "max_retries": 4294967295, "track_remaining": True}]}  # fmt: skip
    if certs is not None:
        target_cluster["transport_socket"] = {"name": "envoy.transport_sockets.tls", "typed_config": {
            "@type": TLS_UP, "sni": "outbound_.9080_._.target.default.svc.cluster.local",
            "common_tls_context": _tls_common(certs, "caller", IN_MESH_ALPN)}}  # fmt: skip
    caller = {
        "admin": {"address": _addr(ports["caller_admin"])},
        "static_resources": {
            "listeners": [{"name": "dapr_http", "address": _addr(ports["caller_in"]), "filter_chains": [
                {"filters": [{"name": "envoy.filters.network.http_connection_manager",
                              "typed_config": _hcm("dapr_http", route, vhost, on)}]}]}],
            "clusters": [target_cluster],
        },
    }  # fmt: skip
    inbound_route: dict[str, Any] = {"match": {"prefix": "/"}, "route": {"cluster": "app", "timeout": "0s"}}
    if mesh:
        inbound_route["route"]["max_grpc_timeout"] = "0s"
        inbound_route["name"] = "default"
    if "decorator" in on:
        inbound_route["decorator"] = {"operation": f"target.default:{app_port}/*"}
        route["decorator"] = {"operation": "target.default.svc.cluster.local:9080/*"}
    inbound_on = on - {"fault", "cors"} if certs is not None else on  # the mTLS inbound has router only
    chain = {"filters": [{"name": "envoy.filters.network.http_connection_manager",
                          "typed_config": _hcm("inbound", inbound_route, {}, inbound_on)}]}  # fmt: skip
    listener: dict[str, Any] = {
        "name": "inbound",
        "address": _addr(ports["target_in"]),
        "filter_chains": [chain],
    }
    if certs is not None:
        tls_chain = copy.deepcopy(chain)
        tls_chain["transport_socket"] = {"name": "envoy.transport_sockets.tls", "typed_config": {
            "@type": TLS_DOWN, "require_client_certificate": True,
            "common_tls_context": _tls_common(certs, "target", ["h2", "http/1.1"])}}  # fmt: skip
        if "tls_inspector" in on:  # PERMISSIVE: a TLS chain and a plaintext chain
            tls_chain["filter_chain_match"] = {"transport_protocol": "tls"}
            chain["filter_chain_match"] = {"transport_protocol": "raw_buffer"}
            listener["filter_chains"] = [tls_chain, chain]
            inspector = {
                "name": "envoy.filters.listener.tls_inspector",
                "typed_config": {"@type": TLS_INSPECTOR},
            }
            listener["listener_filters"] = [inspector]
        else:
            listener["filter_chains"] = [tls_chain]
    target = {
        "admin": {"address": _addr(ports["target_admin"])},
        "static_resources": {
            "listeners": [listener],
            "clusters": [{"name": "app", "type": "STATIC", "connect_timeout": "10s",
                          "load_assignment": {"cluster_name": "app", "endpoints": [{"lb_endpoints": [
                              {"endpoint": {"address": _addr(app_port)}}]}]}}],
        },
    }  # fmt: skip
    return caller, target


def write_certs(folder: Path) -> Path:
    """A throw-away CA and SPIFFE leaf certificates for caller and target (what the mesh CA issues)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "bench")])

    def build(subject: x509.Name, key: Any, ca: bool, san: str | None) -> x509.Certificate:
        b = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_name).public_key(key.public_key())
             .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
             .not_valid_after(now + datetime.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))  # fmt: skip
        if san:
            b = b.add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(san)]), False)
        return b.sign(ca_key, hashes.SHA256())

    out = folder / "certs"
    out.mkdir()
    (out / "ca.crt").write_bytes(build(ca_name, ca_key, True, None).public_bytes(serialization.Encoding.PEM))
    for who in ("caller", "target"):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = build(x509.Name([]), key, False, f"spiffe://cluster.local/ns/default/sa/{who}")
        (out / f"{who}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        pem = serialization.Encoding.PEM
        plain = serialization.NoEncryption()
        (out / f"{who}.key").write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, plain))
    return out


class Pair:
    """Two static Envoys of one variant, started and stopped by PID."""

    def __init__(self, name: str, variant: set[str], app_port: int, folder: Path, certs: Path | None) -> None:
        self.name = name
        names = ("caller_in", "caller_admin", "target_in", "target_admin")
        self.ports = {k: free_port() for k in names}
        self.procs = []
        caller, target = pair_configs(variant, self.ports, app_port, certs)
        for side, config in (("target", target), ("caller", caller)):
            path = folder / f"{name}-{side}.json"
            path.write_text(json.dumps(config))
            admin = self.ports[f"{side}_admin"]
            self.procs.append(
                spawn(envoy_argv(path, admin, folder / f"{name}-{side}.log"), folder / f"{name}.out")
            )
            wait_until(lambda a=admin: http_text(f"http://127.0.0.1:{a}/ready").strip() == "LIVE", 20, name)
        path = INVOKE_PREFIX + "hello" if "mesh" in variant else "/hello"
        self.url = f"http://127.0.0.1:{self.ports['caller_in']}{path}"
        wait_until(lambda: http_status(self.url) == 200, 20, f"{name} answers")

    def cpu(self) -> float:
        return sum(cpu_seconds(p.pid) for p in self.procs)

    def stop(self) -> None:
        for p in self.procs:
            stop(p)


def variants(mtls: bool) -> dict[str, set[str]]:
    full = {"mesh", *FEATURES, *(TLS_FEATURES if mtls else ())}
    out = {"bare": set(), "mesh": full}
    for feature in sorted(full - {"mesh"}):
        out[f"mesh-{feature}"] = full - {feature}
    return out


def bench(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    app_port = free_port()
    procs = [spawn([PY, str(HERE.parent / "invoke_bench.py"), "--serve", str(app_port)], folder / "app.log")]
    certs = write_certs(folder) if args.mtls else None
    pairs: dict[str, Pair] = {}
    rows: dict[str, list[dict[str, Any]]] = {}
    try:
        wait_until(lambda: http_status(f"http://127.0.0.1:{app_port}/healthz") == 200, 20, "app")
        for name, variant in variants(args.mtls).items():
            pairs[name] = Pair(name, variant, app_port, folder, certs)
        direct_url = f"http://127.0.0.1:{app_port}/hello"
        for _ in range(args.rounds):
            direct = run_loadgen(direct_url, args)
            for name, pair in pairs.items():
                before = pair.cpu()
                got = run_loadgen(pair.url, args)
                n = max(1, int(got["n"]) + int(got["errors"]))
                rows.setdefault(name, []).append({
                    "envoy_cpu_us_per_request": (pair.cpu() - before) / n * 1e6,
                    "added_p50_ms": got["p50_ms"] - direct["p50_ms"],
                    "added_p99_ms": got["p99_ms"] - direct["p99_ms"],
                    "errors": got["errors"],
                })  # fmt: skip
    finally:
        for pair in pairs.values():
            pair.stop()
        for p in procs:
            stop(p)
    med = lambda name, key: round(statistics.median(r[key] for r in rows[name]), 3)  # noqa: E731
    bare_cpu = med("bare", "envoy_cpu_us_per_request")
    mesh_cpu = med("mesh", "envoy_cpu_us_per_request")
    table = {}
    for name in rows:
        cpu = med(name, "envoy_cpu_us_per_request")
        table[name] = {
            "envoy_cpu_us_per_request": round(cpu, 1),
            "vs_bare": round(cpu / bare_cpu, 3),
            "feature_cost_us": round(mesh_cpu - cpu, 1) if name.startswith("mesh-") else None,
            "added_p50_ms": med(name, "added_p50_ms"),
            "added_p99_ms": med(name, "added_p99_ms"),
            "errors": sum(int(r["errors"]) for r in rows[name]),
        }
    return {"rate": args.rate, "duration_s": args.duration, "rounds": args.rounds, "mtls": args.mtls,
            "load_average": os.getloadavg(), "variants": table}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--mtls", action="store_true", help="mutual TLS between the two Envoys")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="mecha-filters-"))
    try:
        print(f"load average before: {os.getloadavg()}", file=sys.stderr)
        t = time.perf_counter()
        result = bench(args, folder)
        result["wall_s"] = round(time.perf_counter() - t, 1)
        print(json.dumps(result, indent=2))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
