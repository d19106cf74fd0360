// The training lab: two run forms (A and B) -> one state object in the URL -> training jobs on the server
// (POST /api/training/jobs), followed through server-sent events. Every number drawn comes from the events;
// the curves of both runs share one pair of charts. Request and event shapes: app/schemas/training.py and
// app/api/routes/training.py.
// state -> data -> render: handlers only change the state (or start, stop and follow runs, which fill `data`), and
// `render(state, data)` brings the whole page in line with both (docs/frontend.md, "The other pages").
import { api, clearError, showError } from "./api.js";
import { presenterKeys } from "./presenter.js";
import { changeTracker } from "./redraw.js";
import { createState } from "./state.js";
import { $, el } from "./dom.js";

const RUNS = ["a", "b"];
const COLORS = { a: "#1f5fbf", b: "#c2410c" };

// one run's settings, as the API names them (TrainingSettings)
const RUN_DEFAULTS = {
  network: "classic", depth: 4, num_layers: 1, batch_norm: false, skip_connections: false, dropout: false, dropout_p: 0.3,
  l2: false, weight_decay: 0.0005, pretrained: false, optimizer: "sgd", lr: 0.05, batch_size: 64, epochs: 3,
  train_size: 2000, seed: 0,
};

const DEFAULTS = { compare: false, a_job: "", b_job: "" };
for (const run of RUNS) for (const [key, value] of Object.entries(RUN_DEFAULTS)) DEFAULTS[`${run}_${key}`] = value;

// ready-made comparisons: what A and B differ in, and what to look for
const PRESETS = {
  skip: {
    a: { network: "deep", depth: 6, lr: 0.05 },
    b: { network: "deep", depth: 6, lr: 0.05, skip_connections: true },
    note: "Two 14-convolution networks, identical but for the skip connections. Without them the gradient fades on "
      + "its way back through the layers and the plain network hardly learns; with them it trains at once.",
  },
  bn: {
    a: { network: "deep", depth: 4, lr: 0.05 },
    b: { network: "deep", depth: 4, lr: 0.05, batch_norm: true },
    note: "The same 10-convolution network (no skip connections) with and without batch normalisation. Without it "
      + "the loss hardly moves at this learning rate; with every layer's outputs re-centred and re-scaled, it "
      + "falls within the first epoch.",
  },
  pretrained: {
    a: { network: "classic", train_size: 500, epochs: 3 },
    b: { network: "classic", train_size: 500, epochs: 3, pretrained: true },
    note: "500 digits only. B starts from the shipped weights (trained on all 8,000 training digits): it starts "
      + "where A hopes to end (look at epoch 0), and fine-tuning keeps it there, while A, from random weights, "
      + "has too few digits to get as far.",
  },
  rnn: {
    a: { network: "classic", epochs: 6, optimizer: "adam", lr: 0.003 },
    b: { network: "lstm", epochs: 6, optimizer: "adam", lr: 0.003 },
    note: "The same 2,000 digits, optimiser and steps for a CNN and an LSTM. The CNN sees the whole digit at once "
      + "and looks for local patterns everywhere; the LSTM reads it row by row and must learn what to remember, "
      + "so it starts slower. Its pictures show its memory: the hidden and cell states after each row.",
  },
  regularisation: {
    a: { network: "classic", train_size: 200, epochs: 20, batch_size: 16, optimizer: "adam", lr: 0.002 },
    b: { network: "classic", train_size: 200, epochs: 20, batch_size: 16, optimizer: "adam", lr: 0.002, l2: true,
      weight_decay: 0.01, dropout: true, dropout_p: 0.5 },
    note: "200 digits, 20 epochs: enough to memorise them. A's training loss falls to almost zero while its test "
      + "loss turns back up (overfitting); with L2 and dropout, B's gap between training (dashed) and test (solid) "
      + "stays smaller.",
  },
};

