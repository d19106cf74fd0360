// Receptive fields: per-layer r, S, P from the API (a built-in model's architecture, or any graph spec sent to
// /api/architecture/analyze), the centre neuron's field drawn on the input, growing layer by layer.
// state -> data -> render: handlers only change the state, `load` only fills `data` with the API's answers, and
// `render(state, data)` brings the whole page in line with both (docs/frontend.md, "The other pages").
import { api, clearError, showError } from "./api.js";
import { Animator, bindAnimatorControls } from "./animator.js";
import { opTitle } from "./lessons.js";
import { architecture, listModels, nodeAttributes } from "./models.js";
import { GATE_EXPLANATION, fieldOf, gateNote, perAxis, unitSpan } from "./receptive.js";
import { animatorSteps, presenterKeys } from "./presenter.js";
import { createState } from "./state.js";
import { changeTracker, chooseModel, showModelOptions } from "./redraw.js";
import { $, el, svg as svgEl } from "./dom.js";


const EXAMPLE = {
  input_shape: [1, 28, 28],
  nodes: [
    { id: "conv1", op: "conv2d", out_channels: 8, kernel_size: 5, padding: 2 },
    { id: "relu1", op: "relu" },
    { id: "pool1", op: "max_pool2d", kernel_size: 2, stride: 2 },
    { id: "conv2", op: "conv2d", out_channels: 16, kernel_size: 5 },
    { id: "relu2", op: "relu" },
    { id: "pool2", op: "max_pool2d", kernel_size: 2, stride: 2 },
    { id: "flatten", op: "flatten" },
    { id: "fc", op: "linear", out_features: 10 },
  ],
};
const EXAMPLE_BRANCH = {
  input_shape: [3, 32, 32],
  nodes: [
    { id: "stem", op: "conv2d", out_channels: 16, kernel_size: 3, padding: 1 },
    { id: "a", op: "conv2d", out_channels: 16, kernel_size: 3, padding: 1 },
    { id: "b", op: "conv2d", out_channels: 16, kernel_size: 3, padding: 1 },
    { id: "skip", op: "add", inputs: ["stem", "b"] },
    { id: "down", op: "conv2d", out_channels: 32, kernel_size: 3, stride: 2, padding: 1 },
    { id: "dilated", op: "conv2d", out_channels: 32, kernel_size: 3, dilation: 2, padding: 2 },
    { id: "pool", op: "global_avg_pool" },
  ],
};

// --- what the page knows from the API ---------------------------------------------------------------------
const data = {
  request: 0, // the latest load's number: an older answer arriving late is dropped
  models: null, // the API's model list
  arch: null, // the API's Architecture (null after a failed load: nothing of an earlier one stays on screen)
  steps: [], // nodes where the field changes, for the picture
  background: null, // { image, name, pixelated } drawn under the fields, or null
};

const state = createState({ source: "model", model: "", layer: "", spec: "" }, (changed) => {
  if (changed.includes("source") || changed.includes("model") || changed.includes("spec")) load();
  else render(state, data);
});

/** The shipped held-out MNIST digit drawn under the fields of a digit model. */
const DIGIT_INDEX = 0;
const DIGIT_SHAPE = [1, 28, 28];

/** A spec as text: one node per line, so it reads like a layer list. */
function specText(spec) {
  const nodes = spec.nodes.map((node) => `    ${JSON.stringify(node)}`).join(",\n");
  return `{\n  "input_shape": ${JSON.stringify(spec.input_shape)},\n  "nodes": [\n${nodes}\n  ]\n}`;
}

// --- the handlers: they change the state (or ask for the same spec again) ----------------------------------------
document.querySelectorAll('input[name="source"]').forEach((radio) => {
  radio.addEventListener("change", () => state.set({ source: radio.value, layer: "" }, { push: true }));
});
$("model").addEventListener("change", () => state.set({ model: $("model").value, layer: "" }, { push: true }));
/** Analyse `text`: a new spec is a new state; the same one again is analysed again. */
function analyse(text) {
  if (text === state.values.spec) load();
  else state.set({ spec: text, layer: "" }, { push: true });
}
$("analyze").addEventListener("click", () => analyse($("spec").value));
$("example").addEventListener("click", () => analyse(specText(EXAMPLE)));
$("example-branch").addEventListener("click", () => analyse(specText(EXAMPLE_BRANCH)));

