// Fooling the network: pick a model and an input, an attack (FGSM or PGD), ε and optionally a target class; the API
// (POST /api/models/{id}/adversarial) answers the original, the perturbation amplified with its scale, the
// adversarial input, both predictions and both attention maps, and links to the three tensors as .npy. For digit
// models the accuracy against ε on held-out digits (GET .../adversarial/robustness, an analysis job the first time)
// is drawn as a chart, the current ε marked on it.
//
// Every number is the API's. The state (adv*) is in the URL beside the page's `view`.
// state -> data -> render: handlers only change the state (or take an input), the loaders only fill `data` with the
// API's answers, and `render(state, data)` brings the view in line with both.
import { ApiError, api, clearError, showError } from "./api.js";
import { drawBars } from "./bars.js";
import { el, fmt } from "./explain/common.js";
import { InputPicker, inputRequest, loadSample, kindOf } from "./input_picker.js";
import { fetchResult, progressText } from "./jobs.js";
import { architecture, listModels } from "./models.js";
import { changeTracker, chooseModel, showControl, showModelOptions } from "./redraw.js";
import { createState } from "./state.js";
import { within } from "./dom.js";

// advTarget -1: untargeted; advPgdCurve: the PGD curve was asked for
const DEFAULTS = {
  advModel: "", advSample: "", advMethod: "fgsm", advEps: 0.2, advSteps: 10, advRandom: false, advSeed: 0,
  advTarget: -1, advPgdCurve: false,
};
const ATTACK_KEYS = ["advMethod", "advEps", "advSteps", "advRandom", "advSeed", "advTarget"];
const PREFERRED_MODEL = "digits_classic";
// ε suggested when the model changes: the issue's 0.2 for digits, about 8/255 for photos
const SUGGESTED_EPS = { digit: 0.2, photo: 0.03 };
const CURVE_PGD_STEPS = 10;
const SERIES = { fgsm: { name: "FGSM", colour: "#1f5fbf" }, pgd: { name: "PGD, 10 steps", colour: "#b3261e" } };

let root = null;
let state = null;
let picker = null; // the model's samples and the upload (the input itself is data.input)
// what the view knows from the API (and the input it attacks)
const data = {
  models: null, // the models with an image input
  detail: null, // the chosen model's architecture (its labels: the targets)
  input: null, // { blob, name, tensor, uploaded }: the input attacked
  inputRequest: 0,
  attack: null, // the last attack's answer
  attackMessage: "Pick an input to attack.", // what the verdict says while there is no answer
  attackRequest: 0,
  curves: {}, // method -> the API's RobustnessResponse for the chosen model, or an Error (replaced, never changed)
  curveProgress: null, // { method, summary } while a curve's job runs
  curveRequest: 0,
};
let attackAbort = null;
let curveAbort = null;
const fresh = changeTracker();

const $ = within(() => root);
const pct = (p) => `${(100 * p).toFixed(1)}%`;
// a loss near 0 (a confident right answer) keeps its digits: 3.2e-5, not 0.000
const lossText = (v) => (v !== 0 && Math.abs(v) < 0.001 ? v.toExponential(1) : fmt(v));

export function mount(element) {
  root = element;
  root.dataset.mounted = "1";
  state = createState(DEFAULTS, (changed) => {
    if (changed.includes("advModel")) loadModel();
    else if (changed.includes("advSample")) loadInput();
    else {
      if (changed.includes("advPgdCurve")) loadCurves();
      if (changed.some((key) => ATTACK_KEYS.includes(key))) attack();
    }
    render(state, data);
  });
  bind();
  render(state, data);
  init();
}

// --- the handlers: they change the state, or take an input ----------------------------------------------------------
function bind() {
  $("adv-model").addEventListener("change", () => {
    const chosen = data.models?.find((m) => m.id === $("adv-model").value);
    state.set({ advModel: $("adv-model").value, advSample: "", advTarget: -1, advEps: SUGGESTED_EPS[kindOf(chosen)] },
      { push: true });
  });
  picker = new InputPicker(root, "adv", {
    // the same sample again is attacked again
    onSample: (file) => { if (!state.set({ advSample: file }, { push: true }).length) loadInput(); },
    onFile: (input) => {
      data.input = input;
      state.set({ advSample: "" }, { silent: true });
      render(state, data);
      attack();
    },
  });
  const controls = [
    ["adv-method", "advMethod", (e) => e.value],
    ["adv-eps", "advEps", (e) => Number(e.value)],
    ["adv-steps", "advSteps", (e) => Math.round(Number(e.value))],
    ["adv-random", "advRandom", (e) => e.checked],
    ["adv-seed", "advSeed", (e) => Math.round(Number(e.value))],
    ["adv-target", "advTarget", (e) => Number(e.value)],
  ];
  for (const [id, key, read] of controls) $(id).addEventListener("change", () => state.set({ [key]: read($(id)) }));
  // the slider's own echo while it is dragged; letting go sets the state
  $("adv-eps").addEventListener("input", () => { $("adv-eps-out").textContent = $("adv-eps").value; });
  $("adv-curve-pgd").addEventListener("click", () => state.set({ advPgdCurve: true }, { push: true }));
}

