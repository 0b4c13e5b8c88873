// pipeline-agent web UI, a task's Plots tab: the reported figures (plotly-style JSON, see
// agent/sdk/plots.py) drawn by plotly.js, which is loaded only here and only when the tab
// holds a figure to draw (it is the biggest file the UI ships).
"use strict";

const PLOTLY_SRC = "/ui/static/vendor/plotly/plotly.min.js";

function loadPlotly() {
  if (window.Plotly) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const script = el("script", {src: PLOTLY_SRC});
    script.onload = resolve;
    script.onerror = () => reject(new Error("plotly.js did not load"));
    document.head.append(script);
  });
}

// The page's colours as a plotly template: it fills in only what a figure leaves unset
// (a figure with its own template keeps it).
function plotlyTemplate() {
  const {fg, muted, line} = themeColors();
  const axis = {gridcolor: line, zerolinecolor: line, linecolor: line, color: muted};
  return {layout: {
    paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)", font: {color: fg},
    colorway: PALETTE, xaxis: axis, yaxis: axis,
    scene: {xaxis: axis, yaxis: axis, zaxis: axis},
  }, data: {table: [{header: {fill: {color: line}}, cells: {fill: {color: "rgba(0,0,0,0)"}}}]}};
}

// plotly.js 3 dropped titles given as plain strings, which our figures (and older plotly
// ones) use: {title: "x"} becomes {title: {text: "x"}}, for the figure and its axes.
function withTitleObjects(layout) {
  const fixed = (holder) => (holder && typeof holder.title === "string"
    ? {...holder, title: {text: holder.title}} : holder);
  const out = fixed(layout);
  for (const [key, value] of Object.entries(out)) {
    if (/^[xyz]axis\d*$/.test(key)) out[key] = fixed(value);
    if (/^scene\d*$/.test(key) && value) {
      out[key] = {...value};
      for (const axis of ["xaxis", "yaxis", "zaxis"]) out[key][axis] = fixed(value[axis]);
    }
  }
  return out;
}

function figureLayout(figure) {
  const layout = withTitleObjects({autosize: true, height: 380,
    margin: {t: 48, r: 16, b: 48, l: 56}, ...(figure.layout || {})});
  if (!layout.template) layout.template = plotlyTemplate();
  return layout;
}

async function drawFigure(holder, figure) {
  await Plotly.react(holder, figure.data || [], figureLayout(figure),
    {responsive: true, displaylogo: false});
  holder.dataset.drawn = "1";
}

async function startPlots(holders) {
  await loadPlotly();
  const figures = new Map();
  for (const holder of holders) {
    const figure = JSON.parse(document.getElementById(holder.dataset.figure).textContent);
    figures.set(holder, figure);
    holder.replaceChildren();
    try {
      await drawFigure(holder, figure);
    } catch (err) {
      holder.textContent = `Figure unavailable: ${err.message}`;
    }
  }
  onThemeChange(() => {
    for (const [holder, figure] of figures) drawFigure(holder, figure).catch(console.warn);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const holders = document.querySelectorAll(".plotly-figure[data-figure]");
  if (holders.length) {
    startPlots(holders).catch((err) => {
      for (const holder of holders) holder.textContent = `Figures unavailable: ${err.message}`;
    });
  }
});
