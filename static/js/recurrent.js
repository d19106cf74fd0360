// Recurrent networks: a digit read row by row. The network unrolled in time (the row being read on the digit, the
// memory after each row, the states and gates at this step as strips of cells, the prediction so far), one unit of
// one step explained with its real numbers, attention over the rows (recurrent_attention.js), and a CNN beside the
// RNN on the same digit (recurrent_compare.js). Play, step, lecture mode and the clicker keys: → / ← and Page Down /
// Page Up step, Space plays or pauses, Home / End jump to the first or last row.
//
// Which models are recurrent, which node records the steps and which pools them with attention is the API's to say
// (each architecture node's `sequence`); every number comes from the API: the run's activations, the per-step states
// and predictions (GET /api/runs/{run}/nodes/{node}/steps), the unit explanations, /predict and /receptive-field.
import { ApiError, api, clearError, showError } from "./api.js";
import { Animator, bindAnimatorControls } from "./animator.js";
import { drawBars } from "./bars.js";
import { el, esc } from "./explain/common.js";
import { VIEWS } from "./explain/index.js";
import { DrawingPad, acceptImages, showSamplesFor } from "./inputs.js";
import { archNodes, architecture, listModels } from "./models.js";
import { fetchNpy } from "./npy.js";
import { CnnVsRnn } from "./recurrent_compare.js";
import { AttentionOverTime } from "./recurrent_attention.js";
import {
  Strip, colourScale, drawMatrix, drawSequence, drawStepLine, matrixCellAt, placeBand, rangeOf,
} from "./sequence_views.js";
import { animatorSteps, presenterKeys } from "./presenter.js";
import { createState } from "./state.js";
import { $ } from "./dom.js";

// step -1: the last step; unit -1: no unit explained; feature -1: the attention output's largest feature
const DEFAULTS = { model: "", sample: "", step: -1, unit: -1, feature: -1, lecture: false, cnn: "digits_classic" };
const CELL_NAMES = { lstm: "LSTM", gru: "GRU", rnn: "RNN" };
const BARS = 3; // classes shown in the prediction so far
const pct = (p) => `${Math.round(100 * p)}%`;

let recurrentModels = []; // [{ model, detail, node }]: models with a recurrent node (node: its architecture entry)
let attentionModels = []; // [{ model, detail, node, reads }]: models with attention over steps
let cnnChoice = null; // { model, detail }: the CNN beside the RNN
let input = null; // the digit: { blob, name }
let inputVersion = 0;
let runs = new Map(); // per model id, the promise of its activations on the current digit
let predictions = new Map(); // per model id, the promise of its /predict answer on the current digit
let view = null; // the chosen recurrent model's numbers on the digit
let strips = [];
let unitToken = 0;

const state = createState(DEFAULTS, (changed) => {
  // only Back / Forward land here: the page's own changes are silent and act directly
  if (changed.includes("model")) {
    showModel().catch((err) => showError(err));
    showAttention(() => false).catch((err) => showError(err, "attention over the rows"));
    return;
  }
  if (changed.includes("sample") && state.values.sample) {
    loadSample(state.values.sample);
    return;
  }
  if (changed.includes("lecture")) applyLecture();
  if (changed.includes("step") && view) animator.goto(stepWanted());
  if (changed.includes("unit")) showUnit();
  if (changed.includes("feature")) attention.showFeature(state.values.feature);
});

const attention = new AttentionOverTime({
  onFeature: (j) => {
    state.set({ feature: j }, { silent: true });
    attention.showFeature(j);
  },
});
const compare = new CnnVsRnn({ onPick: (row) => { animator.pause(); animator.goto(row); } });