// --- loading: fill `data`, then render -------------------------------------------------------------------------------
function currentModel() {
  return data.models?.find((m) => m.id === state.values.advModel) ?? null;
}

async function init() {
  try {
    const models = (await listModels()).filter((m) => (m.input_shape ?? []).length === 3);
    data.models = models;
    state.set({ advModel: chooseModel(models, state.values.advModel || PREFERRED_MODEL) }, { silent: true });
    await loadModel();
  } catch (err) {
    showError(err);
  }
}

async function loadModel() {
  const model = currentModel();
  data.input = null;
  data.detail = null;
  ++data.attackRequest;
  attackAbort?.abort();
  data.attack = null;
  data.attackMessage = "Pick an input to attack.";
  ++data.curveRequest;
  curveAbort?.abort();
  data.curves = {};
  data.curveProgress = null;
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
  render(state, data);
  loadCurves();
  const first = picker.firstSample(model);
  if (!state.values.advSample && first) state.set({ advSample: first }, { silent: true });
  await loadInput();
}

/** The state's sample as the input, then the attack on it. */
async function loadInput() {
  const file = state.values.advSample;
  render(state, data);
  if (!file) return;
  const input = await loadSample(data, file, () => state.values.advSample === file);
  if (!input) return;
  data.input = input;
  render(state, data);
  attack();
}

function query() {
  const v = state.values;
  const params = new URLSearchParams({ method: v.advMethod, epsilon: String(v.advEps) });
  if (v.advMethod === "pgd") {
    params.set("steps", String(v.advSteps));
    if (v.advRandom) {
      params.set("random_start", "true");
      params.set("seed", String(v.advSeed));
    }
  }
  if (v.advTarget >= 0) params.set("target", String(v.advTarget));
  return params;
}

async function attack() {
  const model = currentModel();
  if (!model || !data.input) return;
  const request = ++data.attackRequest;
  attackAbort?.abort();
  attackAbort = new AbortController();
  try {
    const result = await api(`/api/models/${encodeURIComponent(model.id)}/adversarial?${query()}`,
      { ...inputRequest(data.input), label: "Attacking…", signal: attackAbort.signal });
    if (request !== data.attackRequest) return;
    clearError();
    data.attack = result;
    render(state, data);
  } catch (err) {
    if (request !== data.attackRequest || err.name === "AbortError") return;
    data.attack = null;
    data.attackMessage = "The attack was refused: see the message above.";
    render(state, data);
    showError(err, "attack");
  }
}

// the accuracy-against-ε curves of the chosen model: FGSM, and PGD when asked for
async function loadCurves() {
  const model = currentModel();
  if (!model || !data.detail) return;
  const request = ++data.curveRequest;
  curveAbort?.abort();
  curveAbort = new AbortController();
  const methods = state.values.advPgdCurve ? ["fgsm", "pgd"] : ["fgsm"];
  for (const method of methods) {
    if (data.curves[method]) continue;
    const steps = method === "pgd" ? `&steps=${CURVE_PGD_STEPS}` : "";
    let curve;
    try {
      curve = await fetchResult(`/api/models/${encodeURIComponent(model.id)}/adversarial/robustness?method=${method}${steps}`, {
        label: "Measuring accuracy against ε…",
        signal: curveAbort.signal,
        onProgress: (summary) => {
          if (request !== data.curveRequest) return;
          data.curveProgress = { method, summary };
          render(state, data);
        },
      });
    } catch (err) {
      if (request !== data.curveRequest || err.name === "AbortError") return;
      // a 422: not a digit model, and the API says why
      if (!(err instanceof ApiError && err.status === 422)) showError(err, "the accuracy curve");
      curve = err;
    }
    if (request !== data.curveRequest) return;
    data.curves = { ...data.curves, [method]: curve };
    data.curveProgress = null;
    render(state, data);
  }
}

