// Backpropagation made visible: pick a model, an input and a label; the API (POST /api/models/{id}/backprop) answers
// the loss and, per node from the logits back to the input, the gradient's statistics and map URLs. The page steps
// backwards through the nodes (the clicker keys: → / PageDown one node further back, ← / PageUp, Home, End, Space),
// drawing each node's gradient on a signed scale centred on zero (blue −, white 0, red +) beside its activation.
// Clicking a unit asks for the chain rule there (POST .../backprop/chain-rule): how its gradient is summed from the
// units that read it, where it goes, and a filter's weight gradient. One SGD step on a filter (POST .../sgd-step)
// shows the filter before, its gradient, the rate and the filter after, and the loss before and after, for a sweep
// of rates: a small one lowers the loss, a too-large one overshoots.
//
// Every number is the API's. The state (bp*) is in the URL beside the page's `view`.
// state -> data -> render: handlers only change the state (or take an input), the loaders only fill `data` with the
// API's answers, and `render(state, data)` brings the view in line with both.
import { api, clearError, showError } from "./api.js";
import { Animator, bindAnimatorControls } from "./animator.js";
import { drawBars } from "./bars.js";
import { legend } from "./colormap.js";
import { el, gridBlock } from "./explain/common.js";
import { loadTiles, paint, reflowVector, tileAt } from "./featuremaps.js";
import { InputPicker, inputRequest, loadSample } from "./input_picker.js";
import { architecture, archNodes, listModels } from "./models.js";
import { animatorSteps, presenterKeys } from "./presenter.js";
import { changeTracker, chooseModel, showControl, showModelOptions } from "./redraw.js";
import { createState } from "./state.js";
import { svg, within } from "./dom.js";

// bpLabel -1: the model's prediction; bpUnit "node@c,y,x" ("" none); bpRate: an index into the API's swept rates
const DEFAULTS = {
  bpModel: "", bpSample: "", bpLabel: -1, bpStep: 0, bpScale: "layer", bpUnit: "", bpSgdNode: "", bpFilter: 0,
  bpScope: "filter", bpRate: 4, bpChannel: 0, bpLecture: false,
};
const PREFERRED_MODEL = "digits_classic";
const PLAY_MS = 1100;
const MAX_TILE_CACHE = 80;

let root = null;
let state = null;
let picker = null; // the model's samples and the upload (the input itself is data.input)
let animator = null;
// what the view knows from the API (and the input it backpropagates)
const data = {
  models: null, // the models with an image input
  detail: null, // the model's architecture (labels, nodes and their inputs)
  input: null, // { blob, name, tensor, uploaded }: the input backpropagated
  inputRequest: 0,
  pass: null, // the BackpropResponse shown
  passMessage: "Pick an input.", // what stands in the loss's place while there is no pass
  passRequest: 0,
  maps: null, // { key, node, scale, gradient, activation }: the tiles of the node shown
  mapsRequest: 0,
  chain: null, // the chain rule at the chosen unit
  chainRequest: 0,
  sgd: null, // { result, outcome }: one SGD step and the outcome shown
  sweep: null, // { key, rates, outcomes } of the SGD step shown
  sgdRequest: 0,
};
const tiles = new Map(); // url -> Promise<{ grey, layout }>
const fresh = changeTracker();
let chainFilter = null; // the chain rule's filter block: its grids follow the state's channel
let sgdFilter = null; // the SGD step's filter grids, likewise

const $ = within(() => root);

/** A number as text: 4 significant digits, small or huge ones as powers of ten, a true minus sign. */
export function num(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  if (v === 0) return "0";
  const a = Math.abs(v);
  const text = a < 1e-3 || a >= 1e5 ? v.toExponential(2).replace(/\.?0+e/, "e") : String(Number(v.toPrecision(4)));
  return text.replace("-", "−");
}
const signedNum = (v) => (v < 0 ? `(${num(v)})` : num(v));
const pct = (p) => `${(100 * p).toFixed(p >= 0.1 ? 1 : 2)}%`;

export function mount(element) {
  root = element;
  root.dataset.mounted = "1";
  state = createState(DEFAULTS, (changed) => {
    if (changed.includes("bpModel")) loadModel();
    else if (changed.includes("bpSample")) loadInput();
    else if (changed.includes("bpLabel")) runBackprop();
    else {
      if (changed.includes("bpStep") || changed.includes("bpScale")) loadMaps();
      if (changed.includes("bpUnit")) explainUnit();
      if (["bpSgdNode", "bpFilter", "bpScope", "bpRate"].some((k) => changed.includes(k))) runSgd();
    }
    render(state, data);
  });
  animator = new Animator({
    figure: $("bp-pass"),
    render: (step) => {
      if (!data.pass?.nodes[step]) return;
      state.set({ bpStep: step }, { silent: true });
      render(state, data);
      loadMaps();
    },
    interval: PLAY_MS,
  });
  bindAnimatorControls(animator, $("bp-pass"));
  bind();
  legend($("bp-legend"), "rdbu");
  render(state, data);
  init();
}

