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
import { ApiError, api, clearError, showError } from "./api.js";
import { layerMapView, legendView, sequenceView, volumeView } from "./attention_kinds.js";
import { drawBars } from "./bars.js";
import { legend, tableOf } from "./colormap.js";
import { Grid } from "./grid.js";
import { DrawingPad, acceptImages, showSamplesFor } from "./inputs.js";
import { architecture, fillModelSelect } from "./models.js";
import { RegionPicker, describeRegion, parseRegion } from "./region.js";
import { presenterKeys } from "./presenter.js";
import { bindControl, createState } from "./state.js";
import { $, el, escapeHtml as esc } from "./dom.js";

const DEFAULTS = { model: "", sample: "", method: "gradcam", target: -1, layer: "", opacity: 0.6, compare: [], region: "" };
const IMAGE_TYPES = $("file").accept;
const KIND_WORDS = { sequence: "a sequence", image: "an image", volume: "a volume" };

let models = [];
let methods = [];
let scales = null; // the colour scales of the API's map PNGs, for legends
let detail = null; // the model's architecture and labels
let support = null; // what can explain the model (GET /api/models/{id}/attention)
let prediction = null; // the model's top classes for this input (POST /api/models/{id}/predict), most probable first
let image = null; // the input: { blob, name }, an image or a .npy tensor (its name ends in .npy)
let requestToken = 0;
let modelToken = 0;
let imageVersion = 0; // bumps whenever the image changes, so cached maps of the previous image are not reused
const answers = new Map(); // maps already computed for this image, by model, method, class and layer
const following = new Set(); // background jobs whose progress is being followed: { source, job, reject }

const state = createState(DEFAULTS, (changed) => {
  controls.forEach((show) => show());
  if (changed.includes("opacity")) {
    applyOpacity();
    if (changed.length === 1) return;
  }
  if (changed.includes("model")) {
    loadModel();
    return;
  }
  if (changed.includes("sample") && state.values.sample) {
    loadSample(state.values.sample);
    return;
  }
  if (changed.includes("method")) describeMethod();
  if (changed.includes("region")) showRegion();
  refresh();
});

const controls = [
  bindControl(state, "method", $("method"), { event: "change" }),
  bindControl(state, "target", $("target"), { event: "change", parse: (el) => Number(el.value) }),
  bindControl(state, "layer", $("layer"), { event: "change" }),
  bindControl(state, "opacity", $("opacity"), { event: "input" }),
];

function applyOpacity() {
  $("opacity-out").textContent = `${Math.round(state.values.opacity * 100)}%`;
  document.querySelectorAll(".heat").forEach((img) => { img.style.opacity = String(state.values.opacity); });
}

$("model").addEventListener("change", () => state.set({ model: $("model").value, target: -1, layer: "", region: "" }, { push: true }));
document.querySelectorAll("#samples .sample").forEach((button) => {
  button.addEventListener("click", () => state.set({ sample: button.dataset.file, target: -1 }, { push: true }));
});
acceptImages({
  fileInput: $("file"),
  onImage: (blob, name) => {
    image = { blob, name };
    imageVersion += 1;
    markSample("");
    state.set({ sample: "", target: -1 });
    afterImage();
  },
});
const pad = new DrawingPad($("draw"), {
  onStroke: async () => {
    image = { blob: await pad.toBlob28(), name: "your drawing" };
    imageVersion += 1;
    markSample("");
    state.set({ sample: "" });
    afterImage();
  },
});
$("draw-clear").addEventListener("click", () => pad.clear());

$("learned").addEventListener("click", () => state.set({ method: "learned_attention" }, { push: true }));

// the clicker's keys (presenter.js): the methods this model allows, in the menu's order; Space keeps the method
// shown in the side-by-side comparison, so that the next steps show it beside the others
function methodNames() {
  return [...$("method").options].filter((option) => !option.disabled).map((option) => option.value);
}

function showMethod(pick) {
  const names = methodNames();
  if (!names.length) return;
  const name = names[Math.max(0, Math.min(names.length - 1, pick(names, names.indexOf(state.values.method))))];
  if (name !== state.values.method) state.set({ method: name }, { push: true });
}

