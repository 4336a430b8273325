"""The multi-replica variant of the Kubernetes manifests (kubernetes/replicas/): two control-plane replicas
on one PostgreSQL store, every agent dialing both.

- Deployment `mecha-control-plane`, 2 replicas (spread over nodes when it can), MECHA_STORE from the Secret
  `mecha-store`; a PodDisruptionBudget keeps one serving through a node drain.
- What the replicas share stays out of the database: the CA files (Secret `cacerts`, Istio's plug-in layout
  or Mecha's root-cert.pem + root-key.pem, mounted read-only as MECHA_CA_DIR: a rotated Secret reaches every
  replica without a restart) and the credential signing key with the API tokens (Secret
  `mecha-control-plane-keys`, copied by an init container into each pod's in-memory state folder, owned by
  the image's user). kubernetes/replicas/create-secrets.sh makes them with `mecha keys init`.
- The agents dial `dns:///mecha-control-plane-xds...:15012`, a headless Service: gRPC's resolver gets the
  address of every ready replica, moves to another when its stream breaks, and re-resolves, so a replaced pod
  (new IP) is found again. A ClusterIP would hide the replicas behind kube-proxy: a reconnection may land on
  the frozen replica again, which stays an endpoint until its readiness fails. The API (CLI, capability
  services) keeps the ClusterIP Service `mecha-control-plane`: any replica answers for the whole fleet.
- PostgreSQL runs as a one-pod StatefulSet for the demo; point `mecha-store` at a managed database instead.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import agents
import kubernetes_manifests as k
import topology as t

FOLDER = Path("kubernetes/replicas")
REPLICAS = 2
STORE_SECRET, STORE_KEY, PASSWORD_KEY = "mecha-store", "url", "password"
KEYS_SECRET = "mecha-control-plane-keys"  # signing-key.pem, api-token, dapr-reader-token
CACERTS_SECRET = "cacerts"  # Istio's name for the plug-in CA Secret
CA_DIR = "/etc/cacerts"
KEYS_DIR = "/etc/mecha/keys"
SIGNING_KEY, API_TOKEN, READER_TOKEN = "signing-key.pem", "api-token", "dapr-reader-token"
XDS_SERVICE = "mecha-control-plane-xds"  # headless: one DNS record per ready replica
XDS_HOST = f"{XDS_SERVICE}.{k.SYSTEM_NS}.svc.cluster.local"
AGENT_CONTROL_PLANE = f"dns:///{XDS_HOST}:{t.XDS_PORT}"
POSTGRES, POSTGRES_USER, POSTGRES_DB = "mecha-postgres", "mecha", "mecha"
POSTGRES_HOST = f"{POSTGRES}.{k.SYSTEM_NS}.svc.cluster.local"
LABELS = {"app": k.CONTROL_PLANE_DEPLOYMENT}
DEMO_POSTGRES_IMAGE = "postgres:16-alpine"
STORE_OPTIONS = "schema=mecha_config&sslmode=disable"  # the demo database is in the cluster: no TLS

# The init container copies the shared keys into the state folder as the files `mecha serve` expects there,
# 0600 and owned by the image's user (Secret files are root's; the emptyDir's root too).
_COPY_KEYS = (
    f"set -eu; umask 077; s={agents.STATE_DIR}; k={KEYS_DIR}; mkdir -p $s/identity; "
    f"cp $k/{SIGNING_KEY} $s/identity/signing-key.pem; cp $k/{API_TOKEN} $k/{READER_TOKEN} $s/; "
    f"chown -R {agents.AGENT_UID}:{agents.AGENT_UID} $s; chmod 0700 $s $s/identity"
)


def _secret_volume(name: str, secret: str) -> dict[str, Any]:
    return {"name": name, "secret": {"secretName": secret, "defaultMode": k.READ_BY_GROUP}}


def _probes(container: dict[str, Any]) -> None:
    """Started: up to 2 min; then out of the Services within ~4 s of failing /readyz (the agents' DNS
    answer loses it), restarted after ~30 s of failing /healthz."""
    probe = {"path": "/healthz", "port": t.API_PORT}
    container["startupProbe"] = {"httpGet": probe, "periodSeconds": 2, "failureThreshold": 60}
    container["readinessProbe"] = {
        "httpGet": {"path": "/readyz", "port": t.API_PORT}, "periodSeconds": 2, "failureThreshold": 2,
    }  # fmt: skip
    container["livenessProbe"] = {"httpGet": probe, "periodSeconds": 5, "failureThreshold": 6}


def _control_plane_container(base: dict[str, Any]) -> dict[str, Any]:
    container = copy.deepcopy(base)
    allowed = f"{t.K8S_CONTROL_PLANE_HOST},{XDS_HOST}"
    store = {"secretKeyRef": {"name": STORE_SECRET, "key": STORE_KEY}}
    container["env"] = [
        {"name": "MECHA_ALLOWED_HOSTS", "value": allowed},
        {"name": "MECHA_MTLS", "value": "1"},
        {"name": "MECHA_STORE", "valueFrom": store},
        {"name": "MECHA_CA_DIR", "value": CA_DIR},
    ]
    container["volumeMounts"] = [
        {"name": "config", "mountPath": "/etc/mecha/config", "readOnly": True},
        {"name": "state", "mountPath": agents.STATE_DIR},
        {"name": "cacerts", "mountPath": CA_DIR, "readOnly": True},
    ]
    _probes(container)
    return container


def _copy_keys_container(image: str) -> dict[str, Any]:
    return {
        "name": "state",
        "image": image,
        "command": ["sh", "-c", _COPY_KEYS],
        # root only to hand the files to the image's user: no capability but CHOWN
        "securityContext": {
            "runAsUser": 0,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"], "add": ["CHOWN"]},
        },
        "volumeMounts": [
            {"name": "keys", "mountPath": KEYS_DIR, "readOnly": True},
            {"name": "state", "mountPath": agents.STATE_DIR},
        ],
    }


def _deployment(base: dict[str, Any], image: str) -> dict[str, Any]:
    pod = base["spec"]["template"]["spec"]
    spread = {
        "weight": 100,
        "podAffinityTerm": {
            "labelSelector": {"matchLabels": LABELS},
            "topologyKey": "kubernetes.io/hostname",
        },
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": k._meta(k.CONTROL_PLANE_DEPLOYMENT, k.SYSTEM_NS, **LABELS),
        "spec": {
            "replicas": REPLICAS,
            # a new replica is ready before an old one goes: the store is shared, nothing is exclusive
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "selector": {"matchLabels": LABELS},
            "template": {
                "metadata": {"labels": LABELS},
                "spec": {
                    "securityContext": {"fsGroup": agents.AGENT_UID},
                    "affinity": {
                        "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [spread]}
                    },
                    "initContainers": [_copy_keys_container(image)],
                    "containers": [_control_plane_container(pod["containers"][0])],
                    "volumes": [
                        {"name": "config", "configMap": {"name": "mecha-config"}},
                        # in memory: the keys never land on the node's disk; the config is in PostgreSQL
                        {"name": "state", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
                        _secret_volume("keys", KEYS_SECRET),
                        _secret_volume("cacerts", CACERTS_SECRET),
                    ],
                },
            },
        },
    }


def _services() -> list[dict[str, Any]]:
    api_ports = [
        {"name": "http-api", "port": t.API_PORT, "targetPort": t.API_PORT},
        {"name": "grpc-xds", "port": t.XDS_PORT, "targetPort": t.XDS_PORT},
    ]
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": k._meta(k.CONTROL_PLANE_DEPLOYMENT, k.SYSTEM_NS, **LABELS),
            "spec": {"selector": LABELS, "ports": api_ports},
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": k._meta(XDS_SERVICE, k.SYSTEM_NS, **LABELS),
            "spec": {
                "clusterIP": "None",  # headless: agents see every ready replica, not one virtual IP
                "selector": LABELS,
                "ports": [{"name": "grpc-xds", "port": t.XDS_PORT, "targetPort": t.XDS_PORT}],
            },
        },
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": k._meta(k.CONTROL_PLANE_DEPLOYMENT, k.SYSTEM_NS, **LABELS),
            "spec": {"minAvailable": 1, "selector": {"matchLabels": LABELS}},
        },
    ]


def control_plane(config_dir: Path, image: str) -> list[dict[str, Any]]:
    """Namespace and config ConfigMap as the one-replica manifests, then the replicas and their Services."""
    single = k.control_plane(config_dir, image)
    namespace, configmap = (d for d in single if d["kind"] in ("Namespace", "ConfigMap"))
    base = next(d for d in single if d["kind"] == "Deployment")
    return [namespace, configmap, _deployment(base, image), *_services()]


def postgres() -> list[dict[str, Any]]:
    """The demo's database: one pod with its own volume. Replace it with a managed PostgreSQL by putting
    that database's URL (sslmode=verify-full) into the Secret mecha-store and not applying this file."""
    labels = {"app": POSTGRES}
    password = {"secretKeyRef": {"name": STORE_SECRET, "key": PASSWORD_KEY}}
    ready = ["pg_isready", "-U", POSTGRES_USER, "-d", POSTGRES_DB]
    container = {
        "name": "postgres",
        "image": DEMO_POSTGRES_IMAGE,
        "env": [
            {"name": "POSTGRES_USER", "value": POSTGRES_USER},
            {"name": "POSTGRES_DB", "value": POSTGRES_DB},
            {"name": "POSTGRES_PASSWORD", "valueFrom": password},
            {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"},
        ],
        "ports": [{"name": "postgres", "containerPort": 5432}],
        "readinessProbe": {"exec": {"command": ready}, "periodSeconds": 2, "failureThreshold": 3},
        "volumeMounts": [{"name": "data", "mountPath": "/var/lib/postgresql/data"}],
    }
    claim = {
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": k._meta(POSTGRES, k.SYSTEM_NS, **labels),
            "spec": {"clusterIP": "None", "selector": labels, "ports": [{"name": "postgres", "port": 5432}]},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": k._meta(POSTGRES, k.SYSTEM_NS, **labels),
            "spec": {
                "serviceName": POSTGRES,
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
                "volumeClaimTemplates": [claim],
            },
        },
    ]


