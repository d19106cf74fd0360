// Attention maps: pick a model, an input, a method, a class and a layer; the API returns the map at the layer's
// resolution and upsampled, with the picture the model saw. The heatmap is laid over the picture with an opacity
// slider, and several methods can be compared side by side. Heavy methods (Score-CAM, SmoothGrad, Integrated
// Gradients, occlusion) come back as a background job: its card shows a progress bar fed by the job's events,
// then the result is fetched and drawn like any other.
//
// What can explain the model is the API's answer (GET /api/models/{id}/attention): the input it takes (a model
// that takes no images gets a .npy file, the shape to send said on the page), the methods that apply (the others
// shown as unavailable, with the API's reason), the layers, and for a map of class scores (segmentation) the region
// picker. Sequences and volumes are drawn by attention_kinds.js.
//
// state -> data -> render: handlers only change the state (or take an input), the loaders only fill `data` with the
// API's answers, and `render(state, data)` brings the whole page in line with both (docs/frontend.md, "The other pages").
import { ApiError, api, clearError, showError } from "./api.js";
import { layerMapView, legendView, sequenceView, volumeImages, volumeView } from "./attention_kinds.js";
import { drawBars } from "./bars.js";
import { legend, tableOf } from "./colormap.js";
import { Grid } from "./grid.js";
import { DrawingPad, acceptImages, showSamplesFor } from "./inputs.js";
import { architecture, listModels } from "./models.js";
import { RegionPicker, describeRegion, parseRegion } from "./region.js";
import { presenterKeys } from "./presenter.js";
import { changeTracker, chooseModel, showModelOptions } from "./redraw.js";
import { bindControl, createState } from "./state.js";
import { $, el } from "./dom.js";

const DEFAULTS = { model: "", sample: "", method: "gradcam", target: -1, layer: "", opacity: 0.6, compare: [], region: "" };
const IMAGE_TYPES = $("file").accept;
const KIND_WORDS = { sequence: "a sequence", image: "an image", volume: "a volume" };

// --- what the page knows (from the API, and the input the user gave) ------------------------------------------
const data = {
  models: null, // GET /api/models
  methods: [], // GET /api/attention/methods: every method
  scales: null, // the colour scales of the API's map PNGs, for legends
  model: null, // { id, detail, support }: the model's architecture and labels, what can explain it (its /attention)
  modelRequest: 0, // the latest model load's number
  image: null, // the input: { blob, name, version }, an image or a .npy tensor (its name ends in .npy)
  imageVersion: 0, // bumps whenever the image changes, so cached maps of the previous image are not reused
  prediction: null, // { classes } (the model's top classes, most probable first) or { message } (none, and why)
  targets: null, // the classes to explain: { kind: "classes" | "map", options: [[label, value], …] }; null: the top one
  maps: null, // null, { note } (no maps, and why), or { names, cards: [entry, …], layer: { answer, method } | null }
  mapsRequest: 0, // the latest maps request's number: an answer for an older one is dropped
};
const answers = new Map(); // maps already computed for this image, by model, method, class and layer
const following = new Set(); // background jobs whose progress is being followed: { source, job, reject }

const state = createState(DEFAULTS, (changed) => {
  render(state, data);
  if (changed.every((key) => key === "opacity")) return;
  if (changed.includes("model")) {
    loadModel();
    return;
  }
  if (changed.includes("sample") && state.values.sample) {
    loadSample(state.values.sample);
    return;
  }
  loadMaps();
});

const controls = [
  bindControl(state, "method", $("method"), { event: "change" }),
  bindControl(state, "target", $("target"), { event: "change", parse: (el) => Number(el.value) }),
  bindControl(state, "layer", $("layer"), { event: "change" }),
  bindControl(state, "opacity", $("opacity"), { event: "input" }),
];

// --- the handlers: they change the state, or take a new input ------------------------------------------------------
$("model").addEventListener("change", () => state.set({ model: $("model").value, target: -1, layer: "", region: "" }, { push: true }));
document.querySelectorAll("#samples .sample").forEach((button) => {
  button.addEventListener("click", () => state.set({ sample: button.dataset.file, target: -1 }, { push: true }));
});

/** A new input (an upload, a drawing): it replaces any sample. */
function takeImage(blob, name, patch) {
  setImage(blob, name);
  state.set({ sample: "", ...patch });
  render(state, data);
  afterImage();
}

acceptImages({ fileInput: $("file"), onImage: (blob, name) => takeImage(blob, name, { target: -1 }) });
const pad = new DrawingPad($("draw"), {
  onStroke: async () => takeImage(await pad.toBlob28(), "your drawing", {}),
});
$("draw-clear").addEventListener("click", () => pad.clear());

