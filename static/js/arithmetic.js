// The arithmetic playground: sliders -> one state object (in the URL) -> the API's output-size formula,
// the API's sliding-window steps (animated over editable grids), and the API's volume view.
import { api, clearError, showError } from "./api.js";
import { Animator, bindAnimatorControls } from "./animator.js";
import { Grid, formatNumber } from "./grid.js";
import { animatorSteps, presenterKeys } from "./presenter.js";
import { bindControl, createState } from "./state.js";
import { drawVolumes } from "./volume.js";
import { VolumeWindow } from "./volume_window.js";
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

let playground = null; // the API's answer for the current settings
let controllers = [];

function renderFormula(result) {
  $("formula").textContent = result.formula; // the engine writes the lecture's letters: F kernel, d dilation
  $("worked").textContent = result.worked;
  $("out-size").textContent = `${result.size} × ${result.size}`;
  const badge = $("exact-badge");
  badge.textContent = result.exact ? "a whole number: every window fits" : "not a whole number";
  badge.className = `badge ${result.exact ? "ok" : "warn"}`;
  $("inexact").hidden = result.exact;
  $("explanation").textContent = result.explanation || "";
  // a button only for what these controls can set, so that every button does what it says; the rest (padding one
  // side only, a value beyond a slider) is listed as text, with the reason
  const buttons = [];
  const others = [];
  for (const suggestion of result.suggestions || []) {
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
  $("notes").replaceChildren(...(result.notes || []).map((note) => {
    const li = document.createElement("li");
    li.textContent = note;
    return li;
  }));
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
  drawVolumes($("volume-svg"), volume, $("volume-legend"));
  $("volume-lines").replaceChildren(...(volume.explanation || []).map((line) => {
    const li = document.createElement("li");
    li.textContent = line;
    return li;
  }));
}

function stepText(step, op) {
  const products = step.products ?? [];
  const values = step.values ?? [];
  if (op === "conv") {
    const terms = products.flat(Infinity).length
      ? flatTerms(values, step.kernel ?? [], products)
      : "";
    return `out[${step.out_index.join(", ")}] = ${terms} + b(${formatNumber(step.bias ?? 0)}) = ` +
      `${formatNumber(step.sum)} + ${formatNumber(step.bias ?? 0)} = <span class="result">${formatNumber(step.result)}</span>`;
  }
  const flat = values.flat(Infinity).map(formatNumber).join(", ");
  if (op === "max_pool") return `out[${step.out_index.join(", ")}] = max(${flat}) = <span class="result">${formatNumber(step.result)}</span>`;
  return `out[${step.out_index.join(", ")}] = (${values.flat(Infinity).map(formatNumber).join(" + ")}) / ${step.divisor} = ` +
    `<span class="result">${formatNumber(step.result)}</span>`;
}

function flatTerms(values, kernel, products) {
  const v = values.flat(Infinity);
  const k = kernel.flat(Infinity);
  const p = products.flat(Infinity);
  const signed = (x) => (x < 0 ? `(${formatNumber(x).replace("-", "−")})` : formatNumber(x));
  return p.map((_, i) => `<span class="term">${signed(v[i])}·${signed(k[i])}</span>`).join(" + ");
}

function renderStep(index) {
  if (!playground) return;
  const step = playground.steps[index];
  const s = state.values;
  inputGrid.mark("window", step.window);
  inputGrid.clear("window-span");
  // outputs computed so far
  const out = playground.output.map((row) => row.map(() => null));
  for (let i = 0; i <= index; i += 1) {
    const [r, c] = playground.steps[i].out_index;
    out[r][c] = playground.steps[i].result;
  }
  outputGrid.set(out, { scale: playground.scale });
  outputGrid.markData("current", [step.out_index]);
  if (s.op === "conv") {
    inputGrid.annotate(step.window.map(([r, c], i) => ({ r, c, text: `×${formatNumber(step.kernelFlat[i])}` })));
  } else {
    inputGrid.annotate([]);
    if (step.argmax) inputGrid.mark("argmax", [step.argmax]);
    else inputGrid.clear("argmax");
  }
  $("step-text").innerHTML = stepText(step, s.op);
  if (state.values.step !== index) state.set({ step: index }, { silent: true });
}

const animator = new Animator({ figure: $("window-panel"), render: renderStep, interval: 600 });
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
  return { ...result, steps, pad: [top, bottom, left, right], scale: Math.max(1e-9, ...finite.map(Math.abs)) };
}

