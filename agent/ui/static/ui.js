// pipeline-agent web UI: the DAG panel (dagre layout, live statuses), scalar charts
// (uPlot) and console search. Pages work without it; it only adds the live parts.
"use strict";

const TERMINAL = new Set(["completed", "failed", "stopped", "cached", "skipped", "published", "archived"]);
const NODE_W = 180, NODE_H = 54;

async function getJSON(url) {
  const response = await fetch(url, {credentials: "same-origin", headers: {Accept: "application/json"}});
  if (!response.ok) throw new Error(`${url}: ${response.status}`);
  return response.json();
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const child of children) node.append(child);
  return node;
}

// -- the DAG ----------------------------------------------------------------------------
// dagre lays out a DAG of up to this many steps. Past it, dagre takes seconds (its
// network-simplex ranking, crossing-minimization sweeps and Brandes-Koepf positioning,
// measured on 1,000 steps by bench/ui.py), so a big DAG gets a plain layered layout:
// a column per stage (longest path from the roots), rows ordered by the parents' rows.
const DAGRE_MAX = 300;
const NODE_SEP = 18, RANK_SEP = 48, MARGIN = 8;

// The layout both ways: {width, height, boxes: Map name -> centre, edges: [{from, to, points}]}.
function layoutDag(graph) {
  return graph.nodes.length > DAGRE_MAX ? layeredLayout(graph) : dagreLayout(graph);
}

function dagreLayout(graph) {
  const g = new dagre.graphlib.Graph();
  g.setGraph({rankdir: "LR", nodesep: NODE_SEP, ranksep: RANK_SEP, marginx: MARGIN, marginy: MARGIN});
  g.setDefaultEdgeLabel(() => ({}));
  for (const node of graph.nodes) g.setNode(node.name, {width: NODE_W, height: NODE_H});
  for (const [from, to] of graph.edges) g.setEdge(from, to);
  dagre.layout(g);
  const boxes = new Map(graph.nodes.map((node) => [node.name, g.node(node.name)]));
  const edges = g.edges().map((e) => ({from: e.v, to: e.w, points: g.edge(e).points}));
  return {width: g.graph().width, height: g.graph().height, boxes, edges};
}

function layeredLayout(graph) {
  const parents = new Map(graph.nodes.map((node) => [node.name, []]));
  const edges = graph.edges.filter(([from, to]) => parents.has(from) && parents.has(to));
  for (const [from, to] of edges) parents.get(to).push(from);
  const stage = new Map();
  const stageOf = (name, seen = new Set()) => {  // longest path from a root; a cycle stops
    if (stage.has(name)) return stage.get(name);
    seen.add(name);
    const above = parents.get(name).filter((p) => !seen.has(p)).map((p) => stageOf(p, seen));
    seen.delete(name);
    const value = above.length ? Math.max(...above) + 1 : 0;
    stage.set(name, value);
    return value;
  };
  const columns = [];
  for (const node of graph.nodes) (columns[stageOf(node.name)] ??= []).push(node.name);
  const row = new Map();
  for (const column of columns.filter(Boolean)) {
    const mean = (name) => {
      const rows = parents.get(name).filter((p) => row.has(p)).map((p) => row.get(p));
      return rows.length ? rows.reduce((a, b) => a + b, 0) / rows.length : -1;
    };
    const keyed = column.map((name, index) => [mean(name), index, name]);
    keyed.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    keyed.forEach(([, , name], r) => row.set(name, r));
  }
  const tallest = Math.max(...columns.map((c) => (c ? c.length : 0)));
  const height = 2 * MARGIN + tallest * NODE_H + (tallest - 1) * NODE_SEP;
  const boxes = new Map();
  columns.forEach((column, c) => {
    const top = (height - column.length * NODE_H - (column.length - 1) * NODE_SEP) / 2;
    for (const name of column) {
      boxes.set(name, {x: MARGIN + c * (NODE_W + RANK_SEP) + NODE_W / 2,
        y: top + row.get(name) * (NODE_H + NODE_SEP) + NODE_H / 2});
    }
  });
  const width = 2 * MARGIN + columns.length * NODE_W + (columns.length - 1) * RANK_SEP;
  return {width, height, boxes, edges: edges.map(([from, to]) => {
    const a = boxes.get(from), b = boxes.get(to);
    return {from, to, points: [{x: a.x + NODE_W / 2, y: a.y}, {x: b.x - NODE_W / 2, y: b.y}]};
  })};
}