// --- what the page knows: each run's job and the points its events brought ------------------------------------
const data = {
  runs: { a: emptyRun(), b: emptyRun() },
  preset: "", // the ready-made comparison last chosen (its note stays until another is chosen)
};
const sources = { a: null, b: null }; // the event stream each run is followed through
const state = createState(DEFAULTS, () => render(state, data));
const fresh = changeTracker();
let drawQueued = false;

/** A run: its job (the API's), its status and progress, its points, its latest pictures; `gone`: its link is stale. */
function emptyRun() {
  return { job: null, epochs: [], batches: [], status: "idle", progress: null, pictures: null, gone: false };
}

/** The whole page from the state and the runs; calling it again changes nothing. */
function render(state, data) {
  showControls();
  for (const run of RUNS) {
    showStatus(run, data.runs[run]);
    const { pictures } = data.runs[run];
    if (pictures && fresh(`pictures-${run}`, [pictures])) showPictures(run, pictures);
  }
  $("preset-note").textContent = data.preset ? `${PRESETS[data.preset].note} Press “Train A and B together”.` : "";
  queueDraw();
}

// --- forms <-> state ----------------------------------------------------------------------------------
function controls(run) {
  return [...$(`form-${run}`).querySelectorAll("[data-key]")];
}

function readControl(el) {
  if (el.type === "checkbox") return el.checked;
  const fallback = RUN_DEFAULTS[el.dataset.key];
  return typeof fallback === "number" ? Number(el.value) : el.value;
}

function showControls() {
  for (const run of RUNS) {
    for (const el of controls(run)) {
      const value = state.values[`${run}_${el.dataset.key}`];
      if (el.type === "checkbox") el.checked = Boolean(value);
      else el.value = String(value);
    }
    for (const el of $(`form-${run}`).querySelectorAll("[data-only]")) el.hidden = !applies(el, run);
    $(`${run}-depth-out`).textContent = `${state.values[`${run}_depth`]} (${2 * state.values[`${run}_depth`] + 2} conv)`;
    $(`${run}-num_layers-out`).textContent = state.values[`${run}_num_layers`];
    $(`${run}-epochs-out`).textContent = state.values[`${run}_epochs`];
    $(`${run}-weight_decay`).disabled = !state.values[`${run}_l2`];
    $(`${run}-dropout_p`).disabled = !state.values[`${run}_dropout`];
  }
  const compare = state.values.compare;
  $("compare").checked = compare;
  $("panel-b").hidden = !compare;
  $("pictures-b").hidden = !compare;
  $("both-row").hidden = !compare;
}

// a control marked data-only="deep" (or "lstm gru_attention") applies to those networks only
function applies(el, run) {
  return el.dataset.only.split(" ").includes(state.values[`${run}_network`]);
}

function settingsFor(run) {
  const s = {};
  for (const key of Object.keys(RUN_DEFAULTS)) s[key] = state.values[`${run}_${key}`];
  // the toggles that do not apply to this network are hidden: send their defaults (off) instead
  for (const only of $(`form-${run}`).querySelectorAll("[data-only]")) {
    if (applies(only, run)) continue;
    for (const el of only.querySelectorAll("[data-key]")) s[el.dataset.key] = RUN_DEFAULTS[el.dataset.key];
  }
  return s;
}

function applyPreset(name) {
  const preset = PRESETS[name];
  const patch = { compare: true };
  for (const run of RUNS) {
    for (const [key, value] of Object.entries({ ...RUN_DEFAULTS, ...preset[run] })) patch[`${run}_${key}`] = value;
  }
  data.preset = name;
  state.set(patch, { push: true });
  render(state, data);
}

// --- jobs ------------------------------------------------------------------------------------------------
function isRunning(run) {
  return data.runs[run].status === "running";
}

async function startRun(run) {
  if (isRunning(run)) return;
  clearError();
  let job;
  try {
    job = await api("/api/training/jobs", { json: settingsFor(run), label: `Starting run ${run.toUpperCase()}…` });
  } catch (err) {
    showError(err, `Run ${run.toUpperCase()} did not start`);
    return;
  }
  state.set({ [`${run}_job`]: job.id });
  follow(run, job);
}