// --- the models: which are recurrent, which attend over the steps (the API's architecture says) -------------------
async function init() {
  try {
    const models = await listModels();
    // a digit read row by row: one-channel images (every architecture asked once; a handful of models)
    const digits = models.filter((m) => m.input_shape?.length === 3 && m.input_shape[0] === 1);
    const found = await Promise.all(digits.map((model) => architecture(model.id)
      .then((detail) => ({ model, detail, nodes: archNodes(detail) }))
      .catch(() => null)));
    for (const entry of found.filter(Boolean)) {
      const recurrent = entry.nodes.find((n) => n.sequence?.kind === "recurrent");
      const pool = entry.nodes.find((n) => n.sequence?.kind === "attention");
      if (recurrent) recurrentModels.push({ model: entry.model, detail: entry.detail, node: recurrent });
      if (pool) attentionModels.push({ model: entry.model, detail: entry.detail, node: pool, recurrent });
      if (entry.model.id === state.values.cnn) cnnChoice = { model: entry.model, detail: entry.detail };
    }
    if (!recurrentModels.length) {
      showError("the server offers no recurrent network (a model with an rnn, lstm or gru node) for digits");
      return;
    }
    $("model").replaceChildren(...recurrentModels.map(({ model }) => new Option(model.name ?? model.id, model.id)));
    if (!recurrentModels.some((e) => e.model.id === state.values.model)) {
      state.set({ model: recurrentModels[0].model.id }, { silent: true });
    }
    $("model").value = state.values.model;
    $("attention-panel").hidden = !attentionModels.length;
    $("cnn-card").hidden = !cnnChoice;
    showSamplesFor(true);
    if (state.values.sample) await loadSample(state.values.sample);
    else {
      const first = document.querySelector('#samples .sample[data-kind="digit"]');
      if (first) await loadSample(first.dataset.file, { remember: false });
      else {
        pad.drawText("3");
        await readDigit(await pad.toBlob28(), "your drawing");
      }
    }
  } catch (err) {
    showError(err, "loading the recurrent networks");
  }
}

function chosen() {
  return recurrentModels.find((e) => e.model.id === state.values.model) ?? recurrentModels[0];
}

$("model").addEventListener("change", () => {
  state.set({ model: $("model").value, unit: -1 }, { push: true, silent: true });
  showModel().catch((err) => showError(err));
  showAttention(() => false).catch((err) => showError(err, "attention over the rows"));
});

// --- the digit --------------------------------------------------------------------------------------------------
document.querySelectorAll("#samples .sample").forEach((button) => {
  button.addEventListener("click", () => {
    state.set({ sample: button.dataset.file }, { push: true, silent: true });
    loadSample(button.dataset.file);
  });
});

async function loadSample(file, { remember = true } = {}) {
  document.querySelectorAll("#samples .sample").forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.file === file)));
  try {
    const blob = await api(`/static/samples/${encodeURIComponent(file)}`, { as: "blob", label: "Loading the digit…" });
    if (remember) state.set({ sample: file }, { silent: true });
    await readDigit(blob, file);
  } catch (err) {
    showError(err, `sample ${file}`);
  }
}

const pad = new DrawingPad($("draw"), { onStroke: () => readDrawing() });
$("draw-clear").addEventListener("click", () => pad.clear());
$("draw-run").addEventListener("click", () => readDrawing());
let drawTimer = null;
function readDrawing() {
  if (pad.empty) return;
  clearTimeout(drawTimer);
  drawTimer = setTimeout(async () => {
    document.querySelectorAll("#samples .sample").forEach((b) => b.setAttribute("aria-pressed", "false"));
    state.set({ sample: "" }, { silent: true });
    readDigit(await pad.toBlob28(), "your drawing");
  }, 150);
}

acceptImages({
  fileInput: $("file"),
  onImage: (blob, name) => {
    document.querySelectorAll("#samples .sample").forEach((b) => b.setAttribute("aria-pressed", "false"));
    state.set({ sample: "" }, { silent: true });
    readDigit(blob, name);
  },
});

function imageForm(blob, name) {
  const form = new FormData();
  form.append("image", blob, name.includes(".") ? name : `${name}.png`);
  return form;
}

/** The activations of `modelId` on the current digit (one request per model and digit). */
function runOf(modelId) {
  if (!runs.has(modelId)) {
    const { blob, name } = input;
    runs.set(modelId, api(`/api/models/${encodeURIComponent(modelId)}/activations`, {
      body: imageForm(blob, name), label: "Running the network…",
    }));
  }
  return runs.get(modelId);
}

/** /predict of `modelId` on the current digit. */
function predictionOf(modelId) {
  if (!predictions.has(modelId)) {
    const { blob, name } = input;
    predictions.set(modelId, api(`/api/models/${encodeURIComponent(modelId)}/predict?top_k=${BARS}`, {
      body: imageForm(blob, name), label: "Predicting…",
    }));
  }
  return predictions.get(modelId);
}

/** A run node's activation as rows: the last two axes of sample 0 (a sequence T × F, or an image H × W). */
async function rowsOf(run, nodeId) {
  const node = run.nodes.find((n) => n.id === nodeId);
  if (!node) throw new Error(`the run has no node '${nodeId}'`);
  const { shape, data } = await fetchNpy(node.npy_url, "Fetching the numbers…");
  const F = shape[shape.length - 1];
  const T = shape.length > 1 ? shape[shape.length - 2] : 1;
  return Array.from({ length: T }, (_, t) => Array.from(data.subarray(t * F, (t + 1) * F)));
}

