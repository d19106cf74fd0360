// The explorer: pick a model and an image; the network appears as columns of layer volumes with every
// feature map; play animates the forward pass layer by layer; lecture mode shows one layer at a time.
import { api, clearError, field, showError } from "./api.js";
import { Animator, bindAnimatorControls } from "./animator.js";
import { drawBars } from "./bars.js";
import { SCALES, legend } from "./colormap.js";
import { DetailView } from "./detail.js";
import { DrawingPad, acceptImages, showSamplesFor } from "./inputs.js";
import { TITLES, lesson } from "./lessons.js";
import { architecture, archNodes, fillModelSelect, inputChannels } from "./models.js";
import { NetworkView } from "./network.js";
import { bindControl, createState } from "./state.js";
import { $, el } from "./dom.js";

// digit: one of the 10,000 shipped MNIST digits by index (-1: none), as the learned page's atlas links to it
const DEFAULTS = { model: "", sample: "", digit: -1, scale: "viridis", filter: "auto", lecture: false, layer: "", unit: [] };
// in "main" mode these pass-through nodes share the column of the activation after them
const FOLDED = new Set(["batch_norm", "dropout", "identity"]);
const ACTIVATIONS = new Set(["relu", "relu6", "leaky_relu", "sigmoid", "tanh", "silu", "hardswish", "hardsigmoid", "clip"]);

let models = [];
let arch = null;
let archById = new Map();
let run = null; // the API's activations answer
let visible = []; // run nodes shown, in order
let startedAt = 0;
let firstMapLogged = false;
let currentInput = null; // { blob, name }

const detail = new DetailView({
  panel: $("detail"), body: $("detail-body"), canvas: $("unit-canvas"), caption: $("unit-caption"),
  title: $("detail-title"),
  onUnit: (unit) => selectUnit(unit),
});

const network = new NetworkView($("network"), {
  onSelect: (column, hit) => selectUnit({ node: column.node.id, ...hit }),
  onLoaded: (column) => {
    if (!firstMapLogged && column.node.id !== "input") {
      firstMapLogged = true;
      const ms = performance.now() - startedAt;
      window.cnnVis.firstFeatureMapMs = ms;
      const server = run?.elapsed_ms ? `forward pass ${Math.round(run.elapsed_ms)} ms on the server; ` : "";
      $("timing").textContent = `${server}answer after ${Math.round(window.cnnVis.responseMs)} ms; ` +
        `first feature maps on screen ${Math.round(ms)} ms after the image was chosen.`;
    }
    if (state.values.unit.length) refreshHighlight();
  },
});
window.cnnVis = { firstFeatureMapMs: null, network };

// --- state ------------------------------------------------------------------------------------------
const state = createState(DEFAULTS, (changed) => {
  controls.forEach((show) => show());
  if (changed.includes("model")) {
    loadModel().catch((err) => showError(err));
    return;
  }
  if (changed.includes("sample") && state.values.sample) runSample(state.values.sample);
  if (changed.includes("digit") && state.values.digit >= 0 && !state.values.sample) runDigit(state.values.digit);
  if (changed.includes("scale")) {
    network.setScale(state.values.scale);
    legend($("scale-legend"), state.values.scale);
    detail.setScale(state.values.scale);
  }
  if (changed.includes("filter")) renderNetwork();
  if (changed.includes("lecture")) applyLecture();
  if (changed.includes("layer") && !changed.includes("filter")) syncStepFromLayer();
});

$("scale").replaceChildren(...Object.entries(SCALES).map(([value, label]) => new Option(label, value)));
const controls = [
  bindControl(state, "scale", $("scale"), { event: "change" }),
  bindControl(state, "filter", $("filter"), { event: "change", parse: (el) => el.value }),
];
legend($("scale-legend"), state.values.scale);
network.scale = state.values.scale;

$("model").addEventListener("change", () => state.set({ model: $("model").value, layer: "", unit: [] }, { push: true }));