// --- the handlers: they change the state, or take an input ----------------------------------------------------------
function bind() {
  $("bp-model").addEventListener("change", () => state.set({ bpModel: $("bp-model").value, bpSample: "", bpLabel: -1,
    bpStep: 0, bpUnit: "", bpSgdNode: "", bpFilter: 0, bpChannel: 0 }, { push: true }));
  picker = new InputPicker(root, "bp", {
    // the same sample again is read again
    onSample: (file) => { if (!state.set({ bpSample: file, bpUnit: "" }, { push: true }).length) loadInput(); },
    onFile: (input) => {
      data.input = input;
      state.set({ bpSample: "", bpUnit: "" }, { silent: true });
      render(state, data);
      runBackprop();
    },
  });
  $("bp-label").addEventListener("change", () => state.set({ bpLabel: Number($("bp-label").value), bpUnit: "" }, { push: true }));
  root.querySelectorAll('input[name="bp-scale"]').forEach((radio) => radio.addEventListener("change", () => state.set({ bpScale: radio.value })));
  $("bp-grad").addEventListener("click", pickUnit);
  $("bp-strip").addEventListener("click", (event) => {
    const chip = event.target.closest("[data-step]");
    if (!chip) return;
    animator.pause();
    animator.goto(Number(chip.dataset.step));
  });
  $("bp-lecture").addEventListener("click", () => state.set({ bpLecture: !state.values.bpLecture }, { push: true }));
  $("bp-sgd-node").addEventListener("change", () => state.set({ bpSgdNode: $("bp-sgd-node").value, bpFilter: 0, bpChannel: 0 }, { push: true }));
  $("bp-filter").addEventListener("change", () => state.set({ bpFilter: Math.max(0, Math.round(Number($("bp-filter").value) || 0)), bpChannel: 0 }));
  $("bp-scope").addEventListener("change", () => state.set({ bpScope: $("bp-scope").value }));
  // dragging the rate shows it; letting go takes the step at it
  $("bp-rate").addEventListener("input", () => {
    state.set({ bpRate: Number($("bp-rate").value) }, { silent: true });
    render(state, data);
  });
  $("bp-rate").addEventListener("change", () => {
    if (!state.set({ bpRate: Number($("bp-rate").value) }).length) runSgd();
  });
  presenterKeys(clickerKeys());
  window.addEventListener("resize", () => fitCanvases());
}

function pickUnit(event) {
  if (!data.pass) return;
  const index = unitAt($("bp-grad"), event);
  if (!index) return;
  const node = data.pass.nodes[state.values.bpStep];
  state.set({ bpUnit: `${node.id}@${index.join(",")}` }, { push: true });
}

/** The clicker's keys (presenter.js) while this view is shown: the pass's nodes, from the loss back to the input. */
function clickerKeys() {
  return {
    name: "the backward pass, one node per step from the loss back to the input; Space plays it",
    active: () => !root.hidden,
    // while the pass is still being computed there is nothing to step yet
    ...animatorSteps(animator, () => Boolean(data.pass)),
    escape: () => {
      if (state.values.bpLecture) state.set({ bpLecture: false }, { push: true });
    },
  };
}

// --- loading: fill `data`, then render -------------------------------------------------------------------------------
function currentModel() {
  return data.models?.find((m) => m.id === state.values.bpModel) ?? null;
}

function modelPath(suffix) {
  return `/api/models/${encodeURIComponent(currentModel().id)}/${suffix}`;
}

async function init() {
  try {
    const models = (await listModels()).filter((m) => (m.input_shape ?? []).length === 3);
    data.models = models;
    state.set({ bpModel: chooseModel(models, state.values.bpModel || PREFERRED_MODEL) }, { silent: true });
    await loadModel();
  } catch (err) {
    showError(err, "loading the models");
  }
}

/** Nothing of an earlier pass stays: no loss, strip, maps, chain rule or SGD step; `message` in the loss's place. */
function forgetPass(message) {
  data.pass = null;
  data.passMessage = message;
  data.maps = null;
  data.chain = null;
  data.sgd = null;
  data.sweep = null;
}

async function loadModel() {
  const model = currentModel();
  data.input = null;
  data.detail = null;
  ++data.passRequest;
  forgetPass("Pick an input.");
  render(state, data);
  if (!model) return;
  let detail;
  try {
    detail = await architecture(model.id);
  } catch (err) {
    showError(err, `model ${model.id}`);
    return;
  }
  if (currentModel() !== model) return;
  data.detail = detail;
  const first = picker.firstSample(model);
  if (!state.values.bpSample && first) state.set({ bpSample: first }, { silent: true });
  render(state, data);
  await loadInput();
}

/** The state's sample as the input (none: the uploaded input again), then its pass. */
async function loadInput() {
  const file = state.values.bpSample;
  render(state, data);
  if (!file) {
    if (data.input) runBackprop();
    return;
  }
  const input = await loadSample(data, file, () => state.values.bpSample === file);
  if (!input) return;
  data.input = input;
  render(state, data);
  await runBackprop();
}