// --- loading: fill `data` for the state's model or spec, then render ----------------------------------------------
async function load() {
  const request = ++data.request;
  const latest = () => request === data.request;
  clearError();
  if (state.values.source === "spec" && !state.values.spec) state.set({ spec: specText(EXAMPLE) }, { silent: true });
  render(state, data);
  try {
    let arch;
    let background = null;
    if (state.values.source === "spec") {
      let spec;
      try {
        spec = JSON.parse(state.values.spec);
      } catch (err) {
        throw new Error(`the spec is not valid JSON (${err.message}): check the brackets, quotes and commas`);
      }
      arch = await api("/api/architecture/analyze", { json: spec, label: "Analysing the architecture…" });
    } else {
      const models = await listModels();
      if (!latest()) return;
      data.models = models;
      const chosen = chooseModel(models, state.values.model);
      if (chosen !== state.values.model) state.set({ model: chosen }, { silent: true });
      render(state, data);
      const detail = await architecture(chosen);
      background = await sampleBackground(models.find((m) => m.id === chosen));
      arch = detail.architecture;
    }
    if (!latest()) return;
    data.arch = arch;
    data.steps = fieldSteps(arch);
    data.background = background;
    render(state, data);
  } catch (err) {
    if (!latest()) return;
    data.arch = null;
    data.steps = [];
    data.background = null;
    render(state, data); // cleared before the error is shown
    showError(err);
  }
}

/** The input, then every node whose field differs from its input's: the picture's steps. */
function fieldSteps(arch) {
  const archById = new Map(arch.nodes.map((n) => [n.id, n]));
  const axes = arch.spatial_axes.length;
  const steps = [{ id: "input", op: "input", output_shape: arch.input_shape, attributes: {}, params: 0, macs: 0 }];
  let previous = "";
  for (const node of arch.nodes) {
    const field = fieldOf(archById, node.id, axes);
    // a new step where the field changes, and where a global gate first joins (same outline, now modulated)
    const key = field.status === "local" ? JSON.stringify([field.axes, Boolean(field.global_modulation)]) : field.status;
    if (key !== previous && field.status !== "undefined") steps.push(node);
    previous = key;
  }
  return steps;
}

/** Whether a model reads the shipped MNIST digits as images ([1, 28, 28]). */
function takesDigits(model) {
  return Boolean(model?.takes_images) && JSON.stringify(model.input_shape) === JSON.stringify(DIGIT_SHAPE);
}

async function sampleBackground(model) {
  // under the fields: a held-out digit for digit models, at its own pixels; a photo for colour-image models
  // (centre-cropped like the preprocessing); nothing for tensors
  let source = null;
  let name = "";
  if (takesDigits(model)) {
    source = `/api/digits/${DIGIT_INDEX}.png?scale=1`;
    name = `held-out MNIST digit #${DIGIT_INDEX}`;
  } else if (model?.takes_images && (model.input_shape?.[0] ?? 3) === 3 && $("rf-page").dataset.sample) {
    source = $("rf-page").dataset.sample;
    name = "a sample photo";
  }
  if (!source) return null;
  const image = new Image();
  image.src = source;
  try {
    await image.decode();
    return { image, name, pixelated: takesDigits(model) };
  } catch {
    return null;
  }
}

// --- rendering: the page from the state and `data` ---------------------------------------------------------------
const fresh = changeTracker();
let syncing = false; // the animator is being brought in line with the state: its steps change no state

