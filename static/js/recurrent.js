// Recurrent networks: a digit read row by row. The network unrolled in time (the row being read on the digit, the
// memory after each row, the states and gates at this step as strips of cells, the prediction so far), one unit of
// one step explained with its real numbers, attention over the rows (recurrent_attention.js), and a CNN beside the
// RNN on the same digit (recurrent_compare.js). Play, step, lecture mode and the clicker keys: → / ← and Page Down /
// Page Up step, Space plays or pauses, Home / End jump to the first or last row.
//
// Which models are recurrent, which node records the steps and which pools them with attention is the API's to say
// (each architecture node's `sequence`); every number comes from the API: the run's activations, the per-step states
// and predictions (GET /api/runs/{run}/nodes/{node}/steps), the unit explanations, /predict and /receptive-field.
//
// state -> data -> render: handlers only change the state (or take a new digit), the loaders only fill `data` with the
// API's answers, and `render(state, data)` brings the whole page in line with both (docs/frontend.md, "The other pages").
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
import { changeTracker } from "./redraw.js";
import { createState } from "./state.js";
import { $ } from "./dom.js";

// step -1: the last step; unit -1: no unit explained; feature -1: the attention output's largest feature
const DEFAULTS = { model: "", sample: "", step: -1, unit: -1, feature: -1, lecture: false, cnn: "digits_classic" };
const CELL_NAMES = { lstm: "LSTM", gru: "GRU", rnn: "RNN" };
const BARS = 3; // classes shown in the prediction so far
const pct = (p) => `${Math.round(100 * p)}%`;

// --- what the page knows: the models the API offers, the digit, and the networks' numbers on it --------------------
const data = {
  ready: false, // the models are known
  recurrentModels: [], // [{ model, detail, node }]: models with a recurrent node (node: its architecture entry)
  attentionModels: [], // [{ model, detail, node, recurrent }]: models with attention over steps
  cnnChoice: null, // { model, detail }: the CNN beside the RNN
  sample: "", // the sample the digit is (or is being loaded from); "" for a drawing or an upload
  input: null, // the digit: { blob, name, version }
  inputVersion: 0,
  runs: new Map(), // per model id, the promise of its activations on the current digit
  predictions: new Map(), // per model id, the promise of its /predict answer on the current digit
  view: null, // the chosen recurrent model's numbers on the digit
  attention: null, // the attention model's weights, states and output on the digit
  cnn: null, // the CNN's run and answer on the digit
  unit: null, // { view, t, u, explanation } or { view, t, u, error }: one unit at one step, explained by the API
  unitWanted: null, // the unit whose explanation was last asked for
  unitRequest: 0,
};

const state = createState(DEFAULTS, (changed) => {
  if (changed.includes("model")) loadChosen();
  if (changed.includes("sample") && state.values.sample) loadSample(state.values.sample);
  render(state, data);
  loadUnit();
});

const attention = new AttentionOverTime({ onFeature: (j) => state.set({ feature: j }) });
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
      if (recurrent) data.recurrentModels.push({ model: entry.model, detail: entry.detail, node: recurrent });
      if (pool) data.attentionModels.push({ model: entry.model, detail: entry.detail, node: pool, recurrent });
      if (entry.model.id === state.values.cnn) data.cnnChoice = { model: entry.model, detail: entry.detail };
    }
    if (!data.recurrentModels.length) {
      showError("the server offers no recurrent network (a model with an rnn, lstm or gru node) for digits");
      return;
    }
    if (!data.recurrentModels.some((e) => e.model.id === state.values.model)) {
      state.set({ model: data.recurrentModels[0].model.id }, { silent: true });
    }
    data.ready = true;
    render(state, data);
    if (state.values.sample) await loadSample(state.values.sample);
    else {
      const first = document.querySelector('#samples .sample[data-kind="digit"]');
      if (first) await loadSample(first.dataset.file);
      else {
        pad.drawText("3");
        await readDigit(await pad.toBlob28(), "your drawing", "");
      }
    }
  } catch (err) {
    showError(err, "loading the recurrent networks");
  }
}

