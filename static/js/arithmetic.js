// The arithmetic playground: sliders -> one state object (in the URL) -> the API's output-size formula,
// the API's sliding-window steps (animated over editable grids), and the API's volume view.
// state -> data -> render: handlers only change the state, `load` only fills `data` with the API's answers, and
// `render(state, data)` brings the whole page in line with both (docs/frontend.md, "The other pages").
import { api, clearError, showError } from "./api.js";
import { Animator, bindAnimatorControls } from "./animator.js";
import { Grid, formatNumber } from "./grid.js";
import { animatorSteps, presenterKeys } from "./presenter.js";
import { bindControl, createState } from "./state.js";
import { drawVolumes } from "./volume.js";
import { VolumeWindow } from "./volume_window.js";
import { changeTracker } from "./redraw.js";
import { $, el } from "./dom.js";


const DEFAULTS = { op: "conv", size: 7, kernel: 3, padding: 0, stride: 2, dilation: 1, ceil: false, bias: 0,
  depth: 3, filters: 4, x: [], w: [], step: 0 };

// --- the API calls (request and response shapes: app/schemas/arithmetic.py, playground.py) -------------
async function fetchOutputSize(s, signal) {
  // the grid is square, so one axis (W) tells the whole story; its twin H is identical
  const request = {
    kind: s.op === "conv" ? "conv" : "pool",
    ceil_mode: s.op !== "conv" && s.ceil,
    axes: [{ in_size: s.size, kernel_size: s.kernel, stride: s.stride, padding: s.padding, dilation: s.dilation, axis: "W" }],
  };
  const answer = await api("/api/arithmetic/output-size", { json: request, signal, label: "Computing the output size…" });
  return answer.axes[0];
}

async function fetchVolume(s, signal) {
  return api("/api/arithmetic/volume", {
    json: { width: s.size, height: s.size, depth: s.depth, kernel: s.kernel, stride: s.stride,
      padding: s.padding, dilation: s.dilation, num_filters: s.filters },
    signal, label: "Computing the volume…",
  });
}

async function fetchSteps(s, input, kernel, signal) {
  const body = { input, stride: s.stride, padding: s.padding, dilation: s.dilation };
  if (s.op === "conv") Object.assign(body, { kernel, bias: s.bias });
  else Object.assign(body, { kernel_size: s.kernel, ceil_mode: s.ceil });
  return api(`/api/playground/${s.op}`, { json: body, signal, label: "Sliding the window…" });
}

// --- the numbers in the grids (defaults, or the user's edits kept in the URL) --------------------------
function defaultInput(n) {
  // a bright square on a dark ground, with a brighter diagonal: edges for the kernel to find
  const lo = Math.floor(n / 4);
  const hi = Math.ceil((3 * n) / 4);
  return Array.from({ length: n }, (_, r) => Array.from({ length: n }, (_, c) => {
    if (r === c) return 2;
    return r >= lo && r < hi && c >= lo && c < hi ? 1 : 0;
  }));
}

function defaultKernel(k) {
  // a vertical-edge detector: +1 on the left column, -1 on the right, 0 between
  return Array.from({ length: k }, () => Array.from({ length: k }, (_, c) => (k === 1 ? 1 : c === 0 ? 1 : c === k - 1 ? -1 : 0)));
}

function unflatten(list, n) {
  if (list.length !== n * n) return null;
  const values = list.map(Number);
  if (!values.every(Number.isFinite)) return null;
  return Array.from({ length: n }, (_, r) => values.slice(r * n, (r + 1) * n));
}

function currentInput(s) {
  return unflatten(s.x, s.size) ?? defaultInput(s.size);
}

function currentKernel(s) {
  return unflatten(s.w, s.kernel) ?? defaultKernel(s.kernel);
}

// --- what the page knows from the API ---------------------------------------------------------------------
const data = {
  request: 0, // the latest load's number: an answer to an older one is dropped
  size: null, // the output-size answer (the last one that came)
  sizeFailed: false, // the latest output-size request failed: no size, so nothing to make whole
  volume: null, // the 3D view's answer
  playground: null, // the sliding window's answer, in grid coordinates (null after a failure)
  playgroundFailed: false, // the latest sliding-window request failed
  depth: null, // one filter through the whole depth (VolumeWindow.load)
};

/** The settings an answer depends on (everything but the step): an answer for other settings is not drawn on the grids. */
function settingsKey(s) {
  return JSON.stringify({ ...s, step: 0 });
}

