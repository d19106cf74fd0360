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
import { api, clearError, showError } from "./api.js";
import { Animator, bindAnimatorControls } from "./animator.js";
import { drawBars } from "./bars.js";
import { legend } from "./colormap.js";
import { el, gridBlock } from "./explain/common.js";
import { loadTiles, paint, reflowVector, tileAt } from "./featuremaps.js";
import { InputPicker, inputRequest } from "./input_picker.js";
import { architecture, archNodes, fillModelSelect } from "./models.js";
import { animatorSteps, presenterKeys } from "./presenter.js";
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
let models = [];
let model = null;
let detail = null; // the model's architecture (labels, nodes and their inputs)
let picker = null; // the model select's samples and upload: the input backpropagated
let answer = null; // the BackpropResponse shown
let animator = null;
let passToken = 0;
let drawToken = 0;
let chainToken = 0;
let sgdToken = 0;
let sweep = null; // { key, rates, outcomes } of the SGD step shown
const tiles = new Map(); // url -> Promise<{ grey, layout }>

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
    // Back / Forward: the controls follow the state, then whatever changed is redone
    showControls();
    if (changed.includes("bpModel")) loadModel();
    else if (changed.includes("bpSample") || changed.includes("bpLabel")) loadSample();
    else {
      if (changed.includes("bpStep") || changed.includes("bpScale")) animator.goto(state.values.bpStep);
      if (changed.includes("bpUnit")) explainUnit();
      if (["bpSgdNode", "bpFilter", "bpScope", "bpRate", "bpChannel"].some((k) => changed.includes(k))) runSgd();
      if (changed.includes("bpLecture")) applyLecture();
    }
  });
  animator = new Animator({ figure: $("bp-pass"), render: renderStep, interval: PLAY_MS });
  bindAnimatorControls(animator, $("bp-pass"));
  bind();
  showControls();
  applyLecture();
  legend($("bp-legend"), "rdbu");
  init();
}

function bind() {
  $("bp-model").addEventListener("change", () => {
    state.set({ bpModel: $("bp-model").value, bpSample: "", bpLabel: -1, bpStep: 0, bpUnit: "", bpSgdNode: "",
      bpFilter: 0, bpChannel: 0 }, { push: true, silent: true });
    loadModel();
  });
  picker = new InputPicker(root, "bp", {
    onSample: (file) => {
      state.set({ bpSample: file, bpUnit: "" }, { push: true, silent: true });
      loadSample();
    },
    onFile: () => {
      state.set({ bpSample: "", bpUnit: "" }, { silent: true });
      runBackprop();
    },
  });
  $("bp-label").addEventListener("change", () => {
    state.set({ bpLabel: Number($("bp-label").value), bpUnit: "" }, { push: true, silent: true });
    runBackprop();
  });
  root.querySelectorAll('input[name="bp-scale"]').forEach((radio) => radio.addEventListener("change", () => {
    state.set({ bpScale: radio.value }, { silent: true });
    drawNode();
  }));
  $("bp-grad").addEventListener("click", pickUnit);
  $("bp-strip").addEventListener("click", (event) => {
    const chip = event.target.closest("[data-step]");
    if (!chip) return;
    animator.pause();
    animator.goto(Number(chip.dataset.step));
  });
  $("bp-lecture").addEventListener("click", () => {
    state.set({ bpLecture: !state.values.bpLecture }, { push: true, silent: true });
    applyLecture();
  });
  $("bp-sgd-node").addEventListener("change", () => {
    state.set({ bpSgdNode: $("bp-sgd-node").value, bpFilter: 0, bpChannel: 0 }, { push: true, silent: true });
    showControls();
    runSgd();
  });
  const sgdControls = [
    ["bp-filter", "bpFilter", (e) => Math.max(0, Math.round(Number(e.value) || 0))],
    ["bp-scope", "bpScope", (e) => e.value],
    ["bp-rate", "bpRate", (e) => Number(e.value)],
  ];
  for (const [id, key, read] of sgdControls) {
    $(id).addEventListener("change", () => {
      state.set({ [key]: read($(id)), ...(key === "bpFilter" ? { bpChannel: 0 } : {}) }, { silent: true });
      showControls();
      runSgd();
    });
  }
  $("bp-rate").addEventListener("input", () => showRate(Number($("bp-rate").value)));
  presenterKeys(clickerKeys());
  window.addEventListener("resize", () => fitCanvases());
}