$("learned").addEventListener("click", () => state.set({ method: "learned_attention" }, { push: true }));

/** The methods this model allows, in the menu's order. */
function methodNames() {
  const support = data.model?.support;
  const refused = new Set((support?.methods ?? []).filter((m) => m.available === false).map((m) => m.name));
  return methodOrder().map((m) => m.name).filter((name) => !refused.has(name));
}

/** The methods as the menu lists them: grouped by family, in the API's order within a family. */
function methodOrder() {
  const families = new Map();
  for (const m of data.methods) families.set(m.family, [...(families.get(m.family) ?? []), m]);
  return [...families.values()].flat();
}

// the clicker's keys (presenter.js): the methods this model allows, in the menu's order; Space keeps the method
// shown in the side-by-side comparison, so that the next steps show it beside the others
function showMethod(pick) {
  const names = methodNames();
  if (!names.length) return;
  const name = names[Math.max(0, Math.min(names.length - 1, pick(names, names.indexOf(state.values.method))))];
  if (name !== state.values.method) state.set({ method: name }, { push: true });
}

/** The compare list with `name` in it or not. */
function compareWith(name, keep) {
  return data.methods.map((m) => m.name).filter((n) => (n === name ? keep : state.values.compare.includes(n)));
}

presenterKeys({
  name: "the attention methods this model allows, one map per step (Space keeps the current method in the comparison beside the next ones)",
  next: () => showMethod((names, i) => i + 1),
  prev: () => showMethod((names, i) => (i < 0 ? 0 : i - 1)),
  first: () => showMethod(() => 0),
  last: () => showMethod((names) => names.length - 1),
  toggle: () => {
    if (!data.methods.length) return;
    const name = state.values.method;
    if (!methodNames().includes(name)) return;
    state.set({ compare: compareWith(name, !state.values.compare.includes(name)) }, { push: true });
  },
  // the drawing pad keeps its own keys (as on the explorer)
  ignore: "canvas#draw",
});

const region = new RegionPicker({
  canvas: $("region-grid"),
  inputs: $("region-bounds"),
  onChange: (box) => state.set({ region: box ? box.join(",") : "" }, { push: true }),
});
$("region-whole").addEventListener("click", () => state.set({ region: "" }, { push: true }));

// --- loading: fill `data`, then render ---------------------------------------------------------------------------
/** The input is a .npy tensor (sent as the model's input as it is), not an image. */
function isTensor(input) {
  return input.name.toLowerCase().endsWith(".npy");
}

function setImage(blob, name) {
  data.imageVersion += 1;
  data.image = { blob, name, version: data.imageVersion };
}

function forgetInput() {
  data.image = null;
  data.imageVersion += 1;
  data.prediction = { message: "Pick an input to see what the model predicts." };
}

/** No maps (the model or input changed, or the input was refused): nothing stale stays; `message` says why. */
function clearMaps(message = "") {
  ++data.mapsRequest;
  abandonJobs();
  data.maps = message ? { note: message } : null;
}

async function init() {
  try {
    const [models, list] = await Promise.all([
      listModels(),
      api("/api/attention/methods", { label: "Loading the methods…" }),
    ]);
    data.models = models;
    data.methods = list.methods;
    data.scales = list.scales;
    state.set({ model: chooseModel(models, state.values.model) }, { silent: true });
    render(state, data);
    await loadModel();
  } catch (err) {
    showError(err);
  }
}

