// Mecha dashboard: draws each state the control plane pushes on /ui/api/events (server-sent events: a
// change shows within a fraction of a second, where a poller's worst case is its period plus an answer).
// No framework, no build step.
"use strict";
const SVG = "http://www.w3.org/2000/svg";
const RECONNECT_MS = 1000;

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}
function svgEl(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}
function row(table, cells, header) {
  const tr = el("tr");
  for (const c of cells) {
    const td = el(header ? "th" : "td");
    if (c instanceof Node) td.appendChild(c); else td.textContent = c;
    tr.appendChild(td);
  }
  table.appendChild(tr);
}
function span(cls, text) { return el("span", { class: cls }, text); }
function rate(x) { return x === undefined ? "" : (x >= 10 ? x.toFixed(0) : x.toFixed(1)); }

// Layered layout: a node's column is its longest path from a source; rows in id order.
function layout(graph) {
  const depth = {}, incoming = {};
  for (const n of graph.nodes) { depth[n.id] = 0; incoming[n.id] = []; }
  for (const e of graph.edges) if (incoming[e.to]) incoming[e.to].push(e.from);
  for (let pass = 0; pass < graph.nodes.length; pass++) {
    let changed = false;
    for (const e of graph.edges) {
      if (depth[e.from] === undefined || depth[e.to] === undefined) continue;
      if (depth[e.to] < depth[e.from] + 1 && depth[e.from] + 1 < graph.nodes.length) {
        depth[e.to] = depth[e.from] + 1; changed = true;
      }
    }
    if (!changed) break;
  }
  const columns = {};
  for (const n of graph.nodes) (columns[depth[n.id]] = columns[depth[n.id]] || []).push(n);
  const pos = {}, colW = 175, rowH = 60;
  let height = 0;
  for (const [col, nodes] of Object.entries(columns)) {
    nodes.forEach((n, i) => { pos[n.id] = { x: 10 + Number(col) * colW, y: 20 + i * rowH }; });
    height = Math.max(height, 40 + nodes.length * rowH);
  }
  return { pos, width: 40 + Object.keys(columns).length * colW, height };
}

function drawGraph(graph) {
  const svg = document.getElementById("graph");
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const { pos, width, height } = layout(graph);
  svg.setAttribute("height", Math.max(260, height));
  svg.setAttribute("width", Math.max(width, 600));  // natural size: the section scrolls, text stays legible
  svg.setAttribute("viewBox", `0 0 ${Math.max(width, 600)} ${Math.max(260, height)}`);
  const defs = svgEl("defs");
  const marker = svgEl("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto" });
  marker.appendChild(svgEl("path", { d: "M0,0 L10,5 L0,10 z", fill: "#7a8594" }));
  defs.appendChild(marker); svg.appendChild(defs);
  const W = 120, H = 34;
  for (const e of graph.edges) {
    const a = pos[e.from], b = pos[e.to];
    if (!a || !b) continue;
    const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2;
    const failing = (e.eps || 0) > 0;
    const path = svgEl("path", { d: `M${x1},${y1} C${x1 + 30},${y1} ${x2 - 30},${y2} ${x2},${y2}`,
      class: `edge ${e.kind}${failing ? " failing" : ""}`, "marker-end": "url(#arrow)",
      "data-from": e.from, "data-to": e.to });
    svg.appendChild(path);
    const parts = [];
    const weights = (e.routes || []).map((r) => r.weight).filter((w) => w > 0 && w < 100);
    if (weights.length) parts.push(weights.map((w) => `${w}%`).join("/"));
    if (e.rps !== undefined) parts.push(`${rate(e.rps)} rps`);
    if (e.eps) parts.push(`${rate(e.eps)} err/s`);
    if (parts.length) {
      svg.appendChild(svgEl("text", { x: x2 - 6, y: y2 + 16, "text-anchor": "end", class: "elabel",
        "data-edge": `${e.from}->${e.to}` }, parts.join(" ")));
    }
  }
  for (const n of graph.nodes) {
    const p = pos[n.id];
    const nacked = n.state === "NACKED";
    const g = svgEl("g", { class: `node ${n.kind}${nacked ? " nacked" : ""}`, "data-id": n.id,
      transform: `translate(${p.x},${p.y})` });
    g.appendChild(svgEl("rect", { width: W, height: H, rx: n.kind === "service" ? 17 : 4 }));
    g.appendChild(svgEl("text", { x: 8, y: 14 }, n.label));
    const sub = n.kind === "service" ? "service" : (n.proxy ? `proxy ${n.proxy}` : n.kind);
    g.appendChild(svgEl("text", { x: 8, y: 28, fill: "#5b6573" }, nacked ? "NACKED" : sub));
    svg.appendChild(g);
  }
}

function drawProxies(proxies) {
  const t = document.getElementById("proxies");
  t.textContent = "";
  row(t, ["proxy", "mode", "state", "per type"], true);
  for (const p of proxies) {
    const types = el("div");
    for (const [name, ts] of Object.entries(p.types)) {
      const line = el("div");
      line.appendChild(document.createTextNode(`${name} `));
      line.appendChild(span(ts.state, ts.state));
      if (ts.nack_message) line.appendChild(el("div", { class: "msg" }, ts.nack_message));
      types.appendChild(line);
    }
    row(t, [p.proxy_id, p.mode, span(p.state, p.state), types]);
  }
}

