"""Kubernetes manifests: the control plane (mecha-system), one Deployment per workload with three
containers (app, Envoy, capability service), its bootstrap ConfigMap and a Service with a fixed ClusterIP, and
the ingress gateway (istio-system).

Every Envoy's admin listens on loopback only; its readiness is an exec probe running compose/probes/
envoy-ready.sh (shipped in the bootstrap ConfigMap): ready = listeners and clusters received, none NACKed.

Mecha does not watch the Kubernetes API: endpoints are WorkloadEntries at each workload Service's ClusterIP
(fixed, inside kubeadm/kind's default service CIDR 10.96.0.0/12), in front of the pod's Envoy inbound port.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import topology as t
import yaml

SYSTEM_NS = "mecha-system"
K8S_BACKEND_ENV = {
    "MECHA_REDIS_HOST": "redis.default.svc.cluster.local:6379",
    "MECHA_POSTGRES_URL": "postgres://postgres@postgres.default.svc.cluster.local:5432/mecha",
}


def _meta(name: str, namespace: str, **labels: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if labels:
        meta["labels"] = dict(labels)
    return meta


def _http_probe(path: str, port: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": port}, "periodSeconds": 2, "failureThreshold": 30}


ENVOY_READY_KEY = "envoy-ready.sh"


def _envoy_ready_probe(admin_port: int) -> dict[str, Any]:
    command = ["bash", f"/etc/envoy/{ENVOY_READY_KEY}", str(admin_port)]
    return {"exec": {"command": command}, "periodSeconds": 2, "failureThreshold": 30, "timeoutSeconds": 3}


def _envoy_container(envoy_image: str, ports: list[dict[str, Any]], admin_port: int) -> dict[str, Any]:
    """Envoy with its bootstrap and readiness script from one ConfigMap mounted at /etc/envoy."""
    return {
        "name": "envoy",
        "image": envoy_image,
        "command": ["envoy", "-c", "/etc/envoy/envoy.yaml", "--log-level", "info"],
        "ports": ports,
        "readinessProbe": _envoy_ready_probe(admin_port),
        "volumeMounts": [{"name": "bootstrap", "mountPath": "/etc/envoy", "readOnly": True}],
    }


def control_plane(config_dir: Path, image: str) -> list[dict[str, Any]]:
    files = {p.name: p.read_text() for p in sorted(config_dir.glob("*.yaml"))}
    files["workloads.yaml"] = yaml.safe_dump_all(t.endpoints("kubernetes"), sort_keys=False)
    labels = {"app": "mecha-control-plane"}
    container = {
        "name": "control-plane",
        "image": image,
        # A ConfigMap volume holds each file twice (KEY -> ..data/KEY -> ..<timestamp>/KEY); ..data is
        # the current set, swapped atomically on update, so the watcher loads each document once.
        "command": [
            "mecha",
            "serve",
            "--host",
            "0.0.0.0",
            "--port",
            str(t.API_PORT),
            "--xds-port",
            str(t.XDS_PORT),
            "--config",
            "/etc/mecha/config/..data",
            "--insecure-xds",  # TODO(xds-identity): plaintext bootstraps until the credentials flow lands
        ],
        "ports": [
            {"name": "http-api", "containerPort": t.API_PORT},
            {"name": "grpc-xds", "containerPort": t.XDS_PORT},
        ],
        "readinessProbe": _http_probe("/readyz", t.API_PORT),
        "livenessProbe": _http_probe("/healthz", t.API_PORT),
        "volumeMounts": [{"name": "config", "mountPath": "/etc/mecha/config", "readOnly": True}],
    }
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": SYSTEM_NS}},
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _meta("mecha-config", SYSTEM_NS),
            "data": files,
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": _meta("mecha-control-plane", SYSTEM_NS, **labels),
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [container],
                        "volumes": [{"name": "config", "configMap": {"name": "mecha-config"}}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta("mecha-control-plane", SYSTEM_NS, **labels),
            "spec": {
                "selector": labels,
                "ports": [
                    {"name": "http-api", "port": t.API_PORT, "targetPort": t.API_PORT},
                    {"name": "grpc-xds", "port": t.XDS_PORT, "targetPort": t.XDS_PORT},
                ],
            },
        },
    ]


def workload(w: t.Workload, image: str, envoy_image: str, ready_script: str) -> list[dict[str, Any]]:
    p = t.SIDECAR
    labels = w.labels
    app = {
        "name": "app",
        "image": image,
        "command": w.command(p.app, p.outbound, p.dapr_http),
        "ports": [{"name": "http", "containerPort": p.app}],
        "readinessProbe": _http_probe("/healthz", p.app),
    }
    envoy = _envoy_container(envoy_image, [{"name": "http-inbound", "containerPort": p.inbound}], p.admin)
    caps = {
        "name": "capabilities",
        "image": image,
        "command": [
            "python",
            "-m",
            "capabilities",
            "--app-id",
            w.service,
            "--dapr-http-port",
            str(p.capabilities_http),
            "--dapr-grpc-port",
            str(p.capabilities_grpc),
            "--control-plane",
            f"http://{t.K8S_CONTROL_PLANE_HOST}:{t.API_PORT}",
            "--app-port",
            str(p.app),
        ],
        "env": [{"name": k, "value": v} for k, v in K8S_BACKEND_ENV.items()],
        "readinessProbe": _http_probe("/v1.0/healthz", p.capabilities_http),
    }
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _meta(f"{w.name}-bootstrap", t.NAMESPACE, **labels),
            "data": {"envoy.yaml": t.kubernetes_bootstrap(w), ENVOY_READY_KEY: ready_script},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": _meta(w.name, t.NAMESPACE, **labels),
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [app, envoy, caps],
                        "volumes": [{"name": "bootstrap", "configMap": {"name": f"{w.name}-bootstrap"}}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta(w.name, t.NAMESPACE, **labels),
            "spec": {
                "clusterIP": w.cluster_ip,
                "selector": labels,
                "ports": [{"name": "http", "port": p.inbound, "targetPort": p.inbound}],
            },
        },
    ]


def backend(name: str, image: str, port: int, env: dict[str, str], args: list[str]) -> list[dict[str, Any]]:
    labels = {"app": name}
    container: dict[str, Any] = {"name": name, "image": image, "ports": [{"containerPort": port}]}
    if env:
        container["env"] = [{"name": k, "value": v} for k, v in env.items()]
    if args:
        container["args"] = args
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": _meta(name, t.NAMESPACE, **labels),
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta(name, t.NAMESPACE, **labels),
            "spec": {"selector": labels, "ports": [{"port": port, "targetPort": port}]},
        },
    ]


def gateway(envoy_image: str, ready_script: str) -> list[dict[str, Any]]:
    """The ingress gateway (Gateway bookinfo-gateway's selector istio: ingressgateway) in istio-system, as
    Istio runs it: port 80 of a LoadBalancer Service in front of the Envoy's 8080."""
    ns, name = t.GATEWAY_NAMESPACE, f"istio-{t.GATEWAY_ID}"
    labels = {"istio": "ingressgateway", "app": name}
    envoy = _envoy_container(
        envoy_image, [{"name": "http", "containerPort": t.GATEWAY_PORT}], t.GATEWAY_ADMIN_PORT
    )
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _meta(f"{name}-bootstrap", ns, **labels),
            "data": {
                "envoy.yaml": t.gateway_bootstrap(t.K8S_CONTROL_PLANE_HOST),
                ENVOY_READY_KEY: ready_script,
            },
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": _meta(name, ns, **labels),
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [envoy],
                        "volumes": [{"name": "bootstrap", "configMap": {"name": f"{name}-bootstrap"}}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta(name, ns, **labels),
            "spec": {
                "type": "LoadBalancer",
                "selector": labels,
                "ports": [{"name": "http2", "port": 80, "targetPort": t.GATEWAY_PORT}],
            },
        },
    ]


def manifests(
    config_dir: Path, image: str, envoy_image: str, ready_script: str
) -> dict[str, list[dict[str, Any]]]:
    """File name -> documents. ready_script: compose/probes/envoy-ready.sh, every Envoy's readiness."""
    apps: list[dict[str, Any]] = []
    for w in t.WORKLOAD_LIST:
        apps.extend(workload(w, image, envoy_image, ready_script))
    backends = [
        *backend("redis", "redis:7-alpine", 6379, {}, ["--save", "", "--appendonly", "no"]),
        *backend(
            "postgres",
            "postgres:16-alpine",
            5432,
            {"POSTGRES_HOST_AUTH_METHOD": "trust", "POSTGRES_DB": "mecha"},
            [],
        ),
    ]
    return {
        "control-plane.yaml": control_plane(config_dir, image),
        "backends.yaml": backends,
        "apps.yaml": apps,
        "gateway.yaml": gateway(envoy_image, ready_script),
    }