/** Follow `job` as run `run`: a new record in `data.runs`, filled by the job's events (an older stream is closed). */
function follow(run, job) {
  sources[run]?.close();
  const record = (data.runs[run] = emptyRun());
  record.job = job;
  record.status = job.status;
  record.progress = job.progress;
  render(state, data);
  const source = new EventSource(job.events_url);
  sources[run] = source;
  source.addEventListener("epoch", (e) => {
    const point = JSON.parse(e.data);
    record.epochs = record.epochs.filter((p) => p.epoch !== point.epoch).concat([point]);
    render(state, data);
  });
  source.addEventListener("batch", (e) => {
    const point = JSON.parse(e.data);
    if (!record.batches.length || record.batches[record.batches.length - 1].step < point.step) record.batches.push(point);
    record.progress = { ...record.progress, ...point };
    render(state, data);
  });
  source.addEventListener("images", (e) => {
    record.pictures = JSON.parse(e.data);
    render(state, data);
  });
  source.addEventListener("end", (e) => {
    source.close();
    const final = JSON.parse(e.data);
    record.status = final.status;
    record.progress = final.progress;
    record.job = { ...record.job, ...final };
    render(state, data);
    if (final.status === "failed") showError(final.error, `Run ${run.toUpperCase()} failed`);
  });
  source.addEventListener("error", () => {
    // the browser reconnects by itself (resuming after the last event); only a closed stream is final
    if (source.readyState === EventSource.CLOSED && record.status === "running") {
      showError(`lost the connection to run ${run.toUpperCase()}'s progress; reload the page to follow it again`);
    }
  });
}

async function cancelRun(run) {
  const job = data.runs[run].job;
  if (!job || !isRunning(run)) return;
  try {
    await api(`/api/training/jobs/${encodeURIComponent(job.id)}`, { method: "DELETE", label: "Stopping…" });
  } catch (err) {
    showError(err, `Stopping run ${run.toUpperCase()}`);
  }
}

async function openInExplorer(run) {
  const job = data.runs[run].job;
  if (!job) return;
  try {
    const answer = await api(`/api/training/jobs/${encodeURIComponent(job.id)}/model`, {
      method: "POST", label: "Registering the trained network…",
    });
    window.location.assign(answer.explorer_url);
  } catch (err) {
    showError(err, `Opening run ${run.toUpperCase()} in the explorer`);
  }
}

async function resume(run) {
  const id = state.values[`${run}_job`];
  if (!id) return;
  try {
    follow(run, await api(`/api/training/jobs/${encodeURIComponent(id)}`, { label: "Loading the run…" }));
  } catch (err) {
    if (err.status === 404) {
      // results are kept until the server restarts: an old link points to a job that is gone
      data.runs[run].gone = true;
      state.set({ [`${run}_job`]: "" });
      render(state, data);
    } else {
      showError(err, `Loading run ${run.toUpperCase()}`);
    }
  }
}

// --- status, pictures ------------------------------------------------------------------------------------
function seconds(s) {
  if (s === null || s === undefined) return "–";
  if (s < 60) return `${Math.ceil(s)} s`;
  return `${Math.floor(s / 60)} min ${String(Math.ceil(s % 60)).padStart(2, "0")} s`;
}

function showStatus(run, data) {
  const p = data.progress || {};
  const bar = $(`${run}-progress`);
  bar.value = p.steps ? p.step / p.steps : 0;
  const words = {
    idle: "Not started.",
    running: `Training: epoch ${p.epoch || 0} of ${p.epochs}, step ${p.step || 0} of ${p.steps}; `
      + `about ${seconds(p.eta)} left.`,
    done: `Done in ${seconds(p.elapsed)}.`,
    cancelled: `Stopped after ${p.step} of ${p.steps} steps.`,
    failed: `Failed: ${data.job?.error || "see the message above"}`,
  };
  $(`${run}-status`).textContent = data.gone
    ? "The run in this link is no longer on the server (it restarted). Train again."
    : words[data.status] || data.status;
  $(`${run}-start`).disabled = data.status === "running";
  // a run opened from someone else's link can be watched, not stopped or opened as a model (the server says 403)
  const theirs = data.job?.owned === false;
  $(`${run}-cancel`).disabled = data.status !== "running" || theirs;
  $(`${run}-cancel`).hidden = theirs;
  $(`${run}-open`).disabled = data.status !== "done" || theirs;
  $(`${run}-open`).hidden = theirs;
  const form = $(`form-${run}`);
  form.classList.toggle("running", data.status === "running");
  form.setAttribute("aria-busy", data.status === "running" ? "true" : "false");
}