function drawDag(container, graph) {
  if (!graph.nodes.length) {  // a queued run: its steps show once the controller reports them
    container.replaceChildren(el("p", {class: "empty"}, "No steps reported yet."));
    return;
  }
  const layout = layoutDag(graph);
  container.replaceChildren();
  container.style.height = `${Math.ceil(layout.height)}px`;
  container.style.width = `${Math.ceil(layout.width)}px`;
  const svgNS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(svgNS, "svg");
  svg.setAttribute("width", layout.width);
  svg.setAttribute("height", layout.height);
  svg.setAttribute("class", "edges");
  svg.setAttribute("aria-hidden", "true");
  for (const edge of layout.edges) {
    const path = document.createElementNS(svgNS, "path");
    path.setAttribute("d", "M" + edge.points.map((p) => `${p.x},${p.y}`).join(" L"));
    path.setAttribute("data-edge", `${edge.from}->${edge.to}`);
    svg.append(path);
  }
  container.append(svg);
  for (const node of graph.nodes) {
    const box = layout.boxes.get(node.name);
    const item = el("a", {class: "node", "data-step": node.name, role: "button", tabindex: "0"},
      el("span", {class: "name"}, node.name),
      el("span", {class: "meta"}, el("span", {class: "label"}), el("span", {class: "took"}),
         el("span", {class: "cached", title: "reused from cache"}, "")));
    item.style.left = `${box.x - NODE_W / 2}px`;
    item.style.top = `${box.y - NODE_H / 2}px`;
    container.append(item);
    updateNode(item, node);
  }
}

function updateNode(item, step) {
  const status = step.status || "pending";
  if (item.dataset.status !== status) item.dataset.status = status;
  item.className = `node s-${status}`;
  item.querySelector(".label").textContent = status.replace("_", " ");
  item.querySelector(".took").textContent = step.duration ? ` · ${step.duration}` : "";
  item.querySelector(".cached").textContent = step.cached ? " · cached" : "";
  if (step.task_id) item.setAttribute("href", `/tasks/${step.task_id}`);
  else item.removeAttribute("href");
}

async function startDag(container) {
  let graph = await getJSON(container.dataset.graph);
  drawDag(container, graph);
  const refresh = async () => {
    let state;
    try {
      state = await getJSON(container.dataset.status);
    } catch (err) {
      console.warn(err);
      return setTimeout(refresh, 2000);
    }
    const known = new Set(graph.nodes.map((n) => n.name));
    const names = Object.keys(state.steps);
    if (names.length !== known.size || names.some((n) => !known.has(n))) {
      graph = await getJSON(container.dataset.graph);  // steps were added: lay out again
      drawDag(container, graph);
    }
    for (const item of container.querySelectorAll(".node")) {
      const step = state.steps[item.dataset.step];
      if (step) updateNode(item, step);
    }
    noteTaskStatus(state.status);
    const done = TERMINAL.has(state.status) &&
      Object.values(state.steps).every((s) => TERMINAL.has(s.status) || s.status === "pending");
    if (!done) setTimeout(refresh, 1000);
  };
  setTimeout(refresh, 1000);
}

// -- the task's header, actions and Info tab follow its status ----------------------------
// Parts of the task page that depend on its status, rendered again by the server when the
// status changes (the console, scalars and DAG follow it on their own).
const STATUS_PARTS = ["task-status", "task-sub", "task-actions", "tab-info"];
let statusRefresh = null;

