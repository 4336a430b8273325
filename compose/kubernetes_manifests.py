"""Kubernetes manifests: the control plane (mecha-system), one Deployment per workload with three
containers (app, Envoy, capability service), its bootstrap ConfigMap and a Service with a fixed ClusterIP, and
the ingress gateway (istio-system).

Workload identity (issue #11), as compose does it (compose/agents.py), the Kubernetes way:
- The control plane keeps its state (credential signing key, mesh CA, config store) on a
  PersistentVolumeClaim; its xDS port serves TLS and wants a workload credential on every stream (no
  --insecure-xds).
- Each proxy's credential is a Secret `mecha-credential-<proxy id>` (credential.jwt, root-cert.pem) made by
  kubernetes/issue-credentials.sh: it signs inside the control plane's pod with `kubectl exec` (the signing
  key never leaves its volume) and pipes the result into `kubectl create secret`. No in-cluster Job holds
  the operator token or the signing key: either one could mint any identity, so it stays off the cluster.
- The agent runs inside the capability-service container (--agent-*) of each workload pod, as a `mecha
  agent` container in the gateway's pod. It alone mounts the credential Secret; it serves xds.sock and
  sds.sock in an emptyDir it shares with Envoy only (pod fsGroup = Envoy's group 101: folder 0710, sockets
  0660 for that group). Envoy's bootstrap reaches nothing but those two sockets.

Every Envoy's admin listens on loopback only; its readiness is an exec probe running compose/probes/
envoy-ready.sh (shipped in the bootstrap ConfigMap): ready = listeners and clusters received, none NACKed.

Mecha does not watch the Kubernetes API: endpoints are WorkloadEntries at each workload Service's ClusterIP
(fixed, inside kubeadm/kind's default service CIDR 10.96.0.0/12), in front of the pod's Envoy inbound port.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import agents
import topology as t
import yaml

SYSTEM_NS = "mecha-system"
STATE_CLAIM = "mecha-state"  # PersistentVolumeClaim of the control plane's state folder
CONTROL_PLANE_DEPLOYMENT = "mecha-control-plane"
ISSUE_SCRIPT = "issue-credentials.sh"  # rendered beside the manifests
CREDENTIAL_VOLUME, AGENT_VOLUME = "credential", "agent"
READ_BY_GROUP = 0o440  # Secret files: root-owned, readable by the pod's fsGroup (the agent is a member)
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
    """Envoy with its bootstrap and readiness script from one ConfigMap mounted at /etc/envoy, and its
    agent's socket folder (the only way to the control plane). It runs as the image's envoy user."""
    return {
        "name": "envoy",
        "image": envoy_image,
        "command": ["envoy", "-c", "/etc/envoy/envoy.yaml", "--log-level", "info"],
        "ports": ports,
        "readinessProbe": _envoy_ready_probe(admin_port),
        "securityContext": {"runAsUser": agents.ENVOY_GID, "runAsGroup": agents.ENVOY_GID},
        "volumeMounts": [
            {"name": "bootstrap", "mountPath": "/etc/envoy", "readOnly": True},
            {"name": AGENT_VOLUME, "mountPath": agents.AGENT_DIR},
        ],
    }


def credential_secret(proxy_id: str) -> str:
    return f"mecha-credential-{proxy_id}"


def _agent_mounts() -> list[dict[str, Any]]:
    """The agent's two volumes: its credential (read-only) and the socket folder it shares with Envoy."""
    return [
        {"name": CREDENTIAL_VOLUME, "mountPath": agents.CREDENTIAL_DIR, "readOnly": True},
        {"name": AGENT_VOLUME, "mountPath": agents.AGENT_DIR},
    ]


def _identity_volumes(proxy_id: str) -> list[dict[str, Any]]:
    secret = {"secretName": credential_secret(proxy_id), "defaultMode": READ_BY_GROUP}
    return [{"name": CREDENTIAL_VOLUME, "secret": secret}, {"name": AGENT_VOLUME, "emptyDir": {}}]