/** The whole page from the state and the API's answers; calling it again changes nothing. */
function render(state, data) {
  const s = state.values;
  const spec = s.source === "spec";
  $("source-model").checked = !spec;
  $("source-spec").checked = spec;
  $("model-control").hidden = spec;
  $("spec-control").hidden = !spec;
  showModelOptions($("model"), data.models, s.model);
  // the spec field is the user's draft: it shows the state's spec when that changes, or when a load starts
  if (spec && fresh("spec", [s.spec, data.request])) $("spec").value = s.spec;
  renderTable(data);
  const { index, named } = where(s, data);
  const shownId = named?.id ?? data.steps[index]?.id;
  renderSelection(shownId, data);
  if (fresh("picture", [data.arch, data.background, index, shownId])) {
    if (data.arch) drawPicture(data, index, named);
    else clearPicture();
  }
  if (fresh("growth", [data.arch, index])) {
    if (data.arch) drawGrowth(data, index);
    else $("growth").replaceChildren();
  }
  renderAnimator(data, index);
}

/**
 * The picture's step for the state's layer, and the node to name: a node whose field equals an earlier step's shows
 * that step's picture but is named itself; an unknown layer shows the input.
 */
function where(s, data) {
  const { steps, arch } = data;
  const index = steps.findIndex((n) => n.id === s.layer);
  if (index >= 0) return { index, named: null };
  const node = arch ? arch.nodes.find((n) => n.id === s.layer) : null;
  if (!node) return { index: 0, named: null };
  const position = arch.nodes.indexOf(node);
  const before = steps.filter((step) => step.id === "input" || arch.nodes.indexOf(step) <= position);
  return { index: Math.max(0, before.length - 1), named: node };
}

/** The animator's steps and step (its range and label) in line with the state. */
function renderAnimator(data, index) {
  const count = data.steps.length;
  if (animator.count === count && animator.step === index) return;
  if (count === 0) {
    animator.pause();
    animator.count = 0;
    animator.step = 0;
    const range = $("picture-controls").querySelector("[data-role=step]");
    range.max = "0";
    range.value = "0";
    $("picture-controls").querySelector("[data-role=step-label]").textContent = "";
    return;
  }
  syncing = true;
  try {
    animator.setSteps(count, index);
  } finally {
    syncing = false;
  }
}

/** The table: every node of the architecture, or nothing after a failed load. */
function renderTable(data) {
  if (!fresh("table", [data.arch])) return;
  const { arch } = data;
  if (!arch) {
    $("rf-table").tBodies[0].replaceChildren();
    $("totals").textContent = "";
    return;
  }
  const archById = new Map(arch.nodes.map((n) => [n.id, n]));
  const axes = arch.spatial_axes.length;
  const rows = [data.steps[0], ...arch.nodes];
  $("rf-table").tBodies[0].replaceChildren(...rows.map((node, i) => {
    const field = fieldOf(archById, node.id, axes);
    const attrs = nodeAttributes(node);
    const local = field.status === "local";
    const tr = document.createElement("tr");
    tr.dataset.node = node.id;
    tr.tabIndex = 0;
    const cells = [
      String(i), node.id, opTitle(node), node.output_shape.join(" × "),
      fmtAttr(attrs.kernel_size), fmtAttr(attrs.stride),
      local ? perAxis(field, "size") : field.status, local ? perAxis(field, "stride") : "", local ? perAxis(field, "padding") : "",
      node.params.toLocaleString(), node.macs.toLocaleString(),
    ];
    const gate = local ? gateNote(field, archById) : "";
    cells.forEach((text, c) => {
      const td = document.createElement("td");
      td.textContent = text;
      if (c >= 6) td.className = "num";
      if (c === 6 && !local) td.title = field.reason;
      if (c === 6 && gate) td.append(" ", gateBadge("gate", `${gate}. ${GATE_EXPLANATION}`));
      tr.append(td);
    });
    tr.addEventListener("click", () => state.set({ layer: node.id }));
    tr.addEventListener("keydown", (e) => { if (e.key === "Enter") state.set({ layer: node.id }); });
    return tr;
  }));
  $("totals").textContent = `${arch.nodes.length} nodes · ${arch.totals.params.toLocaleString()} parameters · ` +
    `${arch.totals.macs.toLocaleString()} multiply-accumulates per input · axes ${arch.spatial_axes.join(", ")}`;
}