// --- models -----------------------------------------------------------------------------------------
async function init() {
  try {
    const filled = await fillModelSelect($("model"), state.values.model);
    models = filled.models;
    if (!filled.chosen) {
      showError("the server offers no models yet");
      return;
    }
    state.set({ model: filled.chosen }, { silent: true });
    await loadModel();
  } catch (err) {
    showError(err, "loading the models");
  }
}

async function loadModel() {
  const id = state.values.model;
  $("model").value = id;
  const model = models.find((m) => m.id === id);
  arch = await architecture(id);
  archById = new Map(archNodes(arch).map((n) => [n.id, n]));
  const info = model ?? arch;
  $("model-info").textContent = [info.task, info.input_shape && `input ${info.input_shape.join("×")}`,
    info.num_classes && `${info.num_classes} classes`, info.source].filter(Boolean).join(" · ");
  const digits = inputChannels(info) === 1;
  $("draw-box").hidden = !digits;
  showSamplesFor(digits);
  run = null;
  showAtlasLink(null);
  if (state.values.sample) await runSample(state.values.sample);
  else if (digits && state.values.digit >= 0) await runDigit(state.values.digit);
  else if (currentInput) await runImage(currentInput.blob, currentInput.name);
  else if (!digits) {
    const first = document.querySelector("#samples .sample:not([hidden])");
    if (first) state.set({ sample: first.dataset.file });
  } else {
    // a digit to start from, so the network is never empty; the user draws over it or clears it
    pad.drawText("3");
    runImage(await pad.toBlob28(), "your drawing");
  }
}

// --- inputs -----------------------------------------------------------------------------------------
document.querySelectorAll("#samples .sample").forEach((button) => {
  button.addEventListener("click", () => {
    if (state.values.sample === button.dataset.file) runSample(button.dataset.file);
    else state.set({ sample: button.dataset.file, digit: -1, unit: [] }, { push: true });
  });
});

async function runSample(file) {
  document.querySelectorAll("#samples .sample").forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.file === file)));
  try {
    startedAt = performance.now();
    const blob = await api(`/static/samples/${encodeURIComponent(file)}`, { as: "blob", label: "Loading the sample…" });
    await runImage(blob, file, { keepStart: true });
  } catch (err) {
    showError(err, `sample ${file}`);
  }
}

acceptImages({
  fileInput: $("file"),
  dropTarget: document.body,
  onImage: (blob, name) => {
    state.set({ sample: "", digit: -1, unit: [] });
    document.querySelectorAll("#samples .sample").forEach((b) => b.setAttribute("aria-pressed", "false"));
    runImage(blob, name);
  },
});

const pad = new DrawingPad($("draw"), { onStroke: () => classifyDrawing() });
$("draw-clear").addEventListener("click", () => {
  pad.clear();
  runToken += 1; // an answer for the drawing just wiped must not arrive after it
  if (currentInput?.name === "your drawing") showNoInput("The pad is empty: draw a digit to see what the network makes of it.");
});
$("draw-run").addEventListener("click", () => classifyDrawing());
// Each lifted stroke is classified at once (no debounce: a 10 ms answer should not wait 150 ms for a second
// stroke that may never come); a newer stroke's answer replaces an older one's, and the older run's feature-map
// fetches are cancelled so they do not hold the browser's six connections while the new answer waits.
async function classifyDrawing() {
  if (pad.empty) return;
  state.set({ sample: "", digit: -1 });
  runImage(await pad.toBlob28(), "your drawing");
}

/** One of the shipped digits (the atlas's top examples link here with it), at its own 28 × 28 pixels. */
async function runDigit(index) {
  try {
    startedAt = performance.now();
    const blob = await api(`/api/digits/${index}.png?scale=1`, { as: "blob", label: "Loading the digit…" });
    await runImage(blob, `shipped digit #${index}`, { keepStart: true });
  } catch (err) {
    showError(err, `shipped digit ${index}`);
  }
}