function noteTaskStatus(status) {
  const badge = document.querySelector("#task-status .status");
  if (!badge || badge.dataset.status === status || statusRefresh) return;
  statusRefresh = refreshStatusParts().finally(() => { statusRefresh = null; });
}

async function refreshStatusParts() {
  const response = await fetch(window.location.href, {credentials: "same-origin"});
  if (!response.ok) throw new Error(`${window.location.href}: ${response.status}`);
  const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
  for (const id of STATUS_PARTS) {
    const now = document.getElementById(id), next = fresh.getElementById(id);
    if (now && next) {
      now.replaceWith(next);
      htmx.process(next);
    }
  }
  tickAges();
}

// A live task's page without a DAG polls its status (the DAG's own poll carries it).
function watchStatus(badge) {
  const poll = async () => {
    try {
      noteTaskStatus((await getJSON(badge.dataset.src)).status);
      await statusRefresh;
    } catch (err) {
      console.warn(err);
    }
    const current = document.querySelector("#task-status .status");
    if (current && !TERMINAL.has(current.dataset.status)) setTimeout(poll, 2000);
  };
  setTimeout(poll, 2000);
}

// -- scalars ----------------------------------------------------------------------------
const PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563"];
const DARK = window.matchMedia("(prefers-color-scheme: dark)");

// The page's colours (ui.css's variables, which follow prefers-color-scheme).
function themeColors() {
  const style = getComputedStyle(document.documentElement);
  const get = (name) => style.getPropertyValue(name).trim();
  return {fg: get("--fg"), muted: get("--muted"), line: get("--line"), bg: get("--bg"), dark: DARK.matches};
}

// uPlot draws on a canvas, so its axes do not follow CSS: give them the theme's colours.
function chartAxes() {
  const {muted, line} = themeColors();
  const axis = () => ({stroke: muted, grid: {stroke: line, width: 1}, ticks: {stroke: line, width: 1}});
  return [axis(), axis()];
}

function onThemeChange(redraw) {
  DARK.addEventListener("change", redraw);
}

function drawCharts(container, charts, plots) {
  const width = Math.min(720, container.clientWidth || 720);
  container.querySelector("[data-empty]").hidden = charts.length > 0;
  for (const chart of charts) {
    const data = chart.data;
    const existing = plots.get(chart.title);
    if (existing && existing.series.length === chart.series.length + 1) {
      existing.setData(data);
      continue;
    }
    if (existing) existing.destroy();
    const holder = container.querySelector(`[data-chart="${CSS.escape(chart.title)}"]`) ||
      container.appendChild(el("div", {class: "chart", "data-chart": chart.title}));
    holder.replaceChildren();
    const series = [{label: "iteration"}].concat(chart.series.map((name, i) => ({
      label: name, stroke: PALETTE[i % PALETTE.length], width: 1.5, spanGaps: false,
    })));
    plots.set(chart.title, new uPlot({title: chart.title, width, height: 240, series,
      axes: chartAxes(), scales: {x: {time: false}}}, data, holder));
  }
}

async function startScalars(container) {
  const plots = new Map();
  let charts = [];
  const load = async () => {
    charts = await getJSON(container.dataset.src);
    drawCharts(container, charts, plots);
    if (container.dataset.live) setTimeout(load, 2000);
  };
  onThemeChange(() => {  // the axes' colours are set when a chart is made: make them anew
    for (const plot of plots.values()) plot.destroy();
    plots.clear();
    drawCharts(container, charts, plots);
  });
  await load();
}

// -- ages ("42s ago") tick in the browser ---------------------------------------------------
// The server renders each <time data-ts> with its age; this keeps the ages current, on the
// server's clock (the page's data-now), and the exact time stays in the title.
let clockSkew = null;

function formatAge(ts, now) {
  const seconds = Math.max(0, now - ts);
  for (const [unit, size] of [["d", 86400], ["h", 3600], ["m", 60]]) {
    if (seconds >= size) return `${Math.floor(seconds / size)}${unit} ago`;
  }
  return `${Math.floor(seconds)}s ago`;
}