async function loadModel() {
  const id = state.values.model;
  const request = ++data.modelRequest;
  clearMaps();
  data.prediction = { message: "Predicting…" };
  render(state, data);
  let detail;
  let support;
  try {
    [detail, support] = await Promise.all([
      architecture(id),
      api(`/api/models/${encodeURIComponent(id)}/attention`, { label: "Asking what can explain it…" }),
    ]);
  } catch (err) {
    if (request !== data.modelRequest) return;
    data.model = null;
    render(state, data);
    showError(err);
    return;
  }
  if (request !== data.modelRequest) return;
  data.model = { id, detail, support };
  // the state keeps to what this model allows: no refused method compared or shown, no layer it does not have
  const refused = new Set(support.methods.filter((m) => m.available === false).map((m) => m.name));
  const compare = state.values.compare.filter((name) => !refused.has(name));
  if (compare.length !== state.values.compare.length) state.set({ compare }, { silent: true });
  if (refused.has(state.values.method)) {
    const fallback = ["gradcam", ...support.methods.map((m) => m.name)].find((name) => !refused.has(name));
    if (fallback) state.set({ method: fallback }, { silent: true });
  }
  if (state.values.layer && !support.layers.includes(state.values.layer)) state.set({ layer: "" }, { silent: true });
  if (!support.explainable) {
    data.targets = null;
    render(state, data);
    return;
  }
  if (!support.takes_images) {
    // a tensor model: its input is a .npy file of the shape the API names; an image chosen before does not fit
    if (data.image && !isTensor(data.image)) forgetInput();
    if (state.values.sample) state.set({ sample: "" }, { silent: true });
    if (!data.image) clearMaps(`Upload a .npy file to see its maps: ${support.expected_input}.`);
    render(state, data);
    if (data.image) await afterImage();
    return;
  }
  if (data.image && isTensor(data.image)) forgetInput(); // a tensor of another model
  render(state, data);
  const digits = takesDigits();
  if (state.values.sample) await loadSample(state.values.sample);
  else if (data.image) await afterImage();
  else if (digits) {
    // a digit to start from; the user draws over it or clears it
    pad.drawText("3");
    const blob = await pad.toBlob28();
    if (request !== data.modelRequest) return;
    setImage(blob, "your drawing");
    render(state, data);
    await afterImage();
  } else {
    const first = [...document.querySelectorAll("#samples .sample")].find((b) => b.dataset.kind !== "digit");
    if (first) state.set({ sample: first.dataset.file });
  }
}

/** The model reads one-channel pictures (the digit models): the drawing pad and the MNIST samples. */
function takesDigits() {
  const id = data.model?.id;
  const model = data.models?.find((m) => m.id === id) ?? data.model?.detail;
  return (model?.input_shape?.[0] ?? 3) === 1;
}

async function loadSample(file) {
  try {
    const blob = await api(`/static/samples/${encodeURIComponent(file)}`, { as: "blob", label: "Loading the sample…" });
    if (state.values.sample !== file) return; // another input was chosen meanwhile
    setImage(blob, file);
    render(state, data);
    await afterImage();
  } catch (err) {
    showError(err, `sample ${file}`);
  }
}

function form() {
  const body = new FormData();
  const { image } = data;
  body.append("image", image.blob, image.name.includes(".") ? image.name : `${image.name}.png`);
  return body;
}

/** A new input: the classes it scores highest (to choose what to explain), then its maps. */
async function afterImage() {
  const support = data.model?.support;
  if (!data.image || !support?.explainable || data.model.id !== state.values.model) return;
  if (support.output_kind !== "classes") {
    // a map of class scores: every class can be explained, by default the one scoring highest over the region
    const labels = data.model.detail?.labels ?? [];
    data.targets = { kind: "map", options: [["the class scoring highest over the region", -1],
      ...Array.from({ length: support.output_shape[0] }, (_, k) => [labels[k] ?? `class ${k}`, k])] };
    data.prediction = { message: "This model's output is a map of class scores (such as segmentation): no single prediction." };
    render(state, data);
    await loadMaps();
    return;
  }
  const { version } = data.image;
  const model = state.values.model;
  const stale = () => data.image?.version !== version || state.values.model !== model;
  try {
    const answer = await api(`/api/models/${encodeURIComponent(model)}/predict?top_k=10`, { body: form(), label: "Predicting…" });
    if (stale()) return;
    data.targets = { kind: "classes", options: [[`the top prediction (${answer.classes[0]?.label ?? "?"})`, -1],
      ...answer.classes.map((c) => [`${c.label} · ${(100 * c.probability).toFixed(1)}%`, c.index])] };
    data.prediction = answer.classes?.length ? { classes: answer.classes } : { message: "" };
    render(state, data);
  } catch (err) {
    if (stale()) return;
    data.targets = null; // the classes of the last input no longer hold
    data.prediction = { message: "No prediction: the input was refused (the message above says why)." };
    const refused = isTensor(data.image) || !support.takes_images; // every map would be refused the same way
    if (refused) clearMaps("No maps: the input was refused (the message above says why).");
    render(state, data);
    showError(err, "predicting");
    if (refused) return;
  }
  await loadMaps();
}

/** Stop following every background job (the page asks for other maps now) and cancel them on the server. */
function abandonJobs() {
  for (const entry of following) {
    entry.source.close();
    fetch(entry.job.status_url, { method: "DELETE" }).catch(() => {}); // ours (the cookie): frees its slot
    entry.reject(new DOMException("another map was asked for", "AbortError"));
  }
  following.clear();
}

