// pipeline-agent web UI, /workers: each worker's CPU, memory and GPU use as small live
// charts (uPlot), and its running tasks and last heartbeat, from /workers/stats.json.
// The store keeps the last 120 samples per worker (one per heartbeat); the page asks
// only for the samples newer than the newest it holds.
"use strict";

const KEPT = 120, POLL_MS = 3000, SPARK_W = 140, SPARK_H = 34;

function sparkOptions(labels) {
  return {
    width: SPARK_W, height: SPARK_H, legend: {show: false}, cursor: {show: false},
    select: {show: false}, padding: [2, 0, 2, 0],
    scales: {x: {time: false}, y: {range: [0, 100]}},
    axes: [{show: false}, {show: false}],
    series: [{}].concat(labels.map((label, i) => ({
      label, stroke: PALETTE[i % PALETTE.length], width: 1.25, points: {show: false},
    }))),
  };
}

// One worker's points, appended to as samples come, the oldest dropped past KEPT.
function mergeSeries(held, fresh) {
  if (!held) return fresh;
  const gpus = Math.max(held.gpus.length, fresh.gpus.length);
  const merged = {ts: held.ts.concat(fresh.ts), cpu: held.cpu.concat(fresh.cpu),
    memory: held.memory.concat(fresh.memory), gpus: []};
  for (let g = 0; g < gpus; g++) {
    merged.gpus.push((held.gpus[g] || Array(held.ts.length).fill(null))
      .concat(fresh.gpus[g] || Array(fresh.ts.length).fill(null)));
  }
  const drop = Math.max(0, merged.ts.length - KEPT);
  if (drop) {
    for (const key of ["ts", "cpu", "memory"]) merged[key] = merged[key].slice(drop);
    merged.gpus = merged.gpus.map((series) => series.slice(drop));
  }
  return merged;
}

function chartData(series, metric) {
  if (metric === "gpus") return [series.ts, ...series.gpus];
  return [series.ts, series[metric]];
}

function drawSpark(cell, data, labels, charts, key) {
  const holder = cell.querySelector(".spark");
  let chart = charts.get(key);
  if (chart && chart.series.length !== data.length) {
    chart.destroy();
    chart = null;
  }
  if (!chart) {
    holder.replaceChildren();
    chart = new uPlot(sparkOptions(labels), data, holder);
    charts.set(key, chart);
  } else {
    chart.setData(data);
  }
  holder.dataset.points = String(data[0].length);
}

function percent(value) {
  return value === null || value === undefined ? "" : `${Math.round(value)}%`;
}

function updateRow(row, worker) {
  const running = row.querySelector(".running");
  running.replaceChildren(...worker.tasks.flatMap((id) => [
    el("a", {href: `/tasks/${id}`}, el("code", {}, id.slice(0, 8))), " "]));
  const time = row.querySelector(".heartbeat time");
  if (time) time.dataset.ts = String(worker.last_heartbeat);
  row.querySelector('[data-metric="cpu"] .now').textContent = percent(worker.cpu);
  row.querySelector('[data-metric="memory"] .now').textContent = percent(worker.memory);
  row.querySelector('[data-metric="gpus"] .now').replaceChildren(...worker.gpus.flatMap((g) => [
    el("span", {title: g.name}, percent(g.utilization) + (g.memory === null ? "" : ` · mem ${percent(g.memory)}`)),
    " "]));
}

async function startWorkers(table) {
  const held = new Map(), charts = new Map();
  let after = 0;
  const load = async () => {
    const state = await getJSON(`${table.dataset.stats}?after=${after}`);
    const rows = new Map(Array.from(table.querySelectorAll("tr[data-worker]"),
      (row) => [row.dataset.worker, row]));
    const ids = Object.keys(state.workers);
    if (ids.length !== rows.size || ids.some((id) => !rows.has(id))) {
      window.location.reload();  // a worker came or went: the server renders the rows
      return;
    }
    for (const [id, fresh] of Object.entries(state.series)) {
      held.set(id, mergeSeries(held.get(id), fresh));
      after = Math.max(after, ...fresh.ts);
    }
    for (const [id, row] of rows) {
      updateRow(row, state.workers[id]);
      const series = held.get(id);
      if (!series || !series.ts.length) continue;
      for (const cell of row.querySelectorAll(".metric")) {
        const metric = cell.dataset.metric;
        if (metric === "gpus" && !series.gpus.length) continue;
        const labels = metric === "gpus" ? series.gpus.map((_, g) => `GPU ${g}`) : [metric];
        drawSpark(cell, chartData(series, metric), labels, charts, `${id}/${metric}`);
      }
    }
    tickAges();
  };
  const poll = async () => {
    try {
      await load();
    } catch (err) {
      console.warn(err);
    }
    setTimeout(poll, POLL_MS);
  };
  await poll();
}

document.addEventListener("DOMContentLoaded", () => {
  const table = document.getElementById("workers");
  if (table && table.dataset.stats) startWorkers(table);
});