function tickAges() {
  if (clockSkew === null) {
    const rendered = Number(document.body.dataset.now);
    clockSkew = rendered ? rendered - performance.timeOrigin / 1000 : 0;  // ~ when it was asked for
  }
  const now = Date.now() / 1000 + clockSkew;
  for (const time of document.querySelectorAll("time[data-ts]")) {
    const ts = Number(time.dataset.ts);
    if (!ts) continue;
    const text = formatAge(ts, now);
    if (time.textContent !== text) time.textContent = text;
  }
}

// -- console search ---------------------------------------------------------------------
// The loaded lines are filtered here; the lines before them (a long log opens on its
// tail) are searched by the server, whose matches show above the console.
function startConsoleSearch(input) {
  const filter = () => {
    const text = input.value.toLowerCase();
    for (const line of document.querySelectorAll("#console .line")) {
      line.hidden = text !== "" && !line.textContent.toLowerCase().includes(text);
    }
  };
  let timer = null;
  const searchEarlier = () => {
    const earlier = document.querySelector("#console-earlier .load-earlier");
    const matches = document.getElementById("console-matches");
    if (!earlier || !input.value.trim()) {
      matches.replaceChildren();
      return;
    }
    const query = new URLSearchParams({q: input.value, before: earlier.dataset.before});
    htmx.ajax("GET", `${input.dataset.src}?${query}`, {target: matches, swap: "innerHTML"});
  };
  input.addEventListener("input", () => {
    filter();
    clearTimeout(timer);
    timer = setTimeout(searchEarlier, 300);
  });
  document.body.addEventListener("htmx:afterSettle", (event) => {
    if (event.target.id === "console-earlier") {  // earlier lines came in
      filter();
      searchEarlier();
    }
  });
}

// -- sortable tables (click a header; numbers and times sort as such) --------------------
function sortKey(cell) {
  const time = cell.querySelector("time");
  if (time) return Number(time.getAttribute("datetime"));
  const text = cell.textContent.trim();
  const number = Number(text);
  return text !== "" && !Number.isNaN(number) ? number : text.toLowerCase();
}

function startSortable(table) {
  table.querySelectorAll("thead th").forEach((th, column) => {
    th.tabIndex = 0;
    th.setAttribute("aria-sort", "none");
    const sort = () => {
      const ascending = th.getAttribute("aria-sort") !== "ascending";
      table.querySelectorAll("thead th").forEach((h) => h.setAttribute("aria-sort", "none"));
      th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      const body = table.tBodies[0];
      const rows = Array.from(body.rows).filter((r) => r.cells.length > column);
      rows.sort((a, b) => {
        const x = sortKey(a.cells[column]), y = sortKey(b.cells[column]);
        return (x < y ? -1 : x > y ? 1 : 0) * (ascending ? 1 : -1);
      });
      body.append(...rows);
    };
    th.addEventListener("click", sort);
    th.addEventListener("keydown", (e) => { if (e.key === "Enter") sort(); });
  });
}

document.addEventListener("DOMContentLoaded", () => {
  tickAges();
  setInterval(tickAges, 1000);
  document.body.addEventListener("htmx:afterSettle", tickAges);
  document.querySelectorAll("table.sortable").forEach(startSortable);
  const watched = document.querySelector("#task-status[data-watch]");
  if (watched) watchStatus(watched);
  const dag = document.getElementById("dag");
  if (dag) startDag(dag).catch((err) => { dag.textContent = `DAG unavailable: ${err.message}`; });
  const scalars = document.getElementById("scalars");
  if (scalars) startScalars(scalars).catch((err) => { scalars.textContent = `Scalars unavailable: ${err.message}`; });
  const console_ = document.getElementById("console");
  if (console_) console_.scrollTop = console_.scrollHeight;  // a log opens on its tail
  const search = document.getElementById("console-search");
  if (search) startConsoleSearch(search);
});
