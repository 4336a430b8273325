"""The WorkloadEntries the sidecar demo's proxies register when they connect, for offline compiles.

The sidecar demo (xds/demo/config.py) declares one WorkloadGroup per workload and no WorkloadEntry: each
sidecar registers its endpoint at runtime (xds/controlplane/registration.py). A test that compiles the demo
config without a control plane and connected proxies therefore sees no endpoints; `with_registered_entries`
adds what registration would write for every sidecar of the layout: the entry `<group>-<proxy id>` built by
registration's own `entry_body` (group labels / ports / serviceAccount, the proxy's address and inbound port).
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from xds.controlplane.registration import Registration, entry_body
from xds.demo.config import DemoLayout
from xds.model.workload_group import workload_group
from xds.pipeline import compile_documents, load_text
from xds.proxy import ProxyIdentity

CONTROLLER = "test-replica"  # the replica that "holds" the proxies' streams


def demo_proxies(layout: DemoLayout) -> list[ProxyIdentity]:
    return [ProxyIdentity.from_node(p.id, {"mecha": p.metadata()}) for p in layout.proxies]


def registered_entries(text: str, layout: DemoLayout) -> list[dict[str, Any]]:
    """For each proxy of `layout` naming a WorkloadGroup of `text`, the WorkloadEntry registration writes."""
    docs, diags = load_text(text, "demo.yaml")
    assert not diags, [str(d) for d in diags]
    result = compile_documents(docs)
    assert result.ok and result.config is not None, [str(d) for d in result.errors]
    groups = {
        (c.meta.namespace, c.meta.name): workload_group(c)
        for c in result.config.carried
        if c.meta.kind == "WorkloadGroup"
    }
    entries = []
    for proxy in demo_proxies(layout):
        if not proxy.workload_group:
            continue  # node mode: static entries already in the config
        group = groups[(proxy.namespace, proxy.workload_group)]
        # pretend the proxy connected: fresh conditions, as Registration.reconcile writes them
        entries.append(entry_body(group, proxy, CONTROLLER, Registration._fresh_conditions(group)))
    return entries


def with_registered_entries(text: str, layout: DemoLayout) -> str:
    """`text` (the demo config, perhaps edited) plus the entries its sidecars would register."""
    entries = registered_entries(text, layout)
    if not entries:
        return text
    return text + "---\n" + yaml.safe_dump_all(entries, sort_keys=False)


def registered_json_documents(text: str, layout: DemoLayout) -> list[str]:
    """The same entries as JSON documents (for an apply body of JSON documents joined by `---`)."""
    return [json.dumps(e) for e in registered_entries(text, layout)]