/** Follow a background job for a card (`entry`): its progress, then its result; rejects with its error. */
function followJob(job, entry, label) {
  entry.job = job;
  render(state, data);
  return new Promise((resolve, reject) => {
    const source = new EventSource(job.events_url);
    const record = { source, job, reject };
    following.add(record);
    const finish = () => {
      source.close();
      following.delete(record);
    };
    const progress = (event) => {
      if (!event.total) return;
      entry.done = event.done;
      entry.total = event.total;
    };
    source.addEventListener("progress", (event) => {
      progress(JSON.parse(event.data));
      render(state, data);
    });
    source.addEventListener("end", (event) => {
      finish();
      const end = JSON.parse(event.data);
      progress(end);
      if (end.status === "done") {
        entry.jobEnded = true;
        render(state, data);
        resolve(api(end.result_url, { label }));
      } else {
        reject(new ApiError(end.error_status ?? 409, end.error ?? `the computation was ${end.status}`));
      }
    });
    source.addEventListener("error", () => {
      // the browser reconnects by itself (sending Last-Event-ID); it gives up only when the server refuses
      if (source.readyState === EventSource.CLOSED) {
        finish();
        reject(new ApiError(0, "the server stopped reporting this computation's progress: try again"));
      }
    });
  });
}

/** The maps of the state's method and the compared ones for this input, one at a time, into `data.maps`. */
async function loadMaps() {
  const support = data.model?.support;
  if (!data.image || !state.values.model || data.model?.id !== state.values.model || support?.model_id !== state.values.model ||
      !support.explainable) return;
  const request = ++data.mapsRequest;
  abandonJobs();
  clearError();
  const s = { ...state.values };
  const names = [s.method, ...s.compare.filter((n) => n !== s.method)];
  const cards = names.map((name) => ({ name, job: null, jobEnded: false, done: 0, total: 0, answer: null, images: null, error: "" }));
  data.maps = { names, cards, layer: null }; // the layer's map: none until this request's first map arrives
  render(state, data);
  // one at a time: the many-pass methods are heavy, and the first answer should not wait for the others
  for (const [i, name] of names.entries()) {
    if (request !== data.mapsRequest) return;
    const m = data.methods.find((x) => x.name === name);
    const params = new URLSearchParams({ method: name });
    if (m?.uses_target && s.target >= 0) params.set("target", String(s.target));
    if (m?.uses_layer && s.layer) params.set("layer", s.layer);
    // a region selects the class score explained: class-agnostic methods take none
    if (m?.uses_target && support.output_kind === "map" && s.region) params.set("region", s.region);
    if (support.input_kind === "sequence") params.set("include_input_map", "true"); // L numbers, read on hover
    const key = `${s.model}|${data.imageVersion}|${params}`;
    try {
      const label = `Computing ${m?.title ?? name}…`;
      let answer = answers.get(key) ?? await api(`/api/models/${encodeURIComponent(s.model)}/attention?${params}`, {
        body: form(), label,
      });
      if (request !== data.mapsRequest) {
        if (answer.events_url) fetch(answer.status_url, { method: "DELETE" }).catch(() => {}); // nobody will look
        return;
      }
      if (answer.events_url) answer = await followJob(answer, cards[i], label); // 202: a background job
      if (answers.size > 40) answers.clear();
      answers.set(key, answer);
      if (request !== data.mapsRequest) return;
      const images = answer.kind === "volume" ? await volumeImages(answer) : null;
      if (request !== data.mapsRequest) return;
      Object.assign(cards[i], { answer, images });
      if (i === 0) data.maps.layer = { answer, method: m };
      render(state, data);
    } catch (err) {
      if (request !== data.mapsRequest || err.name === "AbortError") return;
      cards[i].error = err instanceof ApiError ? err.detail : String(err);
      render(state, data);
      if (i === 0) showError(err, m?.title ?? name);
    }
  }
}

// --- rendering: the page from the state and `data` ---------------------------------------------------------------
const fresh = changeTracker();

/** The whole page from the state and what the page knows; calling it again changes nothing. */
function render(state, data) {
  const s = state.values;
  const support = data.model?.support ?? null;
  controls.forEach((show) => show());
  showModelOptions($("model"), data.models, s.model);
  renderMethods(s, data, support);
  renderLayers(s, data);
  renderModelNote(support);
  if (support) renderInputMode(support);
  renderRegion(s, support);
  document.querySelectorAll("#samples .sample").forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.file === s.sample)));
  $("input-name").textContent = data.image && support?.explainable && isTensor(data.image) ? `Your file: ${data.image.name}` : "";
  renderTargets(s, data);
  renderPrediction(data);
  renderExplained(s, data, support);
  renderMaps(s, data, support);
  renderLegends(data);
  renderLayerMap(data);
  $("opacity-out").textContent = `${Math.round(s.opacity * 100)}%`;
  document.querySelectorAll(".heat").forEach((image) => { image.style.opacity = String(s.opacity); });
}

