// The explorer: pick a model and an image; the network appears as columns of layer volumes with every
// feature map; play animates the forward pass layer by layer; lecture mode shows one layer at a time.
import { api, clearError, field, showError } from "./api.js";
import { Animator, bindAnimatorControls } from "./animator.js";
import { drawBars } from "./bars.js";
import { SCALES, SIGNED, legend } from "./colormap.js";
import { CompareView } from "./compare.js";
import { DetailView } from "./detail.js";
import { DrawingPad, acceptImages, showSamplesFor } from "./inputs.js";
import { columnTitles, lesson, opTitle } from "./lessons.js";
import { architecture, archNodes, fillModelSelect, inputChannels } from "./models.js";
import { NetworkView } from "./network.js";
import { OverviewView, mainLayers } from "./overview.js";
import { bindControl, createState } from "./state.js";
import { $, el } from "./dom.js";
import { Guide } from "./guide.js";
import { animatorSteps, presenterKeys, projectorOn } from "./presenter.js";

// digit: one of the 10,000 shipped MNIST digits by index (-1: none), as the learned page's atlas links to it
const DEFAULTS = {
  model: "", sample: "", digit: -1, scale: "viridis", range: "map", filter: "auto", lecture: false, layer: "", unit: [],
  overview: false, speed: 1,
};
// The first input, one the model gets right with confidence (tests/browser/test_explorer_scales_inputs.py checks it):
// for a photo model the coffee (EfficientNet-Lite0: espresso, about 95%; the cat's best class has under 40%),
// for a digit model a held-out MNIST "3" that every shipped digit model gives over 99%.
const DEFAULT_PHOTO = "coffee.jpg";
const DEFAULT_DIGIT = 8055;
const PLAY_MS = 900; // one step of Play at speed 1×
const PROBABILITIES = "(probabilities)"; // the id of the last step, after the output node: its softmax

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

const guide = new Guide();
$("guide-open").addEventListener("click", () => guide.show(0));