// --- the loss and the backward pass ----------------------------------------------------------------------------------
async function runBackprop() {
  const model = currentModel();
  if (!model || !data.input || !data.detail) return;
  const request = ++data.passRequest;
  const label = state.values.bpLabel >= 0 ? `?label=${state.values.bpLabel}` : "";
  try {
    const result = await api(modelPath(`backprop${label}`), { ...inputRequest(data.input), label: "Backpropagating…" });
    if (request !== data.passRequest) return;
    clearError();
    data.pass = result;
    data.sweep = null;
    // the state keeps to this pass: a step it has, a node with filters for the SGD step and one of its filters
    const withFilters = [...result.nodes].reverse().filter((n) => n.filters);
    const wanted = withFilters.find((n) => n.id === state.values.bpSgdNode) ?? withFilters[0];
    if (wanted) state.set({ bpSgdNode: wanted.id, bpFilter: Math.min(state.values.bpFilter, wanted.filters - 1) }, { silent: true });
    state.set({ bpStep: Math.max(0, Math.min(state.values.bpStep, result.nodes.length - 1)) }, { silent: true });
    render(state, data);
    loadMaps();
    runSgd();
    explainUnit();
  } catch (err) {
    if (request !== data.passRequest) return;
    forgetPass("Backpropagation was refused: see the message above.");
    render(state, data);
    showError(err, "backpropagation");
  }
}

function tilesOf(url) {
  if (!tiles.has(url)) {
    if (tiles.size >= MAX_TILE_CACHE) tiles.delete(tiles.keys().next().value);
    const promise = loadTiles(url, null).catch((err) => {
      tiles.delete(url);
      throw err;
    });
    tiles.set(url, promise);
  }
  return tiles.get(url);
}

/** A vector's strip as a near-square block (the click then reads the index row by row). */
function shown(loaded) {
  const { grey, layout } = loaded;
  if (layout.tiles === 1 && layout.tile_height === 1) return { grey: reflowVector(grey), layout: null, vector: true };
  return { grey, layout, vector: false };
}

/** The gradient and activation tiles of the node shown, at the state's scale. */
async function loadMaps() {
  const answer = data.pass;
  const node = answer?.nodes[state.values.bpStep];
  if (!node) return;
  const scale = state.values.bpScale;
  const key = `${node.png_url}?scale=${scale}|${node.activation_png_url}`;
  if (data.maps?.key === key) return;
  const request = ++data.mapsRequest;
  try {
    const [gradient, activation] = await Promise.all([tilesOf(`${node.png_url}?scale=${scale}`),
      tilesOf(node.activation_png_url)]);
    if (request !== data.mapsRequest || data.pass !== answer) return;
    data.maps = { key, node, scale, gradient, activation };
    render(state, data);
  } catch (err) {
    if (request === data.mapsRequest) showError(err, `the maps of ${node.id}`);
  }
}

async function explainUnit() {
  const answer = data.pass;
  const unit = chosenUnit();
  if (!answer || !unit || !answer.nodes.some((n) => n.id === unit.nodeId)) return;
  const request = ++data.chainRequest;
  const params = new URLSearchParams({ label: String(answer.label), node: unit.nodeId, unit: unit.index.join(",") });
  try {
    const result = await api(modelPath(`backprop/chain-rule?${params}`), { ...inputRequest(data.input), label: "The chain rule…" });
    if (request !== data.chainRequest) return;
    data.chain = result;
    render(state, data);
  } catch (err) {
    if (request === data.chainRequest) showError(err, "the chain rule");
  }
}

async function runSgd() {
  const answer = data.pass;
  if (!answer || !state.values.bpSgdNode) return;
  const v = state.values;
  const node = answer.nodes.find((n) => n.id === v.bpSgdNode);
  if (!node) return;
  const filter = Math.min(v.bpFilter, node.filters - 1);
  const key = [answer.run_id, answer.label, v.bpSgdNode, filter, v.bpScope].join("|");
  const params = new URLSearchParams({ label: String(answer.label), node: v.bpSgdNode, filter: String(filter), scope: v.bpScope });
  const known = data.sweep?.key === key ? data.sweep : null;
  if (known) { // the sweep is known: ask for the step at the chosen rate only
    const rate = known.rates[Math.min(v.bpRate, known.rates.length - 1)];
    params.set("lr", String(rate));
    params.set("lrs", String(rate));
  }
  const request = ++data.sgdRequest;
  try {
    const result = await api(modelPath(`sgd-step?${params}`), { ...inputRequest(data.input), label: "Taking one SGD step…" });
    if (request !== data.sgdRequest) return;
    if (!known) {
      data.sweep = { key, rates: result.sweep.map((o) => o.lr), outcomes: result.sweep };
      const index = Math.min(v.bpRate, data.sweep.rates.length - 1);
      if (data.sweep.rates[index] !== result.lr) { // the step shown is at the chosen rate of the sweep
        data.sgd = { result, outcome: data.sweep.outcomes[index] };
        render(state, data);
        return runSgd();
      }
    }
    data.sgd = { result, outcome: result.outcome };
    render(state, data);
  } catch (err) {
    if (request === data.sgdRequest) showError(err, "the SGD step");
  }
}