/** The method menu and the compare list: every method, the ones this model refuses disabled with the API's reason. */
function renderMethods(s, data, support) {
  const { methods } = data;
  if (fresh("method-lists", [methods])) {
    const families = new Map();
    for (const m of methods) families.set(m.family, [...(families.get(m.family) ?? []), m]);
    $("method").replaceChildren(...[...families].map(([family, list]) => {
      const group = document.createElement("optgroup");
      group.label = family;
      group.append(...list.map((m) => Object.assign(new Option(methodLabel(m), m.name), { className: m.cost?.heavy ? "slow" : "" })));
      return group;
    }));
    $("compare").replaceChildren(...methods.map((m) => {
      const box = el("input", { type: "checkbox", value: m.name });
      box.addEventListener("change", () => state.set({ compare: compareWith(m.name, box.checked) }, { push: true }));
      const label = el("label", {}, box, ` ${m.title}`);
      if (m.cost?.heavy) label.append(el("small", { class: "slow-mark", text: `slow: ${m.cost.passes}` }));
      return label;
    }));
  }
  if (fresh("method-support", [methods, support])) {
    const verdicts = new Map((support?.methods ?? []).map((m) => [m.name, m]));
    const unavailable = (name) => verdicts.get(name)?.available === false;
    for (const option of $("method").options) {
      const method = methods.find((m) => m.name === option.value);
      const title = method?.title ?? option.value;
      option.disabled = unavailable(option.value);
      option.textContent = option.disabled ? `${title} (unavailable)` : method ? methodLabel(method) : title;
      option.title = verdicts.get(option.value)?.reason ?? "";
    }
    document.querySelectorAll("#compare input").forEach((box) => {
      box.disabled = unavailable(box.value);
      box.parentElement.title = verdicts.get(box.value)?.reason ?? "";
    });
    $("learned").hidden = !support || unavailable("learned_attention");
    const refused = (support?.methods ?? []).filter((m) => !m.available);
    $("unavailable").hidden = !support?.explainable || refused.length === 0;
    const title = (name) => methods.find((m) => m.name === name)?.title ?? name;
    $("unavailable").replaceChildren(el("p", { text: "Not available for this model:" }),
      el("ul", {}, ...refused.map((m) => el("li", { "data-method": m.name }, el("strong", { text: title(m.name) }), `: ${m.reason}`))));
  }
  if ($("method").value !== s.method) $("method").value = s.method;
  document.querySelectorAll("#compare input").forEach((box) => { box.checked = s.compare.includes(box.value); });
  const m = methods.find((x) => x.name === s.method);
  if (!m) return;
  $("method-info").textContent = `${m.description} (${m.paper})${m.signed ? " Signed: blue lowers the score, red raises it." : ""}` +
    (m.cost?.heavy ? ` ${slowWords(m)}` : "");
  $("layer").disabled = !m.uses_layer;
  $("target").disabled = !m.uses_target;
}

/** The layers a method may explain at: the model's default, then the ones the API lists. */
function renderLayers(s, data) {
  if (data.model && fresh("layers", [data.model])) {
    const { detail, support } = data.model;
    const nodes = new Map(detail.architecture.nodes.map((n) => [n.id, n]));
    $("layer").replaceChildren(new Option(`the model's default (${support.default_layer ?? "last spatial layer"})`, ""),
      ...support.layers.map((node) => new Option(`${node} · ${nodes.get(node)?.op} · ${nodes.get(node)?.output_shape.join("×")}`, node)));
  }
  if ($("layer").value !== s.layer) $("layer").value = s.layer;
}

function renderModelNote(support) {
  const explainable = support?.explainable ?? true;
  $("model-note").hidden = explainable;
  $("model-note").textContent = explainable ? "" : `No method can explain this model: ${support.reason}`;
}