const network = new NetworkView($("network"), {
  onSelect: (column, hit) => selectUnit({ node: column.node.id, ...hit }),
  onLoaded: (column) => {
    if (!firstMapLogged && column.node.id !== "input") {
      firstMapLogged = true;
      // a student's first visit: the guide, once the maps it points at are on screen
      guide.openIfNew({ presenting: state.values.lecture || projectorOn() });
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
// a second input beside the first (compare.js): its maps and the API's difference A − B for the selected layer
const compare = new CompareView({
  select: $("compare"), panel: $("compare-panel"), onUnit: (unit) => selectUnit(unit),
  context: () => ({ model: state.values.model, info: modelInfo(), run, layer: state.values.layer || state.values.unit[0] || "",
    scale: state.values.scale, range: state.values.range, inputName: currentInput?.name }),
});

const state = createState(DEFAULTS, (changed) => {
  controls.forEach((show) => show());
  compare.refresh();
  if (changed.includes("model")) {
    loadModel().catch((err) => showError(err));
    return;
  }
  if (changed.includes("sample") && state.values.sample) runSample(state.values.sample);
  if (changed.includes("digit") && state.values.digit >= 0 && !state.values.sample) runDigit(state.values.digit);
  if (changed.includes("scale")) {
    // a signed scale is centred on zero with the maps' ranges: the detail's map is repainted once they are there
    network.setScale(state.values.scale).then(() => detail.setScale(state.values.scale));
    legend($("scale-legend"), state.values.scale);
  }
  if (changed.includes("scale") || changed.includes("range")) showScaleEnds();
  if (changed.includes("range")) {
    network.range = state.values.range; // the maps are fetched again, at the API's scale for that range
    renderNetwork();
  }
  if (changed.includes("filter")) {
    overview.show(arch, state.values.filter);
    renderNetwork();
  }
  if (changed.includes("overview")) overview.setOpen(state.values.overview);
  if (changed.includes("lecture")) {
    // a big network's lecture groups its blocks (filterMode): the columns change with the mode
    if (state.values.filter === "auto" && (run?.nodes.length ?? 0) > 40) renderNetwork();
    else applyLecture();
  }
  if (changed.includes("speed")) animator.interval = PLAY_MS / state.values.speed;
  if (changed.includes("layer") && !changed.includes("filter")) syncStepFromLayer();
});

$("scale").replaceChildren(...Object.entries(SCALES).map(([value, label]) => new Option(label, value)));
const controls = [
  bindControl(state, "scale", $("scale"), { event: "change" }),
  bindControl(state, "range", $("range"), { event: "change", parse: (el) => el.value }),
  bindControl(state, "filter", $("filter"), { event: "change", parse: (el) => el.value }),
  bindControl(state, "speed", $("speed"), { event: "change", parse: (el) => Number(el.value) }),
];
legend($("scale-legend"), state.values.scale);
network.scale = state.values.scale;
network.range = state.values.range;
showScaleEnds();

// the whole graph above the strip (overview.js): it marks the strip's current column; a click selects that layer
const overview = new OverviewView($("overview"), {
  onSelect: (id) => selectLayer(id),
  onToggle: (open) => {
    state.set({ overview: open });
    fitNetwork(); // the maps below moved
  },
});
overview.follow(network);
overview.setOpen(state.values.overview);

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
  overview.show(arch, state.values.filter);
  const info = model ?? arch;
  $("model-info").textContent = [info.task, info.input_shape && `input ${info.input_shape.join("×")}`,
    info.num_classes && `${info.num_classes} classes`, info.source].filter(Boolean).join(" · ");
  const digits = inputChannels(info) === 1;
  $("draw-box").hidden = !digits;
  showSamplesFor(digits);
  compare.setModel(info);
  run = null;
  showAtlasLink(null);
  if (state.values.sample) await runSample(state.values.sample);
  else if (digits && state.values.digit >= 0) await runDigit(state.values.digit);
  else if (currentInput) await runImage(currentInput.blob, currentInput.name);
  else if (!digits) {
    const first = document.querySelector(`#samples .sample[data-file="${DEFAULT_PHOTO}"]:not([hidden])`) ??
      document.querySelector("#samples .sample:not([hidden])");
    if (first) state.set({ sample: first.dataset.file });
  } else {
    // a real held-out digit to start from, so the network is never empty; the pad stays free to draw on
    state.set({ digit: DEFAULT_DIGIT });
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
  showModelInput(null); // the previous input's picture and note are not this one's
  showKindNote(null);
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
  compare.refresh();
  showModelInput(run, name);
  showKindNote(blob, name, token);
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
  showModelInput(null);
  showKindNote(null);
  $("predictions").replaceChildren(el("p", { class: "small muted", text: "Pick an image to see what the network thinks." }));
  $("explain-softmax").hidden = true;
  $("lesson-title").textContent = "";
  $("lesson-text").textContent = LESSON_IDLE;
  $("timing").textContent = "";
  compare.refresh();
}

// --- what the model sees, and whether it is the kind of picture it was trained on --------------------------
/** The model's entry in GET /api/models (its task, input shape, preprocessing, source), else its architecture's. */
function modelInfo() {
  return models.find((m) => m.id === state.values.model) ?? arch;
}

/** The legend's words for the colour bar's ends: the scale (signed or not) and the range (each map or the layer). */
function showScaleEnds() {
  const layer = state.values.range === "layer";
  const signed = SIGNED.has(state.values.scale);
  const whose = layer ? "the layer's" : "each map's";
  $("scale-low").textContent = signed ? "−max" : `${whose} minimum`;
  $("scale-mid").textContent = signed ? "0 (white)" : "";
  $("scale-high").textContent = signed ? "+max" : `${whose} maximum`;
  $("scale-whose").textContent = signed ? `max = max |value| of ${layer ? "the layer (one range for all its maps)" : "each map"}`
    : layer ? "one range for all the layer's maps" : "";
}

/**
 * The model's input as a picture, beside the file (GET /api/runs/{id}/input.png: the input's numbers with the
 * model's normalisation undone, e.g. EfficientNet's 224 × 224 centre crop); null, or a model without pictures, hides it.
 */
function showModelInput(answer, name = "") {
  const box = $("input-model-box");
  const caption = $("input-model-caption");
  const picture = $("input-model");
  const info = modelInfo();
  const [, channels, height, width] = answer?.input_shape ?? [];
  if (!answer || !info?.takes_images || !height) {
    box.hidden = true;
    caption.hidden = true;
    picture.removeAttribute("src");
    return;
  }
  picture.src = `/api/runs/${encodeURIComponent(answer.run_id)}/input.png`;
  picture.classList.toggle("pixelated", height <= 64);
  $("input-model-size").textContent = `what the model sees: ${height} × ${width}`;
  const pre = info.preprocessing;
  const how = name.toLowerCase().endsWith(".npy") || !pre ? "the tensor sent, its normalisation undone"
    : `the picture's shorter side scaled to ${pre.resize} pixels, the centre ${pre.crop} × ${pre.crop} kept` +
      (pre.grayscale ? ", in grey" : ", in colour (RGB)");
  const parts = channels === 3 ? "its red, green and blue channels are the first column's maps"
    : "its one channel is the first column's map";
  caption.textContent = `What the model sees: ${how}; ${parts}.`;
  caption.hidden = false;
  box.hidden = false;
}

/** What the model was trained on, in words, from the API's task, source and input shape (null: not known). */
function trainedOn(info) {
  const [channels, height, width] = info.input_shape ?? [];
  if (/digit/i.test(info.task ?? "")) {
    return `handwritten digits${/MNIST/.test(info.source ?? "") ? " (MNIST)" : ""}, grey, ${height} × ${width}`;
  }
  if (/imagenet/i.test(info.task ?? "")) return `colour photos (ImageNet${info.num_classes ? `, ${info.num_classes} classes` : ""})`;
  return channels === 1 ? "one-channel (grey) pictures" : channels === 3 ? "colour pictures" : null;
}

/** Whether a picture has colour rather than grey levels only (its pixels at 64 × 64); null if it cannot be read. */
async function hasColour(blob) {
  try {
    const bitmap = await createImageBitmap(blob, { resizeWidth: 64, resizeHeight: 64 });
    const ctx = new OffscreenCanvas(64, 64).getContext("2d");
    ctx.drawImage(bitmap, 0, 0);
    bitmap.close?.();
    const { data } = ctx.getImageData(0, 0, 64, 64);
    let coloured = 0;
    for (let i = 0; i < data.length; i += 4) {
      if (Math.max(data[i], data[i + 1], data[i + 2]) - Math.min(data[i], data[i + 1], data[i + 2]) > 24) coloured += 1;
    }
    return coloured > 0.02 * 64 * 64;
  } catch {
    return null;
  }
}

/** The input's kind, as far as the page knows: how it was made (pad, shipped digit, sample), else its colours. */
async function inputKind(blob, name) {
  if (name === "your drawing") return "drawing";
  if (name.startsWith("shipped digit")) return "digit";
  if (name.toLowerCase().endsWith(".npy")) return null; // a tensor: not a picture
  const sample = [...document.querySelectorAll("#samples .sample")].find((b) => b.dataset.file === name);
  if (sample) return sample.dataset.kind === "digit" ? "digit" : "photo";
  const colour = await hasColour(blob);
  return colour === null ? null : colour ? "colour" : "grey";
}

const KIND_WORDS = {
  drawing: "a digit drawn by hand, in grey", digit: "a handwritten digit, in grey", photo: "a colour photo",
  colour: "a colour picture", grey: "a picture in grey levels only",
};

/**
 * Beside the prediction, a note when the input is not the kind of picture the model was trained on: a colour photo
 * on a one-channel digit model, a drawn or shipped digit (or any grey picture) on a colour ImageNet model. null hides it.
 */
async function showKindNote(blob, name, token) {
  const note = $("input-kind-note");
  note.hidden = true;
  delete note.dataset.input;
  delete note.dataset.model;
  if (!blob) return;
  const info = modelInfo();
  const kind = await inputKind(blob, name);
  if (token !== runToken) return;
  note.dataset.input = name; // checked (shown or not) for this input and model: what the tests wait for
  note.dataset.model = state.values.model;
  if (!info || !kind) return;
  const channels = inputChannels(info);
  const wrong = channels === 1 ? kind === "photo" || kind === "colour" : channels === 3 && ["drawing", "digit", "grey"].includes(kind);
  const trained = trainedOn(info);
  if (!wrong || !trained) return;
  const [, height, width] = info.input_shape;
  const read = channels === 1 ? ` The model reads it turned grey and cut to ${height} × ${width}.` : "";
  const classes = info.num_classes ? ` Its answer is still one of its ${info.num_classes} classes.` : "";
  // ImageNet holds a few grey photos among its colour ones: a grey upload is only said to have no colour
  const lead = kind === "grey" ? "No colour in this picture." : "Not the kind of picture this model was trained on.";
  note.replaceChildren(el("strong", { text: lead }),
    ` ${info.name ?? info.id} learned from ${trained}; this is ${KIND_WORDS[kind]}.${read}${classes}`);
  note.hidden = false;
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
  const many = (run?.nodes.length ?? 0) > 40;
  // a lecture through a big network (EfficientNet: 61 main steps) shows one step per named block (15 + the rest)
  if (many && state.values.lecture) return "blocks";
  return many ? "main" : "all";
}

/** A node's block: the part of its id before the first dot ("block3.expand.conv" → "block3"), or null. */
function blockOf(id) {
  const dot = id.indexOf(".");
  return dot > 0 ? id.slice(0, dot) : null;
}

function renderNetwork() {
  if (!run) return;
  const mode = filterMode();
  const last = run.nodes[run.nodes.length - 1]?.id;
  // in "main" (and "blocks") mode a convolution, its batch norm and its activation make one column, shown after the
  // last of them (the architecture's main_column says which); its `chain` notes what it stands for
  visible = mainLayers(run.nodes, archById, mode);
  if (mode === "blocks") {
    // one column per named block: its last node stands for the block, the others are listed in its lesson
    const members = new Map();
    for (const node of run.nodes) {
      const block = blockOf(node.id);
      if (block) members.set(block, [...(members.get(block) ?? []), node.id]);
    }
    visible = visible.filter((node, i) => {
      const block = blockOf(node.id);
      return !block || node.id === last || blockOf(visible[i + 1]?.id ?? "") !== block;
    }).map((node) => {
      const block = blockOf(node.id);
      const folded = members.get(block) ?? [];
      // a block that is only this column's own convolution → batch norm → activation keeps that column's lesson
      const more = folded.length > (node.chain?.length ?? 0) + 1;
      return block && more && node.id !== last ? { ...node, block: { name: block, members: folded } } : node;
    });
  }
  // the forward pass ends on the answer: the softmax of the last node's scores, the top classes labelled
  const output = run.nodes[run.nodes.length - 1];
  if (run.classes?.length && output && output.op !== "softmax") {
    visible.push({ id: PROBABILITIES, synthetic: "probabilities", op: "softmax", shape: output.shape, classes: run.classes, from: output.id });
  }
  network.show(run, visible, archById, arch?.labels ?? []);
  const wanted = state.values.layer;
  // a layer folded into a block's column is shown by that column
  const at = visible.findIndex((n) => n.id === wanted || n.block?.members.includes(wanted));
  animator.setSteps(visible.length, Math.max(0, at));
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
  compare.refresh(); // the layer compared follows the step
  network.setStep(index, { reveal: animator.playing || state.values.lecture });
  if (node.synthetic === "probabilities") {
    $("lesson-title").textContent = `${index + 1}. Softmax · the probabilities`;
    $("lesson-text").textContent = probabilitiesLesson(node);
    if (state.values.layer !== node.id) state.set({ layer: node.id }, { silent: true });
    return;
  }
  // a collapsed column (convolution → batch norm → activation) is explained by its first node, then the rest
  const head = node.chain ? archById.get(node.chain[0]) : archById.get(node.id);
  const archNode = head ?? { op: node.op, output_shape: node.shape };
  const inputs = (archNode.inputs ?? []).map((id) => run.nodes.find((n) => n.id === id)?.shape);
  const titles = columnTitles(node, archById);
  $("lesson-title").textContent = `${index + 1}. ${titles.join(" → ")} · ${node.id}`;
  let text = lesson({ ...archNode, output_shape: archNode.output_shape ?? node.shape }, node, inputs[0]);
  if (node.block) {
    const kinds = [...new Set(node.block.members.map((id) => opTitle(archById.get(id))))];
    $("lesson-title").textContent = `${index + 1}. Block ${node.block.name} (${node.block.members.length} layers) · ${node.id}`;
    text = `The whole block ${node.block.name} in one step (lecture mode groups a big network's blocks; "Layers shown" ` +
      `lists every layer): ${kinds.join(", ")}. Its output: ${node.shape.join(" × ")}.`;
  } else if (node.chain) {
    const rest = titles.slice(1).join(" and ");
    text += ` Then ${rest}, number by number (shown here: the result after ${titles[titles.length - 1]}).`;
  }
  $("lesson-text").textContent = text;
  if (state.values.layer !== node.id) state.set({ layer: node.id }, { silent: true });
}

/** The last step's lesson, with the API's numbers: the top classes and their probabilities. */
function probabilitiesLesson(node) {
  const pct = (p) => `${(100 * p).toFixed(p >= 0.1 ? 1 : 2)}%`;
  const [best, ...rest] = node.classes;
  const others = rest.map((c) => `${c.label} ${pct(c.probability)}`).join(", ");
  return `Softmax turns the ${node.shape[0]} scores of ${node.from} into probabilities, e^score divided by the sum of ` +
    `all the e^score: positive numbers that add up to 1. The network's answer is the most probable class, ` +
    `${best.label} (${pct(best.probability)})${others ? `; then ${others}` : ""}.`;
}

const animator = new Animator({ figure: $("network"), render: renderLayer, interval: PLAY_MS / state.values.speed });
bindAnimatorControls(animator, $("toolbar"));
const baseToggle = animator.onPlayChange;
animator.onPlayChange = (playing) => {
  baseToggle(playing);
  if (!playing && !state.values.lecture && animator.step >= animator.count - 1) network.clearStep();
};

/** A layer picked in the overview: the strip marks it and scrolls to it, as stepping there would (also when the
 * layer was already the state's, but unmarked after play ended); without a run yet, the run starts there. */
function selectLayer(id) {
  state.set({ layer: id }, { push: true, silent: true });
  const index = visible.findIndex((n) => n.id === id || n.block?.members.includes(id));
  if (index >= 0) animator.goto(index);
}

function syncStepFromLayer() {
  const index = visible.findIndex((n) => n.id === state.values.layer);
  if (index >= 0 && index !== animator.step) animator.goto(index);
}

function applyLecture() {
  const on = state.values.lecture;
  document.body.classList.toggle("lecture", on);
  $("lecture").setAttribute("aria-pressed", String(on));
  fitNetwork();
  if (on) window.scrollTo(0, 0);
  if (on && visible.length) animator.goto(Math.max(0, visible.findIndex((n) => n.id === state.values.layer)));
}

// The lesson panel is always there, at a fixed height, so pressing Play, stepping or a lesson of another length
// never moves the maps. In lecture and projector modes the maps take the height left under it (--network-h),
// measured when the mode, the window or the panels above change, never while playing.
const LESSON_IDLE = "Press ▶ Play (or Space) to walk through the forward pass, one layer per step; → and PageDown step.";
function fitNetwork() {
  const network = $("network");
  const top = network.getBoundingClientRect().top + window.scrollY;
  const height = Math.max(240, window.innerHeight - top - 8);
  network.style.setProperty("--network-h", `${Math.round(height)}px`);
}
window.addEventListener("resize", fitNetwork);
window.addEventListener("projectorchange", fitNetwork);
new ResizeObserver(fitNetwork).observe($("toolbar"));
$("lecture").addEventListener("click", () => state.set({ lecture: !state.values.lecture }, { push: true }));
// projector mode folds the sidebar away (the maps get the width); this button brings it back over the maps
$("sidebar-toggle").addEventListener("click", () => {
  const open = !document.body.classList.contains("sidebar-open");
  document.body.classList.toggle("sidebar-open", open);
  $("sidebar-toggle").setAttribute("aria-expanded", String(open));
});
// the clicker's keys (presenter.js): the layers; Esc closes the detail, then leaves lecture mode
presenterKeys({
  name: "the network's layers (a forward pass, one layer per step)",
  ...animatorSteps(animator),
  escape: () => {
    if (!$("detail").hidden) $("detail-close").click();
    else if (state.values.lecture) state.set({ lecture: false });
  },
  // the drawing pad and the detail's map keep their own keys (arrows move the neuron there)
  ignore: "canvas#draw, canvas#unit-canvas",
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