/** A new digit: every network on the page reads it. */
async function readDigit(blob, name) {
  input = { blob, name };
  inputVersion += 1;
  runs = new Map();
  predictions = new Map();
  clearError();
  const version = inputVersion;
  const stale = () => version !== inputVersion;
  await Promise.all([
    showModel(stale),
    showAttention(stale).catch((err) => { if (!stale()) showError(err, "attention over the rows"); }),
    showCnn(stale).catch((err) => { if (!stale()) showError(err, "the CNN"); }),
  ]);
}

// --- the network unrolled in time -------------------------------------------------------------------------------
/** The chosen recurrent model on the current digit: its steps, memory and predictions, then the step wanted. */
async function showModel(stale = () => false) {
  if (!input) return;
  const entry = chosen();
  $("model").value = entry.model.id;
  const { model, node } = entry;
  $("model-info").textContent = model.description ?? "";
  const cellName = CELL_NAMES[node.sequence.cell] ?? node.op;
  try {
    const run = await runOf(model.id);
    const runNode = run.nodes.find((n) => n.id === node.id);
    const url = runNode?.steps_url ?? `/api/runs/${encodeURIComponent(run.run_id)}/nodes/${encodeURIComponent(node.id)}/steps`;
    const classes = Math.min(10, model.num_classes ?? 10);
    const [steps, rows, predicted] = await Promise.all([
      api(`${url}?top_k=${classes}`, { label: "Reading the rows…" }),
      rowsOf(run, node.inputs[0]),
      predictionOf(model.id),
    ]);
    if (stale() || chosen() !== entry) return;
    const top = steps.num_layers - 1;
    const shown = steps.arrays.filter((a) => a.layer === top && a.direction === "forward");
    const memory = shown.find((a) => a.quantity === "h");
    view = { entry, model, node, cellName, run, steps, rows, memory, shown, classes: predicted.classes, T: steps.steps };
    drawUnrolled();
    compare.showRnn({ model, cellName, rows, memory: memory.values, classes: predicted.classes });
    animator.setSteps(view.T, stepWanted());
    showUnit();
  } catch (err) {
    if (!stale()) showError(err, `reading the digit with ${model.name ?? model.id}`);
  }
}

function stepWanted() {
  const step = state.values.step;
  return step < 0 || !view ? (view?.T ?? 1) - 1 : Math.min(step, view.T - 1);
}

/** The parts that stay while stepping: the digit, the memory over all steps, the strips' rows. */
function drawUnrolled() {
  const { rows, memory, shown, steps, cellName, T } = view;
  drawSequence($("digit"), rows);
  const hScale = colourScale(rangeOf(memory.values));
  drawMatrix($("memory"), memory.values, hScale);
  const H = memory.values[0].length;
  $("memory-title").textContent = `The memory after each row: the ${cellName}'s h (${H} units)`;
  $("memory-axis-end").textContent = `unit ${steps.first_unit + H - 1}`;
  $("digit-axis-end").textContent = `row ${T - 1} (bottom)`;
  const holder = $("strips");
  holder.replaceChildren();
  strips = shown.map((array) => ({
    array,
    scale: array === memory ? hScale : colourScale(rangeOf(array.values)),
    strip: new Strip(holder, {
      label: `<b>${esc(array.quantity)}</b> ${esc(array.title)}`, count: array.values[0].length, name: array.quantity,
      title: `${array.title} (${array.name}) at this step`,
      onPick: array === memory ? (u) => pickUnit(u) : null,
    }),
  }));
  const more = steps.arrays.length - shown.length;
  holder.append(el("p", { class: "strip-note small muted", id: "strip-note",
    text: `Click a cell of h (or of the memory above) to see how that unit's number was made at this step.` +
      (steps.truncated ? ` Units ${steps.first_unit}–${steps.first_unit + H - 1} of ${steps.hidden_size} shown.` : "") +
      (more ? ` ${more} more arrays (other layers or directions) are in the API's answer.` : "") }));
  $("so-far-title").textContent = steps.predictions.available ? "Prediction so far" : "Prediction";
}

function renderStep(t) {
  if (!view) return;
  const { T, memory } = view;
  placeBand($("digit-band"), $("digit-unread"), t, T);
  placeBand($("memory-band"), $("memory-unread"), t, T);
  for (const { array, scale, strip } of strips) strip.set(array.values[t], scale);
  const memoryStrip = strips.find((s) => s.array === memory)?.strip;
  if (memoryStrip && state.values.unit >= 0) memoryStrip.select(state.values.unit);
  renderPrediction(t);
  renderLesson(t);
  compare.step(t).catch((err) => showError(err, "the CNN's receptive field"));
  if (state.values.step !== t) state.set({ step: t }, { silent: true });
  if (state.values.unit >= 0 && !$("unit-detail").hidden) explainUnit(t, state.values.unit);
}