function showControls() {
  const v = state.values;
  $("bp-label").value = String(v.bpLabel);
  root.querySelectorAll('input[name="bp-scale"]').forEach((radio) => { radio.checked = radio.value === v.bpScale; });
  $("bp-filter").value = String(v.bpFilter);
  $("bp-scope").value = v.bpScope;
  $("bp-rate").value = String(v.bpRate);
  if ($("bp-sgd-node").querySelector(`option[value="${CSS.escape(v.bpSgdNode)}"]`)) $("bp-sgd-node").value = v.bpSgdNode;
  showRate(v.bpRate);
}

function showRate(index) {
  const rate = sweep?.rates[index];
  $("bp-rate-out").textContent = rate === undefined ? "" : num(rate);
}

// --- lecture mode and the clicker keys ----------------------------------------------------------------------------
function applyLecture() {
  const on = state.values.bpLecture;
  document.body.classList.toggle("lecture", on);
  document.body.classList.toggle("bp-lecture", on);
  $("bp-lecture").setAttribute("aria-pressed", String(on));
  if (on) window.scrollTo(0, 0);
  requestAnimationFrame(() => fitCanvases());
}

/** The clicker's keys (presenter.js) while this view is shown: the pass's nodes, from the loss back to the input. */
function clickerKeys() {
  return {
    name: "the backward pass, one node per step from the loss back to the input; Space plays it",
    active: () => !root.hidden,
    // while the pass is still being computed there is nothing to step yet
    ...animatorSteps(animator, () => Boolean(answer)),
    escape: () => {
      if (state.values.bpLecture) {
        state.set({ bpLecture: false }, { push: true, silent: true });
        applyLecture();
      }
    },
  };
}

// --- model, input, label --------------------------------------------------------------------------------------------
async function init() {
  try {
    const wanted = state.values.bpModel || PREFERRED_MODEL;
    const filled = await fillModelSelect($("bp-model"), wanted, { filter: (m) => (m.input_shape ?? []).length === 3 });
    models = filled.models;
    state.set({ bpModel: filled.chosen }, { silent: true });
    await loadModel();
  } catch (err) {
    showError(err, "loading the models");
  }
}

async function loadModel() {
  model = models.find((m) => m.id === state.values.bpModel) ?? null;
  $("bp-model").value = state.values.bpModel;
  picker.clear();
  answer = null;
  sweep = null;
  clearPass("Pick an input.");
  if (!model) return;
  const first = picker.showKind(model);
  try {
    detail = await architecture(model.id);
  } catch (err) {
    showError(err, `model ${model.id}`);
    return;
  }
  const labels = detail.labels ?? [];
  $("bp-label").replaceChildren(new Option("the model's prediction", "-1"),
    ...labels.map((label, k) => new Option(`${k}: ${label}`, String(k))));
  $("bp-label").value = String(state.values.bpLabel);
  if (!state.values.bpSample && first) state.set({ bpSample: first }, { silent: true });
  await loadSample();
}

async function loadSample() {
  const file = state.values.bpSample;
  picker.press(file);
  if (!file) {
    if (picker.input) runBackprop();
    return;
  }
  if (await picker.load(file)) await runBackprop();
}

function modelPath(suffix) {
  return `/api/models/${encodeURIComponent(model.id)}/${suffix}`;
}