def _pod_security() -> dict[str, Any]:
    """fsGroup: Envoy's group owns the emptyDir and the Secret files and is added to every container's
    groups, so the agent may give its sockets to that group (--agent-socket-group)."""
    return {"fsGroup": agents.ENVOY_GID}


def _agent_address() -> str:
    return agents.control_plane_address([t.K8S_CONTROL_PLANE_HOST])


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
            "--state-dir",
            agents.STATE_DIR,
        ],
        # the capability services call the API by its Service name (unknown Host names are refused); the
        # mesh CA is on: xDS is TLS + a workload credential per stream, certificates come from the agents
        "env": [
            {"name": "MECHA_ALLOWED_HOSTS", "value": t.K8S_CONTROL_PLANE_HOST},
            {"name": "MECHA_MTLS", "value": "1"},
        ],
        "ports": [
            {"name": "http-api", "containerPort": t.API_PORT},
            {"name": "grpc-xds", "containerPort": t.XDS_PORT},
        ],
        "readinessProbe": _http_probe("/readyz", t.API_PORT),
        "livenessProbe": _http_probe("/healthz", t.API_PORT),
        "volumeMounts": [
            {"name": "config", "mountPath": "/etc/mecha/config", "readOnly": True},
            {"name": "state", "mountPath": agents.STATE_DIR},
        ],
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
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": _meta(STATE_CLAIM, SYSTEM_NS, **labels),
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": _meta(CONTROL_PLANE_DEPLOYMENT, SYSTEM_NS, **labels),
            "spec": {
                "replicas": 1,
                "strategy": {"type": "Recreate"},  # one writer of the ReadWriteOnce state volume at a time
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        # the image's user `mecha` writes the state volume (signing key and CA key 0600)
                        "securityContext": {"fsGroup": agents.AGENT_UID},
                        "containers": [container],
                        "volumes": [
                            {"name": "config", "configMap": {"name": "mecha-config"}},
                            {"name": "state", "persistentVolumeClaim": {"claimName": STATE_CLAIM}},
                        ],
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
            *agents.embedded_agent_args(_agent_address(), f"{t.ADMIN_HOST}:{p.admin}"),
        ],
        "env": [{"name": k, "value": v} for k, v in K8S_BACKEND_ENV.items()],
        "readinessProbe": _http_probe("/v1.0/healthz", p.capabilities_http),
        "securityContext": {"runAsUser": agents.AGENT_UID, "runAsGroup": agents.AGENT_UID},
        "volumeMounts": _agent_mounts(),  # the embedded agent: the credential is mounted here only
    }
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _meta(f"{w.name}-bootstrap", t.NAMESPACE, **labels),
            "data": {
                "envoy.yaml": agents.bootstrap(t.kubernetes_bootstrap(w)),
                ENVOY_READY_KEY: ready_script,
            },
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
                        "securityContext": _pod_security(),
                        "containers": [app, envoy, caps],
                        "volumes": [
                            {"name": "bootstrap", "configMap": {"name": f"{w.name}-bootstrap"}},
                            *_identity_volumes(w.name),
                        ],
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


def standalone_agent(image: str) -> dict[str, Any]:
    """`mecha agent` beside an Envoy that has no capability service (the gateway)."""
    sockets = f"test -S {agents.SOCKET_DIR}/xds.sock && test -S {agents.SOCKET_DIR}/sds.sock"
    return {
        "name": "agent",
        "image": image,
        "command": [
            *["mecha", "agent", "--credential", agents.CREDENTIAL_FILE, "--root-cert", agents.ROOT_FILE],
            *["--control-plane", _agent_address(), "--socket-dir", agents.SOCKET_DIR],
            *["--socket-group", str(agents.ENVOY_GID)],
            # the gateway Envoy's loopback admin (same pod, same network namespace): read through the agent
            *["--envoy-admin", f"{t.ADMIN_HOST}:{t.GATEWAY_ADMIN_PORT}"],
        ],
        "readinessProbe": {"exec": {"command": ["sh", "-c", sockets]}, "periodSeconds": 2},
        "securityContext": {"runAsUser": agents.AGENT_UID, "runAsGroup": agents.AGENT_UID},
        "volumeMounts": _agent_mounts(),
    }