function markUnread(s) {
  // input cells no window ever covers: what floor() throws away when the stride does not divide evenly
  const seen = new Set();
  for (const step of playground.steps) for (const [r, c] of step.window) seen.add(`${r},${c}`);
  const unread = [];
  for (let r = 0; r < s.size; r += 1) {
    for (let c = 0; c < s.size; c += 1) {
      if (!seen.has(`${r + playground.pad[0]},${c + playground.pad[2]}`)) unread.push([r, c]);
    }
  }
  inputGrid.markData("unread", unread);
  return unread.length;
}

let refreshTimer = null;
function scheduleRefresh(changed = []) {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => refresh(changed), 60);
}

async function refresh(changed = []) {
  const s = { ...state.values };
  controllers.forEach((c) => c.abort());
  controllers = [new AbortController(), new AbortController(), new AbortController(), new AbortController()];
  const [sizeCtl, volumeCtl, stepsCtl, depthCtl] = controllers;
  showStaticParts(s);
  const input = currentInput(s);
  const kernel = currentKernel(s);
  inputGrid.set(input, { pad: [s.padding, s.padding, s.padding, s.padding] });
  if (s.op === "conv") kernelGrid.set(kernel);
  clearError();
  const sizePromise = fetchOutputSize(s, sizeCtl.signal).then(renderFormula);
  const volumePromise = s.op === "conv"
    ? fetchVolume(s, volumeCtl.signal).then(renderVolume)
    : Promise.resolve();
  const stepsPromise = fetchSteps(s, input, kernel, stepsCtl.signal).then((result) => {
    playground = preparePlayground(result, s);
    inputGrid.set(input, { pad: playground.pad, padText: s.op === "max_pool" ? "−∞" : "0" });
    const unread = markUnread(s);
    $("output-caption").textContent = `${result.output.length} × ${result.output[0]?.length ?? 0}` +
      (unread ? ` · ${unread} input cells never read` : "");
    const keepStep = changed.length === 0 ? s.step : 0;
    animator.setSteps(playground.steps.length, keepStep);
  });
  const depthPromise = s.op === "conv" ? volumeWindow.update(s, depthCtl.signal) : Promise.resolve();
  const results = await Promise.allSettled([sizePromise, volumePromise, stepsPromise, depthPromise]);
  const failure = results.find((r) => r.status === "rejected" && r.reason?.name !== "AbortError");
  if (failure) {
    showError(failure.reason);
    if (results[2].status === "rejected") {
      playground = null;
      outputGrid.set([[null]]);
      $("step-text").textContent = "";
    }
    if (results[0].status === "rejected") {
      // no size, so nothing to make whole: the last answer's suggestions would set sliders for other settings
      $("out-size").textContent = "–";
      $("worked").textContent = "";
      $("exact-badge").textContent = "";
      $("exact-badge").className = "badge";
      $("inexact").hidden = true;
      $("suggestions").replaceChildren();
      $("other-suggestions").replaceChildren();
    }
  }
}

function showStaticParts(s) {
  const conv = s.op === "conv";
  $("kernel-box").hidden = !conv;
  $("bias-control").hidden = !conv;
  $("ceil-control").hidden = conv;
  $("volume-panel").hidden = !conv;
  $("volume-window").hidden = !conv;
  $("input-caption").textContent = `${s.size} × ${s.size}, padding ${s.padding}`;
  $("kernel-caption").textContent = `${s.kernel} × ${s.kernel}${s.dilation > 1 ? `, dilation ${s.dilation}` : ""}`;
  $("window-intro").innerHTML = conv
    ? "The window (orange) visits every position; at each one it multiplies the numbers under it by the kernel's, " +
      "adds them up with the bias, and writes one output number. The <em>same</em> kernel is used everywhere: that is weight sharing."
    : `The ${s.kernel}×${s.kernel} window visits every position and keeps the ${s.op === "max_pool" ? "largest number (red frame)" : "average"} ` +
      "of each channel's numbers: pooling down-samples the map; it has no weights to learn.";
  for (const key of ["size", "kernel", "padding", "stride", "dilation", "depth", "filters"]) {
    $(`${key}-out`).textContent = String(s[key]);
  }
}

const state = createState(DEFAULTS, (changed) => {
  controls.forEach((show) => show());
  if (changed.length === 1 && changed[0] === "step") {
    animator.goto(state.values.step);
    return;
  }
  if (changed.includes("size")) state.values.x = unflatten(state.values.x, state.values.size) ? state.values.x : [];
  if (changed.includes("kernel")) state.values.w = unflatten(state.values.w, state.values.kernel) ? state.values.w : [];
  scheduleRefresh(changed);
});

const controls = ["op", "size", "kernel", "padding", "stride", "dilation", "ceil", "bias", "depth", "filters"]
  .map((key) => bindControl(state, key, $(key), { event: ["op", "ceil", "bias"].includes(key) ? "change" : "input" }));

$("reset-grids").addEventListener("click", () => state.set({ x: [], w: [] }));

refresh();