// --- rendering: the view from the state and `data` -----------------------------------------------------------------
/** The whole view from the state and what it knows; calling it again changes nothing. */
function render(state, data) {
  const v = state.values;
  const model = currentModel();
  showModelOptions($("bp-model"), data.models, v.bpModel);
  picker.show({ model, file: v.bpSample, input: data.input });
  if (fresh("labels", [data.detail])) {
    const labels = data.detail?.labels ?? [];
    $("bp-label").replaceChildren(new Option("the model's prediction", "-1"),
      ...labels.map((label, k) => new Option(`${k}: ${label}`, String(k))));
  }
  $("bp-label").value = String(v.bpLabel); // a menu: its options may just have been made again
  root.querySelectorAll('input[name="bp-scale"]').forEach((radio) => { radio.checked = radio.value === v.bpScale; });
  renderLecture(v);
  const answer = data.pass;
  if (fresh("pass", [answer, data.passMessage])) {
    if (answer) {
      renderLoss(answer);
      renderStrip(answer);
      fillSgdNodes(answer);
    } else clearPass(data.passMessage);
  }
  const step = answer ? Math.max(0, Math.min(v.bpStep, answer.nodes.length - 1)) : 0;
  if (answer && fresh("step", [answer, step, data.detail])) renderStep(answer, step);
  if (data.maps && fresh("maps", [data.maps])) drawMaps(data.maps);
  placeMarker();
  renderSgdControls(v, data);
  if (data.chain && fresh("chain", [data.chain])) renderChain(data.chain);
  if (data.sgd && fresh("sgd", [data.sgd])) renderSgd(data.sweep, data.sgd.result, data.sgd.outcome);
  for (const part of [chainFilter, sgdFilter]) if (part && fresh(part.name, [part, v.bpChannel])) part.draw(v.bpChannel);
  renderAnimator(answer, step);
}

function renderLecture(v) {
  const on = v.bpLecture;
  document.body.classList.toggle("lecture", on);
  document.body.classList.toggle("bp-lecture", on);
  $("bp-lecture").setAttribute("aria-pressed", String(on));
  if (fresh("lecture", [on])) {
    if (on) window.scrollTo(0, 0);
    requestAnimationFrame(() => fitCanvases());
  }
}

/** The animator's steps and step (its range and label) in line with the pass and the state's step. */
function renderAnimator(answer, step) {
  const count = answer?.nodes.length ?? 0;
  if (animator.count === count && (count === 0 || animator.step === step)) return;
  animator.setSteps(count, step); // its step is the state's: it renders
}

function clearPass(message) {
  $("bp-loss").textContent = message;
  $("bp-classes").replaceChildren();
  $("bp-strip").replaceChildren();
  $("bp-lesson").textContent = "";
  $("bp-stats").textContent = "";
  $("bp-marker").hidden = true;
  for (const id of ["bp-grad", "bp-act"]) {
    const canvas = $(id);
    canvas.width = 1;
    canvas.height = 1;
    canvas.getContext("2d").clearRect(0, 0, 1, 1);
  }
  $("bp-chain-body").replaceChildren();
  $("bp-sgd-filter").replaceChildren();
  $("bp-sgd-chart").replaceChildren();
  $("bp-sgd-verdict").textContent = "";
  chainFilter = null;
  sgdFilter = null;
}

function renderLoss(a) {
  const p = a.label_score.probability;
  const prediction = a.prediction;
  const which = a.label_is_prediction ? "the model's own prediction" : "the label chosen";
  $("bp-loss").replaceChildren(
    el("span", { class: "bp-loss-formula", text: `L = −ln p(“${a.label_name}”) = −ln ${num(p)} = ` }),
    el("strong", { id: "bp-loss-value", text: num(a.loss) }),
    el("span", { class: "small muted", text: ` · label ${a.label} (${which}); the model says “${prediction.label}” ` +
      `(${pct(prediction.probability)}).${a.label_is_prediction ? " A confident right answer has a tiny loss and " +
      "tiny gradients: pick another label to see large ones." : ""}` }));
  drawBars($("bp-classes"), a.classes);
}

function renderStrip(a) {
  const logs = a.nodes.map((n) => (n.mean_abs > 0 ? Math.log10(n.mean_abs) : null)).filter((v) => v !== null);
  const low = Math.min(...logs);
  const high = Math.max(...logs);
  $("bp-strip").replaceChildren(...a.nodes.map((n, i) => {
    const share = n.mean_abs > 0 ? (high > low ? (Math.log10(n.mean_abs) - low) / (high - low) : 1) : 0;
    const bar = el("span", { class: "bp-chip-bar" });
    bar.style.width = `${Math.round(8 + 92 * share)}%`;
    return el("li", {}, el("button", {
      type: "button", class: "bp-chip", "data-step": String(i), "data-node": n.id,
      title: `${n.id} (${n.op}): mean |dL/da| = ${num(n.mean_abs)}`,
      "aria-label": `Step ${i + 1}: ${n.id}, mean absolute gradient ${num(n.mean_abs)}`,
    }, el("span", { class: "bp-chip-name", text: n.id }), el("span", { class: "bp-chip-op", text: n.op }),
    el("span", { class: "bp-chip-track" }, bar)));
  }));
}

/** The nodes that read ``nodeId`` and have a gradient (the loss, for the logits). */
function readersOf(answer, detail, nodeId) {
  const withGradient = new Set(answer.nodes.map((n) => n.id));
  const found = archNodes(detail).filter((n) => withGradient.has(n.id) && (n.inputs ?? []).includes(nodeId)).map((n) => n.id);
  return nodeId === answer.logits_node ? ["the loss", ...found] : found;
}