// --- rendering: the view from the state and `data` -----------------------------------------------------------------
/** The whole view from the state and what it knows; calling it again changes nothing. */
function render(state, data) {
  const v = state.values;
  const model = currentModel();
  showModelOptions($("adv-model"), data.models, v.advModel);
  picker.show({ model, file: v.advSample, input: data.input });
  if (fresh("targets", [data.detail])) {
    const labels = data.detail?.labels ?? [];
    $("adv-target").replaceChildren(new Option("none: away from the prediction", "-1"),
      ...labels.map((label, k) => new Option(`${k}: ${label}`, String(k))));
  }
  renderControls(v);
  if (fresh("result", [data.attack, data.attackMessage])) {
    if (data.attack) renderResult(data.attack);
    else clearResult(data.attackMessage);
  }
  renderCurves(v, data, model);
}

/** The controls show the state; PGD's options only for PGD. */
function renderControls(v) {
  showControl($("adv-method"), v.advMethod);
  showControl($("adv-eps"), v.advEps);
  $("adv-eps-out").textContent = String(v.advEps);
  showControl($("adv-steps"), v.advSteps);
  showControl($("adv-random"), v.advRandom, { checked: true });
  showControl($("adv-seed"), v.advSeed);
  $("adv-seed").disabled = !v.advRandom;
  $("adv-target").value = String(v.advTarget); // a menu: its options may just have been made again
  $("adv-pgd").hidden = v.advMethod !== "pgd";
  $("adv-alpha").textContent = v.advMethod === "pgd"
    ? `step α = 2.5 · ε / steps = ${fmt((2.5 * v.advEps) / Math.max(1, v.advSteps))} (the API's default)` : "";
}

function clearResult(message) {
  $("adv-verdict").textContent = message;
  $("adv-figures").hidden = true;
  $("adv-attention").hidden = true;
  $("adv-downloads").hidden = true;
}

function top(side) {
  return side.predictions[0];
}

function quoted(score) {
  return `“${score.label}” (${pct(score.probability)})`;
}

function verdict(a) {
  const before = top(a.original);
  const after = top(a.adversarial);
  const how = `${a.method.toUpperCase()} at ε = ${a.epsilon}${a.method === "pgd" ? `, ${a.steps} steps of ${fmt(a.alpha)}` : ""}`;
  if (a.targeted) {
    return a.reached_target
      ? `Fooled towards the target: ${how} turned ${quoted(before)} into ${quoted(after)}.`
      : `Not at the target “${a.target_label}” yet: ${how} gives ${quoted(after)} (was ${quoted(before)}).`;
  }
  return a.fooled
    ? `Fooled: ${how} turned ${quoted(before)} into ${quoted(after)}.`
    : `Not fooled: after ${how} the network still says ${quoted(after)} (was ${quoted(before)}).`;
}

function renderResult(a) {
  $("adv-verdict").textContent = verdict(a);
  $("adv-verdict").dataset.fooled = String(a.targeted ? a.reached_target : a.fooled);
  $("adv-figures").hidden = false;
  $("adv-original").src = a.original.picture_png;
  $("adv-adversarial").src = a.adversarial.picture_png;
  $("adv-perturbation").src = a.perturbation.png;
  drawBars($("adv-original-bars"), a.original.predictions);
  drawBars($("adv-adversarial-bars"), a.adversarial.predictions);
  renderScale(a);
  const p = a.perturbation;
  $("adv-norms").replaceChildren(
    el("span", { text: `L∞ = max |δ| = ${fmt(p.linf)} (at most ε = ${a.epsilon}) · L2 = ${fmt(p.l2)} · ` +
      `${pct(p.changed_fraction)} of the pixels changed.` }),
    el("br"),
    el("span", { text: `Loss of “${a.attacked_label}” (${a.targeted ? "the target, lowered" : "the prediction, raised"}): ` +
      `${lossText(a.original.loss)} → ${lossText(a.adversarial.loss)}.` }));
  renderAttention(a);
  $("adv-downloads").hidden = false;
  $("adv-downloads").replaceChildren("Tensors (.npy): ",
    el("a", { href: a.original.npy_url, download: "original.npy", text: "original" }), " · ",
    el("a", { href: p.npy_url, download: "perturbation.npy", text: "perturbation (pixel units)" }), " · ",
    el("a", { href: a.adversarial.npy_url, download: "adversarial.npy", text: "adversarial" }),
    " (the two inputs as the model reads them, normalised; POST them to any page's API)");
}