function chosen() {
  return data.recurrentModels.find((e) => e.model.id === state.values.model) ?? data.recurrentModels[0];
}

// --- the handlers: they change the state, or take a new digit ---------------------------------------------------
$("model").addEventListener("change", () => state.set({ model: $("model").value, unit: -1 }, { push: true }));

document.querySelectorAll("#samples .sample").forEach((button) => {
  button.addEventListener("click", () => {
    // the same sample again is read again
    if (state.set({ sample: button.dataset.file }, { push: true }).length === 0) loadSample(button.dataset.file);
  });
});

const pad = new DrawingPad($("draw"), { onStroke: () => readDrawing() });
$("draw-clear").addEventListener("click", () => pad.clear());
$("draw-run").addEventListener("click", () => readDrawing());
let drawTimer = null;
function readDrawing() {
  if (pad.empty) return;
  clearTimeout(drawTimer);
  drawTimer = setTimeout(async () => {
    state.set({ sample: "" });
    readDigit(await pad.toBlob28(), "your drawing", "");
  }, 150);
}

acceptImages({
  fileInput: $("file"),
  onImage: (blob, name) => {
    state.set({ sample: "" });
    readDigit(blob, name, "");
  },
});

$("memory").addEventListener("click", (event) => {
  if (!data.view) return;
  const [t, u] = matrixCellAt($("memory"), event);
  animator.pause();
  animator.goto(t);
  pickUnit(u);
});

function pickUnit(u) {
  state.set({ unit: u }, { push: true });
}

$("unit-close").addEventListener("click", () => state.set({ unit: -1 }, { push: true }));
$("lecture").addEventListener("click", () => state.set({ lecture: !state.values.lecture }, { push: true }));

// --- loading: fill `data`, then render ---------------------------------------------------------------------------
/** A shipped sample as the digit (`file`: the name under /static/samples). */
async function loadSample(file) {
  data.sample = file;
  render(state, data);
  try {
    const blob = await api(`/static/samples/${encodeURIComponent(file)}`, { as: "blob", label: "Loading the digit…" });
    if (data.sample !== file) return; // another digit was chosen meanwhile
    await readDigit(blob, file, file);
  } catch (err) {
    showError(err, `sample ${file}`);
  }
}

function imageForm(blob, name) {
  const form = new FormData();
  form.append("image", blob, name.includes(".") ? name : `${name}.png`);
  return form;
}

/** The activations of `modelId` on the current digit (one request per model and digit). */
function runOf(modelId) {
  const { runs } = data;
  if (!runs.has(modelId)) {
    const { blob, name } = data.input;
    runs.set(modelId, api(`/api/models/${encodeURIComponent(modelId)}/activations`, {
      body: imageForm(blob, name), label: "Running the network…",
    }));
  }
  return runs.get(modelId);
}