function lessonFor(answer, detail, node, step) {
  const count = answer.nodes.length;
  const head = `Step ${step + 1} of ${count}: `;
  if (step === 0) {
    return `${head}the loss reads the logits (${node.id}). dL/dz_k = p_k − [k = label]: the label's logit gets ` +
      `p − 1 < 0 (raising it lowers the loss), every other class its probability p_k.`;
  }
  if (node.id === "input") {
    return `${head}the input. dL/dx says which pixels would change the loss most: the gradient has reached the ` +
      "image (the saliency map). It trains nothing, but an attack can follow it.";
  }
  const readers = readersOf(answer, detail, node.id);
  return `${head}${node.id} (${node.op}). Its gradient is the sum, over what reads it (${readers.join(", ")}), of ` +
    "their gradient × the local derivative. Click a unit to see the numbers.";
}

function renderStep(answer, step) {
  const node = answer.nodes[step];
  const strip = $("bp-strip");
  strip.querySelectorAll(".bp-chip").forEach((chip) => {
    const current = Number(chip.dataset.step) === step;
    chip.classList.toggle("current", current);
    chip.classList.toggle("done", Number(chip.dataset.step) < step);
    if (current) chip.setAttribute("aria-current", "step");
    else chip.removeAttribute("aria-current");
  });
  const chip = strip.querySelector(`[data-step="${step}"]`)?.parentElement;
  if (chip) strip.scrollLeft = chip.offsetLeft - strip.clientWidth / 2 + chip.offsetWidth / 2; // never the page
  $("bp-step").dataset.step = String(step);
  $("bp-lesson").textContent = data.detail ? lessonFor(answer, data.detail, node, step) : "";
  $("bp-grad-caption").textContent = `dL/d(${node.id}): the gradient reaching ${node.id}, shape [${node.shape.join(", ")}]`;
  $("bp-act-caption").textContent = node.id === "input" ? "The input (forward pass)" : `${node.id}'s output (forward pass)`;
  $("bp-stats").textContent = `min ${num(node.min)} · max ${num(node.max)} · mean |g| ${num(node.mean_abs)} · ` +
    `‖g‖ ${num(node.norm)}`;
}

function drawMaps({ node, scale, gradient, activation }) {
  const g = shown(gradient);
  const a = shown(activation);
  paint($("bp-grad"), g.grey, "rdbu", g.layout);
  paint($("bp-act"), a.grey, "viridis", a.layout);
  $("bp-grad").dataset.node = node.id;
  $("bp-grad").dataset.layout = JSON.stringify(gradient.layout);
  $("bp-grad").dataset.vector = String(g.vector);
  fitCanvases();
  showLegend(node, scale);
}

function showLegend(node, scale) {
  const layer = scale === "layer";
  const m = node.max_abs;
  $("bp-legend-low").textContent = layer ? `−${num(m)}` : "−m";
  $("bp-legend-high").textContent = layer ? `+${num(m)}` : "+m";
  $("bp-legend-note").textContent = layer
    ? "Blue: raising this number would lower the loss; red: raise the loss; white: no effect. One scale for the node."
    : "Each map on its own scale ±m (its largest |gradient|): patterns show, sizes do not compare.";
}

/** Fit each map into its fixed box, scaled up in whole pixels' proportion (the box, not the map, sets the size). */
function fitCanvases() {
  for (const id of ["bp-grad", "bp-act"]) {
    const canvas = $(id);
    const box = canvas.parentElement;
    const scale = Math.min(box.clientWidth / canvas.width, box.clientHeight / canvas.height);
    canvas.style.width = `${Math.floor(canvas.width * scale)}px`;
    canvas.style.height = `${Math.floor(canvas.height * scale)}px`;
  }
  placeMarker();
}

// --- one unit: the chain rule ----------------------------------------------------------------------------------------
function unitAt(canvas, event) {
  const rect = canvas.getBoundingClientRect();
  const px = ((event.clientX - rect.left) / rect.width) * canvas.width;
  const py = ((event.clientY - rect.top) / rect.height) * canvas.height;
  const node = data.pass.nodes[state.values.bpStep];
  if (canvas.dataset.vector === "true") {
    const i = Math.floor(py) * canvas.width + Math.floor(px); // a vector (F,) or a single row (1, L)
    if (i >= node.shape.at(-1)) return null;
    return node.shape.length === 2 ? [0, i] : [i];
  }
  const layout = JSON.parse(canvas.dataset.layout || "null");
  const hit = layout && tileAt(layout, px, py);
  if (!hit) return null;
  if (node.shape.length === 3) return [hit.channel, hit.y, hit.x];
  if (node.shape.length === 2) return layout.time === "rows" ? [hit.y, hit.x] : [hit.channel, hit.x];
  return null;
}

function chosenUnit() {
  const [nodeId, index] = state.values.bpUnit.split("@");
  if (!nodeId || !index) return null;
  return { nodeId, index: index.split(",").map(Number) };
}

/** Outline the chosen unit when it belongs to the node shown. */
function placeMarker() {
  const marker = $("bp-marker");
  const unit = chosenUnit();
  const canvas = $("bp-grad");
  const layout = JSON.parse(canvas.dataset.layout || "null");
  if (!unit || !data.pass || unit.nodeId !== canvas.dataset.node || !layout) {
    marker.hidden = true;
    return;
  }
  let cell;
  if (canvas.dataset.vector === "true") {
    const i = unit.index.at(-1);
    cell = { x: i % canvas.width, y: Math.floor(i / canvas.width) };
  } else {
    const [channel, y, x] = unit.index.length === 3 ? unit.index
      : layout.time === "rows" ? [0, ...unit.index] : [unit.index[0], 0, unit.index[1]];
    cell = { x: (channel % layout.columns) * (layout.tile_width + layout.gap) + x,
      y: Math.floor(channel / layout.columns) * (layout.tile_height + layout.gap) + y };
  }
  const sx = canvas.clientWidth / canvas.width;
  const sy = canvas.clientHeight / canvas.height;
  marker.style.left = `${canvas.offsetLeft + cell.x * sx - 2}px`;
  marker.style.top = `${canvas.offsetTop + cell.y * sy - 2}px`;
  marker.style.width = `${Math.max(4, sx) + 4}px`;
  marker.style.height = `${Math.max(4, sy) + 4}px`;
  marker.hidden = false;
}