/** Send an image to the model: every node's activation, then the columns and the prediction. */
let runToken = 0;
async function runImage(blob, name, { keepStart = false } = {}) {
  const token = ++runToken; // a newer image wins: answers to older requests are dropped
  if (!keepStart) startedAt = performance.now();
  firstMapLogged = true; // until this image's columns exist: maps of the previous image still arriving don't count
  window.cnnVis.firstFeatureMapMs = null;
  window.cnnVis.responseMs = null;
  currentInput = { blob, name };
  clearError();
  const preview = $("input-preview");
  if (preview.src.startsWith("blob:")) URL.revokeObjectURL(preview.src);
  if (name.toLowerCase().endsWith(".npy")) preview.removeAttribute("src");
  else preview.src = URL.createObjectURL(blob);
  // a file that is not a picture would show the browser's broken-image icon: the error says what went wrong
  preview.onerror = () => { if (preview.src) $("input-figure").hidden = true; };
  preview.classList.toggle("pixelated", name === "your drawing" || name.startsWith("shipped digit"));
  $("input-figure").hidden = false;
  $("input-caption").textContent = name;
  // a .npy file is a raw input tensor (for models that do not take images); anything else is an image
  const tensor = name.toLowerCase().endsWith(".npy");
  const form = new FormData();
  form.append("image", blob, name.includes(".") ? name : `${name}.png`);
  let answer;
  try {
    answer = await api(`/api/models/${encodeURIComponent(state.values.model)}/activations`, {
      body: tensor ? blob : form, headers: tensor ? { "Content-Type": "application/x-npy" } : {},
      label: "Running the network…",
    });
  } catch (err) {
    if (token !== runToken) return;
    showError(err, `running ${state.values.model} on ${name}`);
    // nothing of the previous image may stay on screen as if it were this one's
    showNoInput(`No result: ${name} could not be read (the message above says why). Pick another image.`);
    return;
  }
  if (token !== runToken) return;
  run = answer;
  firstMapLogged = false;
  window.cnnVis.responseMs = performance.now() - startedAt;
  renderNetwork();
  if (run.classes) drawBars($("predictions"), run.classes);
  else predict(blob, name);
  $("explain-softmax").hidden = !run.classes;
}

/** Back to the empty state: no input, no maps, no prediction, no detail; `message` says why. */
function showNoInput(message) {
  currentInput = null;
  run = null;
  visible = [];
  animator.pause();
  animator.setSteps(0);
  network.clear(message);
  detail.close();
  showAtlasLink(null);
  const preview = $("input-preview");
  if (preview.src.startsWith("blob:")) URL.revokeObjectURL(preview.src);
  preview.removeAttribute("src");
  $("input-figure").hidden = true;
  $("predictions").replaceChildren(el("p", { class: "small muted", text: "Pick an image to see what the network thinks." }));
  $("explain-softmax").hidden = true;
  $("lesson").hidden = true;
  $("timing").textContent = "";
}

async function predict(blob, name) {
  const form = new FormData();
  form.append("image", blob, name.includes(".") ? name : `${name}.png`);
  try {
    const answer = await api(`/api/models/${encodeURIComponent(state.values.model)}/predict`, { body: form, label: "Predicting…" });
    drawBars($("predictions"), field(answer, "classes"));  // PredictResponse.classes
  } catch (err) {
    showError(err, "predicting");
  }
}

// --- the network ------------------------------------------------------------------------------------
function filterMode() {
  if (state.values.filter !== "auto") return state.values.filter;
  return (run?.nodes.length ?? 0) > 40 ? "main" : "all";
}

