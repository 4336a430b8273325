"""Control-plane Prometheus metrics (names follow istiod's pilot_* where one exists)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

_FAST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 3, 5, 10, 30)

connected_proxies = Gauge("mecha_xds_connected_proxies", "Proxies with an open xDS stream", registry=REGISTRY)
pushes = Counter("mecha_xds_pushes_total", "xDS responses sent", ["type"], registry=REGISTRY)
push_time = Histogram(
    "mecha_xds_push_seconds",
    "Time to build and write one xDS response",
    ["type"],
    buckets=_FAST_BUCKETS,
    registry=REGISTRY,
)
convergence_time = Histogram(
    "mecha_proxy_convergence_seconds",
    "Config change accepted -> proxy ACKed every type of the resulting snapshot",
    buckets=_FAST_BUCKETS,
    registry=REGISTRY,
)
nacks = Counter("mecha_xds_rejects_total", "NACKs received from proxies", ["type"], registry=REGISTRY)
config_refused = Counter(
    "mecha_config_refused_total", "Config changes refused by validation", registry=REGISTRY
)
config_accepted = Counter("mecha_config_accepted_total", "Config changes accepted", registry=REGISTRY)
translate_time = Histogram(
    "mecha_translate_seconds",
    "Config set -> snapshots for all proxies",
    buckets=_FAST_BUCKETS,
    registry=REGISTRY,
)