/** The shown node's row marked, and scrolled into the table's view (the table scrolls, not the page) when it changes. */
function renderSelection(id, data) {
  const rows = [...$("rf-table").tBodies[0].rows];
  for (const tr of rows) tr.classList.toggle("selected", tr.dataset.node === id);
  if (!fresh("scroll", [id, data.arch])) return;
  const row = rows.find((tr) => tr.dataset.node === id);
  const box = row?.closest(".table-scroll");
  if (row && box && (row.offsetTop < box.scrollTop || row.offsetTop > box.scrollTop + box.clientHeight - row.offsetHeight)) {
    box.scrollTop = row.offsetTop - box.clientHeight / 2;
  }
}

function clearPicture() {
  const canvas = $("field-canvas");
  canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
  delete canvas.dataset.background;
  $("field-text").replaceChildren();
  $("picture-caption").textContent = "";
}

/** A small badge for a global gate: `text` shown, `title` on hover. */
function gateBadge(text, title) {
  const badge = document.createElement("span");
  badge.className = "badge warn gate-badge";
  badge.textContent = text;
  badge.title = title;
  return badge;
}

function fmtAttr(value) {
  if (value === undefined || value === null) return "";
  if (!Array.isArray(value)) return String(value);
  return value.every((v) => v === value[0]) ? String(value[0]) : value.join("×");
}

function centreBox(arch, node, archById) {
  // the field of the centre neuron of a node (per axis [start, end] in input positions), or the whole input
  const field = fieldOf(archById, node.id, arch.spatial_axes.length);
  const spatial = arch.input_shape.slice(1);
  if (field.status !== "local") return { global: true, y: [0, spatial[0] - 1], x: [0, (spatial[1] ?? 1) - 1] };
  // positions are the last axes, except in a channels-last block (H, W, C), which says where they are
  const axes = field.position_axes ?? [];
  const out = axes.length ? axes.map((a) => node.output_shape[a]) : node.output_shape.slice(1);
  const [fy, fx] = field.axes.length === 1 ? [null, field.axes[0]] : field.axes;
  const cy = Math.floor(((out[0] ?? 1) - 1) / 2);
  const cx = Math.floor(((out[out.length - 1] ?? 1) - 1) / 2);
  return {
    y: fy ? unitSpan(fy, cy) : [0, 0], x: unitSpan(fx, cx), centre: fy ? [cy, cx] : [cx], field,
  };
}