def _dialing_replicas(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The one-replica workload and gateway documents with every agent dialing the headless Service."""
    single = k._agent_address()
    out = copy.deepcopy(docs)
    for doc in out:
        if doc["kind"] != "Deployment":
            continue
        for container in doc["spec"]["template"]["spec"]["containers"]:
            command = container.get("command", [])
            container["command"] = [AGENT_CONTROL_PLANE if arg == single else arg for arg in command]
    return out


def manifests(
    config_dir: Path, image: str, envoy_image: str, ready_script: str
) -> dict[str, list[dict[str, Any]]]:
    single = k.manifests(config_dir, image, envoy_image, ready_script)
    return {
        "postgres.yaml": postgres(),
        "control-plane.yaml": control_plane(config_dir, image),
        "apps.yaml": _dialing_replicas(single["apps.yaml"]),
        "gateway.yaml": _dialing_replicas(single["gateway.yaml"]),
    }


def create_secrets_script() -> str:
    """kubernetes/replicas/create-secrets.sh: what every replica shares, made once with `mecha keys init`
    on the operator's machine in a private temporary folder; an existing Secret is never replaced (a new
    signing key would void every issued credential, a new password would lock the store out)."""
    ns = k.SYSTEM_NS
    lines = [
        "#!/bin/sh",
        f"# Generated by compose/render.py from compose/{Path(__file__).name}: edit that, then render again.",
        "# Run first (needs `mecha` on this machine and create on Secrets in mecha-system). CACERTS_DIR: a",
        "# folder with Istio's plug-in CA files (ca-cert.pem, ca-key.pem, cert-chain.pem, root-cert.pem);",
        "# unset: the root `mecha keys init` makes. MECHA_STORE_URL: a managed PostgreSQL (then skip",
        "# postgres.yaml); unset: the demo StatefulSet with a random password.",
        "set -eu",
        'work=$(mktemp -d) && trap \'rm -rf "$work"\' EXIT && chmod 0700 "$work"',
        f"kubectl create namespace {ns} --dry-run=client -o yaml | kubectl apply -f -",
        "# create SECRET ARGS: kept when it exists",
        "create() {",
        '  name=$1 && shift',
        f'  if kubectl -n {ns} get secret "$name" >/dev/null 2>&1; then',
        '    echo "secret $name exists: kept" && return 0',
        "  fi",
        f'  kubectl -n {ns} create secret generic "$name" "$@"',
        "}",
        'mecha keys init --state-dir "$work/state" >/dev/null',
        f'create {KEYS_SECRET} --from-file={SIGNING_KEY}="$work/state/identity/signing-key.pem" \\',
        f'  --from-file={API_TOKEN}="$work/state/api-token" \\',
        f'  --from-file={READER_TOKEN}="$work/state/dapr-reader-token"',
        f'create {CACERTS_SECRET} --from-file="${{CACERTS_DIR:-$work/state/ca}}"',
        'password=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d " \\n")',
        f'url="postgresql://{POSTGRES_USER}:$password@{POSTGRES_HOST}:5432/{POSTGRES_DB}?{STORE_OPTIONS}"',
        f'create {STORE_SECRET} --from-literal={STORE_KEY}="${{MECHA_STORE_URL:-$url}}" \\',
        f'  --from-literal={PASSWORD_KEY}="$password"',
    ]  # fmt: skip
    return "\n".join(lines) + "\n"


def issue_script() -> str:
    """The one-replica issue-credentials.sh: signed inside a replica's pod (its copy of the shared key);
    the mesh root is read from the cacerts mount, not from the state folder."""
    return k.issue_script("replicas/control-plane.yaml", f"{CA_DIR}/root-cert.pem")


def rendered_files(render_module: Any) -> dict[Path, str]:
    ready_script = (render_module.HERE / render_module.ENVOY_READY_SCRIPT).read_text()
    docs = manifests(render_module.HERE / "config", render_module.MECHA_IMAGE, render_module.ENVOY_IMAGE,
                     ready_script)  # fmt: skip
    header = render_module.HEADER.replace("compose/topology.py", f"compose/{Path(__file__).name}")
    files = {FOLDER / name: header + render_module.dump_all(d) for name, d in docs.items()}
    files[FOLDER / "create-secrets.sh"] = create_secrets_script()
    files[FOLDER / k.ISSUE_SCRIPT] = issue_script()
    return files