function renderPrediction(t) {
  const { steps, classes, T } = view;
  const so = steps.predictions;
  if (so.available) {
    drawBars($("step-bars"), so.steps[t].classes.slice(0, BARS));
    $("step-bars").dataset.step = String(t);
    const final = so.steps[T - 1].classes[0];
    const series = so.steps.map((s) => s.classes.find((c) => c.index === final.index)?.probability ?? null);
    drawStepLine($("confidence"), series, t, { label: `P(“${final.label}”) after each row` });
    $("confidence").removeAttribute("hidden");
    $("so-far-note").textContent = t < T - 1
      ? `What it would answer if the digit stopped after row ${t}.`
      : "Every row read: the model's own prediction.";
  } else {
    drawBars($("step-bars"), classes);
    $("step-bars").dataset.step = "final";
    $("confidence").setAttribute("hidden", "");
    $("so-far-note").textContent = `No answer after each row: ${so.reason ?? "the API gives none for this model"}. ` +
      "Shown: its answer once every row is read.";
  }
}

function mean(quantity, t) {
  const array = view.shown.find((a) => a.quantity === quantity);
  if (!array) return null;
  const row = array.values[t];
  return row.reduce((s, v) => s + v, 0) / row.length;
}

/** Lecture mode's sentence for step t, in the lecture's words, with this digit's numbers. */
function renderLesson(t) {
  const { T, cellName, rows, steps, classes, memory } = view;
  const F = rows[0].length;
  const H = memory.values[0].length;
  const lstm = view.node.sequence.cell === "lstm";
  const sub = (i) => `<sub>${i}</sub>`;
  let text;
  if (t === 0) {
    text = `The ${cellName} reads the top row, x${sub(0)} (${F} pixels). Its memory starts empty (h = 0${lstm ? ", c = 0" : ""}), ` +
      `so its first state h${sub(0)} (${H} numbers) depends on this row alone.`;
  } else {
    text = `Row ${t} (x${sub(t)}) goes in with the memory h${sub(t - 1)} of rows 0–${t - 1}: each neuron uses its internal ` +
      "memory to maintain information about the previous input.";
    const [f, i, o, z, r] = ["f", "i", "o", "z", "r"].map((q) => mean(q, t));
    if (f !== null && i !== null) {
      text += ` On average the forget gate keeps ${pct(f)} of the cell state, the input gate writes ${pct(i)} of the ` +
        `candidate${o !== null ? `, the output gate shows ${pct(o)}` : ""}.`;
    } else if (z !== null) {
      text += ` On average the update gate keeps ${pct(z)} of the previous state; the candidate, read through the ` +
        `reset gate (${pct(r ?? 0)} open), gives the rest.`;
    }
  }
  const so = steps.predictions;
  if (so.available) {
    const now = so.steps[t].classes[0];
    text += t < T - 1
      ? ` Stopped here, it would answer “${esc(now.label)}” (${pct(now.probability)}).`
      : ` Last row: this memory is all the classifier reads. It answers “${esc(now.label)}” (${pct(now.probability)}).`;
  } else if (t === T - 1) {
    text += ` Every row read: attention weighs the ${T} states (below), and the answer is “${esc(classes[0].label)}” ` +
      `(${pct(classes[0].probability)}).`;
  }
  $("lesson-title").textContent = `Step ${t + 1} of ${T}: reading row ${t}`;
  $("lesson-text").innerHTML = text;
  $("lesson-text").classList.remove("muted");
}

const animator = new Animator({ figure: $("unrolled-panel"), render: renderStep, interval: 650 });
bindAnimatorControls(animator, $("toolbar"));
const labelled = animator.render;
animator.render = (t) => {
  labelled(t);
  if (view) $("step-label").textContent = `row ${t} · step ${t + 1} of ${view.T}`;
};

$("memory").addEventListener("click", (event) => {
  if (!view) return;
  const [t, u] = matrixCellAt($("memory"), event);
  animator.pause();
  animator.goto(t);
  pickUnit(u);
});

// --- one unit at one step, explained by the API ------------------------------------------------------------------
function pickUnit(u) {
  state.set({ unit: u }, { push: true, silent: true });
  showUnit();
}

function showUnit() {
  const u = state.values.unit;
  const memoryStrip = strips.find((s) => s.array === view?.memory)?.strip;
  if (u < 0 || !view) {
    $("unit-detail").hidden = true;
    memoryStrip?.select(-1);
    return;
  }
  memoryStrip?.select(u);
  $("unit-detail").hidden = false;
  explainUnit(animator.step, u);
}