function drawPicture(data, index, named) {
  const { arch, steps, background } = data;
  const archById = new Map(arch.nodes.map((n) => [n.id, n]));
  const canvas = $("field-canvas");
  const ctx = canvas.getContext("2d");
  const [H, W] = arch.input_shape.length >= 3 ? arch.input_shape.slice(1, 3) : [1, arch.input_shape[1]];
  const boxes = steps.slice(0, index + 1).map((node) => ({ node, box: centreBox(arch, node, archById) }));
  const lo = Math.min(0, ...boxes.flatMap(({ box }) => [box.y[0], box.x[0]]));
  const hi = Math.max(H - 1, W - 1, ...boxes.flatMap(({ box }) => [box.y[1], box.x[1]]));
  const span = hi - lo + 1;
  const scale = canvas.width / span;
  const px = (v) => (v - lo) * scale;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.fillStyle = "#eef0f4";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  // the input itself: a digit at its own pixels (with the pixel grid, to count rows and columns), a photo washed
  // lighter so that the orange shows, or an empty grid
  const image = background?.image;
  if (image) {
    const side = Math.min(image.naturalWidth, image.naturalHeight);
    ctx.imageSmoothingEnabled = !background.pixelated;
    ctx.drawImage(image, (image.naturalWidth - side) / 2, (image.naturalHeight - side) / 2, side, side, px(0), px(0), W * scale, H * scale);
    ctx.imageSmoothingEnabled = true;
    if (!background.pixelated) {
      ctx.fillStyle = "rgba(255, 255, 255, 0.35)";
      ctx.fillRect(px(0), px(0), W * scale, H * scale);
    }
  } else {
    ctx.fillStyle = "#1d2333";
    ctx.fillRect(px(0), px(0), W * scale, H * scale);
  }
  if ((!image || background.pixelated) && scale >= 4) {
    ctx.strokeStyle = "rgba(255, 255, 255, 0.12)";
    ctx.lineWidth = 1;
    for (let i = 0; i <= Math.max(H, W); i += 1) {
      ctx.beginPath(); ctx.moveTo(px(i), px(0)); ctx.lineTo(px(i), px(H)); ctx.stroke();
      ctx.beginPath(); ctx.moveTo(px(0), px(i)); ctx.lineTo(px(W), px(i)); ctx.stroke();
    }
  }
  if (image) canvas.dataset.background = image.src;
  else delete canvas.dataset.background;
  ctx.strokeStyle = "#2b3445";
  ctx.setLineDash([]);
  ctx.strokeRect(px(0), px(0), W * scale, H * scale);
  // every earlier field faint, the current one bold
  boxes.forEach(({ box }, i) => {
    const current = i === boxes.length - 1;
    ctx.setLineDash(box.global ? [6, 4] : []);
    ctx.lineWidth = current ? 3 : 1.5;
    ctx.strokeStyle = current ? "#e8a317" : "rgba(232, 163, 23, 0.55)";
    ctx.fillStyle = current ? "rgba(232, 163, 23, 0.22)" : "rgba(0, 0, 0, 0)";
    const x = px(box.x[0]);
    const y = px(box.y[0]);
    const w = (box.x[1] - box.x[0] + 1) * scale;
    const h = (box.y[1] - box.y[0] + 1) * scale;
    ctx.fillRect(x, y, w, h);
    ctx.strokeRect(x, y, w, h);
  });
  ctx.setLineDash([]);
  const { node, box } = boxes[boxes.length - 1];
  const shown = named ?? node;
  const where = box.global
    ? "sees the whole input: every input position can change it"
    : `(neuron ${box.centre.join(", ")}) sees input rows ${box.y[0]}…${box.y[1]} and columns ${box.x[0]}…${box.x[1]}` +
      (box.y[0] < 0 || box.x[0] < 0 || box.y[1] >= H || box.x[1] >= W ? " (part of it is padding, outside the image)" : "");
  const field = box.field;
  const numbers = field ? `r = ${perAxis(field, "size")}, S = ${perAxis(field, "stride")}, P = ${perAxis(field, "padding")}. ` : "";
  const gate = box.global ? "" : gateNote(fieldOf(archById, shown.id, arch.spatial_axes.length), archById);
  $("field-text").replaceChildren(el("strong", { text: shown.id }),
    ` (${opTitle(shown)}, output ${shown.output_shape.join(" × ")}): ${numbers}Its centre neuron ${where}.`,
    ...(gate ? [" ", gateBadge(gate, GATE_EXPLANATION)] : []));
  $("picture-caption").textContent = `The ${H}×${W} input${background ? ` (${background.name})` : ""}` +
    `${lo < 0 ? " with the padding around it" : ""}; orange: the field of each layer's centre neuron, the current layer's filled.`;
}

/** A round step for about `count` ticks from 0 to `top`: 1, 2 or 5 times a power of ten, at least 1. */
function tickStep(top, count = 5) {
  const raw = top / count;
  const magnitude = 10 ** Math.floor(Math.log10(Math.max(raw, 1e-9)));
  const step = [1, 2, 5, 10].map((m) => m * magnitude).find((s) => s >= raw);
  return Math.max(1, step);
}

/**
 * The field's size r (input pixels, the larger axis) at each step of the picture, as bars: the y axis numbered in
 * input pixels, the x axis by layer index (the table's # column), the input's size dashed. A bar opens its step.
 */
