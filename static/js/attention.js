// Attention maps: pick a model, an image, a method, a class and a layer; the API returns the map at the layer's
// resolution and upsampled, with the picture the model saw. The heatmap is laid over the picture with an opacity
// slider, and several methods can be compared side by side. Heavy methods (Score-CAM, SmoothGrad, Integrated
// Gradients, occlusion) come back as a background job: its card shows a progress bar fed by the job's events,
// then the result is fetched and drawn like any other.
import { ApiError, api, clearError, showError } from "./api.js";
import { Grid } from "./grid.js";
import { DrawingPad, acceptImages, showSamplesFor } from "./inputs.js";
import { architecture, fillModelSelect } from "./models.js";
import { bindControl, createState } from "./state.js";
import { escapeHtml as esc } from "./text.js";

const $ = (id) => document.getElementById(id);
const DEFAULTS = { model: "", sample: "", method: "gradcam", target: -1, layer: "", opacity: 0.6, compare: [] };

let models = [];
let methods = [];
let detail = null; // the model's architecture and labels
let image = null; // { blob, name }
let requestToken = 0;
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

$("model").addEventListener("change", () => state.set({ model: $("model").value, target: -1, layer: "" }, { push: true }));
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

function markSample(file) {
  document.querySelectorAll("#samples .sample").forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.file === file)));
}

async function init() {
  try {
    const [filled, list] = await Promise.all([
      fillModelSelect($("model"), state.values.model, { filter: (m) => m.takes_images }),
      api("/api/attention/methods", { label: "Loading the methods…" }),
    ]);
    models = filled.models;
    methods = list.methods;
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
    group.append(...list.map((m) => new Option(m.title, m.name)));
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
    return label;
  }));
  describeMethod();
}

function describeMethod() {
  const m = methods.find((x) => x.name === state.values.method);
  if (!m) return;
  $("method-info").textContent = `${m.description} (${m.paper})${m.signed ? " Signed: blue lowers the score, red raises it." : ""}`;
  $("layer").disabled = !m.uses_layer;
  $("target").disabled = !m.uses_target;
  document.querySelectorAll("#compare input").forEach((box) => { box.checked = state.values.compare.includes(box.value); });
}

async function loadModel() {
  const id = state.values.model;
  $("model").value = id;
  try {
    detail = await architecture(id);
  } catch (err) {
    showError(err);
    return;
  }
  const model = models.find((m) => m.id === id) ?? detail;
  $("learned").hidden = !model.attention_node;
  // the learned attention exists only in models with an attention layer
  for (const option of $("method").options) option.disabled = option.value === "learned_attention" && !model.attention_node;
  document.querySelectorAll("#compare input").forEach((box) => {
    box.disabled = box.value === "learned_attention" && !model.attention_node;
  });
  if (!model.attention_node && state.values.compare.includes("learned_attention")) {
    state.set({ compare: state.values.compare.filter((n) => n !== "learned_attention") }, { silent: true });
  }
  if (!model.attention_node && state.values.method === "learned_attention") state.set({ method: "gradcam" }, { silent: true });
  $("method").value = state.values.method;
  describeMethod();
  const spatial = detail.architecture.nodes.filter((n) => n.output_shape.length === 3);
  $("layer").replaceChildren(new Option(`the model's default (${model.cam_layer ?? "last spatial layer"})`, ""),
    ...spatial.map((n) => new Option(`${n.id} · ${n.op} · ${n.output_shape.join("×")}`, n.id)));
  $("layer").value = state.values.layer;
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
  } catch (err) {
    showError(err, "predicting");
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
  if (!image || !state.values.model) return;
  const token = ++requestToken;
  abandonJobs();
  clearError();
  const names = [state.values.method, ...state.values.compare.filter((n) => n !== state.values.method)];
  const cards = names.map(card);
  $("maps").replaceChildren(...cards);
  $("maps").classList.toggle("single", cards.length === 1);
  applyOpacity();
  // one at a time: the many-pass methods are heavy, and the first answer should not wait for the others
  for (const [i, name] of names.entries()) {
    if (token !== requestToken) return;
    const m = methods.find((x) => x.name === name);
    const params = new URLSearchParams({ method: name });
    if (m?.uses_target && state.values.target >= 0) params.set("target", String(state.values.target));
    if (m?.uses_layer && state.values.layer) params.set("layer", state.values.layer);
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
      fillCard(cards[i], answer, m);
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

function fillCard(figure, answer, method) {
  figure.querySelector(".picture").src = answer.picture_png;
  figure.querySelector(".picture").alt = "the input the model saw";
  const heat = figure.querySelector(".heat");
  heat.src = answer.input_map_png;
  heat.alt = `${method?.title ?? answer.method} heatmap`;
  heat.style.opacity = String(state.values.opacity);
  const what = answer.target_label !== null ? `for “${answer.target_label}”` : "";
  figure.querySelector("figcaption .muted").textContent = `${what} at ${answer.layer} (${answer.layer_shape.join("×")})`;
  figure.querySelector(".card-note").textContent = `${Math.round(answer.elapsed_ms)} ms` +
    (answer.signed ? " · signed: red raises the score, blue lowers it" : " · bright: contributed most");
  figure.classList.add("done");
}

function showLayerMap(answer, method) {
  const [h, w] = answer.layer_shape;
  const panel = $("layer-panel");
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