function drawDapr(apps) {
  const t = document.getElementById("dapr");
  t.textContent = "";
  row(t, ["app", "capability service", "components"], true);
  for (const a of apps) {
    const health = a.healthy ? span("SYNCED", "healthy") : span("bad", `failing: ${a.detail || "?"}`);
    const comps = el("div", {});
    for (const c of a.component_health || []) {
      const cls = c.healthy === false ? "bad" : c.healthy ? "healthy" : "";
      const line = el("div", { "data-component": c.name });
      line.appendChild(span(cls, `${c.name} (${c.type})`));
      if (c.error) line.appendChild(el("div", { class: "msg" }, c.error));
      comps.appendChild(line);
    }
    if (!comps.firstChild) comps.textContent = "(none)";
    row(t, [`${a.app} (${a.proxy})`, health, comps]);
  }
}

function drawConfig(state) {
  const refused = document.getElementById("refused");
  refused.textContent = "";
  const r = state.last_refused;
  if (r) {
    const box = el("div", { class: "alert" });
    box.appendChild(el("b", {}, `Last refused change (${new Date(r.at * 1000).toLocaleTimeString()}):`));
    for (const d of r.diagnostics || []) {
      const where = [d.file, d.field].filter(Boolean).join(" ");
      box.appendChild(el("div", { class: "msg" }, `${where}: ${d.message}`));
    }
    refused.appendChild(box);
  }
  const h = document.getElementById("history");
  h.textContent = "";
  row(h, ["version", "when", "source", "change"], true);
  const history = state.history.length ? state.history.slice().reverse()
    : [{ version: state.version, at: state.at, source: "", change: {} }];
  for (const v of history.slice(0, 8)) {
    const c = v.change || {};
    const what = ["added", "modified", "removed"].filter((k) => (c[k] || []).length)
      .map((k) => `${k}: ${c[k].join(", ")}`).join("; ");
    row(h, [String(v.version), new Date(v.at * 1000).toLocaleTimeString(), v.source, what]);
  }
  const d = document.getElementById("documents");
  d.textContent = "";
  row(d, ["kind", "name", "namespace", "source"], true);
  for (const doc of state.documents) row(d, [doc.kind, doc.name, doc.namespace, doc.source || ""]);
}

function drawAlerts(state) {
  const alerts = document.getElementById("alerts");
  alerts.textContent = "";
  for (const p of state.proxies) {
    for (const [name, ts] of Object.entries(p.types)) {
      if (ts.state === "NACKED") {
        alerts.appendChild(el("div", { class: "alert", "data-kind": "nack" },
          `Proxy ${p.proxy_id} NACKED ${name} (version ${ts.nack_version}): ${ts.nack_message}`));
      } else if (ts.state === "STALE") {
        alerts.appendChild(el("div", { class: "alert", "data-kind": "stale" },
          `Proxy ${p.proxy_id} is STALE on ${name}`));
      }
    }
  }
  for (const a of state.dapr) {
    const failed = (a.component_health || []).filter((c) => c.healthy === false);
    for (const c of failed) {
      alerts.appendChild(el("div", { class: "alert", "data-kind": "component", "data-component": c.name },
        `Component ${c.name} (${c.type}) of ${a.app} is failing: ${c.error}`));
    }
    if (!a.healthy && !failed.length) {
      alerts.appendChild(el("div", { class: "alert", "data-kind": "component" },
        `Capability service of ${a.app} is failing: ${a.detail}`));
    }
  }
  if (!alerts.firstChild) alerts.appendChild(el("div", { class: "ok" }, "All proxies SYNCED, all capability services healthy."));
}

function draw(state) {
  const services = state.graph.nodes.filter((n) => n.kind === "service").length;
  document.getElementById("summary").textContent =
    `config version ${state.version} · ${state.proxies.length} proxies · ${services} services`;
  document.getElementById("updated").textContent = `live, updated ${new Date().toLocaleTimeString()}`;
  drawAlerts(state);
  drawGraph(state.graph);
  drawProxies(state.proxies);
  drawDapr(state.dapr);
  drawConfig(state);
}

function connect() {
  const source = new EventSource("api/events");
  source.onmessage = (event) => draw(JSON.parse(event.data));
  source.onerror = async () => {
    if (source.readyState !== EventSource.CLOSED) {  // the browser reconnects by itself (retry: 1 s)
      document.getElementById("updated").textContent = "reconnecting...";
      return;
    }
    // refused (not a dropped connection): logged out, or the control plane is gone
    try {
      const resp = await fetch("api/state", { cache: "no-store" });
      if (resp.status === 401) {
        document.getElementById("summary").textContent = "Logged out: run `mecha dashboard` to log in again.";
        return;
      }
    } catch (err) {
      document.getElementById("summary").textContent = `control plane unreachable: ${err}`;
    }
    setTimeout(connect, RECONNECT_MS);
  };
}
connect();