function fillThumbs(box, urls, labels) {
  while (box.children.length > urls.length) box.lastChild.remove();
  urls.forEach((url, i) => {
    let img = box.children[i];
    if (!img) {
      img = document.createElement("img");
      box.append(img);
    }
    img.alt = labels[i];
    img.title = labels[i];
    if (img.getAttribute("src") !== url) img.src = url;
  });
}

function showPictures(run, pictures) {
  // what the pictures are (a CNN's filters and feature maps, a recurrent network's gates and states) comes with them
  const recurrent = pictures.layout === "recurrent";
  $(`pictures-${run}`).classList.toggle("recurrent", recurrent);
  $(`${run}-filter-title`).textContent = pictures.filter_title;
  $(`${run}-filter-caption`).textContent = pictures.filter_caption;
  $(`${run}-feature-title`).textContent = pictures.feature_title;
  fillThumbs($(`${run}-filters`), pictures.filters, pictures.filter_labels);
  fillThumbs($(`${run}-maps`), pictures.feature_maps, pictures.feature_labels);
  const count = `${pictures.filters.length} ${recurrent ? "gates" : "filters"}`;
  $(`${run}-filter-layer`).textContent = `(${pictures.filter_layer}, ${count})`;
  $(`${run}-feature-layer`).textContent = recurrent
    ? `(${pictures.feature_layer}: ${pictures.feature_labels.map((l) => l.split(" (")[0]).join("; ")})`
    : `(${pictures.feature_layer})`;
  $(`${run}-pictures-when`).textContent = pictures.step ? `after ${pictures.step} steps (epoch ${pictures.x.toFixed(1)})`
    : "before training";
  const sample = pictures.sample;
  const img = $(`${run}-sample`);
  img.src = sample.image;
  img.alt = `a handwritten ${sample.label}`;
  const confidence = sample.probabilities[sample.predicted];
  $(`${run}-prediction`).textContent = `label ${sample.label}; predicted ${sample.predicted}`
    + (confidence === null ? "" : ` (${Math.round(confidence * 100)} %)`);
}

// --- charts (drawn from the runs' points) ------------------------------------------------------------------
/** The charts and the summary table, drawn once per frame however often the page renders. */
function queueDraw() {
  if (drawQueued) return;
  drawQueued = true;
  requestAnimationFrame(() => {
    drawQueued = false;
    drawCharts();
    showSummary();
  });
}

function shownRuns() {
  return RUNS.filter((run) => (run === "a" || state.values.compare) && data.runs[run].job);
}

function seriesFor(metric) {
  const series = [];
  for (const run of shownRuns()) {
    const record = data.runs[run];
    const testKey = `test_${metric}`;
    const start = record.epochs.find((p) => p.epoch === 0);
    const training = (start && start[metric] !== null ? [{ x: 0, y: start[metric] }] : [])
      .concat(record.batches.map((b) => ({ x: b.x, y: b[metric] })));
    series.push({ color: COLORS[run], dashed: true, points: training });
    const test = record.epochs.filter((p) => p[testKey] !== null).map((p) => ({ x: p.epoch, y: p[testKey] }));
    series.push({ color: COLORS[run], dashed: false, markers: true, points: test });
  }
  return series;
}