function agree(total, engine) {
  const scale = Math.max(Math.abs(total), Math.abs(engine), 1e-30);
  const ok = Math.abs(total - engine) <= 1e-4 * scale + 1e-12;
  return el("span", { class: `badge ${ok ? "ok" : "warn"}`, text: ok ? `= the engine's backward pass, ${num(engine)} ✓`
    : `the engine computed ${num(engine)}` });
}

function unitName(nodeId, index) {
  return index.length ? `${nodeId}[${index.join(", ")}]` : nodeId;
}

function table(caption, head, rows) {
  return el("table", { class: "data bp-table" }, el("caption", { class: "small muted", text: caption }),
    el("thead", {}, el("tr", {}, ...head.map((h, i) => el("th", { scope: "col", class: i ? "num" : "", text: h })))),
    el("tbody", {}, ...rows.map((cells) => el("tr", {}, ...cells.map((c, i) => el("td", { class: i ? "num" : "", text: c }))))));
}

const SHOWN_TERMS = 12;

/** The listed products as a table: the first nonzero ones, the rest (often zeros: a ReLU that was off, a window's
 * inputs a max pool did not pick) folded away. */
function termsTable(head, terms, row) {
  const nonzero = terms.filter((t) => t.product !== 0);
  const first = nonzero.slice(0, SHOWN_TERMS);
  const rest = terms.filter((t) => !first.includes(t));
  const zeros = rest.filter((t) => t.product === 0).length;
  const caption = !first.length ? "every product is 0" : nonzero.length === 1 ? "the only product that is not 0"
    : `the ${first.length} largest products`;
  const out = [table(caption, head, first.map(row))];
  if (rest.length) {
    out.push(el("details", { class: "bp-more" }, el("summary", { class: "small",
      text: `${rest.length} more listed product${rest.length === 1 ? "" : "s"}${zeros ? ` (${zeros} of them 0)` : ""}` }),
    table("", head, rest.map(row))));
  }
  return out;
}

function omitted(o) {
  return o.count ? [el("p", { class: "small muted", text: `${o.note}: ${num(o.sum)}.` })] : [];
}

function renderChain(c) {
  const u = unitName(c.node, c.index);
  $("bp-chain-hint").textContent = "";
  const incoming = c.incoming;
  const parts = [
    el("p", { class: "bp-chain-unit", html: "" }),
    el("h4", { text: `How dL/du is made: dL/du = Σ over the units y that read u of dL/dy × ∂y/∂u` }),
    el("ul", { class: "small bp-sources" }, ...incoming.sources.map((s) => el("li", {
      text: `${s.node} (${s.op}): ${s.count} unit${s.count === 1 ? "" : "s"} read u, adding ${num(s.sum)}. ∂y/∂u: ${s.rule}.` }))),
    ...termsTable(["y, the unit reading u", "dL/dy", "× ∂y/∂u", "= product"], incoming.terms,
      (t) => [unitName(t.node, t.index), num(t.upstream), signedNum(t.local), num(t.product)]),
    ...omitted(incoming.omitted),
    el("p", { class: "bp-total" }, el("span", { text: `Σ = ${num(incoming.total)} ` }), agree(incoming.total, incoming.engine_value)),
  ];
  parts[0].replaceChildren(el("strong", { text: `u = ${u}` }),
    el("span", { text: ` · its value in the forward pass ${num(c.value)} · its gradient dL/du = ` }),
    el("strong", { id: "bp-unit-gradient", text: num(c.gradient) }));
  if (c.outgoing) {
    const o = c.outgoing;
    parts.push(el("h4", { text: `Where dL/du goes: each input x feeding u receives dL/du × ∂u/∂x = ${num(o.upstream)} × ∂u/∂x` }),
      el("p", { class: "small", text: `∂u/∂x: ${o.rule}. Each product is one share of dL/dx; the others come from the other units that read x.` }),
      ...termsTable(["x, an input of u", "x", "∂u/∂x", "dL/du × ∂u/∂x", "dL/dx in all"], o.terms,
        (t) => [unitName(t.input, t.index), num(t.value), signedNum(t.local), num(t.product), num(t.input_gradient)]),
      ...omitted(o.omitted));
  } else {
    parts.push(el("p", { class: "small muted", text: "u is a number of the input image: nothing feeds it, so the backward pass ends here." }));
  }
  chainFilter = c.filter ? filterBlock(c.filter) : null;
  if (chainFilter) parts.push(...chainFilter.nodes);
  $("bp-chain-body").replaceChildren(...parts);
}

