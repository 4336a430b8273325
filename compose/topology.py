"""Who runs where in the packaged topologies, and their Envoy bootstraps and WorkloadEntries.

Three topologies share the mesh config in compose/config/ and differ only in addresses:
- local:   everything on one loopback (compose node mode, where a node's apps share its network namespace,
           and `mecha up`): endpoints 127.0.0.1:<inbound port>, ports = `mecha up`'s defaults.
- sidecar: one network namespace per app (compose pod or Kubernetes pod) with Istio's fixed ports
           (app 9080, admin 15000, outbound 15001, inbound 15006, Dapr 3500/50001).
Every bootstrap is rendered from envoy/bootstrap.yaml by xds.bootstrap (the template `mecha bootstrap` uses).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from xds.bootstrap import BootstrapParams, render
from xds.demo.config import DEFAULT_PORTS, WORKLOADS

NAMESPACE = "default"
XDS_PORT = 15012
API_PORT = 15010
COMPOSE_SUBNET = "172.30.89.0/24"
K8S_SERVICE_CIDR = "10.96.0.0/12"  # kubeadm / kind default; the fixed ClusterIPs below live in it
CONTROL_PLANE_HOST = "control-plane"
K8S_CONTROL_PLANE_HOST = "mecha-control-plane.mecha-system.svc.cluster.local"
# Bookinfo first in `mecha up`'s order (so ports match its layout), then the apps using the Dapr API.
ALL_WORKLOADS: tuple[tuple[str, str], ...] = (*WORKLOADS, ("orders", "v1"), ("inventory", "v1"))
SHOP_APPS = ("orders", "inventory")


@dataclass(frozen=True)
class SidecarPorts:
    """Istio's per-pod ports: every pod has its own network namespace, so all pods use the same ones."""

    app: int = 9080
    admin: int = 15000
    outbound: int = 15001
    inbound: int = 15006
    dapr_http: int = 3500
    dapr_grpc: int = 50001
    capabilities_http: int = 3501
    capabilities_grpc: int = 50002


SIDECAR = SidecarPorts()


@dataclass(frozen=True)
class Workload:
    service: str
    version: str
    index: int  # position in ALL_WORKLOADS: picks the local ports and the fixed addresses

    @property
    def name(self) -> str:
        return f"{self.service}-{self.version}"

    @property
    def labels(self) -> dict[str, str]:
        return {"app": self.service, "version": self.version}

    @property
    def local_app_port(self) -> int:
        return DEFAULT_PORTS["app"] + self.index

    @property
    def local_inbound_port(self) -> int:
        return DEFAULT_PORTS["inbound"] + self.index

    # Node mode: the app's own Dapr listeners on the node proxy and its runtime in the node's capability
    # service (the ports `mecha up --mode node` gives app i).
    @property
    def local_dapr_http_port(self) -> int:
        return DEFAULT_PORTS["dapr_http"] + self.index

    @property
    def local_dapr_grpc_port(self) -> int:
        return DEFAULT_PORTS["dapr_grpc"] + self.index

    @property
    def local_capabilities_http_port(self) -> int:
        return DEFAULT_PORTS["capabilities_http"] + self.index

    @property
    def local_capabilities_grpc_port(self) -> int:
        return DEFAULT_PORTS["capabilities_grpc"] + self.index

    @property
    def node_app_spec(self) -> str:
        """This app's `--app` in the node's capability service: APPID:HTTP_PORT:GRPC_PORT:APP_URL."""
        return (
            f"{self.service}:{self.local_capabilities_http_port}:{self.local_capabilities_grpc_port}:"
            f"http://127.0.0.1:{self.local_app_port}"
        )

    @property
    def cluster_ip(self) -> str:
        return f"10.96.89.{10 + self.index}"

    def command(self, app_port: int, outbound_port: int, dapr_http_port: int) -> list[str]:
        """The app's command line inside the Mecha image."""
        if self.service in SHOP_APPS:
            return [
                "python",
                "/opt/mecha/apps/shop.py",
                self.service,
                "--port",
                str(app_port),
                "--dapr",
                f"http://127.0.0.1:{dapr_http_port}",
            ]
        return [
            "python",
            "-m",
            "xds.demo",
            self.service,
            "--port",
            str(app_port),
            "--version",
            self.version,
            "--proxy",
            f"127.0.0.1:{outbound_port}",
        ]