function renderNetwork() {
  if (!run) return;
  const consumers = new Map();
  for (const node of archNodes(arch)) for (const input of node.inputs ?? []) {
    consumers.set(input, [...(consumers.get(input) ?? []), node.id]);
  }
  const mode = filterMode();
  const last = run.nodes[run.nodes.length - 1]?.id;
  visible = run.nodes.filter((node) => {
    if (mode === "all" || node.id === "input" || node.id === last) return true;
    if (node.op === "constant") return false;
    // a convolution, its batch norm and its activation make one column, shown after the last of them
    const next = consumers.get(node.id) ?? [];
    const nextOp = next.length === 1 ? archById.get(next[0])?.op : null;
    if (node.op.startsWith("conv") && (nextOp === "batch_norm" || ACTIVATIONS.has(nextOp))) return false;
    if (FOLDED.has(node.op) && (ACTIVATIONS.has(nextOp) || FOLDED.has(nextOp))) return false;
    return true;
  });
  // in "main" mode a convolution's batch norm and activation share one column: note what it stands for
  const shown = new Set(visible.map((n) => n.id));
  visible = visible.map((node) => {
    const chain = [];
    let id = node.id;
    for (;;) {
      const inputs = archById.get(id)?.inputs ?? [];
      if (inputs.length !== 1 || inputs[0] === "input" || shown.has(inputs[0])) break;
      chain.unshift(inputs[0]);
      id = inputs[0];
    }
    return chain.length ? { ...node, chain } : node;
  });
  network.show(run, visible, archById, arch?.labels ?? []);
  const wanted = state.values.layer;
  animator.setSteps(visible.length, Math.max(0, visible.findIndex((n) => n.id === wanted)));
  if (!wanted && !state.values.lecture) {
    network.clearStep();
    state.set({ layer: "" }, { silent: true });
  }
  applyLecture();
  const unit = state.values.unit;
  if (unit.length >= 2) {
    const [node, channel, y, x] = unit;
    selectUnit({ node, channel: Number(channel), y: y === undefined ? null : Number(y), x: x === undefined ? null : Number(x) }, { fromState: true });
  } else {
    detail.close();
  }
}

// --- play and lecture mode --------------------------------------------------------------------------
function renderLayer(index) {
  const node = visible[index];
  if (!node) return;
  network.setStep(index, { reveal: animator.playing || state.values.lecture });
  // a collapsed column (convolution → batch norm → activation) is explained by its first node, then the rest
  const head = node.chain ? archById.get(node.chain[0]) : archById.get(node.id);
  const archNode = head ?? { op: node.op, output_shape: node.shape };
  const inputs = (archNode.inputs ?? []).map((id) => run.nodes.find((n) => n.id === id)?.shape);
  const ops = [...(node.chain ?? []).map((id) => archById.get(id)?.op), node.op];
  $("lesson-title").textContent = `${index + 1}. ${ops.map((op) => TITLES[op] ?? op).join(" → ")} · ${node.id}`;
  let text = lesson({ ...archNode, output_shape: archNode.output_shape ?? node.shape }, node, inputs[0]);
  if (node.chain) {
    const rest = ops.slice(1).map((op) => TITLES[op] ?? op).join(" and ");
    text += ` Then ${rest}, number by number (shown here: the result after ${TITLES[node.op] ?? node.op}).`;
  }
  $("lesson-text").textContent = text;
  if (state.values.layer !== node.id) state.set({ layer: node.id }, { silent: true });
}

const animator = new Animator({ figure: $("network"), render: renderLayer, interval: 900 });
bindAnimatorControls(animator, $("toolbar"));
const baseToggle = animator.onPlayChange;
animator.onPlayChange = (playing) => {
  baseToggle(playing);
  $("lesson").hidden = !(playing || state.values.lecture);
  if (!playing && !state.values.lecture && animator.step >= animator.count - 1) network.clearStep();
};

function syncStepFromLayer() {
  const index = visible.findIndex((n) => n.id === state.values.layer);
  if (index >= 0 && index !== animator.step) animator.goto(index);
}

function applyLecture() {
  const on = state.values.lecture;
  document.body.classList.toggle("lecture", on);
  $("lecture").setAttribute("aria-pressed", String(on));
  $("lesson").hidden = !(on || animator.playing);
  if (on) window.scrollTo(0, 0);
  if (on && visible.length) animator.goto(Math.max(0, visible.findIndex((n) => n.id === state.values.layer)));
}

