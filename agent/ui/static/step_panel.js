// The DAG's side panel: a click on a step opens its Console / Configuration / Artifacts /
// Scalars (htmx fragments of the task page's tabs) beside the graph, instead of leaving
// the page. Ctrl/Cmd/middle click still opens the step's own page (nodes keep their href).
"use strict";

const PANEL_TABS = ["console", "configuration", "artifacts", "scalars"];
let uPlotLoading = null;

function loadUPlot() {
  if (window.uPlot) return Promise.resolve();
  if (!uPlotLoading) {
    uPlotLoading = new Promise((resolve, reject) => {
      const css = el("link", {rel: "stylesheet", href: "/ui/static/vendor/uplot/uPlot.min.css"});
      const script = el("script", {src: "/ui/static/vendor/uplot/uPlot.iife.min.js"});
      script.onload = resolve;
      script.onerror = () => reject(new Error("uPlot did not load"));
      document.head.append(css, script);
    });
  }
  return uPlotLoading;
}

async function panelScalars(container) {
  await loadUPlot();
  const plots = new Map();
  const load = async () => {
    if (!container.isConnected) return;  // the panel moved on: stop polling
    drawCharts(container, await getJSON(container.dataset.src), plots);
    if (container.dataset.live) setTimeout(load, 2000);
  };
  await load();
}

function stepPanel(panel, dag) {
  const body = panel.querySelector(".panel-body");
  let current = null;  // {name, taskId, tab}

  const show = (tab) => {
    current.tab = tab;
    for (const a of panel.querySelectorAll(".tabs a")) {
      if (a.dataset.tab === tab) a.setAttribute("aria-selected", "true");
      else a.removeAttribute("aria-selected");
    }
    const full = panel.querySelector(".full-page");
    if (!current.taskId) {
      full.hidden = true;
      body.replaceChildren(el("p", {class: "empty"}, "This step has not started: it has no task yet."));
      return;
    }
    full.hidden = false;
    full.href = `/tasks/${current.taskId}?tab=${tab}`;
    const url = `/tasks/${current.taskId}?tab=${tab}&fragment=1`;
    htmx.ajax("GET", url, {target: body, swap: "innerHTML"});
  };

  const open = (node, tab) => {
    const href = node.getAttribute("href") || "";
    current = {name: node.dataset.step, taskId: href.startsWith("/tasks/") ? href.slice(7) : null};
    for (const other of dag.querySelectorAll(".node[aria-current]")) other.removeAttribute("aria-current");
    node.setAttribute("aria-current", "true");
    panel.dataset.step = node.dataset.step;
    panel.querySelector(".step-name").textContent = node.dataset.step;
    const status = node.dataset.status || "pending";
    const badge = panel.querySelector(".step-status");
    badge.className = `status step-status s-${status}`;
    badge.dataset.status = status;
    badge.querySelector(".label").textContent = status.replace("_", " ");
    panel.hidden = false;
    show(tab);
  };

  const openFrom = (event) => {
    const node = event.target.closest(".node");
    if (!node) return;
    event.preventDefault();
    open(node, current ? current.tab : PANEL_TABS[0]);
  };
  dag.addEventListener("click", (event) => {
    if (event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
    openFrom(event);
  });
  dag.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") openFrom(event);
  });
  panel.querySelector(".tabs").addEventListener("click", (event) => {
    const a = event.target.closest("a[data-tab]");
    if (!a || !current) return;
    event.preventDefault();
    show(a.dataset.tab);
  });
  panel.querySelector(".close").addEventListener("click", () => {
    panel.hidden = true;
    body.replaceChildren();  // stops the console's polling
    for (const other of dag.querySelectorAll(".node[aria-current]")) other.removeAttribute("aria-current");
  });
  body.addEventListener("htmx:afterSwap", () => {
    const scalars = body.querySelector("#panel-scalars");
    if (scalars) panelScalars(scalars).catch((err) => { scalars.textContent = `Scalars unavailable: ${err.message}`; });
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const panel = document.getElementById("step-panel");
  const dag = document.getElementById("dag");
  if (panel && dag) stepPanel(panel, dag);
});
