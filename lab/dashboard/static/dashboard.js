// lab dashboard: draws each look the server sends on /events (server-sent events).
// Everything from the lab is inserted as text, never as HTML: certificate subjects and
// client addresses come from whoever connected.
"use strict";

const COLOURS = { web1: "var(--web1)", web2: "var(--web2)", sorry: "var(--sorry)" };
const SVG = "http://www.w3.org/2000/svg";

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "style") node.style.cssText = v;  // CSSOM: the page's policy forbids style attributes
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function targetClass(t) {
  if (t.status === "no check") return "unchecked";
  if (t.status.startsWith("UP")) return "up";
  if (t.status === "MAINT" || t.status === "DRAIN" || t.status.startsWith("NOLB")) return "held";
  return "down";
}

function drawTopology(look) {
  const box = document.getElementById("topology");
  box.replaceChildren(...look.balancers.map((lb) => {
    const designs = el("ul", { class: "designs" }, ...lb.designs.map((d) =>
      el("li", { "data-design": d.name }, d.name, " ",
         el("span", {}, `:${d.port ?? "-"} · ${d.mode} · verifies: ${d.verifies}`))));
    const targets = el("div", { class: "targets" }, ...Object.entries(lb.targets).map(([name, t]) =>
      el("span", { class: `target ${targetClass(t)}`, title: `${t.status} ${t.check}` },
         t.status === "no check" ? `${name} (no health checks)` : `${name} ${t.status} ${t.check}`)));
    const card = el("div", { class: "lb", "data-lb": lb.service }, el("h3", {}, lb.service), designs, targets);
    if (lb.error) card.append(el("p", { class: "reason" }, lb.error));
    return card;
  }));
}

function drawServices(look) {
  document.getElementById("services").replaceChildren(...look.services.map((s) =>
    el("li", { "data-service": s.service }, el("span", { class: `dot ${s.ok ? "ok" : "bad"}` }),
       `${s.service}: ${s.health}`)));
}

function drawSticks(look) {
  const box = document.getElementById("sticks");
  const tables = Object.entries(look.stick_tables);
  if (!tables.length) { box.replaceChildren(el("p", { class: "empty" }, "no source-sticky load balancer running")); return; }
  box.replaceChildren(...tables.map(([lb, entries]) => {
    const rows = Object.entries(entries).sort();
    const body = rows.length
      ? el("tbody", {}, ...rows.map(([ip, server]) => el("tr", { "data-client": ip }, el("td", {}, ip), el("td", {}, server))))
      : el("tbody", {}, el("tr", {}, el("td", { class: "empty", colspan: "2" }, "empty: no client pinned")));
    return el("div", {}, el("h3", {}, lb),
              el("table", { class: "stick", "data-lb": lb }, el("thead", {}, el("tr", {}, el("th", {}, "client IP"), el("th", {}, "target"))), body));
  }));
}

function drawChart(look) {
  const { targets, history, sums } = look.requests;
  const svg = document.getElementById("chart");
  const width = 600, height = 160, slots = 60;
  const peak = Math.max(1, ...history.flatMap((s) => targets.map((t) => s[t])));
  const lines = [];
  for (let i = 1; i < 4; i++) {
    const y = height - (height * i) / 4;
    const grid = document.createElementNS(SVG, "line");
    lines.push(grid);
    for (const [k, v] of Object.entries({ x1: 0, x2: width, y1: y, y2: y, stroke: "#2d3a48", "stroke-width": 1 })) grid.setAttribute(k, v);
  }
  // one group of bars per second, newest on the right: a pile-up onto one target stands out
  const slot = width / slots, bar = (slot - 2) / targets.length;
  history.forEach((sample, i) => {
    const x = (slots - history.length + i) * slot;
    targets.forEach((t, k) => {
      if (!sample[t]) return;
      const h = (sample[t] / peak) * (height - 8);
      const rect = document.createElementNS(SVG, "rect");
      for (const [a, v] of Object.entries({ x: x + k * bar, y: height - h, width: bar, height: h,
                                              "data-target": t })) rect.setAttribute(a, v);
      rect.style.fill = COLOURS[t] || "#fff";
      lines.push(rect);
    });
  });
  svg.replaceChildren(...lines);
  document.getElementById("legend").replaceChildren(...targets.map((t) =>
    el("span", { "data-target": t, "data-sum": sums[t] }, el("span", { class: "swatch", style: `background:${COLOURS[t]}` }),
       `${t}: ${sums[t]} in ${history.length} s`)),
    el("span", { class: "empty" }, `peak ${peak}/s`));
}

function drawRefused(look) {
  const body = document.querySelector("#refused tbody");
  if (!look.refused.length) {
    body.replaceChildren(el("tr", {}, el("td", { class: "empty", colspan: "5" }, "none refused yet")));
    return;
  }
  body.replaceChildren(...look.refused.map((r) => el("tr", { "data-client": r.client_ip, "data-time": r.time, "data-design": r.design },
    el("td", {}, r.time.slice(11, 19)), el("td", {}, r.client_ip), el("td", {}, r.design),
    el("td", { class: "reason" }, r.reason), el("td", {}, r.subject === "-" ? "(no certificate)" : r.subject))));
}

function draw(look) {
  const error = document.getElementById("error");
  error.hidden = !look.error;
  error.textContent = look.error ? `cannot read the lab: ${look.error}` : "";
  const live = document.getElementById("live");
  live.className = "";
  live.dataset.time = look.time;
  live.textContent = `live · ${new Date(look.time * 1000).toLocaleTimeString()}`;
  if (look.error) return;
  document.getElementById("project").textContent = look.project;
  document.title = `mTLS lab ${look.project}: ${look.designs_up.join(", ")}`;
  drawTopology(look);
  drawServices(look);
  drawSticks(look);
  drawChart(look);
  drawRefused(look);
}

const source = new EventSource("/events");
source.onmessage = (event) => draw(JSON.parse(event.data));
source.onerror = () => {
  const live = document.getElementById("live");
  live.className = "stale";
  live.textContent = "disconnected: is `lab dashboard` still running? (reconnecting)";
};