/** Images (samples, drawing, upload) for a model that takes them; a .npy file, with the shape to send, else. */
function renderInputMode(support) {
  const tensors = !support.takes_images;
  $("input-title").textContent = tensors ? "Input" : "Image";
  $("samples").hidden = tensors;
  if (tensors) $("draw-box").hidden = true;
  else if (support.explainable) {
    const digits = takesDigits();
    $("draw-box").hidden = !digits;
    showSamplesFor(digits);
  }
  $("tensor-box").hidden = !tensors;
  const kind = KIND_WORDS[support.input_kind];
  $("expected-input").textContent = `This model takes ${kind ? `${kind}: ` : ""}${support.expected_input}.`;
  $("file").accept = tensors ? ".npy" : IMAGE_TYPES;
  $("file-label").textContent = tensors ? "Upload a .npy file…" : "Upload an image…";
  $("drop-hint").textContent = tensors ? "or drop one on the page" : "or drop or paste one";
  $("opacity").closest(".control").hidden = support.input_kind === "sequence"; // a sequence has no picture under its map
}

/** The region picker, for a model whose output is a map of class scores; the box the state names on it. */
function renderRegion(s, support) {
  const map = support?.output_kind === "map";
  $("region-panel").hidden = !map;
  if (!map) return;
  if (fresh("region-setup", [support])) {
    const [classes, ...size] = support.output_shape;
    region.setup(support.region_axes, support.region_shape);
    $("region-info").textContent = `The output is a map of class scores: ${classes} classes at ${size.join(" × ")} ` +
      `positions. The score explained is the chosen class's logits summed over a box of it, in output positions ` +
      `(${support.region_axes.map((a) => `${a}0 ≤ ${a} < ${a}1`).join(", ")}): drag it on the grid or type its bounds. ` +
      "The default is the whole map.";
  }
  if (!fresh("region", [support, s.region])) return;
  const box = parseRegion(s.region);
  region.show(box);
  $("region-now").textContent = `Explaining ${box ? describeRegion(box, support.region_axes, support.region_shape)
    : `${describeRegion(null, support.region_axes, support.region_shape)}, the default`}.`;
  $("region-whole").disabled = !box;
}

/** "Class to explain": the classes this input scores highest (or every class of a map), the state's one chosen. */
function renderTargets(s, data) {
  const select = $("target");
  const targets = data.targets;
  const wanted = String(s.target);
  if (fresh("targets", [targets, targets?.kind === "classes" ? wanted : ""])) {
    const options = targets?.options ?? [["the top prediction", -1]];
    select.replaceChildren(...options.map(([label, value]) => new Option(label, String(value))));
    if (targets?.kind === "classes" && s.target >= 0 && !options.some(([, value]) => value === s.target)) {
      select.append(new Option(data.model?.detail?.labels?.[s.target] ?? `class ${s.target}`, wanted));
    }
  }
  const option = [...select.options].find((o) => o.value === wanted);
  if (option && !option.selected) select.value = wanted;
  else if (!option && select.options.length) select.selectedIndex = 0;
}

/** The model's top 5 classes for this input as bars, or the message saying why there are none. */
function renderPrediction(data) {
  if (!fresh("prediction", [data.prediction])) return;
  const classes = data.prediction?.classes;
  if (classes) drawBars($("prediction"), classes.slice(0, 5));
  else if (data.prediction) $("prediction").replaceChildren(el("p", { class: "small muted", text: data.prediction.message }));
}

/** A method's name in the menu: a heavy one (the API's `cost.heavy`: many passes, a background job) marked slow. */
function methodLabel(m) {
  return m.cost?.heavy ? `${m.title} (slow: ${m.cost.passes})` : m.title;
}

/** What makes a heavy method slow, in the API's numbers. */
function slowWords(m) {
  const c = m.cost;
  const steps = c.option && c.default_steps ? ` (${c.option} = ${c.default_steps} by default, fewer if the server's budget asks)` : "";
  return `Slow: ${c.passes}${steps}. It runs in the background; the bar counts the passes.`;
}

const percent = (p) => `${(100 * p).toFixed(p >= 0.1 ? 1 : 2)}%`;
const signedNumber = (v) => (v > 0 ? `+${v}` : String(v).replace("-", "−"));

/** What the ends (and a signed scale's middle) of a legend mean, as the API normalises the maps. */
const LEGEND_WORDS = {
  unsigned: {
    ends: ["least influence", "most influence"],
    note: "Normalised per map: min-max to [0, 1], so 1 is each map's own largest value (CAMs after a ReLU: 0 is " +
      "no positive influence).",
  },
  signed: {
    ends: ["lowers the class score", "no effect", "raises the class score"],
    note: "Normalised per map: divided by its largest |value|, so 0 stays 0 and ±1 is that map's strongest push.",
  },
};