/** The filter's values of one input channel as rows (a linear layer's row wrapped at 20 numbers). */
function channelGrid(values, shape, channel) {
  if (shape.length === 1) {
    const rows = [];
    for (let i = 0; i < values.length; i += 20) rows.push(values.slice(i, i + 20));
    return rows;
  }
  const size = shape.slice(1).reduce((a, b) => a * b, 1);
  const flat = values.slice(channel * size, (channel + 1) * size);
  const width = shape.at(-1);
  const rows = [];
  for (let i = 0; i < flat.length; i += width) rows.push(flat.slice(i, i + width));
  return rows;
}

/** A select of the filter's input channel (none for one channel): it sets the state's channel. */
function channelPicker(shape) {
  if (shape.length === 1 || shape[0] === 1) return null;
  const select = el("select", { id: `bp-channel-${Math.random().toString(36).slice(2, 7)}`, "aria-label": "Input channel of the filter" },
    ...Array.from({ length: shape[0] }, (_, c) => new Option(`input channel ${c}`, String(c))));
  select.addEventListener("change", () => state.set({ bpChannel: Number(select.value) }));
  return select;
}

/** The chain rule's weight gradient of a filter: `{ nodes, draw(channel) }`, its grids drawn for one input channel. */
function filterBlock(f) {
  const holder = el("div", { class: "bp-grids" });
  const select = channelPicker(f.shape);
  const draw = (channel) => {
    const c = Math.min(channel, f.shape.length > 1 ? f.shape[0] - 1 : 0);
    if (select) select.value = String(c);
    holder.replaceChildren(gridBlock(`w[${f.filter}]${f.shape.length > 1 ? `, channel ${c}` : ""}`, channelGrid(f.weight, f.shape, c)),
      gridBlock("dL/dw (the formula)", channelGrid(f.gradient, f.shape, c)));
  };
  const bias = f.bias === null ? "no bias" : `bias ${num(f.bias)}, dL/db = Σ_o dL/dy[${f.filter}, o] = ${num(f.bias_gradient)}`;
  const what = f.op === "linear"
    ? `dL/dW[${f.filter}, i] = dL/dy[${f.filter}] × x[i]`
    : `dL/dw[${f.filter}, c, i, j] = Σ over the ${f.upstream_positions} output positions o of dL/dy[${f.filter}, o] × the input the weight met at o`;
  const out = [el("h4", { text: `The weight gradient of filter ${f.filter} of ${f.node}` }),
    el("p", { class: "small", text: `${what}. Shape [${f.shape.join(", ")}]; ${bias}.` }),
    ...(select ? [el("label", { class: "small", text: "Show " }, select)] : []), holder];
  if (f.example) {
    const e = f.example;
    const engine = f.engine_gradient[flatIndex(e.weight.slice(1), f.shape)];
    out.push(el("p", { class: "small", text: `The largest, dL/dw[${e.weight.join(", ")}], as a sum over ${e.count} positions:` }),
      ...termsTable(["output o", "dL/dy[k, o]", "× input there", "= product"], e.terms,
        (t) => [`[${t.output.join(", ")}] reads [${t.input.join(", ")}]`, num(t.upstream), signedNum(t.value), num(t.product)]),
      el("p", { class: "bp-total" }, el("span", { text: `Σ = ${num(e.total)} ` }), agree(e.total, engine)));
  }
  return { name: "chain-filter", nodes: out, draw };
}

function flatIndex(index, shape) {
  return index.reduce((acc, i, axis) => acc * shape[axis] + i, 0);
}

// --- one SGD step ------------------------------------------------------------------------------------------------------
function fillSgdNodes(a) {
  const withFilters = [...a.nodes].reverse().filter((n) => n.filters);
  $("bp-sgd").hidden = !withFilters.length;
  $("bp-sgd-node").replaceChildren(...withFilters.map((n) => new Option(`${n.id} (${n.op}, ${n.filters} filters)`, n.id)));
}

/** The SGD step's controls: the node, the filter (up to its count), the scope, the rate (an index into the sweep). */
function renderSgdControls(v, data) {
  if ($("bp-sgd-node").querySelector(`option[value="${CSS.escape(v.bpSgdNode)}"]`)) $("bp-sgd-node").value = v.bpSgdNode;
  const node = data.pass?.nodes.find((n) => n.id === v.bpSgdNode);
  if (node?.filters) $("bp-filter").max = String(node.filters - 1);
  showControl($("bp-filter"), String(v.bpFilter));
  showControl($("bp-scope"), v.bpScope);
  if (data.sweep) $("bp-rate").max = String(data.sweep.rates.length - 1);
  showControl($("bp-rate"), String(v.bpRate));
  const rate = data.sweep?.rates[v.bpRate];
  $("bp-rate-out").textContent = rate === undefined ? "" : num(rate);
}

function sgdVerdict(r, o) {
  const moved = r.scope === "filter" ? `filter ${r.filter} of ${r.node} (${r.moved} numbers)` : `every parameter (${r.moved.toLocaleString("en")} numbers)`;
  const lead = `lr = ${num(o.lr)}, moving ${moved}: the loss `;
  if (o.diverged) return `${lead}overflowed to infinity: a step this large breaks the network's numbers.`;
  const change = o.loss_change;
  const how = change < 0 ? `fell from ${num(r.loss_before)} to ${num(o.loss_after)} (${num(change)})`
    : change > 0 ? `rose from ${num(r.loss_before)} to ${num(o.loss_after)} (+${num(change)}): too large a step overshoots`
      : `stayed at ${num(r.loss_before)}`;
  return `${lead}${how}. The first order predicted ${num(o.predicted_loss)}. Afterwards p(label) = ` +
    `${num(o.label_probability)} and the model says “${o.prediction_label}”.`;
}