/** The perturbation's colour scale with its numbers: −ε blue, 0 white, +ε red (δ × amplification in [−1, 1]). */
function renderScale(a) {
  const p = a.perturbation;
  const extra = p.rgb_png
    ? [el("img", { class: "adv-picture adv-rgb", src: p.rgb_png, alt: "The perturbation per colour channel" }),
      el("p", { class: "small muted", text: `Per channel: 0.5 + 0.5 · δ × ${fmt(p.amplification)} (grey: no change).` })]
    : [];
  const inverted = a.pixel_space.invert ? " The model inverts its pictures: shown is the picture's change, −δ." : "";
  $("adv-scale").replaceChildren(
    el("div", { class: "adv-scale-bar", role: "img", "aria-label": `colour scale from −${p.scale} (blue) through 0 (white) to +${p.scale} (red)` }),
    el("div", { class: "adv-scale-ticks" }, el("span", { text: `−${p.scale}` }), el("span", { text: "0" }),
      el("span", { text: `+${p.scale}` })),
    el("p", { class: "small", text: `Amplified ×${fmt(p.amplification)}: full colour is a change of ±${p.scale} ` +
      `(pixels in [0, 1]).${inverted}` }),
    ...extra);
}

function renderAttention(a) {
  const before = a.original.attention;
  const after = a.adversarial.attention;
  $("adv-attention").hidden = !before || !after;
  if (!before || !after) {
    $("adv-attention-note").textContent = a.attention_reason ?? "";
    return;
  }
  const name = a.attention_method === "gradcam" ? "Grad-CAM" : "The gradient (saliency)";
  $("adv-attention-note").textContent = `${name} of each input's top class, at ${before.layer}: the same ` +
    "method and layer for both, so a change in the map is a change in what drives the decision.";
  $("adv-attention-before").src = before.overlay_png;
  $("adv-attention-after").src = after.overlay_png;
  $("adv-attention-before-caption").textContent = `Before: for “${before.target_label}”`;
  $("adv-attention-after-caption").textContent = `After: for “${after.target_label}”`;
}

// --- the accuracy-against-ε curve -------------------------------------------------------------------------
/** The curves (or why there are none), the progress of the one being measured, the state's ε marked. */
function renderCurves(v, data, model) {
  const ready = Object.entries(data.curves).filter(([, c]) => !(c instanceof Error));
  const refused = Object.values(data.curves).find((c) => c instanceof Error);
  const off = Boolean(refused) && !ready.length;
  $("adv-curve").classList.toggle("adv-curve-off", off);
  $("adv-curve-pgd").hidden = v.advPgdCurve || off;
  if (fresh("curves", [data.curves])) {
    $("adv-chart").replaceChildren(...(ready.length ? [chartSvg(ready)] : []));
    if (ready.length || off) $("adv-curve-table").replaceChildren(...(ready.length ? [curveTable(ready)] : []));
  }
  const progress = data.curveProgress;
  const bar = $("adv-curve-progress");
  bar.hidden = !progress || progress.summary.status === "done";
  if (progress) {
    bar.max = progress.summary.total || 1;
    bar.value = progress.summary.done || 0;
    $("adv-curve-note").textContent = `${SERIES[progress.method].name}: ${progressText(progress.summary, "batches")}`;
  } else if (off) {
    $("adv-curve-note").textContent = refused.detail ?? refused.message;
  } else if (ready.length && model) {
    const first = ready[0][1];
    $("adv-curve-note").textContent = `${model.name ?? model.id}: the first ${first.n.toLocaleString("en")} held-out ` +
      `digits (${first.correct.toLocaleString("en")} right without an attack), every one attacked at every ε, ` +
      "untargeted; pixels in [0, 1].";
  }
  markEpsilon();
}

const SVG = "http://www.w3.org/2000/svg";
const svg = (tag, attrs = {}, text = "") => {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text) node.textContent = text;
  return node;
};
const BOX = { width: 560, height: 280, left: 52, right: 130, top: 14, bottom: 42 };

function axes(epsilons) {
  const xMax = Math.max(...epsilons);
  const w = BOX.width - BOX.left - BOX.right;
  const h = BOX.height - BOX.top - BOX.bottom;
  return { x: (e) => BOX.left + (e / xMax) * w, y: (a) => BOX.top + (1 - a) * h, xMax, w, h };
}