$("lecture").addEventListener("click", () => state.set({ lecture: !state.values.lecture }, { push: true }));
document.addEventListener("keydown", (event) => {
  if (event.target.closest?.("input, select, textarea, canvas#draw, canvas#unit-canvas")) return;
  if (event.key === "ArrowRight" || event.key === "PageDown") {
    event.preventDefault();
    animator.pause();
    animator.next();
  } else if (event.key === "ArrowLeft" || event.key === "PageUp") {
    event.preventDefault();
    animator.pause();
    animator.prev();
  } else if (event.key === "Escape" && state.values.lecture) {
    state.set({ lecture: false });
  } else if ((event.key === " " || event.key === "k") && event.target === document.body) {
    event.preventDefault();
    animator.toggle();
  }
});

// --- units: receptive field and the operation detail ------------------------------------------------
async function selectUnit(unit, { fromState = false } = {}) {
  const column = network.byId.get(unit.node);
  if (!column) {
    // a node folded away in "main" mode: show every node, which selects it again
    if (run?.nodes.some((n) => n.id === unit.node) && filterMode() !== "all") state.set({ filter: "all" });
    return;
  }
  if (!fromState) state.set({ unit: [unit.node, unit.channel, ...(unit.y === null ? [] : [unit.y, unit.x])] }, { push: true });
  await network.load(column);
  detail.open({ model: state.values.model, arch, archById, run, column, unit, scale: state.values.scale,
    explain: column.node.chain?.[0] });
  showAtlasLink(unit);
  // bring the explanation into view when a neuron is picked in the columns (not while stepping in the unit view)
  if (!fromState && document.activeElement?.id !== "unit-canvas") {
    $("detail").scrollIntoView({ block: "nearest", behavior: "smooth" });
  }
  refreshHighlight();
}

async function refreshHighlight() {
  const [node, channel, y, x] = state.values.unit;
  if (!node || y === undefined) {
    network.highlight(null, null);
    return;
  }
  const boxes = await detail.fieldBoxes({ node, channel: Number(channel), y: Number(y), x: Number(x) });
  network.highlight(boxes, { node, channel: Number(channel), y: Number(y), x: Number(x) });
}

$("explain-softmax").addEventListener("click", async () => {
  const output = run?.nodes[run.nodes.length - 1];
  const column = output && network.byId.get(output.id);
  if (!column || !run.classes) return;
  await network.load(column);
  state.set({ unit: [] });
  await detail.openSoftmax({ model: state.values.model, arch, archById, run, column, classes: run.classes, scale: state.values.scale });
  $("detail").scrollIntoView({ block: "nearest" });
});

// --- the atlas: what each channel of the selected layer detects (the learned page's channels view) -----
let atlasLayers = null; // promise: model id -> Set of its layers with top examples (GET /api/top-examples/models)

async function showAtlasLink(unit) {
  const link = $("atlas-link");
  link.hidden = true;
  if (!unit) return;
  atlasLayers ??= api("/api/top-examples/models", { label: "Finding the atlas…" })
    .then((answer) => new Map(answer.models.map((m) => [m.id, new Set(m.layers.map((l) => l.node))])))
    .catch(() => new Map());
  const model = state.values.model;
  if (!(await atlasLayers).get(model)?.has(unit.node) || state.values.model !== model) return;
  const query = new URLSearchParams({ view: "channels", ch_model: model, ch_layer: unit.node, ch_channel: unit.channel });
  link.href = `/learned?${query}`;
  link.textContent = `What each channel of ${unit.node} detects (atlas) →`;
  link.hidden = false;
}

$("detail-close").addEventListener("click", () => {
  detail.close();
  showAtlasLink(null);
  state.set({ unit: [] });
  network.highlight(null, null);
});

init();