WORKLOAD_LIST: tuple[Workload, ...] = tuple(Workload(s, v, i) for i, (s, v) in enumerate(ALL_WORKLOADS))

# Node mode: one proxy ("node-a") for every app, at `mecha up --mode node`'s ports; each app has its own
# Dapr listeners on it (Workload.local_dapr_*) and its own runtime in the one capability-service process.
NODE_ID = "node-a"
NODE_COMPOSE_IP = "172.30.89.20"
NODE_ADMIN_PORT = DEFAULT_PORTS["admin"]
NODE_OUTBOUND_PORT = DEFAULT_PORTS["outbound"]


# The ingress gateway (mode gateway): Gateway bookinfo-gateway's port 80 on GATEWAY_PORT (Istio's
# ingressgateway binds 8080 for port 80), published as 8080 on the host. In sidecar compose it has its own
# address; in node compose it joins the node's network namespace (the endpoints there are 127.0.0.1).
GATEWAY_ID = "ingressgateway"
GATEWAY_NAMESPACE = "istio-system"
GATEWAY_PORT = 8080
GATEWAY_ADMIN_PORT = 15000
GATEWAY_COMPOSE_IP = "172.30.89.30"
# Gateway API Gateways this container/Deployment serves beside the Istio Gateways its labels select: a
# Gateway default/bookinfo (class mecha or istio) is served here on the same port mapping, as `mecha up`
# serves it from an Envoy of its own (docs/gateway-api.md). Name yours here, NAMESPACE/NAME.
GATEWAY_API_GATEWAYS = ("default/bookinfo",)


def workload(name: str) -> Workload:
    return next(w for w in WORKLOAD_LIST if w.name == name)


# ---- WorkloadEntries ---------------------------------------------------------------------------------
def workload_entry(w: Workload, address: str, port: int) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "WorkloadEntry",
        "metadata": {"name": w.name, "namespace": NAMESPACE},
        "spec": {"address": address, "ports": {"http": port}, "labels": w.labels},
    }


def workload_group(w: Workload) -> dict[str, Any]:
    """The WorkloadGroup a scalable compose workload's replicas register in (issue #15): no address here,
    each replica's agent reports its own; a replica takes traffic once its app health check passed."""
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "WorkloadGroup",
        "metadata": {"name": w.name, "namespace": NAMESPACE},
        "spec": {
            "metadata": {"labels": w.labels},
            "template": {"ports": {"http": SIDECAR.app}, "serviceAccount": w.service},
            "probe": {"httpGet": {"path": "/healthz", "port": SIDECAR.app}, "periodSeconds": 1},
        },
    }


def endpoints(topology: str) -> list[dict[str, Any]]:
    """Endpoints of one topology: WorkloadEntries (local, kubernetes) or, in compose sidecar mode where
    replicas register themselves, WorkloadGroups."""
    if topology == "local":
        return [workload_entry(w, "127.0.0.1", w.local_inbound_port) for w in WORKLOAD_LIST]
    if topology == "compose-sidecar":
        return [workload_group(w) for w in WORKLOAD_LIST]
    if topology == "kubernetes":  # each workload's Service has a fixed ClusterIP in front of port 15006
        return [workload_entry(w, w.cluster_ip, SIDECAR.inbound) for w in WORKLOAD_LIST]
    raise ValueError(f"unknown topology {topology!r}: local, compose-sidecar or kubernetes")


# ---- bootstraps --------------------------------------------------------------------------------------
# Envoy admin answers /quitquitquit, /drain_listeners and /config_dump to anyone who reaches it: every
# packaged bootstrap binds it to loopback (health checks run inside the proxy's network namespace). The
# metadata then announces no admin address: the control plane could not reach it (proxy-config says so).
ADMIN_HOST = "127.0.0.1"


def sidecar_metadata(w: Workload, address: str) -> dict[str, Any]:
    """node.metadata.mecha of a sidecar (layout in xds/proxy.py)."""
    p = SIDECAR
    return {
        "mode": "sidecar",
        "namespace": NAMESPACE,
        "address": address,
        "outbound_port": p.outbound,
        "dapr_http_port": p.dapr_http,
        "dapr_grpc_port": p.dapr_grpc,
        "capabilities_http": f"127.0.0.1:{p.capabilities_http}",
        "capabilities_grpc": f"127.0.0.1:{p.capabilities_grpc}",
        "labels": w.labels,
        "apps": [
            {
                "name": w.service,
                "namespace": NAMESPACE,
                "app_port": p.app,
                "inbound_port": p.inbound,
                "labels": w.labels,
            }
        ],
    }