function chartSvg(ready) {
  const epsilons = ready[0][1].epsilons;
  const { x, y } = axes(epsilons);
  const chart = svg("svg", { viewBox: `0 0 ${BOX.width} ${BOX.height}`, class: "adv-chart-svg", role: "img",
    "aria-label": "Accuracy against epsilon: " + ready.map(([m, c]) => `${SERIES[m].name} ${c.accuracy.map(pct).join(", ")}`).join("; ") });
  for (const a of [0, 0.25, 0.5, 0.75, 1]) {
    chart.append(svg("line", { x1: BOX.left, x2: x(epsilons.at(-1)), y1: y(a), y2: y(a), class: "adv-grid" }),
      svg("text", { x: BOX.left - 6, y: y(a) + 4, "text-anchor": "end", class: "adv-tick" }, `${100 * a}%`));
  }
  for (const e of epsilons) {
    chart.append(svg("line", { x1: x(e), x2: x(e), y1: y(0), y2: y(0) + 4, class: "adv-axis" }),
      svg("text", { x: x(e), y: y(0) + 17, "text-anchor": "middle", class: "adv-tick" }, String(e)));
  }
  chart.append(svg("line", { x1: BOX.left, x2: x(epsilons.at(-1)), y1: y(0), y2: y(0), class: "adv-axis" }),
    svg("line", { x1: BOX.left, x2: BOX.left, y1: y(0), y2: y(1), class: "adv-axis" }),
    svg("text", { x: (BOX.left + x(epsilons.at(-1))) / 2, y: BOX.height - 4, "text-anchor": "middle", class: "adv-label" },
      "ε (largest change of a pixel in [0, 1])"),
    svg("text", { x: 12, y: y(0.5), "text-anchor": "middle", class: "adv-label", transform: `rotate(-90 12 ${y(0.5)})` },
      "accuracy"));
  ready.forEach(([method, curve], i) => {
    const { colour, name } = SERIES[method];
    const points = curve.epsilons.map((e, k) => `${x(e)},${y(curve.accuracy[k])}`).join(" ");
    chart.append(svg("polyline", { points, fill: "none", stroke: colour, "stroke-width": 2 }));
    curve.epsilons.forEach((e, k) => chart.append(svg("circle", { cx: x(e), cy: y(curve.accuracy[k]), r: 3, fill: colour },
      "")));
    const ly = BOX.top + 12 + 18 * i;
    const lx = x(epsilons.at(-1)) + 14;
    chart.append(svg("line", { x1: lx, x2: lx + 18, y1: ly - 4, y2: ly - 4, stroke: colour, "stroke-width": 2 }),
      svg("text", { x: lx + 22, y: ly, class: "adv-tick" }, name));
  });
  chart.append(svg("line", { id: "adv-eps-line", class: "adv-eps-line", y1: y(0), y2: y(1), x1: -10, x2: -10 }),
    svg("text", { id: "adv-eps-label", class: "adv-tick", y: y(1) - 2, x: -10, "text-anchor": "middle" }, ""));
  return chart;
}

/** The current ε as a dashed line on the chart (when it is within the curve's range). */
function markEpsilon() {
  const line = root.querySelector("#adv-eps-line");
  const label = root.querySelector("#adv-eps-label");
  const ready = Object.values(data.curves).find((c) => c && !(c instanceof Error));
  if (!line || !ready) return;
  const eps = state.values.advEps;
  const { x, xMax } = axes(ready.epsilons);
  const inside = eps <= xMax;
  line.setAttribute("x1", inside ? x(eps) : -10);
  line.setAttribute("x2", inside ? x(eps) : -10);
  label.setAttribute("x", inside ? x(eps) : -10);
  label.textContent = inside ? `ε = ${eps}` : "";
}

function curveTable(ready) {
  const head = el("tr", {}, el("th", { scope: "col", text: "ε" }),
    ...ready.flatMap(([m]) => [el("th", { scope: "col", text: `${SERIES[m].name}: accuracy` }),
      el("th", { scope: "col", text: `${SERIES[m].name}: flipped` })]));
  const rows = ready[0][1].epsilons.map((e, k) => el("tr", {}, el("td", { text: String(e) }),
    ...ready.flatMap(([, c]) => [el("td", { text: pct(c.accuracy[k]) }), el("td", { text: pct(c.flip_rate[k]) })])));
  return el("table", { class: "data adv-table" }, el("caption", { class: "small muted",
    text: "flipped: the share of the digits classified right without an attack that the attack makes wrong" }),
  el("thead", {}, head), el("tbody", {}, ...rows));
}