// --- rendering ---------------------------------------------------------------------------------------
const inputGrid = new Grid($("input-grid"), {
  label: "input", editable: true,
  onEdit: () => state.set({ x: inputGrid.values.flat() }),
});
const kernelGrid = new Grid($("kernel-grid"), {
  label: "kernel", editable: true,
  onEdit: () => state.set({ w: kernelGrid.values.flat() }),
});
const outputGrid = new Grid($("output-grid"), { label: "output" });
const fresh = changeTracker();

/** The whole page from the state and the API's answers; calling it again changes nothing. */
function render(state, data) {
  const s = state.values;
  controls.forEach((show) => show());
  renderStaticParts(s);
  renderFormula(data);
  if (fresh("volume", [data.volume])) renderVolume(data.volume);
  renderWindow(s, data);
  volumeWindow.show(data.depth);
}

function renderStaticParts(s) {
  const conv = s.op === "conv";
  $("kernel-box").hidden = !conv;
  $("bias-control").hidden = !conv;
  $("ceil-control").hidden = conv;
  $("volume-panel").hidden = !conv;
  $("volume-window").hidden = !conv;
  $("input-caption").textContent = `${s.size} × ${s.size}, padding ${s.padding}`;
  $("kernel-caption").textContent = `${s.kernel} × ${s.kernel}${s.dilation > 1 ? `, dilation ${s.dilation}` : ""}`;
  if (fresh("intro", [s.op, s.kernel])) {
    $("window-intro").replaceChildren(...(conv
      ? ["The window (orange) visits every position; at each one it multiplies the numbers under it by the kernel's, " +
        "adds them up with the bias, and writes one output number. The ", el("em", { text: "same" }),
        " kernel is used everywhere: that is weight sharing."]
      : [`The ${s.kernel}×${s.kernel} window visits every position and keeps the ${s.op === "max_pool" ? "largest number (red frame)" : "average"} ` +
        "of each channel's numbers: pooling down-samples the map; it has no weights to learn."]));
  }
  for (const key of ["size", "kernel", "padding", "stride", "dilation", "depth", "filters"]) {
    $(`${key}-out`).textContent = String(s[key]);
  }
}

function renderFormula(data) {
  const result = data.size;
  if (!fresh("formula", [result, data.sizeFailed])) return;
  const ok = Boolean(result) && !data.sizeFailed;
  if (result) {
    // the last answer's formula and notes stay after a failure; its numbers and suggestions do not
    $("formula").textContent = result.formula; // the engine writes the lecture's letters: F kernel, d dilation
    $("explanation").textContent = result.explanation || "";
    $("notes").replaceChildren(...(result.notes || []).map((note) => el("li", { text: note })));
  }
  $("worked").textContent = ok ? result.worked : "";
  $("out-size").textContent = ok ? `${result.size} × ${result.size}` : "–";
  const badge = $("exact-badge");
  badge.textContent = !ok ? "" : result.exact ? "a whole number: every window fits" : "not a whole number";
  badge.className = !ok ? "badge" : `badge ${result.exact ? "ok" : "warn"}`;
  $("inexact").hidden = !ok || result.exact;
  // a button only for what these controls can set, so that every button does what it says; the rest (padding one
  // side only, a value beyond a slider) is listed as text, with the reason
  const buttons = [];
  const others = [];
  for (const suggestion of ok ? result.suggestions || [] : []) {
    const { patch, reason } = suggestionPatch(suggestion);
    if (patch) {
      const button = el("button", { type: "button", class: "secondary", text: suggestion.text });
      button.addEventListener("click", () => state.set(patch, { push: true }));
      buttons.push(el("li", {}, button));
    } else {
      others.push(el("li", { text: `${suggestion.text}: ${reason}` }));
    }
  }
  $("suggestions").replaceChildren(...buttons);
  $("suggestions-intro").hidden = buttons.length === 0;
  $("other-suggestions").replaceChildren(...others);
  $("other-fixes").hidden = others.length === 0;
}

/** The state change a suggestion asks for, if the page's sliders can make it (else `patch` is null and `reason` says why). */
function suggestionPatch(suggestion) {
  const { parameter, value } = suggestion;
  const fits = (key, v) => {
    const input = $(key);
    return Number.isInteger(v) && v >= Number(input.min) && v <= Number(input.max);
  };
  const beyond = (key, label) => ({ patch: null, reason: `the ${label} slider goes from ${$(key).min} to ${$(key).max}` });
  if (parameter === "stride") return fits("stride", value) ? { patch: { stride: value } } : beyond("stride", "stride");
  if (parameter === "in_size") return fits("size", value) ? { patch: { size: value, x: [] } } : beyond("size", "input size");
  if (parameter === "padding" && Array.isArray(value)) {
    if (value[0] !== value[1]) return { patch: null, reason: "this page pads both sides equally" };
    return fits("padding", value[0]) ? { patch: { padding: value[0] } } : beyond("padding", "padding");
  }
  return { patch: null, reason: "this page has no control for it" };
}