/** Which class the maps explain: the one chosen under "Class to explain", else the predicted class; its bar marked. */
function renderExplained(s, data, support) {
  const target = s.target;
  const labels = data.model?.detail?.labels ?? [];
  const prediction = data.prediction?.classes ?? null;
  const top = prediction?.[0];
  let index = null;
  let text;
  if (support?.output_kind === "map") {
    text = target >= 0 ? `The maps explain “${labels[target] ?? `class ${target}`}” (chosen under Class to explain), its scores summed over the region.`
      : "The maps explain the class scoring highest over the region (the default).";
  } else if (target >= 0) {
    index = target;
    const rank = prediction ? prediction.findIndex((c) => c.index === target) : -1;
    const label = prediction?.[rank]?.label ?? labels[target] ?? `class ${target}`;
    text = `The maps explain “${label}”, chosen under Class to explain` +
      (rank >= 0 ? ` (ranked ${rank + 1}, ${percent(prediction[rank].probability)})` : "") +
      (top ? `; the model predicts “${top.label}”.` : ".");
  } else if (top) {
    index = top.index;
    text = `The maps explain “${top.label}”, the predicted class (the top prediction, ${percent(top.probability)}).`;
  } else {
    text = "The maps explain the predicted class (the top prediction).";
  }
  const names = [s.method, ...s.compare];
  const agnostic = data.methods.filter((m) => names.includes(m.name) && !m.uses_target).map((m) => m.title);
  if (agnostic.length) text += ` ${agnostic.join(", ")} explain${agnostic.length === 1 ? "s" : ""} no class (class-agnostic).`;
  $("explained-class").textContent = text;
  $("prediction").querySelectorAll(".bar-row").forEach((row, i) => {
    const explains = index !== null && prediction?.[i]?.index === index;
    row.classList.toggle("explained", explains);
    const label = (row.getAttribute("aria-label") ?? "").replace(/, the class the maps explain$/, "");
    row.setAttribute("aria-label", explains ? `${label}, the class the maps explain` : label);
  });
}

/** The colour legend beside the maps: one per scale the maps shown use (the API's `scales`), its ends labelled. */
function renderLegends(data) {
  const names = data.maps?.names;
  if (!data.scales || !names || !fresh("legends", [data.scales, names])) return;
  const shown = names.map((name) => data.methods.find((m) => m.name === name)).filter(Boolean);
  const blocks = ["unsigned", "signed"].map((scale) => {
    const users = shown.filter((m) => m.signed === (scale === "signed"));
    if (!users.length) return null;
    const stops = data.scales[scale];
    const words = LEGEND_WORDS[scale];
    const values = [stops[0].value, ...(scale === "signed" ? [0] : []), stops[stops.length - 1].value];
    const bar = el("canvas", { width: 240, height: 12, role: "img",
      "aria-label": `colour scale from ${values[0]} (${words.ends[0]}) to ${values[values.length - 1]} (${words.ends[words.ends.length - 1]})` });
    legend(bar, tableOf(stops));
    const ends = el("div", { class: "key-ends small" }, ...values.map((v, i) =>
      el("span", { class: "key-end" }, el("b", { text: scale === "signed" ? signedNumber(v) : String(v) }), words.ends[i])));
    return el("div", { class: "key-legend", "data-scale": scale },
      el("p", { class: "small key-methods", text: users.map((m) => m.title).join(", ") }), bar, ends,
      el("p", { class: "small muted key-note", text: words.note }));
  });
  $("map-legends").replaceChildren(...blocks.filter(Boolean));
}

// the card of each map entry (made once per entry), and the answer each card shows
const figures = new WeakMap();

/** The map cards (or the note saying why there are none), each in line with its entry. */
function renderMaps(s, data, support) {
  const maps = data.maps;
  if (fresh("maps", [maps])) {
    if (!maps?.cards) {
      $("maps").replaceChildren(...(maps?.note ? [el("p", { class: "small muted maps-note", text: maps.note })] : []));
    } else {
      $("maps").replaceChildren(...maps.cards.map((entry) => {
        if (!figures.has(entry)) figures.set(entry, cardFigure(entry.name));
        return figures.get(entry);
      }));
      $("maps").classList.toggle("single", maps.cards.length === 1);
      $("maps").classList.toggle("wide", support?.input_kind !== "image"); // a sequence or a clip's slices need the width
    }
  }
  for (const entry of maps?.cards ?? []) renderCard(figures.get(entry), entry, s, data, support);
}