function drawChart(canvas, series, { yMax, yStep, format, xMax }) {
  const dpr = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || canvas.width;
  const height = canvas.clientHeight || canvas.height;
  canvas.width = Math.round(width * dpr);
  canvas.height = Math.round(height * dpr);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, width, height);
  const pad = { left: 48, right: 12, top: 10, bottom: 32 };
  const w = width - pad.left - pad.right;
  const h = height - pad.top - pad.bottom;
  const X = (x) => pad.left + (x / xMax) * w;
  const Y = (y) => pad.top + h - (Math.min(y, yMax) / yMax) * h;

  ctx.font = "12px system-ui, sans-serif";
  ctx.strokeStyle = "#d5d9e0";
  ctx.fillStyle = "#4a5261";
  ctx.lineWidth = 1;
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (let y = 0; y <= yMax + 1e-9; y += yStep) {
    ctx.beginPath();
    ctx.moveTo(pad.left, Y(y));
    ctx.lineTo(pad.left + w, Y(y));
    ctx.stroke();
    ctx.fillText(format(y), pad.left - 6, Y(y));
  }
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  const every = Math.max(1, Math.ceil(xMax / 10));
  for (let x = 0; x <= xMax; x += every) ctx.fillText(String(x), X(x), pad.top + h + 4);
  ctx.fillText("epoch", pad.left + w / 2, pad.top + h + 17);

  for (const s of series) {
    if (!s.points.length) continue;
    ctx.strokeStyle = s.color;
    ctx.fillStyle = s.color;
    ctx.lineWidth = s.dashed ? 1.5 : 2.5;
    ctx.setLineDash(s.dashed ? [5, 4] : []);
    ctx.beginPath();
    s.points.forEach((p, i) => (i ? ctx.lineTo(X(p.x), Y(p.y)) : ctx.moveTo(X(p.x), Y(p.y))));
    ctx.stroke();
    ctx.setLineDash([]);
    if (s.markers) {
      for (const p of s.points) {
        ctx.beginPath();
        ctx.arc(X(p.x), Y(p.y), 3.5, 0, 2 * Math.PI);
        ctx.fill();
      }
    }
  }
}

function drawCharts() {
  const shown = shownRuns();
  const xMax = Math.max(1, ...shown.map((run) => data.runs[run].job.settings.epochs));
  const lossSeries = seriesFor("loss");
  // the loss axis: 0 to the highest point rounded up to a half (at most 5: a diverging run is clipped)
  const highest = Math.max(0.5, ...lossSeries.flatMap((s) => s.points.map((p) => p.y)));
  const lossMax = Math.min(5, Math.ceil(highest * 2) / 2);
  drawChart($("loss-chart"), lossSeries, { yMax: lossMax, yStep: lossMax > 2.5 ? 1 : 0.5, xMax,
    format: (y) => y.toFixed(1) });
  drawChart($("accuracy-chart"), seriesFor("accuracy"), { yMax: 1, yStep: 0.25, xMax,
    format: (y) => `${Math.round(y * 100)} %` });
  const described = shown.map((run) => {
    const { epochs } = data.runs[run];
    const last = epochs[epochs.length - 1];
    return last ? `run ${run.toUpperCase()} epoch ${last.epoch}: test loss ${last.test_loss?.toFixed(3)}, `
      + `test accuracy ${Math.round((last.test_accuracy || 0) * 100)} %` : `run ${run.toUpperCase()}: no epoch yet`;
  });
  $("loss-chart").setAttribute("aria-label", `Loss per epoch. ${described.join("; ") || "No run yet."}`);
  $("accuracy-chart").setAttribute("aria-label", `Accuracy per epoch. ${described.join("; ") || "No run yet."}`);
}

function cell(text, numeric = false) {
  const td = document.createElement("td");
  td.textContent = text;
  if (numeric) td.className = "num";
  return td;
}