async function explainUnit(t, u) {
  const token = ++unitToken;
  const { run, node, cellName, steps } = view;
  const unit = steps.first_unit + u;
  const shape = node.sequence.unit_shape ?? [view.T, steps.hidden_size * steps.directions];
  const index = shape.length === 3 ? [steps.num_layers - 1, t, unit] : [t, unit];
  $("unit-title").textContent = `${cellName} unit ${unit} at step ${t} (row ${t})`;
  const body = $("unit-body");
  if (!body.firstChild) body.append(el("p", { class: "muted", text: "Fetching the numbers…" }));
  try {
    const explanation = await api(`/api/runs/${encodeURIComponent(run.run_id)}/nodes/${encodeURIComponent(node.id)}/units/` +
      `${index.join(",")}`, { label: "Explaining the unit…" });
    if (token !== unitToken) return;
    const draw = VIEWS[explanation.family];
    const shown = draw
      ? draw(explanation, { unit: { channel: unit, y: null, x: null }, labels: [], animate: null })
      : el("p", { class: "small muted", text: `This page cannot draw a ${explanation.family} explanation yet.` });
    shown.dataset.family = explanation.family;
    shown.dataset.step = String(t);
    shown.dataset.unit = String(unit);
    body.replaceChildren(shown);
  } catch (err) {
    if (token !== unitToken) return;
    body.replaceChildren(el("p", { class: "callout", text: err instanceof ApiError ? err.detail : String(err.message ?? err) }));
  }
}

$("unit-close").addEventListener("click", () => {
  state.set({ unit: -1 }, { push: true, silent: true });
  showUnit();
});

// --- attention over the rows ---------------------------------------------------------------------------------------
async function showAttention(stale) {
  // the chosen model's own attention, else the first model that has attention over steps
  const entry = attentionModels.find((e) => e.model.id === state.values.model) ?? attentionModels[0];
  if (!entry || !input) return;
  const { model, node } = entry;
  const run = await runOf(model.id);
  const runNode = run.nodes.find((n) => n.id === node.id);
  const url = runNode?.steps_url ?? `/api/runs/${encodeURIComponent(run.run_id)}/nodes/${encodeURIComponent(node.id)}/steps`;
  const pooledFrom = node.inputs[0];
  const [steps, pooled, output, rows] = await Promise.all([
    api(url, { label: "Weighing the rows…" }),
    rowsOf(run, pooledFrom),
    rowsOf(run, node.id),
    rowsOf(run, entry.recurrent?.inputs[0] ?? pooledFrom),
  ]);
  if (stale()) return;
  attention.show({ rows, steps, pooled, output: output[0], model: model.name ?? model.id, node: node.id, pooledFrom });
  const out = output[0];
  const largest = out.reduce((best, v, j) => (Math.abs(v) > Math.abs(out[best]) ? j : best), 0);
  attention.showFeature(state.values.feature >= 0 ? state.values.feature : largest);
}

// --- the CNN beside it ---------------------------------------------------------------------------------------------
async function showCnn(stale) {
  if (!cnnChoice || !input) return;
  const { model, detail } = cnnChoice;
  const [run, predicted] = await Promise.all([runOf(model.id), predictionOf(model.id)]);
  const image = await rowsOf(run, "input");
  if (stale()) return;
  await compare.showCnn({ model, detail, run, input: image, classes: predicted.classes });
  if (view) await compare.step(animator.step);
}

// --- lecture mode and the clicker keys ------------------------------------------------------------------------------
function applyLecture() {
  const on = state.values.lecture;
  document.body.classList.toggle("lecture", on);
  $("lecture").setAttribute("aria-pressed", String(on));
  if (on) window.scrollTo(0, 0);
}
$("lecture").addEventListener("click", () => {
  state.set({ lecture: !state.values.lecture }, { push: true, silent: true });
  applyLecture();
});
applyLecture();

// the clicker's keys (presenter.js): the rows, one step each. A strip of cells keeps its arrows (its own handler
// moves along the cells and marks them handled), while Page Down and Page Up still step there; the drawing pad
// keeps its keys. Esc closes the unit's explanation, then leaves lecture mode.
presenterKeys({
  name: "the rows of the digit as the network reads them (one row per step); Space plays them",
  ...animatorSteps(animator, () => Boolean(view)),
  escape: () => {
    if (!$("unit-detail").hidden) $("unit-close").click();
    else if (state.values.lecture) {
      state.set({ lecture: false }, { push: true, silent: true });
      applyLecture();
    }
  },
  ignore: "canvas#draw",
});

init();