def gateway(image: str, envoy_image: str, ready_script: str) -> list[dict[str, Any]]:
    """The ingress gateway (Gateway bookinfo-gateway's selector istio: ingressgateway) in istio-system, as
    Istio runs it: port 80 of a LoadBalancer Service in front of the Envoy's 8080, its agent beside it."""
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
                "envoy.yaml": agents.bootstrap(t.gateway_bootstrap(t.K8S_CONTROL_PLANE_HOST)),
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
                        "securityContext": _pod_security(),
                        "containers": [envoy, standalone_agent(image)],
                        "volumes": [
                            {"name": "bootstrap", "configMap": {"name": f"{name}-bootstrap"}},
                            *_identity_volumes(t.GATEWAY_ID),
                        ],
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
        "gateway.yaml": gateway(image, envoy_image, ready_script),
    }


def proxies() -> dict[str, tuple[str, dict[str, Any]]]:
    """Proxy id -> (namespace, node metadata) of every Envoy the manifests run."""
    out = {w.name: (t.NAMESPACE, t.sidecar_metadata(w, "0.0.0.0")) for w in t.WORKLOAD_LIST}
    out[t.GATEWAY_ID] = (t.GATEWAY_NAMESPACE, t.gateway_metadata())
    return out


# inside the control plane's container: sign into a private temporary folder, print, remove; its status
_SIGN_IN_POD = (
    'umask 077; d=$(mktemp -d); "$@" -o "$d/credential.jwt" >&2 && cat "$d/credential.jwt"; '
    's=$?; rm -rf "$d"; exit $s'
)


def issue_script(
    manifest: str = "control-plane.yaml", root_cert: str = f"{agents.STATE_DIR}/ca/root-cert.pem"
) -> str:
    """kubernetes/issue-credentials.sh: each proxy's credential signed inside the control plane's pod,
    stored as its Secret (re-run to renew: `kubectl apply` replaces them; restart the pods to reload).
    The replicas' copy (kubernetes_replicas.py) names its own manifest and reads the mesh root elsewhere."""
    exec_cp = f"kubectl -n {SYSTEM_NS} exec deploy/{CONTROL_PLANE_DEPLOYMENT} --"
    lines = [
        "#!/bin/sh",
        f"# Generated by compose/render.py from compose/{Path(__file__).name}: edit that, then render again.",
        f"# Run once {manifest} is ready, before apps.yaml and gateway.yaml (their pods wait for",
        "# their Secret). Needs kubectl exec on the control plane's pod and create/apply on Secrets.",
        "set -eu",
        'work=$(mktemp -d) && trap \'rm -rf "$work"\' EXIT && chmod 0700 "$work"',
        f'{exec_cp} cat {root_cert} > "$work/root-cert.pem"',
        "# issue NAMESPACE SECRET -- mecha credential issue ARGS: signed where the key lives (never copied)",
        "issue() {",
        "  ns=$1 secret=$2 && shift 3",
        f'  {exec_cp} sh -c \'{_SIGN_IN_POD}\' sh "$@" > "$work/credential.jwt"',
        '  kubectl -n "$ns" create secret generic "$secret" --from-file="$work/credential.jwt" \\',
        '    --from-file="$work/root-cert.pem" --dry-run=client -o yaml | kubectl apply -f -',
        "}",
    ]
    for proxy_id, (namespace, metadata) in proxies().items():
        argv = agents.issue_argv(proxy_id, metadata, "OUT")
        at = argv.index("-o")
        del argv[at : at + 2]  # issue() writes into the pod's own temporary folder
        lines.append(shlex.join(["issue", namespace, credential_secret(proxy_id), "--", *argv]))
    return "\n".join(lines) + "\n"
