"""Demo topology (which apps, which proxies, which ports) and the Istio YAML that wires it.

Endpoints point at each app's proxy *inbound* listener, so every hop goes app -> own proxy (outbound) ->
peer proxy (inbound) -> peer app, as in a sidecar mesh; in node mode one proxy fronts every app.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import yaml

SERVICE_PORT = 9080  # the mesh-wide service port (bookinfo's); apps listen on their own ports
NAMESPACE = "default"
# (service, version) of every demo workload, in start order (productpage calls reviews, v2 calls ratings).
WORKLOADS: tuple[tuple[str, str], ...] = (
    ("ratings", "v1"),
    ("reviews", "v1"),
    ("reviews", "v2"),
    ("productpage", "v1"),
)
# Default ports for `mecha up` (shifted together by --port-offset). Index i = position in WORKLOADS.
DEFAULT_PORTS: dict[str, int] = {
    "app": 9081,  # app i listens on 9081+i
    "admin": 15100,  # proxy i admin on 15100+i
    "outbound": 15200,  # proxy i outbound listener
    "inbound": 15300,  # workload i inbound listener on its proxy
    "dapr_http": 3500,
    "dapr_grpc": 50001,
    "capabilities_http": 3600,
    "capabilities_grpc": 50101,
    "gateway_http": 15080,  # the ingress gateway's listener for Gateway server port 80
    "gateway_admin": 15090,  # the ingress gateway's admin
}
GATEWAY_ID = "ingressgateway"
GATEWAY_NAME = "bookinfo-gateway"
GATEWAY_LABELS = {"istio": "ingressgateway"}


@dataclass(frozen=True)
class DemoWorkload:
    service: str
    version: str
    app_port: int
    inbound_port: int
    # node mode: the app's own Dapr listeners on the node proxy and its runtime in the node's capability
    # service (None: the proxy-wide ones, as in sidecar mode)
    dapr_http_port: int | None = None
    dapr_grpc_port: int | None = None
    capabilities_http_port: int | None = None
    capabilities_grpc_port: int | None = None

    @property
    def name(self) -> str:
        return f"{self.service}-{self.version}"

    @property
    def has_own_dapr(self) -> bool:
        return self.dapr_http_port is not None

    def dapr_metadata(self) -> dict[str, Any]:
        """The apps[i] fields of a node-mode app with its own Dapr listeners (xds/proxy.py)."""
        out: dict[str, Any] = {}
        for key, value in (("dapr_http_port", self.dapr_http_port), ("dapr_grpc_port", self.dapr_grpc_port)):
            if value is not None:
                out[key] = value
        for key, port in (
            ("capabilities_http", self.capabilities_http_port),
            ("capabilities_grpc", self.capabilities_grpc_port),
        ):
            if port is not None:
                out[key] = f"127.0.0.1:{port}"
        return out

    @property
    def labels(self) -> dict[str, str]:
        return {"app": self.service, "version": self.version}


@dataclass(frozen=True)
class DemoProxy:
    id: str
    mode: str  # sidecar | node
    admin_port: int
    outbound_port: int
    workloads: tuple[DemoWorkload, ...]
    dapr_http_port: int
    dapr_grpc_port: int
    capabilities_http_port: int
    capabilities_grpc_port: int

    @property
    def per_app_dapr(self) -> bool:
        """Node mode with a Dapr listener pair per app (instead of one for the whole proxy)."""
        return self.mode == "node" and all(w.has_own_dapr for w in self.workloads)

    def metadata(self) -> dict[str, Any]:
        """node.metadata.mecha for this proxy (layout documented in xds/proxy.py)."""
        meta: dict[str, Any] = {
            "mode": self.mode,
            "namespace": NAMESPACE,
            "address": "127.0.0.1",
            "admin": f"127.0.0.1:{self.admin_port}",
            "outbound_port": self.outbound_port,
            "dapr_http_port": self.dapr_http_port,
            "dapr_grpc_port": self.dapr_grpc_port,
            "capabilities_http": f"127.0.0.1:{self.capabilities_http_port}",
            "capabilities_grpc": f"127.0.0.1:{self.capabilities_grpc_port}",
            "apps": [
                {
                    "name": w.service,
                    "namespace": NAMESPACE,
                    "app_port": w.app_port,
                    "inbound_port": w.inbound_port,
                    "labels": w.labels,
                    **w.dapr_metadata(),
                }
                for w in self.workloads
            ],
        }
        if self.per_app_dapr:  # every app has its own Dapr listeners: none for the proxy as a whole
            for key in ("dapr_http_port", "dapr_grpc_port", "capabilities_http", "capabilities_grpc"):
                del meta[key]
        if self.mode == "sidecar":
            meta["labels"] = self.workloads[0].labels
            meta["workload_group"] = self.workloads[0].name  # registers itself (demo_documents)
        return meta


@dataclass(frozen=True)
class DemoGateway:
    """The ingress gateway Envoy (mode gateway): serves Gateway `bookinfo-gateway` port 80 on http_port."""

    admin_port: int
    http_port: int
    id: str = GATEWAY_ID

    def metadata(self) -> dict[str, Any]:
        """node.metadata.mecha of the gateway (xds/proxy.py): picked by Gateway.selector via its labels."""
        return {
            "mode": "gateway",
            "namespace": "istio-system",
            "address": "127.0.0.1",
            "admin": f"127.0.0.1:{self.admin_port}",
            "labels": dict(GATEWAY_LABELS),
            "gateway_ports": {"80": self.http_port},
        }

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


@dataclass(frozen=True)
class DemoLayout:
    mode: str
    proxies: tuple[DemoProxy, ...]
    service_port: int = SERVICE_PORT
    gateway: DemoGateway | None = None  # started by `mecha up` (StackOptions.with_gateway)

    @property
    def workloads(self) -> tuple[DemoWorkload, ...]:
        return tuple(w for p in self.proxies for w in p.workloads)

    def proxy_of(self, workload_name: str) -> DemoProxy:
        for proxy in self.proxies:
            if any(w.name == workload_name for w in proxy.workloads):
                return proxy
        raise KeyError(workload_name)

    def workload(self, name: str) -> DemoWorkload:
        return next(w for w in self.workloads if w.name == name)

    def dapr_ports(self, workload_name: str) -> tuple[int, int]:
        """(HTTP, gRPC) Dapr listener of an app on its proxy (node mode: the app's own pair)."""
        w, proxy = self.workload(workload_name), self.proxy_of(workload_name)
        if proxy.per_app_dapr and w.dapr_http_port is not None and w.dapr_grpc_port is not None:
            return w.dapr_http_port, w.dapr_grpc_port
        return proxy.dapr_http_port, proxy.dapr_grpc_port

    def ports(self) -> dict[str, int]:
        """Every port this layout binds, labelled (for clash detection)."""
        out: dict[str, int] = {}
        for p in self.proxies:
            out[f"{p.id} admin"] = p.admin_port
            out[f"{p.id} outbound listener"] = p.outbound_port
            if not p.per_app_dapr:
                out[f"{p.id} dapr http listener"] = p.dapr_http_port
                out[f"{p.id} dapr grpc listener"] = p.dapr_grpc_port
            for w in p.workloads:
                out[f"{w.name} app"] = w.app_port
                out[f"{w.name} inbound listener"] = w.inbound_port
                if p.per_app_dapr:
                    out[f"{w.name} dapr http listener"] = w.dapr_http_port  # type: ignore[assignment]
                    if w.dapr_grpc_port is not None:
                        out[f"{w.name} dapr grpc listener"] = w.dapr_grpc_port
        return out

    def gateway_ports(self) -> dict[str, int]:
        g = self.gateway
        return {} if g is None else {f"{g.id} admin": g.admin_port, f"{g.id} http (port 80)": g.http_port}

    def capability_ports(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for p in self.proxies:
            if not p.per_app_dapr:
                out[f"{p.id} capabilities http"] = p.capabilities_http_port
                out[f"{p.id} capabilities grpc"] = p.capabilities_grpc_port
                continue
            for w in p.workloads:
                for label, port in (("http", w.capabilities_http_port), ("grpc", w.capabilities_grpc_port)):
                    if port is not None:
                        out[f"{w.name} capabilities {label}"] = port
        return out


PortSource = Callable[[str, int], int]  # (role, index) -> port


def offset_ports(offset: int = 0) -> PortSource:
    return lambda role, index: DEFAULT_PORTS[role] + index + offset


def make_layout(mode: str = "sidecar", ports: PortSource | None = None) -> DemoLayout:
    if mode not in ("sidecar", "node"):
        raise ValueError(f"mode {mode!r}: the demo runs in sidecar or node mode")
    port = ports or offset_ports(0)
    workloads = [
        DemoWorkload(svc, ver, app_port=port("app", i), inbound_port=port("inbound", i))
        for i, (svc, ver) in enumerate(WORKLOADS)
    ]
    if mode == "node":  # each app its own Dapr ports on the node proxy (the ports sidecar i would use)
        workloads = [
            replace(
                w,
                dapr_http_port=port("dapr_http", i),
                dapr_grpc_port=port("dapr_grpc", i),
                capabilities_http_port=port("capabilities_http", i),
                capabilities_grpc_port=port("capabilities_grpc", i),
            )
            for i, w in enumerate(workloads)
        ]
    groups = [[w] for w in workloads] if mode == "sidecar" else [workloads]
    proxies = tuple(
        DemoProxy(
            id=group[0].name if mode == "sidecar" else "node-0",
            mode=mode,
            admin_port=port("admin", i),
            outbound_port=port("outbound", i),
            workloads=tuple(group),
            dapr_http_port=port("dapr_http", i),
            dapr_grpc_port=port("dapr_grpc", i),
            capabilities_http_port=port("capabilities_http", i),
            capabilities_grpc_port=port("capabilities_grpc", i),
        )
        for i, group in enumerate(groups)
    )
    gateway = DemoGateway(admin_port=port("gateway_admin", 0), http_port=port("gateway_http", 0))
    return DemoLayout(mode=mode, proxies=proxies, gateway=gateway)


def default_layout(mode: str = "sidecar", offset: int = 0) -> DemoLayout:
    return make_layout(mode, offset_ports(offset))


@dataclass(frozen=True)
class RoutingKnobs:
    """The reviews routing the demo ships with; tests change single knobs."""

    v1_weight: int = 80
    timeout: str = "1s"
    attempts: int = 2
    retry_on: str = "5xx,connect-failure,refused-stream"
    jason_subset: str = "v2"
    extra_docs: tuple[dict[str, Any], ...] = field(default=())


def _meta(name: str) -> dict[str, str]:
    return {"name": name, "namespace": NAMESPACE}


def demo_documents(layout: DemoLayout, knobs: RoutingKnobs | None = None) -> list[dict[str, Any]]:
    k = knobs or RoutingKnobs()
    net = "networking.istio.io/v1"
    docs: list[dict[str, Any]] = []
    for service in dict.fromkeys(svc for svc, _ in WORKLOADS):
        docs.append(
            {
                "apiVersion": net,
                "kind": "ServiceEntry",
                "metadata": _meta(service),
                "spec": {
                    "hosts": [service],
                    "location": "MESH_INTERNAL",
                    "resolution": "STATIC",
                    "ports": [{"number": layout.service_port, "name": "http", "protocol": "HTTP"}],
                    "workloadSelector": {"labels": {"app": service}},
                },
            }
        )
    for w in layout.workloads:
        if layout.mode == "sidecar":  # each sidecar registers its endpoint in its group when it connects
            spec = {"metadata": {"labels": w.labels}, "template": {"ports": {"http": layout.service_port}}}
            docs.append({"apiVersion": net, "kind": "WorkloadGroup", "metadata": _meta(w.name), "spec": spec})
            continue
        docs.append(  # node mode keeps static entries (a static example stays tested)
            {
                "apiVersion": net,
                "kind": "WorkloadEntry",
                "metadata": _meta(w.name),
                "spec": {"address": "127.0.0.1", "ports": {"http": w.inbound_port}, "labels": w.labels},
            }
        )
    docs.append(
        {
            "apiVersion": net,
            "kind": "DestinationRule",
            "metadata": _meta("reviews"),
            "spec": {
                "host": "reviews",
                "subsets": [
                    {"name": "v1", "labels": {"version": "v1"}},
                    {"name": "v2", "labels": {"version": "v2"}},
                ],
            },
        }
    )

    def retries() -> dict[str, Any]:  # a fresh dict per route: no YAML anchors in the output
        return {"attempts": k.attempts, "retryOn": k.retry_on}

    def dest(subset: str, weight: int | None = None) -> dict[str, Any]:
        d: dict[str, Any] = {"destination": {"host": "reviews", "subset": subset}}
        if weight is not None:
            d["weight"] = weight
        return d

    split = [d for d in (dest("v1", k.v1_weight), dest("v2", 100 - k.v1_weight)) if d["weight"] > 0]
    docs.append(
        {
            "apiVersion": net,
            "kind": "VirtualService",
            "metadata": _meta("reviews"),
            "spec": {
                "hosts": ["reviews"],
                "http": [
                    {
                        "name": "jason",
                        "match": [{"headers": {"end-user": {"exact": "jason"}}}],
                        "route": [dest(k.jason_subset)],
                        "retries": retries(),
                        "timeout": k.timeout,
                    },
                    {
                        "name": "split",
                        "route": split,
                        "retries": retries(),
                        "timeout": k.timeout,
                    },
                ],
            },
        }
    )
    docs.extend(ingress_documents())
    docs.extend(k.extra_docs)
    return docs


def ingress_documents() -> list[dict[str, Any]]:
    """Gateway `bookinfo-gateway` (port 80, any host) on the ingress gateway, and the VirtualService that
    sends /productpage through it to productpage. Gateway-only: a "*" host must not bind to `mesh`."""
    net = "networking.istio.io/v1"
    return [
        {
            "apiVersion": net,
            "kind": "Gateway",
            "metadata": _meta(GATEWAY_NAME),
            "spec": {
                "selector": dict(GATEWAY_LABELS),
                "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}],
            },
        },
        {
            "apiVersion": net,
            "kind": "VirtualService",
            "metadata": _meta("bookinfo"),
            "spec": {
                "hosts": ["*"],
                "gateways": [GATEWAY_NAME],
                "http": [
                    {
                        "match": [{"uri": {"exact": "/productpage"}}],
                        "route": [{"destination": {"host": "productpage", "port": {"number": SERVICE_PORT}}}],
                    }
                ],
            },
        },
    ]


# The demo's Dapr components, on the embedded backends (no broker or database to install). In-memory
# backends live in one capability service process, so the ones with shared state (state, pub/sub, lock)
# are scoped to ratings: one sidecar (one process) in sidecar mode, and on Dapr's default ports 3500 /
# 50001, so an SDK with no settings reaches them. reviews runs two versions (two processes, one app id):
# per-process locks or state there would look shared and not be. Read-only stores go to every app.
DAPR_APP = "ratings"
SUBSCRIBED_TOPIC = "orders"
SECRET_ENV_PREFIX = "MECHA_DEMO_SECRET_"
# Served by the `secretstore` component from the environment of `mecha up` (set there when unset): demo
# values, not secrets. Export MECHA_DEMO_SECRET_<name> before `mecha up` to add or override one.
DEMO_SECRETS: dict[str, str] = {"greeting": "hello from the demo secret store"}
DEMO_CONFIGURATION: dict[str, str] = {"theme": "dark", "reviews-page-size": "10"}


def demo_secret_env() -> dict[str, str]:
    """The environment the demo's secret store reads (secretstores.local.env with SECRET_ENV_PREFIX)."""
    return {SECRET_ENV_PREFIX + name: value for name, value in DEMO_SECRETS.items()}


def _component(name: str, kind: str, metadata: dict[str, str], scopes: list[str] | None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "apiVersion": "dapr.io/v1alpha1",
        "kind": "Component",
        "metadata": _meta(name),
        "spec": {
            "type": kind,
            "version": "v1",
            "metadata": [{"name": k, "value": v} for k, v in metadata.items()],
        },
    }
    if scopes is not None:
        doc["scopes"] = scopes
    return doc


def dapr_documents() -> list[dict[str, Any]]:
    """The demo's Dapr Components and the Subscription `ratings-orders` that delivers topic `orders` to
    ratings' /events/orders (the app counts and logs each delivery; GET /events shows them)."""
    only = [DAPR_APP]
    items = json.dumps(DEMO_CONFIGURATION, sort_keys=True)
    return [
        _component("statestore", "state.in-memory", {}, only),
        _component("pubsub", "pubsub.in-memory", {}, only),
        _component("lockstore", "lock.in-memory", {}, only),
        _component("secretstore", "secretstores.local.env", {"prefix": SECRET_ENV_PREFIX}, None),
        _component("configstore", "configuration.in-memory", {"items": items}, None),
        {
            "apiVersion": "dapr.io/v2alpha1",
            "kind": "Subscription",
            "metadata": _meta(f"{DAPR_APP}-{SUBSCRIBED_TOPIC}"),
            "spec": {
                "pubsubname": "pubsub",
                "topic": SUBSCRIBED_TOPIC,
                "routes": {"default": f"/events/{SUBSCRIBED_TOPIC}"},
            },
            "scopes": only,
        },
    ]


def demo_config(layout: DemoLayout, knobs: RoutingKnobs | None = None) -> str:
    """The demo's Istio YAML and Dapr resources as one multi-document text."""
    dapr = layout.dapr_ports(f"{DAPR_APP}-v1")
    header = (
        "# Mecha demo mesh: productpage -> reviews (v1 80% / v2 20%; end-user: jason -> v2) -> ratings.\n"
        "# Ingress: Gateway bookinfo-gateway (port 80) + VirtualService bookinfo (/productpage).\n"
        "# Dapr, embedded backends: statestore, pubsub, lockstore for ratings (its Dapr HTTP API on\n"
        f"# 127.0.0.1:{dapr[0]}, gRPC on 127.0.0.1:{dapr[1]}); secretstore, configstore for every app.\n"
        "# ratings subscribes to pubsub/orders (Subscription ratings-orders: GET /events on the app).\n"
        "# Generated by `mecha up` for the ports of this run; edit it and the control plane picks it up.\n"
    )
    docs = [*demo_documents(layout, knobs), *dapr_documents()]
    return header + yaml.safe_dump_all(docs, sort_keys=False)