function renderSgd(sweep, r, o) {
  $("bp-sgd-verdict").textContent = sgdVerdict(r, o);
  $("bp-sgd-verdict").dataset.change = o.diverged ? "diverged" : o.loss_change < 0 ? "fell" : "rose";
  const holder = el("div", { class: "bp-grids" });
  const select = channelPicker(r.shape);
  const draw = (channel) => {
    const c = Math.min(channel, r.shape.length > 1 ? r.shape[0] - 1 : 0);
    if (select) select.value = String(c);
    holder.replaceChildren(gridBlock("w before", channelGrid(r.weight_before, r.shape, c)),
      gridBlock("dL/dw", channelGrid(r.gradient, r.shape, c)),
      gridBlock(`w after = w − ${num(r.lr)} · dL/dw`, channelGrid(r.weight_after, r.shape, c)));
  };
  sgdFilter = { name: "sgd-filter", draw };
  const bias = r.bias_before === null ? [] : [el("p", { class: "small mono", text:
    `bias: ${num(r.bias_before)} − ${num(r.lr)} × ${signedNum(r.bias_gradient)} = ${num(r.bias_after)}` })];
  $("bp-sgd-filter").replaceChildren(...(select ? [el("label", { class: "small", text: "Show " }, select)] : []), holder, ...bias);
  $("bp-sgd-chart").replaceChildren(sweepChart(sweep, r, o));
}

const BOX = { width: 560, height: 250, left: 56, right: 16, top: 22, bottom: 40 };

/** The loss after one step against the rate (log axis), the loss before as a line, the chosen rate marked. */
function sweepChart(sweep, r, chosen) {
  const outcomes = sweep?.outcomes ?? [];
  const w = BOX.width - BOX.left - BOX.right;
  const h = BOX.height - BOX.top - BOX.bottom;
  const logs = outcomes.map((o) => Math.log10(o.lr));
  const [lo, hi] = [Math.min(...logs), Math.max(...logs)];
  const x = (lr) => BOX.left + ((Math.log10(lr) - lo) / Math.max(1e-9, hi - lo)) * w;
  const top = Math.max(2 * r.loss_before, 1e-6); // losses above twice the start are drawn at the top, with their value
  const y = (loss) => BOX.top + (1 - Math.min(loss, top) / top) * h;
  const chart = svg("svg", { viewBox: `0 0 ${BOX.width} ${BOX.height}`, class: "bp-chart-svg", role: "img",
    "aria-label": "Loss after one step against the learning rate: " +
      outcomes.map((o) => `lr ${num(o.lr)}: ${o.diverged ? "overflow" : num(o.loss_after)}`).join("; ") });
  for (const f of [0, 0.5, 1, 1.5, 2]) {
    const loss = (f * top) / 2;
    chart.append(svg("line", { x1: BOX.left, x2: BOX.left + w, y1: y(loss), y2: y(loss), class: "bp-grid" }),
      svg("text", { x: BOX.left - 6, y: y(loss) + 4, "text-anchor": "end", class: "bp-tick" }, num(loss)));
  }
  outcomes.forEach((o, i) => {
    if (i % 2 === 0) chart.append(svg("text", { x: x(o.lr), y: BOX.top + h + 16, "text-anchor": "middle", class: "bp-tick" }, num(o.lr)));
  });
  chart.append(svg("line", { x1: BOX.left, x2: BOX.left + w, y1: y(r.loss_before), y2: y(r.loss_before), class: "bp-before" }),
    svg("text", { x: BOX.left + 4, y: y(r.loss_before) - 5, class: "bp-tick" }, `loss before the step: ${num(r.loss_before)}`),
    svg("text", { x: BOX.left + w / 2, y: BOX.height - 4, "text-anchor": "middle", class: "bp-label" }, "learning rate (log scale)"),
    svg("text", { x: 12, y: BOX.top + h / 2, "text-anchor": "middle", class: "bp-label", transform: `rotate(-90 12 ${BOX.top + h / 2})` },
      "loss after one step"));
  const finite = outcomes.filter((o) => !o.diverged);
  chart.append(svg("polyline", { points: finite.map((o) => `${x(o.lr)},${y(o.loss_after)}`).join(" "), class: "bp-curve" }));
  for (const o of outcomes) {
    const rose = o.diverged || o.loss_after > r.loss_before;
    const cy = o.diverged ? BOX.top : y(o.loss_after);
    chart.append(svg("circle", { cx: x(o.lr), cy, r: 3.5, class: rose ? "bp-point rose" : "bp-point fell" }));
    if (o.diverged || o.loss_after > top) {
      chart.append(svg("text", { x: x(o.lr), y: BOX.top - 6, "text-anchor": "middle", class: "bp-tick" }, o.diverged ? "∞" : "↑"));
    }
  }
  const cx = x(chosen.lr);
  chart.append(svg("line", { x1: cx, x2: cx, y1: BOX.top, y2: BOX.top + h, class: "bp-chosen" }));
  return chart;
}