function showSummary() {
  const body = $("summary").querySelector("tbody");
  body.replaceChildren();
  for (const run of shownRuns()) {
    const record = data.runs[run];
    const lastEpoch = record.epochs[record.epochs.length - 1] || {};
    const lastBatch = record.batches[record.batches.length - 1];
    const trainLoss = lastBatch ? lastBatch.loss : lastEpoch.loss;
    const trainAcc = lastBatch ? lastBatch.accuracy : lastEpoch.accuracy;
    const fmt = (v, pct = false) => (v === null || v === undefined ? "–" : pct ? `${(v * 100).toFixed(1)} %` : v.toFixed(3));
    const tr = document.createElement("tr");
    const name = el("th", { scope: "row" }, el("span", { class: `run-key run-${run}`, "aria-hidden": "true" }),
      `${run.toUpperCase()}: ${record.job.name}`);
    tr.append(name, cell(record.status), cell(`${lastEpoch.epoch ?? 0} / ${record.job.settings.epochs}`, true),
      cell(fmt(trainLoss), true), cell(fmt(lastEpoch.test_loss), true), cell(fmt(trainAcc, true), true),
      cell(fmt(lastEpoch.test_accuracy, true), true),
      cell(record.status === "running" ? seconds(record.progress?.eta) : "–", true));
    body.append(tr);
  }
}

// --- wiring ------------------------------------------------------------------------------------------------
for (const run of RUNS) {
  for (const el of controls(run)) {
    const event = el.type === "checkbox" || el.tagName === "SELECT" ? "change" : "input";
    el.addEventListener(event, () => {
      const value = readControl(el);
      if (typeof value === "number" && !Number.isFinite(value)) return;
      state.set({ [`${run}_${el.dataset.key}`]: value });
    });
  }
  $(`form-${run}`).addEventListener("submit", (e) => {
    e.preventDefault();
    startRun(run);
  });
  $(`${run}-cancel`).addEventListener("click", () => cancelRun(run));
  $(`${run}-open`).addEventListener("click", () => openInExplorer(run));
}
$("compare").addEventListener("change", () => state.set({ compare: $("compare").checked }, { push: true }));
$("start-both").addEventListener("click", async () => {
  await startRun("a");
  await startRun("b");
});
for (const button of document.querySelectorAll("[data-preset]")) {
  button.addEventListener("click", () => applyPreset(button.dataset.preset));
}

// the clicker's keys (presenter.js): the ready-made comparisons in the page's order; Space trains the runs shown
// (A and B together when B is beside A) or stops them
function presetNames() {
  return [...document.querySelectorAll("#presets [data-preset]")].map((button) => button.dataset.preset);
}

/** The preset the settings now are (both runs exactly as it sets them, B beside A), or -1. */
function currentPreset(names) {
  const matches = (name, run) => Object.entries({ ...RUN_DEFAULTS, ...PRESETS[name][run] })
    .every(([key, value]) => String(state.values[`${run}_${key}`]) === String(value));
  return state.values.compare ? names.findIndex((name) => RUNS.every((run) => matches(name, run))) : -1;
}

function showPreset(pick) {
  const names = presetNames();
  const index = Math.max(0, Math.min(names.length - 1, pick(names, currentPreset(names))));
  if (names.length) applyPreset(names[index]);
}

let starting = false; // between the key and the server's answer: a second press must not start the runs twice
async function trainOrStop() {
  const mine = RUNS.filter((run) => isRunning(run) && data.runs[run].job?.owned !== false);
  if (mine.length) {
    await Promise.all(mine.map(cancelRun));
    return;
  }
  if (starting) return;
  starting = true;
  try {
    for (const run of state.values.compare ? RUNS : ["a"]) await startRun(run);
  } finally {
    starting = false;
  }
}

presenterKeys({
  name: "the ready-made comparisons (Space trains the runs shown, A and B together, or stops them)",
  next: () => showPreset((names, i) => i + 1),
  prev: () => showPreset((names, i) => (i < 0 ? 0 : i - 1)),
  first: () => showPreset(() => 0),
  last: () => showPreset((names) => names.length - 1),
  toggle: trainOrStop,
});

window.addEventListener("resize", () => render(state, data));
window.addEventListener("beforeunload", () => RUNS.forEach((run) => sources[run]?.close()));

render(state, data);
RUNS.forEach(resume);