function drawGrowth(data, index) {
  const { arch, steps } = data;
  const archById = new Map(arch.nodes.map((n) => [n.id, n]));
  const svg = $("growth");
  svg.replaceChildren();
  const width = svg.clientWidth || 500;
  const height = svg.clientHeight || 240;
  const font = { "font-size": 14, fill: "#4a5261" };
  const sizes = steps.map((node) => {
    const field = fieldOf(archById, node.id, arch.spatial_axes.length);
    return field.status === "local" ? Math.max(...field.axes.map((a) => a.size)) : null;
  });
  const inputSize = Math.max(...arch.input_shape.slice(1));
  const largest = Math.max(inputSize, ...sizes.filter((s) => s !== null));
  const step = tickStep(largest);
  const top = Math.ceil(largest / step) * step;
  const ticks = Array.from({ length: top / step + 1 }, (_, i) => i * step);
  // the plot's box: room on the left for the y numbers, below for the layer numbers and the axis title
  const left = 12 + 9 * String(top).length;
  const right = width - 8;
  const upper = 26;
  const base = height - 46;
  const y = (v) => base - (v / top) * (base - upper);
  const add = (name, attrs, text) => svg.appendChild(svgEl(name, attrs, ...(text === undefined ? [] : [text])));
  for (const tick of ticks) {
    add("line", { x1: left, x2: right, y1: y(tick), y2: y(tick), stroke: tick ? "#e3e6ec" : "#4a5261" });
    add("line", { x1: left - 4, x2: left, y1: y(tick), y2: y(tick), stroke: "#4a5261" });
    add("text", { ...font, class: "tick y-tick", x: left - 6, y: y(tick) + 5, "text-anchor": "end" }, String(tick));
  }
  add("line", { x1: left, x2: left, y1: upper, y2: base, stroke: "#4a5261" });
  add("text", { ...font, x: 0, y: 14 }, "r (input pixels)");
  const slot = (right - left) / Math.max(1, steps.length);
  const rowOf = (node) => (node.id === "input" ? 0 : arch.nodes.indexOf(node) + 1);
  const labelWidth = 9 * String(arch.nodes.length).length + 8;
  const every = Math.max(1, Math.ceil(labelWidth / slot));
  steps.forEach((node, i) => {
    const r = sizes[i] ?? top;
    const x = left + i * slot + 1;
    const bar = add("rect", {
      x, y: y(r), width: Math.max(2, slot - 2), height: Math.max(1, base - y(r)),
      fill: i === index ? "#e8a317" : sizes[i] === null ? "#c9ced8" : "#1f5fbf", opacity: i > index ? 0.3 : 1,
    });
    bar.append(svgEl("title", {}, `#${rowOf(node)} ${node.id}: r = ${sizes[i] ?? "whole input"}`));
    bar.style.cursor = "pointer";
    bar.addEventListener("click", () => { animator.pause(); animator.goto(i); });
    if (i % every === 0) {
      add("text", { ...font, class: "tick x-tick", x: x + (slot - 2) / 2, y: base + 18, "text-anchor": "middle" },
        String(rowOf(node)));
    }
  });
  add("line", { x1: left, x2: right, y1: y(inputSize), y2: y(inputSize), stroke: "#8a1414", "stroke-dasharray": "4 3" });
  add("text", { "font-size": 14, fill: "#8a1414", x: right - 2, y: y(inputSize) - 5, "text-anchor": "end",
    stroke: "#ffffff", "stroke-width": 3, "paint-order": "stroke" }, `input size ${inputSize}`);
  add("text", { ...font, x: left, y: height - 6 }, "layer # where the field changes →");
}

// the animator steps the state's layer (its buttons, the range, the growth chart's bars, the clicker's keys)
const animator = new Animator({
  figure: $("picture-panel"),
  render: (index) => {
    const node = data.steps[index];
    if (!syncing && node) state.set({ layer: node.id }, { silent: true });
    render(state, data);
  },
  interval: 900,
});
bindAnimatorControls(animator, $("picture-controls"));
// the clicker's keys (presenter.js): the layers where the field changes, as the picture's buttons step them
presenterKeys({
  name: "the layers where the receptive field changes (one layer per step); Space plays them",
  ...animatorSteps(animator),
});

load();
