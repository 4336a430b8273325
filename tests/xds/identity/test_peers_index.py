"""endpoint_accounts looks a WorkloadEntry's serving proxies up by label (xds/identity/peers.py _Candidates):
the same overrides and mismatches, in the same order, as checking every proxy against every entry."""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any

from xds.identity.peers import _serves, endpoint_accounts
from xds.proxy import ProxyIdentity


def reference(config: Any, proxies: list[ProxyIdentity]) -> tuple[Any, list[tuple[str, str, str]]]:
    """The scan over every verified proxy for every entry (what the index replaces)."""
    verified = [p for p in proxies if p.service_accounts]
    overrides: dict[str, tuple[str, ...]] = {}
    mismatches: list[tuple[str, str, str]] = []
    for we in config.workload_entries:
        e, namespace = we.endpoint, we.meta.namespace
        labels = dict(e.labels)
        serving = [p for p in verified if labels and _serves(p, namespace, labels)]
        if not serving:
            continue
        accounts = tuple(sorted({a for p in serving for a in p.service_accounts}))
        claimed = str(e.service_account or "")
        if accounts != ((claimed or labels.get("app") or we.meta.name),):
            overrides[e.source] = accounts
        mismatches += [
            (we.meta.name, claimed, p.id) for p in serving if claimed and claimed not in p.service_accounts
        ]
    return tuple(sorted(overrides.items())), mismatches


def entry(i: int, rng: random.Random) -> Any:
    labels = {"app": f"a{rng.randrange(6)}"}
    if rng.random() < 0.5:
        labels["version"] = f"v{rng.randrange(2)}"
    if rng.random() < 0.1:
        labels = {}
    endpoint = SimpleNamespace(
        labels=tuple(labels.items()),
        service_account=rng.choice(["", "", "sa1", f"a{rng.randrange(6)}"]),
        source=f"WorkloadEntry ns/we{i}",
    )
    return SimpleNamespace(
        endpoint=endpoint, meta=SimpleNamespace(namespace=rng.choice(["ns", "other"]), name=f"we{i}")
    )


def proxy(i: int, rng: random.Random) -> ProxyIdentity:
    def app(n: int) -> dict[str, Any]:
        labels = {"app": f"a{rng.randrange(6)}", "version": f"v{rng.randrange(2)}"}
        return {"name": f"app{n}", "namespace": rng.choice(["ns", "other"]), "labels": labels}

    meta: dict[str, Any] = {
        "namespace": rng.choice(["ns", "other"]),
        "labels": {"app": f"a{rng.randrange(6)}"},
    }
    if rng.random() < 0.7:
        meta["mode"] = "node"
        meta["apps"] = [app(n) for n in range(rng.randrange(1, 3))]
    p = ProxyIdentity.from_node(f"p{i}", {"mecha": meta})
    return p.with_service_accounts(rng.choice([(), ("sa1",), (f"a{rng.randrange(6)}",), ("sa1", "sa2")]))


def test_the_index_finds_what_the_scan_finds() -> None:
    rng = random.Random(13)
    for _ in range(200):
        config = SimpleNamespace(workload_entries=[entry(i, rng) for i in range(rng.randrange(0, 12))])
        proxies = [proxy(i, rng) for i in range(rng.randrange(0, 10))]
        overrides, mismatches = endpoint_accounts(config, proxies)
        assert (overrides, [(m.entry, m.claimed, m.proxy_id) for m in mismatches]) == reference(
            config, proxies
        )