def scalable_sidecar_metadata(w: Workload) -> dict[str, Any]:
    """A compose replica's node metadata: every replica of the service shares it; the agent beside each one
    makes the node id <name>.<host name> and the address its container has (xds/agent/node.py)."""
    return {**sidecar_metadata(w, "0.0.0.0"), "workload_group": w.name}


def node_metadata(address: str = "0.0.0.0") -> dict[str, Any]:
    return {
        "mode": "node",
        "namespace": NAMESPACE,
        "address": address,  # inbound listeners bind here; 0.0.0.0 so published ports reach them
        "outbound_port": NODE_OUTBOUND_PORT,
        "apps": [
            {
                "name": w.service,
                "namespace": NAMESPACE,
                "app_port": w.local_app_port,
                "inbound_port": w.local_inbound_port,
                "labels": w.labels,
                "dapr_http_port": w.local_dapr_http_port,
                "dapr_grpc_port": w.local_dapr_grpc_port,
                "capabilities_http": f"127.0.0.1:{w.local_capabilities_http_port}",
                "capabilities_grpc": f"127.0.0.1:{w.local_capabilities_grpc_port}",
            }
            for w in WORKLOAD_LIST
        ],
    }


def compose_sidecar_bootstrap(w: Workload) -> str:
    params = BootstrapParams(
        proxy_id=w.name,
        cluster=w.service,
        xds_host=CONTROL_PLANE_HOST,
        xds_port=XDS_PORT,
        admin_host=ADMIN_HOST,
        admin_port=SIDECAR.admin,
        metadata=scalable_sidecar_metadata(w),
    )
    return render(params)


def compose_node_bootstrap() -> str:
    params = BootstrapParams(
        proxy_id=NODE_ID,
        cluster=NODE_ID,
        xds_host=CONTROL_PLANE_HOST,
        xds_port=XDS_PORT,
        admin_host=ADMIN_HOST,
        admin_port=NODE_ADMIN_PORT,
        metadata=node_metadata(),
    )
    return render(params)


def kubernetes_bootstrap(w: Workload) -> str:
    params = BootstrapParams(
        proxy_id=w.name,
        cluster=w.service,
        xds_host=K8S_CONTROL_PLANE_HOST,
        xds_port=XDS_PORT,
        admin_host=ADMIN_HOST,
        admin_port=SIDECAR.admin,
        metadata=sidecar_metadata(w, "0.0.0.0"),  # pod IPs are not known in advance
    )
    return render(params)


def gateway_metadata() -> dict[str, Any]:
    """node.metadata.mecha of the ingress gateway: selected by Istio Gateway.selector through its labels, and
    serving the Gateway API Gateways it names (`gateways`)."""
    return {
        "mode": "gateway",
        "namespace": GATEWAY_NAMESPACE,
        "address": "0.0.0.0",
        "labels": {"istio": "ingressgateway"},
        "gateways": list(GATEWAY_API_GATEWAYS),
        "gateway_ports": {"80": GATEWAY_PORT},
    }


def compose_gateway_bootstrap(topology: str) -> str:
    """The ingress gateway's bootstrap in compose `sidecar` (own address) or `node` (the node's netns)."""
    if topology not in ("sidecar", "node"):
        raise ValueError(f"unknown compose topology {topology!r}: sidecar or node")
    return gateway_bootstrap(CONTROL_PLANE_HOST)


def gateway_bootstrap(xds_host: str) -> str:
    """The ingress gateway's bootstrap (compose and Kubernetes differ only in the control plane's name)."""
    params = BootstrapParams(
        proxy_id=GATEWAY_ID,
        cluster=GATEWAY_ID,
        xds_host=xds_host,
        xds_port=XDS_PORT,
        admin_host=ADMIN_HOST,
        admin_port=GATEWAY_ADMIN_PORT,
        metadata=gateway_metadata(),
    )
    return render(params)