presenterKeys({
  name: "the attention methods this model allows, one map per step (Space keeps the current method in the comparison beside the next ones)",
  next: () => showMethod((names, i) => i + 1),
  prev: () => showMethod((names, i) => (i < 0 ? 0 : i - 1)),
  first: () => showMethod(() => 0),
  last: () => showMethod((names) => names.length - 1),
  toggle: () => {
    if (!methods.length) return;
    const name = state.values.method;
    const box = [...document.querySelectorAll("#compare input")].find((input) => input.value === name);
    if (!box || box.disabled) return;
    const keep = !state.values.compare.includes(name);
    box.checked = keep;
    const chosen = methods.map((m) => m.name).filter((n) => (n === name ? keep : state.values.compare.includes(n)));
    state.set({ compare: chosen }, { push: true });
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

/** The input is a .npy tensor (sent as the model's input as it is), not an image. */
function isTensor(input) {
  return input.name.toLowerCase().endsWith(".npy");
}

function forgetInput() {
  image = null;
  imageVersion += 1;
  $("input-name").textContent = "";
  showPrediction(null, "Pick an input to see what the model predicts.");
}

/** No maps on screen (the model or input changed, or the input was refused): nothing stale stays. */
function clearMaps(message = "") {
  ++requestToken;
  abandonJobs();
  $("maps").replaceChildren(...(message ? [Object.assign(document.createElement("p"), { className: "small muted maps-note", textContent: message })] : []));
  $("layer-panel").hidden = true;
}

function markSample(file) {
  document.querySelectorAll("#samples .sample").forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.file === file)));
}

async function init() {
  try {
    const [filled, list] = await Promise.all([
      fillModelSelect($("model"), state.values.model),
      api("/api/attention/methods", { label: "Loading the methods…" }),
    ]);
    models = filled.models;
    methods = list.methods;
    scales = list.scales;
    fillMethods();
    state.set({ model: filled.chosen }, { silent: true });
    await loadModel();
  } catch (err) {
    showError(err);
  }
}

function fillMethods() {
  const families = new Map();
  for (const m of methods) families.set(m.family, [...(families.get(m.family) ?? []), m]);
  $("method").replaceChildren(...[...families].map(([family, list]) => {
    const group = document.createElement("optgroup");
    group.label = family;
    group.append(...list.map((m) => Object.assign(new Option(methodLabel(m), m.name), { className: m.cost?.heavy ? "slow" : "" })));
    return group;
  }));
  $("method").value = state.values.method;
  $("compare").replaceChildren(...methods.map((m) => {
    const label = document.createElement("label");
    const box = document.createElement("input");
    box.type = "checkbox";
    box.value = m.name;
    box.checked = state.values.compare.includes(m.name);
    box.addEventListener("change", () => {
      const chosen = methods.map((x) => x.name).filter((name) => name === box.value ? box.checked : state.values.compare.includes(name));
      state.set({ compare: chosen }, { push: true });
    });
    label.append(box, ` ${m.title}`);
    if (m.cost?.heavy) label.append(el("small", { class: "slow-mark", text: `slow: ${m.cost.passes}` }));
    return label;
  }));
  describeMethod();
}

function describeMethod() {
  const m = methods.find((x) => x.name === state.values.method);
  if (!m) return;
  $("method-info").textContent = `${m.description} (${m.paper})${m.signed ? " Signed: blue lowers the score, red raises it." : ""}` +
    (m.cost?.heavy ? ` ${slowWords(m)}` : "");
  $("layer").disabled = !m.uses_layer;
  $("target").disabled = !m.uses_target;
  document.querySelectorAll("#compare input").forEach((box) => { box.checked = state.values.compare.includes(box.value); });
}

// --- reading the maps: slow methods, the colour legend, the prediction and the class explained ----------------

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