/** /predict of `modelId` on the current digit. */
function predictionOf(modelId) {
  const { predictions } = data;
  if (!predictions.has(modelId)) {
    const { blob, name } = data.input;
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

/** A new digit (`sample`: the sample it is, or ""): every network on the page reads it. */
async function readDigit(blob, name, sample) {
  data.inputVersion += 1;
  data.input = { blob, name, version: data.inputVersion };
  data.sample = sample;
  data.runs = new Map();
  data.predictions = new Map();
  clearError();
  render(state, data);
  const version = data.inputVersion;
  const stale = () => version !== data.inputVersion;
  await Promise.all([
    loadModel(stale),
    loadAttention(stale).catch((err) => { if (!stale()) showError(err, "attention over the rows"); }),
    loadCnn(stale).catch((err) => { if (!stale()) showError(err, "the CNN"); }),
  ]);
}

/** Another recurrent model chosen: its numbers, and the attention model that goes with it. */
function loadChosen() {
  loadModel().catch((err) => showError(err));
  loadAttention(() => false).catch((err) => showError(err, "attention over the rows"));
}

/** The chosen recurrent model on the current digit: its steps, memory and predictions. */
async function loadModel(stale = () => false) {
  if (!data.input) return;
  const entry = chosen();
  const { model, node } = entry;
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
    data.view = { entry, model, node, cellName, run, steps, rows, memory, shown, classes: predicted.classes, T: steps.steps };
    render(state, data);
    loadUnit();
  } catch (err) {
    if (!stale()) showError(err, `reading the digit with ${model.name ?? model.id}`);
  }
}

/** The attention over the rows: the chosen model's own, else the first model that has attention over steps. */
async function loadAttention(stale) {
  const entry = data.attentionModels.find((e) => e.model.id === state.values.model) ?? data.attentionModels[0];
  if (!entry || !data.input) return;
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
  data.attention = { rows, steps, pooled, output: output[0], model: model.name ?? model.id, node: node.id, pooledFrom };
  render(state, data);
}

/** The CNN beside it, on the same digit. */
async function loadCnn(stale) {
  if (!data.cnnChoice || !data.input) return;
  const { model, detail } = data.cnnChoice;
  const [run, predicted] = await Promise.all([runOf(model.id), predictionOf(model.id)]);
  const image = await rowsOf(run, "input");
  if (stale()) return;
  data.cnn = { model, detail, run, input: image, classes: predicted.classes };
  render(state, data);
}

/** The explanation of the state's unit at this step, unless it was asked for already. */
async function loadUnit() {
  const { view } = data;
  const u = state.values.unit;
  if (!view || u < 0) return;
  const t = stepWanted();
  const wanted = data.unitWanted;
  if (wanted && wanted.view === view && wanted.t === t && wanted.u === u) return;
  data.unitWanted = { view, t, u };
  const request = ++data.unitRequest;
  const { run, node, steps } = view;
  const unit = steps.first_unit + u;
  const shape = node.sequence.unit_shape ?? [view.T, steps.hidden_size * steps.directions];
  const index = shape.length === 3 ? [steps.num_layers - 1, t, unit] : [t, unit];
  try {
    const explanation = await api(`/api/runs/${encodeURIComponent(run.run_id)}/nodes/${encodeURIComponent(node.id)}/units/` +
      `${index.join(",")}`, { label: "Explaining the unit…" });
    if (request !== data.unitRequest) return;
    data.unit = { view, t, u, explanation };
  } catch (err) {
    if (request !== data.unitRequest) return;
    data.unit = { view, t, u, error: err instanceof ApiError ? err.detail : String(err.message ?? err) };
  }
  render(state, data);
}

// --- rendering: the page from the state and `data` ---------------------------------------------------------------
const fresh = changeTracker();
let strips = []; // the strips of the states and gates drawn for data.view

/** The step shown: the state's (-1: the last), within the chosen model's steps. */
function stepWanted() {
  const { view } = data;
  const step = state.values.step;
  return step < 0 || !view ? (view?.T ?? 1) - 1 : Math.min(step, view.T - 1);
}

/** The whole page from the state and what the page knows; calling it again changes nothing. */
function render(state, data) {
  const s = state.values;
  renderLecture(s);
  document.querySelectorAll("#samples .sample").forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.file === data.sample)));
  if (data.ready) {
    if (fresh("models", [data.recurrentModels])) {
      $("model").replaceChildren(...data.recurrentModels.map(({ model }) => new Option(model.name ?? model.id, model.id)));
      $("attention-panel").hidden = !data.attentionModels.length;
      $("cnn-card").hidden = !data.cnnChoice;
      showSamplesFor(true);
    }
    const entry = chosen();
    if ($("model").value !== entry.model.id) $("model").value = entry.model.id;
    if (data.input) $("model-info").textContent = entry.model.description ?? "";
  }
  const { view } = data;
  if (view && fresh("unrolled", [view])) {
    drawUnrolled(view);
    compare.showRnn({ model: view.model, cellName: view.cellName, rows: view.rows, memory: view.memory.values, classes: view.classes });
  }
  if (data.cnn && fresh("cnn", [data.cnn])) compare.showCnn(data.cnn).catch((err) => showError(err, "the CNN"));
  const t = stepWanted();
  if (view) {
    if (fresh("step", [view, t])) renderStep(view, t);
    const memoryStrip = strips.find((strip) => strip.array === view.memory)?.strip;
    if (memoryStrip && fresh("unit-mark", [strips, s.unit, t])) memoryStrip.select(s.unit);
    if (fresh("compare-step", [view, data.cnn, t, compare.column])) {
      compare.step(t).catch((err) => showError(err, "the CNN's receptive field"));
    }
    renderAnimator(view, t);
  }
  renderUnit(s, data, t);
  if (data.attention) {
    if (fresh("attention", [data.attention])) attention.show(data.attention);
    if (fresh("feature", [data.attention, s.feature])) {
      const out = data.attention.output;
      const largest = out.reduce((best, v, j) => (Math.abs(v) > Math.abs(out[best]) ? j : best), 0);
      attention.showFeature(s.feature >= 0 ? s.feature : largest);
    }
  }
}