function renderVolume(volume) {
  if (!volume) return;
  drawVolumes($("volume-svg"), volume, $("volume-legend"));
  $("volume-lines").replaceChildren(...(volume.explanation || []).map((line) => el("li", { text: line })));
}

/** One step's sum, as text and spans: the products (conv), the numbers (max, average), the result. */
function stepParts(step, op) {
  const values = step.values ?? [];
  const result = el("span", { class: "result", text: formatNumber(step.result) });
  const head = `out[${step.out_index.join(", ")}] = `;
  if (op === "conv") {
    const bias = formatNumber(step.bias ?? 0);
    return [head, ...termParts(values, step.kernel ?? [], step.products ?? []),
      ` + b(${bias}) = ${formatNumber(step.sum)} + ${bias} = `, result];
  }
  if (op === "max_pool") return [`${head}max(${values.flat(Infinity).map(formatNumber).join(", ")}) = `, result];
  return [`${head}(${values.flat(Infinity).map(formatNumber).join(" + ")}) / ${step.divisor} = `, result];
}

function termParts(values, kernel, products) {
  const v = values.flat(Infinity);
  const k = kernel.flat(Infinity);
  const p = products.flat(Infinity);
  const signed = (x) => (x < 0 ? `(${formatNumber(x).replace("-", "−")})` : formatNumber(x));
  return p.flatMap((_, i) => [...(i ? [" + "] : []), el("span", { class: "term", text: `${signed(v[i])}·${signed(k[i])}` })]);
}

/** The grids and the step's sum: the input (marked by the answer for these settings), the kernel, the output so far. */
function renderWindow(s, data) {
  const played = data.playground;
  const current = played && played.key === settingsKey(s) ? played : null;
  const input = currentInput(s);
  const pad = current ? current.pad : [s.padding, s.padding, s.padding, s.padding];
  const padText = s.op === "max_pool" ? "−∞" : "0";
  if (fresh("input", [JSON.stringify([input, pad, padText])])) inputGrid.set(input, { pad, padText });
  if (s.op === "conv" && fresh("kernel", [JSON.stringify(currentKernel(s))])) kernelGrid.set(currentKernel(s));
  const index = played ? Math.max(0, Math.min(played.steps.length - 1, s.step)) : 0;
  if (!fresh("window", [played, data.playgroundFailed, current, index, inputGrid.cells])) return;
  // the input: the window at this step, and the cells no window ever reads
  const step = current?.steps[index];
  inputGrid.clear("window-span");
  if (step) {
    inputGrid.mark("window", step.window);
    inputGrid.markData("unread", current.unread);
  } else {
    inputGrid.clear("window");
    inputGrid.clear("unread");
  }
  if (step && s.op === "conv") inputGrid.annotate(step.window.map(([r, c], i) => ({ r, c, text: `×${formatNumber(step.kernelFlat[i])}` })));
  else inputGrid.annotate([]);
  if (step?.argmax && s.op !== "conv") inputGrid.mark("argmax", [step.argmax]);
  else inputGrid.clear("argmax");
  // the output: the last answer (an error leaves none), filled up to this step
  if (!played) {
    if (data.playgroundFailed) outputGrid.set([[null]]);
    $("step-text").replaceChildren();
    $("output-caption").textContent = "";
    return;
  }
  const out = played.output.map((row) => row.map(() => null));
  for (let i = 0; i <= index; i += 1) {
    const [r, c] = played.steps[i].out_index;
    out[r][c] = played.steps[i].result;
  }
  outputGrid.set(out, { scale: played.scale });
  outputGrid.markData("current", [played.steps[index].out_index]);
  $("step-text").replaceChildren(...stepParts(played.steps[index], played.op));
  $("output-caption").textContent = `${played.output.length} × ${played.output[0]?.length ?? 0}` +
    (played.unread.length ? ` · ${played.unread.length} input cells never read` : "");
}

// the animator steps the state's `step` (its buttons, the range, the clicker's keys); the page redraws from it
const animator = new Animator({
  figure: $("window-panel"),
  render: (index) => {
    state.set({ step: index }, { silent: true });
    render(state, data);
  },
  interval: 600,
});
const volumeWindow = new VolumeWindow($("volume-window"));
bindAnimatorControls(animator, $("window-panel"));
$("speed").addEventListener("change", () => { animator.interval = Number($("speed").value); });
// the clicker's keys (presenter.js): the window's positions, as the panel's buttons step them
presenterKeys({
  name: "the sliding window's positions (one output number per step); Space plays them",
  ...animatorSteps(animator),
});