function cardFigure(methodName) {
  const m = data.methods.find((x) => x.name === methodName) ?? { title: methodName };
  const figure = el("figure", { class: "map-card panel", "data-method": methodName },
    el("figcaption", {}, el("strong", { text: m.title }), " ", el("span", { class: "small muted" })),
    el("div", { class: "overlay-stack" }, el("img", { class: "picture", alt: "" }), el("img", { class: "heat", alt: "" })),
    el("progress", { class: "job-progress", max: "1", value: "0", hidden: true }),
    ...(m.cost?.heavy ? [el("p", { class: "small slow-note", text: slowWords(m) })] : []),
    el("p", { class: "small muted card-note", text: "computing…" }));
  return figure;
}

/** One card: computing, queued or counting a job's passes, the map drawn, or the error. */
function renderCard(figure, entry, s, data, support) {
  const bar = figure.querySelector(".job-progress");
  const note = figure.querySelector(".card-note");
  if (entry.job) figure.dataset.job = entry.job.id;
  if (entry.total) {
    bar.max = entry.total;
    bar.value = entry.done;
  }
  bar.hidden = !entry.job || entry.jobEnded || Boolean(entry.answer || entry.error);
  if (entry.error) {
    note.textContent = entry.error;
    figure.classList.add("failed");
    return;
  }
  if (!entry.answer) {
    note.textContent = !entry.job ? "computing…" : entry.total ? `${entry.done} of ${entry.total} passes through the network…` : "queued…";
    return;
  }
  if (figure.shown === entry.answer) return;
  figure.shown = entry.answer;
  const { answer } = entry;
  const method = data.methods.find((x) => x.name === entry.name);
  if (answer.kind === "sequence" || answer.kind === "volume") {
    const view = answer.kind === "sequence" ? sequenceView(answer) : volumeView(answer, entry.images, s.opacity);
    figure.querySelector(".overlay-stack").replaceWith(view);
    note.before(legendView(answer, data.scales));
    figure.querySelector("figcaption .muted").textContent =
      `${explained(answer, method, support)} at ${answer.layer} (${answer.layer_shape.join(" × ")}, upsampled to ${answer.input_shape.join(" × ")})`;
    note.textContent = `${Math.round(answer.elapsed_ms)} ms`;
    figure.classList.add("done", `kind-${answer.kind}`);
    return;
  }
  figure.querySelector(".picture").src = answer.picture_png;
  figure.querySelector(".picture").alt = "the input the model saw";
  const heat = figure.querySelector(".heat");
  heat.src = answer.input_map_png;
  heat.alt = `${method?.title ?? answer.method} heatmap`;
  heat.style.opacity = String(s.opacity);
  figure.querySelector("figcaption .muted").textContent = `${explained(answer, method, support)} at ${answer.layer} (${answer.layer_shape.join("×")})`;
  note.textContent = `${Math.round(answer.elapsed_ms)} ms` +
    (answer.signed ? " · signed: red raises the score, blue lowers it" : " · bright: contributed most");
  figure.classList.add("done");
}

/** What the card's map explains: the class, and for a map of class scores the region its score sums over. */
function explained(answer, method, support) {
  const what = answer.target_label !== null ? `for “${answer.target_label}”` : "";
  if (support?.output_kind !== "map") return what;
  if (!method?.uses_target) return `${what} (explains no class score, so no region)`;
  return `${what} over ${describeRegion(answer.region, support.region_axes, support.region_shape)}`;
}

/** The first map at the layer's own resolution, when it has few enough numbers to read. */
function renderLayerMap(data) {
  const layer = data.maps?.layer ?? null;
  if (!fresh("layer-map", [layer])) return;
  const panel = $("layer-panel");
  if (!layer) {
    panel.hidden = true;
    return;
  }
  const { answer, method } = layer;
  if (answer.kind === "sequence" || answer.kind === "volume") {
    const caption = layerMapView($("layer-grid"), answer, method);
    panel.hidden = caption === null;
    if (caption !== null) $("layer-map-caption").textContent = caption;
    return;
  }
  const [h, w] = answer.layer_shape;
  if (h * (w ?? 1) > 400) {
    panel.hidden = true;
    return;
  }
  panel.hidden = false;
  const sum = answer.layer_map.flat().reduce((a, b) => a + b, 0);
  $("layer-map-caption").textContent = method?.name === "learned_attention"
    ? `The attention weights at ${answer.layer}: a softmax over the ${h}×${w} positions, so they add up to ${sum.toFixed(3)}. ` +
      "The network pools its features as a weighted sum with these weights."
    : `${method?.title ?? answer.method} at ${answer.layer}, ${h}×${w}, raw values (the overlay above is this map, ` +
      "normalised and upsampled to the input).";
  new Grid($("layer-grid"), { label: "layer-resolution map", compact: h * w > 49 }).set(answer.layer_map);
}

init();