/** The colour legend beside the maps: one per scale the maps shown use (the API's `scales`), its ends labelled. */
function showLegends(names) {
  if (!scales) return;
  const shown = names.map((name) => methods.find((m) => m.name === name)).filter(Boolean);
  const blocks = ["unsigned", "signed"].map((scale) => {
    const users = shown.filter((m) => m.signed === (scale === "signed"));
    if (!users.length) return null;
    const stops = scales[scale];
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

/** The model's top 5 classes for this input as bars (`classes` from /predict), or `message` when there are none. */
function showPrediction(classes, message = "") {
  prediction = classes?.length ? classes : null;
  if (prediction) drawBars($("prediction"), prediction.slice(0, 5));
  else $("prediction").replaceChildren(el("p", { class: "small muted", text: message }));
  showExplained();
}

/** Which class the maps explain: the one chosen under "Class to explain", else the predicted class; its bar marked. */
function showExplained() {
  const target = state.values.target;
  const labels = detail?.labels ?? [];
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
  const names = [state.values.method, ...state.values.compare];
  const agnostic = methods.filter((m) => names.includes(m.name) && !m.uses_target).map((m) => m.title);
  if (agnostic.length) text += ` ${agnostic.join(", ")} explain${agnostic.length === 1 ? "s" : ""} no class (class-agnostic).`;
  $("explained-class").textContent = text;
  $("prediction").querySelectorAll(".bar-row").forEach((row, i) => {
    const explains = index !== null && prediction?.[i]?.index === index;
    row.classList.toggle("explained", explains);
    const label = (row.getAttribute("aria-label") ?? "").replace(/, the class the maps explain$/, "");
    row.setAttribute("aria-label", explains ? `${label}, the class the maps explain` : label);
  });
}

async function loadModel() {
  const id = state.values.model;
  $("model").value = id;
  const token = ++modelToken;
  clearMaps();
  showPrediction(null, "Predicting…");
  try {
    [detail, support] = await Promise.all([
      architecture(id),
      api(`/api/models/${encodeURIComponent(id)}/attention`, { label: "Asking what can explain it…" }),
    ]);
  } catch (err) {
    support = null;
    showError(err);
    return;
  }
  if (token !== modelToken) return;
  const model = models.find((m) => m.id === id) ?? detail;
  showMethodSupport();
  describeMethod();
  const nodes = new Map(detail.architecture.nodes.map((n) => [n.id, n]));
  $("layer").replaceChildren(new Option(`the model's default (${support.default_layer ?? "last spatial layer"})`, ""),
    ...support.layers.map((node) => new Option(`${node} · ${nodes.get(node)?.op} · ${nodes.get(node)?.output_shape.join("×")}`, node)));
  if (state.values.layer && !support.layers.includes(state.values.layer)) state.set({ layer: "" }, { silent: true });
  $("layer").value = state.values.layer;
  showInputMode();
  showRegionPicker();
  $("model-note").hidden = support.explainable;
  $("model-note").textContent = support.explainable ? "" : `No method can explain this model: ${support.reason}`;
  if (!support.explainable) {
    $("target").replaceChildren(new Option("the top prediction", "-1"));
    return;
  }
  if (!support.takes_images) {
    // a tensor model: its input is a .npy file of the shape the API names; an image chosen before does not fit
    if (image && !isTensor(image)) forgetInput();
    if (state.values.sample) state.set({ sample: "" }, { silent: true });
    if (image) await afterImage();
    else clearMaps(`Upload a .npy file to see its maps: ${support.expected_input}.`);
    return;
  }
  if (image && isTensor(image)) forgetInput(); // a tensor of another model
  const digits = (model.input_shape?.[0] ?? 3) === 1;
  $("draw-box").hidden = !digits;
  showSamplesFor(digits);
  if (state.values.sample) await loadSample(state.values.sample);
  else if (image) await afterImage();
  else if (digits) {
    // a digit to start from; the user draws over it or clears it
    pad.drawText("3");
    image = { blob: await pad.toBlob28(), name: "your drawing" };
    imageVersion += 1;
    await afterImage();
  } else {
    const first = document.querySelector("#samples .sample:not([hidden])");
    if (first) state.set({ sample: first.dataset.file });
  }
}

/** The methods that apply to this model; the others disabled, their reasons (the API's) listed on the page. */
function showMethodSupport() {
  const verdicts = new Map(support.methods.map((m) => [m.name, m]));
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
  $("learned").hidden = unavailable("learned_attention");
  const compare = state.values.compare.filter((name) => !unavailable(name));
  if (compare.length !== state.values.compare.length) state.set({ compare }, { silent: true });
  if (unavailable(state.values.method)) {
    const fallback = ["gradcam", ...support.methods.map((m) => m.name)].find((name) => !unavailable(name));
    if (fallback) state.set({ method: fallback }, { silent: true });
  }
  $("method").value = state.values.method;
  const refused = support.methods.filter((m) => !m.available);
  $("unavailable").hidden = !support.explainable || refused.length === 0;
  const title = (name) => methods.find((m) => m.name === name)?.title ?? name;
  const list = document.createElement("ul");
  list.append(...refused.map((m) => {
    const item = document.createElement("li");
    item.dataset.method = m.name;
    const name = document.createElement("strong");
    name.textContent = title(m.name);
    item.append(name, `: ${m.reason}`);
    return item;
  }));
  const heading = document.createElement("p");
  heading.textContent = "Not available for this model:";
  $("unavailable").replaceChildren(heading, list);
}

/** Images (samples, drawing, upload) for a model that takes them; a .npy file, with the shape to send, else. */
function showInputMode() {
  const tensors = !support.takes_images;
  $("input-title").textContent = tensors ? "Input" : "Image";
  $("samples").hidden = tensors;
  if (tensors) $("draw-box").hidden = true;
  $("tensor-box").hidden = !tensors;
  const kind = KIND_WORDS[support.input_kind];
  $("expected-input").textContent = `This model takes ${kind ? `${kind}: ` : ""}${support.expected_input}.`;
  $("file").accept = tensors ? ".npy" : IMAGE_TYPES;
  $("file-label").textContent = tensors ? "Upload a .npy file…" : "Upload an image…";
  $("drop-hint").textContent = tensors ? "or drop one on the page" : "or drop or paste one";
  $("opacity").closest(".control").hidden = support.input_kind === "sequence"; // a sequence has no picture under its map
}

/** The region picker, for a model whose output is a map of class scores. */
function showRegionPicker() {
  const map = support.output_kind === "map";
  $("region-panel").hidden = !map;
  if (!map) return;
  const [classes, ...size] = support.output_shape;
  region.setup(support.region_axes, support.region_shape);
  $("region-info").textContent = `The output is a map of class scores: ${classes} classes at ${size.join(" × ")} ` +
    `positions. The score explained is the chosen class's logits summed over a box of it, in output positions ` +
    `(${support.region_axes.map((a) => `${a}0 ≤ ${a} < ${a}1`).join(", ")}): drag it on the grid or type its bounds. ` +
    "The default is the whole map.";
  showRegion();
}

function showRegion() {
  if (!support || support.output_kind !== "map") return;
  const box = parseRegion(state.values.region);
  region.show(box);
  $("region-now").textContent = `Explaining ${box ? describeRegion(box, support.region_axes, support.region_shape)
    : `${describeRegion(null, support.region_axes, support.region_shape)}, the default`}.`;
  $("region-whole").disabled = !box;
}

async function loadSample(file) {
  markSample(file);
  try {
    const blob = await api(`/static/samples/${encodeURIComponent(file)}`, { as: "blob", label: "Loading the sample…" });
    image = { blob, name: file };
    imageVersion += 1;
    await afterImage();
  } catch (err) {
    showError(err, `sample ${file}`);
  }
}

function form() {
  const data = new FormData();
  data.append("image", image.blob, image.name.includes(".") ? image.name : `${image.name}.png`);
  return data;
}

async function afterImage() {
  if (!image || !support?.explainable) return;
  $("input-name").textContent = isTensor(image) ? `Your file: ${image.name}` : "";
  if (support.output_kind !== "classes") {
    // a map of class scores: every class can be explained, by default the one scoring highest over the region
    const labels = detail?.labels ?? [];
    $("target").replaceChildren(new Option("the class scoring highest over the region", "-1"),
      ...Array.from({ length: support.output_shape[0] }, (_, k) => new Option(labels[k] ?? `class ${k}`, String(k))));
    $("target").value = String(state.values.target);
    showPrediction(null, "This model's output is a map of class scores (such as segmentation): no single prediction.");
    await refresh();
    return;
  }
  // the classes this image scores highest, to choose what to explain
  try {
    const answer = await api(`/api/models/${encodeURIComponent(state.values.model)}/predict?top_k=10`, { body: form(), label: "Predicting…" });
    $("target").replaceChildren(new Option(`the top prediction (${answer.classes[0]?.label ?? "?"})`, "-1"),
      ...answer.classes.map((c) => new Option(`${c.label} · ${(100 * c.probability).toFixed(1)}%`, String(c.index))));
    if (state.values.target >= 0 && !answer.classes.some((c) => c.index === state.values.target)) {
      const label = detail?.labels?.[state.values.target] ?? `class ${state.values.target}`;
      $("target").append(new Option(label, String(state.values.target)));
    }
    $("target").value = String(state.values.target);
    showPrediction(answer.classes);
  } catch (err) {
    $("target").replaceChildren(new Option("the top prediction", "-1")); // the classes of the last input no longer hold
    showPrediction(null, "No prediction: the input was refused (the message above says why).");
    showError(err, "predicting");
    if (isTensor(image) || !support.takes_images) {
      clearMaps("No maps: the input was refused (the message above says why).");
      return; // every map would be refused the same way
    }
  }
  await refresh();
}

function card(methodName) {
  const m = methods.find((x) => x.name === methodName) ?? { title: methodName };
  const figure = document.createElement("figure");
  figure.className = "map-card panel";
  figure.dataset.method = methodName;
  figure.innerHTML = `<figcaption><strong>${esc(m.title)}</strong> <span class="small muted"></span></figcaption>
    <div class="overlay-stack"><img class="picture" alt=""><img class="heat" alt=""></div>
    <progress class="job-progress" max="1" value="0" hidden></progress>
    <p class="small muted card-note">computing…</p>`;
  if (m.cost?.heavy) figure.querySelector(".card-note").before(el("p", { class: "small slow-note", text: slowWords(m) }));
  return figure;
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

/** Follow a background job in its card's progress bar; resolves to its result, rejects with its error. */
function followJob(job, figure, label) {
  const bar = figure.querySelector(".job-progress");
  const note = figure.querySelector(".card-note");
  figure.dataset.job = job.id;
  bar.hidden = false;
  note.textContent = "queued…";
  const show = (data) => {
    if (!data.total) return;
    bar.max = data.total;
    bar.value = data.done;
    note.textContent = `${data.done} of ${data.total} passes through the network…`;
  };
  return new Promise((resolve, reject) => {
    const source = new EventSource(job.events_url);
    const entry = { source, job, reject };
    following.add(entry);
    const finish = () => {
      source.close();
      following.delete(entry);
    };
    source.addEventListener("progress", (event) => show(JSON.parse(event.data)));
    source.addEventListener("end", (event) => {
      finish();
      const end = JSON.parse(event.data);
      show(end);
      if (end.status === "done") {
        bar.hidden = true;
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

async function refresh() {
  if (!image || !state.values.model || support?.model_id !== state.values.model || !support.explainable) return;
  const token = ++requestToken;
  abandonJobs();
  clearError();
  $("layer-panel").hidden = true; // until this request's first map arrives
  const names = [state.values.method, ...state.values.compare.filter((n) => n !== state.values.method)];
  showLegends(names);
  showExplained();
  const cards = names.map(card);
  $("maps").replaceChildren(...cards);
  $("maps").classList.toggle("single", cards.length === 1);
  $("maps").classList.toggle("wide", support.input_kind !== "image"); // a sequence or a clip's slices need the width
  applyOpacity();
  // one at a time: the many-pass methods are heavy, and the first answer should not wait for the others
  for (const [i, name] of names.entries()) {
    if (token !== requestToken) return;
    const m = methods.find((x) => x.name === name);
    const params = new URLSearchParams({ method: name });
    if (m?.uses_target && state.values.target >= 0) params.set("target", String(state.values.target));
    if (m?.uses_layer && state.values.layer) params.set("layer", state.values.layer);
    // a region selects the class score explained: class-agnostic methods take none
    if (m?.uses_target && support.output_kind === "map" && state.values.region) params.set("region", state.values.region);
    if (support.input_kind === "sequence") params.set("include_input_map", "true"); // L numbers, read on hover
    const key = `${state.values.model}|${imageVersion}|${params}`;
    try {
      const label = `Computing ${m?.title ?? name}…`;
      let answer = answers.get(key) ?? await api(`/api/models/${encodeURIComponent(state.values.model)}/attention?${params}`, {
        body: form(), label,
      });
      if (token !== requestToken) {
        if (answer.events_url) fetch(answer.status_url, { method: "DELETE" }).catch(() => {}); // nobody will look
        return;
      }
      if (answer.events_url) answer = await followJob(answer, cards[i], label); // 202: a background job
      if (answers.size > 40) answers.clear();
      answers.set(key, answer);
      if (token !== requestToken) return;
      await fillCard(cards[i], answer, m);
      if (token !== requestToken) return;
      if (i === 0) showLayerMap(answer, m);
    } catch (err) {
      if (token !== requestToken || err.name === "AbortError") return;
      cards[i].querySelector(".job-progress").hidden = true;
      cards[i].querySelector(".card-note").textContent = err instanceof ApiError ? err.detail : String(err);
      cards[i].classList.add("failed");
      if (i === 0) showError(err, m?.title ?? name);
    }
  }
}

/** What the card's map explains: the class, and for a map of class scores the region its score sums over. */
function explained(answer, method) {
  const what = answer.target_label !== null ? `for “${answer.target_label}”` : "";
  if (support?.output_kind !== "map") return what;
  if (!method?.uses_target) return `${what} (explains no class score, so no region)`;
  return `${what} over ${describeRegion(answer.region, support.region_axes, support.region_shape)}`;
}

async function fillCard(figure, answer, method) {
  if (answer.kind === "sequence" || answer.kind === "volume") {
    await fillKindCard(figure, answer, method);
    return;
  }
  figure.querySelector(".picture").src = answer.picture_png;
  figure.querySelector(".picture").alt = "the input the model saw";
  const heat = figure.querySelector(".heat");
  heat.src = answer.input_map_png;
  heat.alt = `${method?.title ?? answer.method} heatmap`;
  heat.style.opacity = String(state.values.opacity);
  figure.querySelector("figcaption .muted").textContent = `${explained(answer, method)} at ${answer.layer} (${answer.layer_shape.join("×")})`;
  figure.querySelector(".card-note").textContent = `${Math.round(answer.elapsed_ms)} ms` +
    (answer.signed ? " · signed: red raises the score, blue lowers it" : " · bright: contributed most");
  figure.classList.add("done");
}

/** A sequence's or a volume's card: its own view in place of the overlay, and the colour legend. */
async function fillKindCard(figure, answer, method) {
  const view = answer.kind === "sequence" ? sequenceView(answer) : await volumeView(answer, state.values.opacity);
  figure.querySelector(".overlay-stack").replaceWith(view);
  figure.querySelector(".card-note").before(legendView(answer, scales));
  figure.querySelector("figcaption .muted").textContent =
    `${explained(answer, method)} at ${answer.layer} (${answer.layer_shape.join(" × ")}, upsampled to ${answer.input_shape.join(" × ")})`;
  figure.querySelector(".card-note").textContent = `${Math.round(answer.elapsed_ms)} ms`;
  figure.classList.add("done", `kind-${answer.kind}`);
}

function showLayerMap(answer, method) {
  const panel = $("layer-panel");
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