// Convert the API's playground answer into grid coordinates (the padded input) once per answer.
function preparePlayground(result, s) {
  const kernel = result.kernel;
  const kFlat = kernel ? kernel.flat(Infinity) : [];
  const steps = result.steps.map((step) => {
    const window = step.rows.flatMap((r) => step.cols.map((c) => [r, c]));
    return { ...step, out_index: step.out, window, kernelFlat: kFlat, kernel };
  });
  const finite = result.output.flat().filter(Number.isFinite);
  const [[top, bottom], [left, right]] = result.padding;
  const pad = [top, bottom, left, right];
  // input cells no window ever covers: what floor() throws away when the stride does not divide evenly
  const seen = new Set();
  for (const step of steps) for (const [r, c] of step.window) seen.add(`${r},${c}`);
  const unread = [];
  for (let r = 0; r < s.size; r += 1) {
    for (let c = 0; c < s.size; c += 1) {
      if (!seen.has(`${r + pad[0]},${c + pad[2]}`)) unread.push([r, c]);
    }
  }
  return { ...result, steps, pad, unread, op: s.op, key: settingsKey(s), scale: Math.max(1e-9, ...finite.map(Math.abs)) };
}

// --- loading: fill `data` for the current settings, then render ------------------------------------------------
let controllers = [];
let loadTimer = null;
function scheduleLoad(keepStep) {
  clearTimeout(loadTimer);
  loadTimer = setTimeout(() => load(keepStep), 60);
}

async function load(keepStep) {
  const request = ++data.request;
  const latest = () => request === data.request;
  const s = { ...state.values };
  controllers.forEach((c) => c.abort());
  controllers = [new AbortController(), new AbortController(), new AbortController(), new AbortController()];
  const [sizeCtl, volumeCtl, stepsCtl, depthCtl] = controllers;
  clearError();
  render(state, data);
  const sizePromise = fetchOutputSize(s, sizeCtl.signal).then((answer) => {
    if (!latest()) return;
    data.size = answer;
    data.sizeFailed = false;
    render(state, data);
  });
  const volumePromise = s.op === "conv" ? fetchVolume(s, volumeCtl.signal).then((answer) => {
    if (!latest()) return;
    data.volume = answer;
    render(state, data);
  }) : Promise.resolve();
  const stepsPromise = fetchSteps(s, currentInput(s), currentKernel(s), stepsCtl.signal).then((result) => {
    if (!latest()) return;
    data.playground = preparePlayground(result, s);
    data.playgroundFailed = false;
    animator.setSteps(data.playground.steps.length, keepStep ? s.step : 0); // sets the step, renders
    render(state, data);
  });
  const depthPromise = s.op === "conv" ? VolumeWindow.load(s, depthCtl.signal).then((answer) => {
    if (!latest()) return;
    data.depth = answer;
    render(state, data);
  }) : Promise.resolve();
  const results = await Promise.allSettled([sizePromise, volumePromise, stepsPromise, depthPromise]);
  if (!latest()) return;
  const failure = results.find((r) => r.status === "rejected" && r.reason?.name !== "AbortError");
  if (!failure) return;
  showError(failure.reason);
  if (results[2].status === "rejected") {
    data.playground = null;
    data.playgroundFailed = true;
  }
  if (results[0].status === "rejected") data.sizeFailed = true;
  render(state, data);
}

const state = createState(DEFAULTS, (changed) => {
  if (changed.length === 1 && changed[0] === "step") {
    animator.goto(state.values.step); // sets the step, renders
    return;
  }
  // numbers typed for another size of grid do not fit this one: back to the default numbers
  const s = state.values;
  if (changed.includes("size") && !unflatten(s.x, s.size)) state.set({ x: [] }, { silent: true });
  if (changed.includes("kernel") && !unflatten(s.w, s.kernel)) state.set({ w: [] }, { silent: true });
  render(state, data);
  scheduleLoad(false);
});

const controls = ["op", "size", "kernel", "padding", "stride", "dilation", "ceil", "bias", "depth", "filters"]
  .map((key) => bindControl(state, key, $(key), { event: ["op", "ceil", "bias"].includes(key) ? "change" : "input" }));

$("reset-grids").addEventListener("click", () => state.set({ x: [], w: [] }));

load(true);
