"""Control-plane Prometheus metrics.

Recorded once under mecha_* names and exposed a second time under istiod's own names where the meaning is
the same (pilot/pkg/xds/monitoring.go, pilot/pkg/model/push_context.go), so Istio's Grafana dashboards work
unchanged. istiod exposes its counters without the `_total` suffix (`pilot_xds_pushes`); prometheus_client
always appends it, so render() writes those families itself (IstioNames below).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import Metric

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
config_events = Counter(
    "mecha_config_events_total",
    "Config documents added, updated or deleted by accepted changes",
    ["type", "event"],
    registry=REGISTRY,
)


def record_config_change(change: Any) -> None:
    """One event per document of an accepted change (istiod: pilot_k8s_cfg_events{type=kind, event})."""
    for event, keys in (("add", change.added), ("update", change.modified), ("delete", change.removed)):
        for kind, _namespace, _name in keys:
            config_events.labels(kind, event).inc()


# ---- istiod's names ------------------------------------------------------------------------------------
# istiod name -> (our metric, istiod's help text). Counters lose `_total`; histograms keep their buckets.
ISTIO_COUNTERS: dict[str, tuple[Counter, str]] = {
    "pilot_xds_pushes": (pushes, "Pilot build and send errors for lds, rds, cds and eds."),
    "pilot_total_xds_rejects": (nacks, "Total number of XDS responses from pilot rejected by proxy."),
    "pilot_k8s_cfg_events": (config_events, "Events from k8s config."),
}
ISTIO_HISTOGRAMS: dict[str, tuple[Histogram, str]] = {
    "pilot_proxy_convergence_time": (
        convergence_time,
        "Delay in seconds between config change and a proxy receiving all required configuration.",
    ),
    "pilot_xds_push_time": (push_time, "Total time in seconds Pilot takes to push lds, rds, cds and eds."),
}
ISTIO_GAUGES: dict[str, tuple[Gauge, str]] = {
    "pilot_xds": (connected_proxies, "Number of endpoints connected to this pilot using XDS."),
}


def _renamed(source: Any, new_name: str, help_text: str, kind: str) -> Metric:
    """A copy of source's family under new_name; counters' samples drop `_total` as istiod's do."""
    out = Metric(new_name, help_text, kind)
    for family in source.collect():
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            suffix = sample.name[len(family.name) :]
            if kind == "unknown":  # a counter rendered untyped, see render()
                suffix = "" if suffix == "_total" else None
            if suffix is None:
                continue
            out.add_sample(new_name + suffix, sample.labels, sample.value)
    return out


class IstioNames:
    """Collector: the istiod-named families, derived from the mecha_* ones at scrape time."""

    def collect(self) -> Iterator[Metric]:
        for name, (counter, text) in ISTIO_COUNTERS.items():
            yield _renamed(counter, name, text, "unknown")
        for name, (histogram, text) in ISTIO_HISTOGRAMS.items():
            yield _renamed(histogram, name, text, "histogram")
        for name, (gauge, text) in ISTIO_GAUGES.items():
            yield _renamed(gauge, name, text, "gauge")


ISTIO_REGISTRY = CollectorRegistry(auto_describe=False)
ISTIO_REGISTRY.register(IstioNames())


def exact_counter_names(text: str, names: Iterable[str]) -> str:
    """prometheus_client writes a suffix-less counter as `untyped`; say `counter`, as istiod/daprd do."""
    for name in names:
        text = text.replace(f"# TYPE {name} untyped\n", f"# TYPE {name} counter\n")
    return text


def render() -> bytes:
    """The /metrics body: mecha_* families, then istiod's."""
    istio = exact_counter_names(generate_latest(ISTIO_REGISTRY).decode(), ISTIO_COUNTERS)
    return generate_latest(REGISTRY) + istio.encode()