function renderLecture(s) {
  const on = s.lecture;
  document.body.classList.toggle("lecture", on);
  $("lecture").setAttribute("aria-pressed", String(on));
  if (fresh("lecture", [on]) && on) window.scrollTo(0, 0);
}

/** The animator's steps and step (its range and label) in line with the chosen model and the state's step. */
function renderAnimator(view, t) {
  if (animator.count !== view.T || animator.step !== t) animator.setSteps(view.T, t); // its step is the state's: it renders
  $("step-label").textContent = `row ${animator.step} · step ${animator.step + 1} of ${view.T}`;
}

/** The parts that stay while stepping: the digit, the memory over all steps, the strips' rows. */
function drawUnrolled(view) {
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

/** Step t: the row being read, the states and gates at it, the prediction so far, the lesson. */
function renderStep(view, t) {
  const { T } = view;
  placeBand($("digit-band"), $("digit-unread"), t, T);
  placeBand($("memory-band"), $("memory-unread"), t, T);
  for (const { array, scale, strip } of strips) strip.set(array.values[t], scale);
  renderPrediction(view, t);
  renderLesson(view, t);
}

function renderPrediction(view, t) {
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

function mean(view, quantity, t) {
  const array = view.shown.find((a) => a.quantity === quantity);
  if (!array) return null;
  const row = array.values[t];
  return row.reduce((s, v) => s + v, 0) / row.length;
}

/** Lecture mode's sentence for step t, in the lecture's words, with this digit's numbers. */
function renderLesson(view, t) {
  const { T, cellName, rows, steps, classes, memory } = view;
  const F = rows[0].length;
  const H = memory.values[0].length;
  const lstm = view.node.sequence.cell === "lstm";
  const x = (i) => ["x", el("sub", { text: String(i) })];
  const h = (i) => ["h", el("sub", { text: String(i) })];
  let text;
  if (t === 0) {
    text = [`The ${cellName} reads the top row, `, ...x(0), ` (${F} pixels). Its memory starts empty (h = 0${lstm ? ", c = 0" : ""}), ` +
      "so its first state ", ...h(0), ` (${H} numbers) depends on this row alone.`];
  } else {
    text = [`Row ${t} (`, ...x(t), ") goes in with the memory ", ...h(t - 1), ` of rows 0–${t - 1}: each neuron uses its internal ` +
      "memory to maintain information about the previous input."];
    const [f, i, o, z, r] = ["f", "i", "o", "z", "r"].map((q) => mean(view, q, t));
    if (f !== null && i !== null) {
      text.push(` On average the forget gate keeps ${pct(f)} of the cell state, the input gate writes ${pct(i)} of the ` +
        `candidate${o !== null ? `, the output gate shows ${pct(o)}` : ""}.`);
    } else if (z !== null) {
      text.push(` On average the update gate keeps ${pct(z)} of the previous state; the candidate, read through the ` +
        `reset gate (${pct(r ?? 0)} open), gives the rest.`);
    }
  }
  const so = steps.predictions;
  if (so.available) {
    const now = so.steps[t].classes[0];
    text.push(t < T - 1
      ? ` Stopped here, it would answer “${now.label}” (${pct(now.probability)}).`
      : ` Last row: this memory is all the classifier reads. It answers “${now.label}” (${pct(now.probability)}).`);
  } else if (t === T - 1) {
    text.push(` Every row read: attention weighs the ${T} states (below), and the answer is “${classes[0].label}” ` +
      `(${pct(classes[0].probability)}).`);
  }
  $("lesson-title").textContent = `Step ${t + 1} of ${T}: reading row ${t}`;
  $("lesson-text").replaceChildren(...text);
  $("lesson-text").classList.remove("muted");
}

/** One unit at one step: its title at once, the API's explanation when it came (the last one stays until then). */
function renderUnit(s, data, t) {
  const { view } = data;
  const open = Boolean(view) && s.unit >= 0;
  $("unit-detail").hidden = !open;
  if (!open) return;
  const unit = view.steps.first_unit + s.unit;
  $("unit-title").textContent = `${view.cellName} unit ${unit} at step ${t} (row ${t})`;
  const body = $("unit-body");
  const answer = data.unit;
  if (!answer || answer.view !== view || answer.t !== t || answer.u !== s.unit) {
    if (!body.firstChild) body.append(el("p", { class: "muted", text: "Fetching the numbers…" }));
    return;
  }
  if (!fresh("unit", [answer])) return;
  if (answer.error) {
    body.replaceChildren(el("p", { class: "callout", text: answer.error }));
    return;
  }
  const { explanation } = answer;
  const draw = VIEWS[explanation.family];
  const shown = draw
    ? draw(explanation, { unit: { channel: unit, y: null, x: null }, labels: [], animate: null })
    : el("p", { class: "small muted", text: `This page cannot draw a ${explanation.family} explanation yet.` });
  shown.dataset.family = explanation.family;
  shown.dataset.step = String(t);
  shown.dataset.unit = String(unit);
  body.replaceChildren(shown);
}

// the animator steps the state's step (its buttons, the range, the memory, the CNN's digit, the clicker's keys)
const animator = new Animator({
  figure: $("unrolled-panel"),
  render: (t) => {
    if (!data.view) return;
    state.set({ step: t }, { silent: true });
    render(state, data);
    loadUnit();
  },
  interval: 650,
});
bindAnimatorControls(animator, $("toolbar"));
const labelled = animator.render;
animator.render = (t) => {
  labelled(t);
  if (data.view) $("step-label").textContent = `row ${t} · step ${t + 1} of ${data.view.T}`;
};

// the clicker's keys (presenter.js): the rows, one step each. A strip of cells keeps its arrows (its own handler
// moves along the cells and marks them handled), while Page Down and Page Up still step there; the drawing pad
// keeps its keys. Esc closes the unit's explanation, then leaves lecture mode.
presenterKeys({
  name: "the rows of the digit as the network reads them (one row per step); Space plays them",
  ...animatorSteps(animator, () => Boolean(data.view)),
  escape: () => {
    if (state.values.unit >= 0 && data.view) state.set({ unit: -1 }, { push: true });
    else if (state.values.lecture) state.set({ lecture: false }, { push: true });
  },
  ignore: "canvas#draw",
});

render(state, data);
init();