// --- the loss and the backward pass ----------------------------------------------------------------------------------
async function runBackprop() {
  if (!model || !picker.input) return;
  const token = ++passToken;
  const label = state.values.bpLabel >= 0 ? `?label=${state.values.bpLabel}` : "";
  try {
    const result = await api(modelPath(`backprop${label}`), { ...inputRequest(picker.input), label: "Backpropagating…" });
    if (token !== passToken) return;
    clearError();
    answer = result;
    sweep = null;
    renderLoss(result);
    renderStrip(result);
    fillSgdNodes(result);
    animator.setSteps(result.nodes.length, Math.min(state.values.bpStep, result.nodes.length - 1));
    runSgd();
    explainUnit();
  } catch (err) {
    if (token !== passToken) return;
    answer = null;
    clearPass("Backpropagation was refused: see the message above.");
    showError(err, "backpropagation");
  }
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
  animator?.setSteps(0);
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
function readersOf(nodeId) {
  const withGradient = new Set(answer.nodes.map((n) => n.id));
  const found = archNodes(detail).filter((n) => withGradient.has(n.id) && (n.inputs ?? []).includes(nodeId)).map((n) => n.id);
  return nodeId === answer.logits_node ? ["the loss", ...found] : found;
}

function lessonFor(node, step) {
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
  const readers = readersOf(node.id);
  return `${head}${node.id} (${node.op}). Its gradient is the sum, over what reads it (${readers.join(", ")}), of ` +
    "their gradient × the local derivative. Click a unit to see the numbers.";
}

function renderStep(step) {
  if (!answer) return;
  const node = answer.nodes[step];
  if (!node) return;
  state.set({ bpStep: step }, { silent: true });
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
  $("bp-lesson").textContent = lessonFor(node, step);
  $("bp-grad-caption").textContent = `dL/d(${node.id}): the gradient reaching ${node.id}, shape [${node.shape.join(", ")}]`;
  $("bp-act-caption").textContent = node.id === "input" ? "The input (forward pass)" : `${node.id}'s output (forward pass)`;
  $("bp-stats").textContent = `min ${num(node.min)} · max ${num(node.max)} · mean |g| ${num(node.mean_abs)} · ` +
    `‖g‖ ${num(node.norm)}`;
  drawNode();
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

async function drawNode() {
  if (!answer) return;
  const node = answer.nodes[state.values.bpStep];
  if (!node) return;
  const token = ++drawToken;
  const scale = state.values.bpScale;
  try {
    const [gradient, activation] = await Promise.all([tilesOf(`${node.png_url}?scale=${scale}`),
      tilesOf(node.activation_png_url)]);
    if (token !== drawToken) return;
    const g = shown(gradient);
    const a = shown(activation);
    paint($("bp-grad"), g.grey, "rdbu", g.layout);
    paint($("bp-act"), a.grey, "viridis", a.layout);
    $("bp-grad").dataset.node = node.id;
    $("bp-grad").dataset.layout = JSON.stringify(gradient.layout);
    $("bp-grad").dataset.vector = String(g.vector);
    fitCanvases();
    showLegend(node, scale);
    placeMarker();
  } catch (err) {
    if (token === drawToken) showError(err, `the maps of ${node.id}`);
  }
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
  const node = answer.nodes[state.values.bpStep];
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

function pickUnit(event) {
  if (!answer) return;
  const index = unitAt($("bp-grad"), event);
  if (!index) return;
  const node = answer.nodes[state.values.bpStep];
  state.set({ bpUnit: `${node.id}@${index.join(",")}` }, { push: true, silent: true });
  placeMarker();
  explainUnit();
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
  if (!unit || !answer || unit.nodeId !== canvas.dataset.node || !layout) {
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

async function explainUnit() {
  const unit = chosenUnit();
  if (!answer || !unit || !answer.nodes.some((n) => n.id === unit.nodeId)) return;
  const token = ++chainToken;
  const params = new URLSearchParams({ label: String(answer.label), node: unit.nodeId, unit: unit.index.join(",") });
  try {
    const result = await api(modelPath(`backprop/chain-rule?${params}`), { ...inputRequest(picker.input), label: "The chain rule…" });
    if (token !== chainToken) return;
    renderChain(result);
  } catch (err) {
    if (token === chainToken) showError(err, "the chain rule");
  }
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
  if (c.filter) parts.push(...filterBlock(c.filter));
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

function channelPicker(shape, onPick) {
  if (shape.length === 1 || shape[0] === 1) return [];
  const select = el("select", { id: `bp-channel-${Math.random().toString(36).slice(2, 7)}`, "aria-label": "Input channel of the filter" },
    ...Array.from({ length: shape[0] }, (_, c) => new Option(`input channel ${c}`, String(c))));
  select.value = String(Math.min(state.values.bpChannel, shape[0] - 1));
  select.addEventListener("change", () => {
    state.set({ bpChannel: Number(select.value) }, { silent: true });
    onPick();
  });
  return [el("label", { class: "small", text: "Show " }, select)];
}

function filterBlock(f) {
  const holder = el("div", { class: "bp-grids" });
  const draw = () => {
    const c = Math.min(state.values.bpChannel, f.shape.length > 1 ? f.shape[0] - 1 : 0);
    holder.replaceChildren(gridBlock(`w[${f.filter}]${f.shape.length > 1 ? `, channel ${c}` : ""}`, channelGrid(f.weight, f.shape, c)),
      gridBlock("dL/dw (the formula)", channelGrid(f.gradient, f.shape, c)));
  };
  draw();
  const bias = f.bias === null ? "no bias" : `bias ${num(f.bias)}, dL/db = Σ_o dL/dy[${f.filter}, o] = ${num(f.bias_gradient)}`;
  const what = f.op === "linear"
    ? `dL/dW[${f.filter}, i] = dL/dy[${f.filter}] × x[i]`
    : `dL/dw[${f.filter}, c, i, j] = Σ over the ${f.upstream_positions} output positions o of dL/dy[${f.filter}, o] × the input the weight met at o`;
  const out = [el("h4", { text: `The weight gradient of filter ${f.filter} of ${f.node}` }),
    el("p", { class: "small", text: `${what}. Shape [${f.shape.join(", ")}]; ${bias}.` }),
    ...channelPicker(f.shape, draw), holder];
  if (f.example) {
    const e = f.example;
    const engine = f.engine_gradient[flatIndex(e.weight.slice(1), f.shape)];
    out.push(el("p", { class: "small", text: `The largest, dL/dw[${e.weight.join(", ")}], as a sum over ${e.count} positions:` }),
      ...termsTable(["output o", "dL/dy[k, o]", "× input there", "= product"], e.terms,
        (t) => [`[${t.output.join(", ")}] reads [${t.input.join(", ")}]`, num(t.upstream), signedNum(t.value), num(t.product)]),
      el("p", { class: "bp-total" }, el("span", { text: `Σ = ${num(e.total)} ` }), agree(e.total, engine)));
  }
  return out;
}

function flatIndex(index, shape) {
  return index.reduce((acc, i, axis) => acc * shape[axis] + i, 0);
}

// --- one SGD step ------------------------------------------------------------------------------------------------------
function fillSgdNodes(a) {
  const withFilters = [...a.nodes].reverse().filter((n) => n.filters);
  $("bp-sgd").hidden = !withFilters.length;
  $("bp-sgd-node").replaceChildren(...withFilters.map((n) => new Option(`${n.id} (${n.op}, ${n.filters} filters)`, n.id)));
  const wanted = withFilters.find((n) => n.id === state.values.bpSgdNode) ?? withFilters[0];
  if (wanted) {
    state.set({ bpSgdNode: wanted.id, bpFilter: Math.min(state.values.bpFilter, wanted.filters - 1) }, { silent: true });
    $("bp-filter").max = String(wanted.filters - 1);
  }
  showControls();
}

async function runSgd() {
  if (!answer || !state.values.bpSgdNode) return;
  const v = state.values;
  const node = answer.nodes.find((n) => n.id === v.bpSgdNode);
  if (!node) return;
  const filter = Math.min(v.bpFilter, node.filters - 1);
  $("bp-filter").max = String(node.filters - 1);
  const key = [answer.run_id, answer.label, v.bpSgdNode, filter, v.bpScope].join("|");
  const params = new URLSearchParams({ label: String(answer.label), node: v.bpSgdNode, filter: String(filter), scope: v.bpScope });
  const known = sweep?.key === key ? sweep : null;
  if (known) { // the sweep is known: ask for the step at the chosen rate only
    const rate = known.rates[Math.min(v.bpRate, known.rates.length - 1)];
    params.set("lr", String(rate));
    params.set("lrs", String(rate));
  }
  const token = ++sgdToken;
  try {
    const result = await api(modelPath(`sgd-step?${params}`), { ...inputRequest(picker.input), label: "Taking one SGD step…" });
    if (token !== sgdToken) return;
    if (!known) {
      sweep = { key, rates: result.sweep.map((o) => o.lr), outcomes: result.sweep };
      $("bp-rate").max = String(sweep.rates.length - 1);
      const index = Math.min(v.bpRate, sweep.rates.length - 1);
      if (sweep.rates[index] !== result.lr) { // the step shown is at the chosen rate of the sweep
        renderSgd(result, sweep.outcomes[index]);
        showRate(index);
        return runSgd();
      }
    }
    showRate(Math.min(v.bpRate, sweep.rates.length - 1));
    renderSgd(result, result.outcome);
  } catch (err) {
    if (token === sgdToken) showError(err, "the SGD step");
  }
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

function renderSgd(r, o) {
  $("bp-sgd-verdict").textContent = sgdVerdict(r, o);
  $("bp-sgd-verdict").dataset.change = o.diverged ? "diverged" : o.loss_change < 0 ? "fell" : "rose";
  const holder = el("div", { class: "bp-grids" });
  const draw = () => {
    const c = Math.min(state.values.bpChannel, r.shape.length > 1 ? r.shape[0] - 1 : 0);
    holder.replaceChildren(gridBlock("w before", channelGrid(r.weight_before, r.shape, c)),
      gridBlock("dL/dw", channelGrid(r.gradient, r.shape, c)),
      gridBlock(`w after = w − ${num(r.lr)} · dL/dw`, channelGrid(r.weight_after, r.shape, c)));
  };
  draw();
  const bias = r.bias_before === null ? [] : [el("p", { class: "small mono", text:
    `bias: ${num(r.bias_before)} − ${num(r.lr)} × ${signedNum(r.bias_gradient)} = ${num(r.bias_after)}` })];
  $("bp-sgd-filter").replaceChildren(...channelPicker(r.shape, draw), holder, ...bias);
  $("bp-sgd-chart").replaceChildren(sweepChart(r, o));
}

const BOX = { width: 560, height: 250, left: 56, right: 16, top: 22, bottom: 40 };

/** The loss after one step against the rate (log axis), the loss before as a line, the chosen rate marked. */
function sweepChart(r, chosen) {
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
