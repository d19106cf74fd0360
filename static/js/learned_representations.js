// The "representations" view of the learned page: how the representation changes from the pixels to the last layer.
//
// - The 2,000 held-out digits at a layer, drawn in 2D by PCA or t-SNE (GET /api/models/{id}/projection, an analysis
//   job the first time: while t-SNE runs, its previews show the embedding forming), coloured by digit; the mouse (or
//   the arrow keys) shows a point's digit, cut from the sprite sheet the API serves.
// - A linear probe's accuracy per layer (GET /api/models/{id}/probes), the pixels first, as a chart and a table.
// - The sample photos nearest to a photo at the layer (POST /api/models/{id}/neighbours), for image models.
//
// What applies to a model, and its layers, come from GET /api/models/{id}/representations. Every number is the
// API's. The state (rep*) is in the URL beside the page's `view`.
// state -> data -> render: handlers only change the state (or take a photo), the loaders only fill `data` with the
// API's answers, and `render(state, data)` brings the view in line with both.
import { ApiError, api, clearError, showError } from "./api.js";
import { el, fmt } from "./explain/common.js";
import { fetchResult, progressText } from "./jobs.js";
import { listModels } from "./models.js";
import { fetchNpy } from "./npy.js";
import { changeTracker, chooseModel, showControl, showModelOptions } from "./redraw.js";
import { createState } from "./state.js";
import { svg, within } from "./dom.js";

const DEFAULTS = { repModel: "", repNode: "", repMethod: "pca", repPhoto: "", repK: 4 };
const PREFERRED_MODEL = "digits_classic";
// Tableau's ten categorical colours: distinct on white, one per digit
const CLASS_COLOURS = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
  "#9c755f", "#5b5b5b"];
const POINT_RADIUS = 2.5;
const HOVER_RADIUS = 10;
const PLOT_MARGIN = { left: 46, right: 12, top: 12, bottom: 36 };
const BUSY_RETRY_MS = 5000; // the server runs few analyses at once (429 beyond): ask again this often
const BUSY_RETRIES = 60;

let root = null;
let state = null;
// what the view knows from the API (and the photo it compares)
const data = {
  models: null, // the models with an image input (and the digit models: sequence models read [1, 28, 28] too)
  support: null, // the API's RepresentationsSupport for the chosen model
  sprite: null, // { url, image, loaded }: the sprite sheet of the digits
  // the projection: `note` says what its text is (computing, waiting, frame, done, failed; "" none)
  projection: { node: "", method: "", answer: null, frame: null, progress: null, note: "" },
  probes: { answer: null, progress: null, note: "" }, // likewise (after-projection, training, waiting, done, failed)
  photo: null, // { blob, name, url, uploaded }: the photo whose neighbours are asked for
  neighbours: null, // { answer, photo } or { failed: true }
};
const requests = { projection: 0, probes: 0, neighbours: 0, photo: 0 };
const aborts = {};
let hovered = -1; // the point under the pointer (or chosen with the arrow keys), -1 none: not in the URL
const fresh = changeTracker();

const $ = within(() => root);
const pct = (p) => `${(100 * p).toFixed(2)}%`;
const api_ = (id) => `/api/models/${encodeURIComponent(id)}`;

export function mount(element) {
  root = element;
  root.dataset.mounted = "1";
  state = createState(DEFAULTS, (changed) => {
    if (changed.includes("repModel")) loadModel();
    else {
      if (changed.includes("repNode") || changed.includes("repMethod")) loadProjection();
      if (changed.includes("repPhoto")) loadPhoto();
      else if (changed.includes("repNode") || changed.includes("repK")) findNeighbours();
    }
    render(state, data);
  });
  bind();
  render(state, data);
  init();
}

// --- the handlers: they change the state, or take a photo, or point at a digit ---------------------------------------
function bind() {
  $("rep-model").addEventListener("change", () => state.set({ repModel: $("rep-model").value, repNode: "" }, { push: true }));
  $("rep-node").addEventListener("change", () => state.set({ repNode: $("rep-node").value }, { push: true }));
  $("rep-method").addEventListener("change", () => state.set({ repMethod: $("rep-method").value }, { push: true }));
  $("rep-k").addEventListener("change", () => {
    const k = Math.min(16, Math.max(1, Math.round(Number($("rep-k").value)) || 1));
    if (!state.set({ repK: k }).length) render(state, data); // the field shows the k kept
  });
  root.querySelectorAll("#rep-photos .sample").forEach((button) => {
    // the same photo again is compared again
    button.addEventListener("click", () => { if (!state.set({ repPhoto: button.dataset.file }, { push: true }).length) loadPhoto(); });
  });
  $("rep-file").addEventListener("change", () => {
    const file = $("rep-file").files?.[0];
    $("rep-file").value = "";
    if (!file) return;
    data.photo = { blob: file, name: file.name || "your photo", url: URL.createObjectURL(file), uploaded: true };
    ++requests.photo;
    state.set({ repPhoto: "" }, { silent: true });
    render(state, data);
    findNeighbours();
  });
  const canvas = $("rep-scatter");
  canvas.addEventListener("mousemove", (event) => {
    const box = canvas.getBoundingClientRect();
    point(nearestPoint(event.clientX - box.left, event.clientY - box.top));
  });
  canvas.addEventListener("mouseleave", () => point(-1));
  canvas.addEventListener("keydown", (event) => {
    const n = shownPoints()?.x.length ?? 0;
    if (!n) return;
    const moves = { ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1 };
    if (event.key in moves) {
      event.preventDefault();
      point(hovered < 0 ? 0 : (hovered + moves[event.key] + n) % n);
    } else if (event.key === "Escape") {
      point(-1);
    }
  });
  new ResizeObserver(() => renderScatter(true)).observe(canvas.parentElement);
}

/** Point at digit `i` (-1: none). */
function point(i) {
  const points = shownPoints();
  hovered = points && i >= 0 && i < points.x.length ? i : -1;
  render(state, data);
}

// --- loading: fill `data`, then render -------------------------------------------------------------------------------
async function init() {
  try {
    const models = (await listModels()).filter((m) => (m.input_shape ?? []).length === 3);
    data.models = models;
    state.set({ repModel: chooseModel(models, state.values.repModel || PREFERRED_MODEL) }, { silent: true });
    await loadModel();
  } catch (err) {
    showError(err);
  }
}

function forget(kind) {
  requests[kind] += 1;
  aborts[kind]?.abort();
}

async function loadModel() {
  const id = state.values.repModel;
  forget("projection");
  forget("probes");
  forget("neighbours");
  data.support = null;
  data.projection = { node: "", method: "", answer: null, frame: null, progress: null, note: "" };
  data.probes = { answer: null, progress: null, note: "" };
  data.neighbours = null;
  hovered = -1;
  render(state, data);
  if (!id) return;
  let support;
  try {
    support = await api(`${api_(id)}/representations`, { label: "Loading what applies…" });
  } catch (err) {
    showError(err, `model ${id}`);
    return;
  }
  if (support.model_id !== state.values.repModel) return;
  data.support = support;
  const node = support.nodes.includes(state.values.repNode) ? state.values.repNode : support.default_node;
  state.set({ repNode: node }, { silent: true });
  const digits = support.takes_digits;
  if (digits) {
    loadSprite(support.sprite);
    // one analysis at a time from this page: the server runs few at once, for everyone
    data.probes = { answer: null, progress: null, note: "after-projection" };
    render(state, data);
    loadProjection().finally(() => { if (data.support === support) loadProbes(); });
  } else render(state, data);
  // photos through a digit model mean little: its own neighbours are the digits' projection above
  if (support.takes_images && !digits) loadPhoto();
}

function loadSprite(info) {
  if (!info || data.sprite?.url === info.url) return;
  const sprite = { url: info.url, image: new Image(), loaded: false };
  sprite.image.onload = () => {
    sprite.loaded = true;
    render(state, data);
  };
  sprite.image.src = info.url;
  data.sprite = sprite;
}

/** `work()`, asked again every few seconds while the server answers 429 (as many analyses running as it allows). */
async function patiently(work, onWait, signal) {
  for (let attempt = 0; ; attempt += 1) {
    try {
      return await work();
    } catch (err) {
      if (!(err instanceof ApiError) || err.status !== 429 || attempt >= BUSY_RETRIES) throw err;
      onWait(err);
      await new Promise((resolve, reject) => {
        const timer = setTimeout(resolve, BUSY_RETRY_MS);
        signal?.addEventListener("abort", () => {
          clearTimeout(timer);
          reject(new DOMException("stopped waiting", "AbortError"));
        }, { once: true });
      });
    }
  }
}

// --- the projection ---------------------------------------------------------------------------------------------
async function loadProjection() {
  if (!data.support?.takes_digits) return;
  const { repModel: id, repNode: node, repMethod: method } = state.values;
  forget("projection");
  const request = requests.projection;
  aborts.projection = new AbortController();
  const projection = { node, method, answer: null, frame: null, progress: null, note: "computing" };
  data.projection = projection;
  hovered = -1;
  render(state, data);
  const name = method === "tsne" ? "t-SNE" : "PCA";
  const params = new URLSearchParams({ node, method });
  const signal = aborts.projection.signal;
  const latest = () => request === requests.projection;
  try {
    const answer = await patiently(() => fetchResult(`${api_(id)}/projection?${params}`, {
      label: `Computing the ${name}…`, signal,
      onProgress: (summary) => {
        if (!latest()) return;
        projection.progress = summary;
        render(state, data);
        loadFrame(projection, summary.preview_url, latest);
      },
    }), () => {
      if (!latest()) return;
      projection.note = "waiting";
      render(state, data);
    }, signal);
    if (!latest()) return;
    clearError();
    Object.assign(projection, { answer, frame: null, progress: null, note: "done" });
    hovered = -1;
    render(state, data);
  } catch (err) {
    if (!latest() || err.name === "AbortError") return;
    Object.assign(projection, { progress: null, note: "failed" });
    render(state, data);
    showError(err, "projection");
  }
}

/** A t-SNE preview while it runs: the embedding so far (its numbers fetched once per preview). */
function loadFrame(projection, url, latest) {
  if (!url || url === projection.frame?.url) return;
  fetchNpy(url, "Fetching the embedding so far…").then((array) => {
    if (!latest() || projection.answer) return;
    const n = array.shape[0];
    const x = new Float64Array(n);
    const y = new Float64Array(n);
    for (let i = 0; i < n; i += 1) {
      x[i] = array.data[2 * i];
      y[i] = array.data[2 * i + 1];
    }
    const step = Number(/embedding-(\d+)\.npy/.exec(url)?.[1] ?? 0);
    projection.frame = { x, y, url, step };
    projection.note = "frame";
    render(state, data);
  }).catch(() => {});
}

// --- the probes -------------------------------------------------------------------------------------------------
async function loadProbes() {
  if (!data.support?.takes_digits) return;
  const id = state.values.repModel;
  forget("probes");
  const request = requests.probes;
  aborts.probes = new AbortController();
  const probes = { answer: null, progress: null, note: "training" };
  data.probes = probes;
  render(state, data);
  const signal = aborts.probes.signal;
  const latest = () => request === requests.probes;
  try {
    const answer = await patiently(() => fetchResult(`${api_(id)}/probes`, {
      label: "Training the probes…", signal,
      onProgress: (summary) => {
        if (!latest()) return;
        probes.progress = summary;
        render(state, data);
      },
    }), () => {
      if (!latest()) return;
      probes.note = "waiting";
      render(state, data);
    }, signal);
    if (!latest()) return;
    Object.assign(probes, { answer, progress: null, note: "done" });
    render(state, data);
  } catch (err) {
    if (!latest() || err.name === "AbortError") return;
    Object.assign(probes, { progress: null, note: "failed" });
    render(state, data);
    showError(err, "probes");
  }
}

// --- the nearest photos -----------------------------------------------------------------------------------------
/** The state's sample photo (the first one when none was chosen or uploaded), then its neighbours. */
async function loadPhoto() {
  const { support } = data;
  if (!support?.takes_images || support.takes_digits) return;
  let file = state.values.repPhoto;
  if (!file && !data.photo) {
    file = root.querySelector("#rep-photos .sample")?.dataset.file ?? "";
    if (file) state.set({ repPhoto: file }, { silent: true });
  }
  render(state, data);
  if (file) {
    const request = ++requests.photo;
    try {
      const blob = await api(`/static/samples/${encodeURIComponent(file)}`, { as: "blob", label: "Loading the photo…" });
      if (request !== requests.photo) return;
      data.photo = { blob, name: file, url: `/static/samples/${encodeURIComponent(file)}`, uploaded: false };
      render(state, data);
    } catch (err) {
      showError(err, `photo ${file}`);
      return;
    }
  }
  findNeighbours();
}

async function findNeighbours() {
  const { support, photo } = data;
  if (!support?.takes_images || support.takes_digits || !photo) return;
  const { repModel: id, repNode: node, repK: k } = state.values;
  forget("neighbours");
  const request = requests.neighbours;
  aborts.neighbours = new AbortController();
  const body = new FormData();
  body.append("image", photo.blob, photo.name.includes(".") ? photo.name : `${photo.name}.png`);
  const params = new URLSearchParams({ node, k: String(k) });
  try {
    const answer = await api(`${api_(id)}/neighbours?${params}`, { body, label: "Comparing the photos…",
      signal: aborts.neighbours.signal });
    if (request !== requests.neighbours) return;
    data.neighbours = { answer, photo };
    render(state, data);
  } catch (err) {
    if (request !== requests.neighbours || err.name === "AbortError") return;
    data.neighbours = { failed: true };
    render(state, data);
    showError(err, "neighbours");
  }
}

// --- rendering: the view from the state and `data` -----------------------------------------------------------------
/** The whole view from the state and what it knows; calling it again changes nothing. */
function render(state, data) {
  const v = state.values;
  const { support } = data;
  showModelOptions($("rep-model"), data.models, v.repModel);
  if (support && fresh("support", [support])) {
    $("rep-node").replaceChildren(...support.nodes.map((n) => new Option(n === "input" ? "input (the pixels)" : n, n)));
    const digits = support.takes_digits;
    $("rep-projection").hidden = !digits;
    $("rep-probes").hidden = !digits;
    $("rep-method-control").hidden = !digits;
    $("rep-neighbours").hidden = !(support.takes_images && !digits);
    $("rep-note").hidden = digits;
    $("rep-note").textContent = digits ? "" : `Projections and probes use the shipped digits: ${support.digits_reason}. ` +
      "Pick a digit model for them.";
  }
  if ([...$("rep-node").options].some((o) => o.value === v.repNode)) $("rep-node").value = v.repNode;
  showControl($("rep-method"), v.repMethod);
  showControl($("rep-k"), String(v.repK));
  root.querySelectorAll("#rep-photos .sample").forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.file === v.repPhoto)));
  if (support) {
    $("rep-node-features").textContent = v.repNode === "input" ? "The raw input: the normalised pixels, the baseline." : "";
  }
  renderProjection(data);
  renderScatter(false);
  renderHover(data);
  renderProbes(data);
  $("rep-photo-name").textContent = data.photo?.uploaded ? `Your photo: ${data.photo.name}` : "";
  if (fresh("neighbours", [data.neighbours])) {
    const n = data.neighbours;
    if (!n) $("rep-neighbours-list").replaceChildren();
    else if (n.failed) $("rep-neighbours-list").replaceChildren(el("p", { class: "small", text: "No neighbours: see the message above." }));
    else renderNeighbours(n.answer, n.photo);
  }
}

/** The projection's title, text, progress, legend and KL curve. */
function renderProjection(data) {
  const p = data.projection;
  const name = p.method === "tsne" ? "t-SNE" : "PCA";
  if (p.node) {
    $("rep-projection-title").textContent = `The 2,000 held-out digits at ${p.node === "input" ? "the pixels" : p.node}, by ${name}`;
  }
  const notes = {
    "": "",
    computing: `Computing the ${name} of the 2,000 held-out digits at ${p.node}…`,
    waiting: "The server is busy with other analyses: waiting for a free slot…",
    frame: `t-SNE at work: the embedding after ${p.frame?.step} of its steps (the final one comes with its numbers ` +
      "when it is done).",
    failed: "The projection could not be computed: see the message above.",
  };
  $("rep-projection-info").textContent = p.note === "done" ? projectionText(p.answer) : notes[p.note];
  const progress = p.progress;
  $("rep-projection-progress").hidden = !progress || progress.status === "done";
  if (progress) {
    $("rep-projection-bar").max = progress.total || 1;
    $("rep-projection-bar").value = progress.done || 0;
    $("rep-projection-progress-text").textContent = progressText(progress, "steps");
  }
  const sprite = data.support?.sprite;
  if (fresh("legend", [p.answer, Boolean(p.frame) && Boolean(sprite)])) {
    if (p.answer) renderLegend(p.answer.classes, p.answer.labels);
    else if (p.frame && sprite) renderLegend(Array.from({ length: 10 }, (_, k) => String(k)), sprite.labels);
    else $("rep-legend").replaceChildren();
  }
  if (fresh("kl", [p.answer])) {
    if (p.answer?.method === "tsne") drawKl(p.answer.kl);
    else $("rep-kl").hidden = true;
  }
}

function projectionText(p) {
  const features = p.features.description;
  let text;
  if (p.method === "pca") {
    const [a, b] = p.explained_variance_ratio;
    text = `PCA: the first axis holds ${pct(a)} of the features' variance, the second ${pct(b)} ` +
      `(${pct(p.explained_variance_total)} together). Features: ${features}.`;
  } else {
    const reduced = p.pca_dims ? ` The features were first reduced by PCA to ${p.pca_dims} dimensions ` +
      `(keeping ${pct(p.pca_variance_ratio)} of the variance).` : "";
    text = `t-SNE: KL(P‖Q) = ${p.final_kl.toFixed(3)} nats after ${p.iterations} steps (perplexity ${p.perplexity}, ` +
      `seed ${p.seed}). Distances between clusters and their sizes mean little; neighbours do.${reduced} ` +
      `Features: ${features}.`;
  }
  return `${text} Computed in ${fmt(p.seconds)} s.`;
}

/** The colour of each digit, with how many of the points it has. */
function renderLegend(classes, labels) {
  const counts = new Array(classes.length).fill(0);
  for (const label of labels) counts[label] += 1;
  $("rep-legend").replaceChildren(...classes.map((name, k) => {
    const swatch = el("span", { class: "rep-swatch" });
    swatch.style.background = CLASS_COLOURS[k % CLASS_COLOURS.length]; // CSSOM: the CSP allows it, not inline style attributes
    return el("li", { "data-class": String(k) }, swatch, el("span", { text: `${name} (${counts[k]})` }));
  }));
}

/** The points drawn: the answer's, or a t-SNE preview's (in the sprite sheet's order, whose labels it gives). */
function shownPoints() {
  const { answer, frame } = data.projection;
  if (answer) return { x: answer.x, y: answer.y, labels: answer.labels };
  if (frame) return { x: frame.x, y: frame.y, labels: data.support?.sprite?.labels ?? null };
  return null;
}

/** The scatter of the points shown, the pointed one ringed (redrawn when they change, or `always`: a new size). */
function renderScatter(always) {
  const { answer, frame } = data.projection;
  if (!fresh("scatter", [answer, frame, hovered]) && !always) return;
  drawScatter(shownPoints(), answer?.method ?? "tsne");
}

/** Ticks at 1, 2 or 5 times a power of ten covering [lo, hi]. */
function ticks(lo, hi, count = 5) {
  const span = hi - lo || 1;
  const raw = span / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => span / s <= count) ?? 10 * power;
  const out = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + 1e-9 * span; t += step) out.push(Number(t.toPrecision(12)));
  return out;
}

let layout = null; // the scatter's mapping from data to canvas pixels, for hovering

function drawScatter(points, method) {
  const canvas = $("rep-scatter");
  if (!canvas) return;
  const width = canvas.parentElement.clientWidth || 600;
  const height = Math.min(width, 620);
  const ratio = window.devicePixelRatio || 1;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  canvas.style.width = `${width}px`;
  canvas.style.height = `${height}px`;
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  layout = null;
  if (!points) return;
  const { x, y } = points;
  let [x0, x1, y0, y1] = [Infinity, -Infinity, Infinity, -Infinity];
  for (let i = 0; i < x.length; i += 1) {
    x0 = Math.min(x0, x[i]); x1 = Math.max(x1, x[i]);
    y0 = Math.min(y0, y[i]); y1 = Math.max(y1, y[i]);
  }
  const m = PLOT_MARGIN;
  const plotW = width - m.left - m.right;
  const plotH = height - m.top - m.bottom;
  // one scale for both axes: a PCA axis's spread is its variance, and must not be stretched
  const scale = Math.min(plotW / ((x1 - x0) || 1), plotH / ((y1 - y0) || 1)) * 0.96;
  const cx = (x0 + x1) / 2;
  const cy = (y0 + y1) / 2;
  const px = (v) => m.left + plotW / 2 + (v - cx) * scale;
  const py = (v) => m.top + plotH / 2 - (v - cy) * scale;
  layout = { px, py, n: x.length };
  // axes with numbers (data units: PCA's are the features'; t-SNE's have no meaning of their own)
  ctx.strokeStyle = "#5b6473";
  ctx.fillStyle = "#2d3440";
  ctx.font = "11px ui-monospace, monospace";
  ctx.lineWidth = 1;
  ctx.strokeRect(m.left, m.top, plotW, plotH);
  const xLo = cx - plotW / 2 / scale;
  const xHi = cx + plotW / 2 / scale;
  const yLo = cy - plotH / 2 / scale;
  const yHi = cy + plotH / 2 / scale;
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  for (const t of ticks(xLo, xHi)) {
    ctx.beginPath(); ctx.moveTo(px(t), m.top + plotH); ctx.lineTo(px(t), m.top + plotH + 4); ctx.stroke();
    ctx.fillText(fmt(t), px(t), m.top + plotH + 6);
  }
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (const t of ticks(yLo, yHi)) {
    ctx.beginPath(); ctx.moveTo(m.left - 4, py(t)); ctx.lineTo(m.left, py(t)); ctx.stroke();
    ctx.fillText(fmt(t), m.left - 6, py(t));
  }
  ctx.textAlign = "center";
  ctx.textBaseline = "bottom";
  ctx.font = "12px system-ui, sans-serif";
  ctx.fillText(method === "pca" ? "principal axis 1" : "t-SNE 1", m.left + plotW / 2, height - 2);
  ctx.save();
  ctx.translate(12, m.top + plotH / 2);
  ctx.rotate(-Math.PI / 2);
  ctx.textBaseline = "middle";
  ctx.fillText(method === "pca" ? "principal axis 2" : "t-SNE 2", 0, 0);
  ctx.restore();
  // the points, coloured by digit (a preview has no labels yet: grey)
  ctx.save();
  ctx.beginPath();
  ctx.rect(m.left, m.top, plotW, plotH);
  ctx.clip();
  ctx.globalAlpha = 0.75;
  const labels = points.labels;
  for (let i = 0; i < x.length; i += 1) {
    ctx.fillStyle = labels ? CLASS_COLOURS[labels[i] % CLASS_COLOURS.length] : "#7a8291";
    ctx.beginPath();
    ctx.arc(px(x[i]), py(y[i]), POINT_RADIUS, 0, 2 * Math.PI);
    ctx.fill();
  }
  ctx.globalAlpha = 1;
  if (hovered >= 0 && hovered < x.length) {
    ctx.strokeStyle = "#16191f";
    ctx.lineWidth = 2;
    ctx.beginPath();
    ctx.arc(px(x[hovered]), py(y[hovered]), POINT_RADIUS + 4, 0, 2 * Math.PI);
    ctx.stroke();
  }
  ctx.restore();
}

function nearestPoint(mx, my) {
  const points = shownPoints();
  if (!points || !layout) return -1;
  let best = -1;
  let bestDistance = HOVER_RADIUS * HOVER_RADIUS;
  for (let i = 0; i < points.x.length; i += 1) {
    const dx = layout.px(points.x[i]) - mx;
    const dy = layout.py(points.y[i]) - my;
    const d = dx * dx + dy * dy;
    if (d < bestDistance) {
      bestDistance = d;
      best = i;
    }
  }
  return best;
}

/** The pointed digit (from the sprite sheet), its label and coordinates beside it; nothing for none. */
function renderHover(data) {
  const points = shownPoints();
  const answer = data.projection.answer;
  const info = answer?.sprite ?? data.support?.sprite;
  const sprite = data.sprite;
  if (!fresh("hover", [points?.x, hovered, info, sprite?.loaded])) return;
  const box = $("rep-hover");
  if (hovered < 0 || !points || !info || !layout) {
    box.hidden = true;
    return;
  }
  const digit = $("rep-hover-digit");
  const ctx = digit.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, digit.width, digit.height);
  if (sprite?.loaded && sprite.image.naturalWidth) {
    const row = Math.floor(hovered / info.columns);
    const column = hovered % info.columns;
    ctx.drawImage(sprite.image, column * info.cell, row * info.cell, info.cell, info.cell, 0, 0, digit.width, digit.height);
  }
  const label = answer ? answer.labels[hovered] : info.labels[hovered];
  const where = `(${fmt(points.x[hovered])}, ${fmt(points.y[hovered])})`;
  $("rep-hover-text").textContent = answer
    ? `Digit ${answer.classes[label]} · held-out digit ${hovered + 1} of ${answer.points} (shipped digit ` +
      `#${answer.indices[hovered]}) · ${where}`
    : `Digit ${label} · held-out digit ${hovered + 1} of ${info.count} · ${where} (t-SNE still at work)`;
  box.dataset.index = String(hovered);
  box.dataset.label = String(label);
  // beside the point, kept inside the plot
  const wrap = box.parentElement.getBoundingClientRect();
  const left = layout.px(points.x[hovered]) + 14;
  const top = layout.py(points.y[hovered]) - 20;
  box.hidden = false;
  box.style.left = `${Math.min(left, wrap.width - box.offsetWidth - 4)}px`;
  box.style.top = `${Math.max(0, Math.min(top, wrap.height - box.offsetHeight - 4))}px`;
}

function drawKl(records) {
  const width = 300;
  const height = 170;
  const m = { left: 42, right: 18, top: 8, bottom: 30 };
  const steps = records.map((r) => r.iteration);
  const values = records.map((r) => r.kl);
  const xMax = Math.max(...steps) || 1;
  const yMax = Math.max(...values);
  const yTicks = ticks(0, yMax, 4);
  const yTop = Math.max(yMax, yTicks[yTicks.length - 1]);
  const px = (v) => m.left + (v / xMax) * (width - m.left - m.right);
  const py = (v) => m.top + (1 - v / yTop) * (height - m.top - m.bottom);
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "rep-chart-svg", role: "img",
    "aria-label": `KL divergence falling from ${fmt(values[0])} to ${fmt(values[values.length - 1])} nats over ${xMax} steps` });
  for (const t of yTicks) {
    chart.append(svg("line", { x1: m.left, x2: width - m.right, y1: py(t), y2: py(t), class: "rep-grid" }),
      svg("text", { x: m.left - 4, y: py(t) + 4, "text-anchor": "end", class: "rep-tick" }, fmt(t)));
  }
  for (const t of ticks(0, xMax, 4)) {
    chart.append(svg("text", { x: px(t), y: height - m.bottom + 14, "text-anchor": "middle", class: "rep-tick" }, String(t)));
  }
  chart.append(svg("text", { x: (m.left + width) / 2, y: height - 2, "text-anchor": "middle", class: "rep-axis-label" }, "step"));
  chart.append(svg("polyline", { points: records.map((r) => `${px(r.iteration)},${py(r.kl)}`).join(" "), class: "rep-line" }));
  $("rep-kl-chart").replaceChildren(chart);
  $("rep-kl").hidden = false;
}

// --- the probes -------------------------------------------------------------------------------------------------
/** The probes' text, progress, chart and table. */
function renderProbes(data) {
  const p = data.probes;
  const notes = {
    "": "",
    "after-projection": "The probes are trained once the projection is drawn.",
    training: "Training a probe per layer on the 8,000 training digits (once per model)…",
    waiting: "The server is busy with other analyses: waiting for a free slot…",
    failed: "The probes could not be trained: see the message above.",
  };
  const progress = p.progress;
  $("rep-probes-progress").hidden = !progress || progress.status === "done";
  if (progress) {
    $("rep-probes-bar").max = progress.total || 1;
    $("rep-probes-bar").value = progress.done || 0;
    $("rep-probes-progress-text").textContent = progressText(progress, "layers");
  }
  if (p.note !== "done") $("rep-probes-info").textContent = notes[p.note];
  if (!fresh("probes", [p.answer])) return;
  if (p.answer) showProbes(p.answer);
  else {
    $("rep-probes-chart").replaceChildren();
    $("rep-probes-table").replaceChildren();
  }
}

function showProbes(answer) {
  const probes = answer.probes;
  const pixels = probes[0];
  const best = probes.reduce((a, b) => (b.test_accuracy > a.test_accuracy ? b : a));
  $("rep-probes-info").textContent = `A ${answer.method}, trained on the ${answer.train_size.toLocaleString("en")} ` +
    `training digits' features at each layer and scored on the ${answer.test_size.toLocaleString("en")} held-out ones. ` +
    `The raw pixels give ${pct(pixels.test_accuracy)}; the best layer, ${best.node}, ${pct(best.test_accuracy)} ` +
    `(always answering the commonest digit: ${pct(answer.chance)}). Computed in ${fmt(answer.seconds)} s. ` +
    `Layers: ${answer.node_selection}.`;
  drawProbeChart(probes);
  const head = el("thead", {}, el("tr", {}, ...["Layer", "Op", "Features", "Held-out accuracy", "Training accuracy",
    "L-BFGS steps"].map((h, k) => el("th", { class: k >= 2 ? "num" : "", text: h }))));
  const rows = probes.map((p) => el("tr", { "data-node": p.node },
    el("td", { text: p.node === "input" ? "input (pixels)" : p.node }), el("td", { text: p.op }),
    el("td", { class: "num", text: p.features.size.toLocaleString("en"), title: p.features.description }),
    el("td", { class: "num", text: pct(p.test_accuracy) }), el("td", { class: "num", text: pct(p.train_accuracy) }),
    el("td", { class: "num", text: `${p.iterations}${p.converged ? "" : " (stopped)"}` })));
  $("rep-probes-table").replaceChildren(head, el("tbody", {}, ...rows));
}

function drawProbeChart(probes) {
  const width = 720;
  const height = 300;
  const m = { left: 56, right: 24, top: 20, bottom: 78 };
  const values = probes.flatMap((p) => [p.test_accuracy, p.train_accuracy]);
  // the axis starts at a round 5% below the lowest accuracy (said on the axis), so that differences show
  const low = Math.max(0, Math.floor((Math.min(...values) - 0.01) * 20) / 20);
  const plotW = width - m.left - m.right;
  const plotH = height - m.top - m.bottom;
  const px = (i) => m.left + (probes.length === 1 ? plotW / 2 : (i / (probes.length - 1)) * plotW);
  const py = (v) => m.top + (1 - (v - low) / (1 - low)) * plotH;
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "rep-chart-svg rep-probes-svg", role: "img",
    "aria-label": "Probe accuracy by layer: " + probes.map((p) => `${p.node} ${pct(p.test_accuracy)}`).join(", ") });
  for (const t of ticks(low, 1, 5)) {
    chart.append(svg("line", { x1: m.left, x2: width - m.right, y1: py(t), y2: py(t), class: "rep-grid" }),
      svg("text", { x: m.left - 6, y: py(t) + 4, "text-anchor": "end", class: "rep-tick" }, `${Math.round(t * 1000) / 10}%`));
  }
  chart.append(svg("line", { x1: m.left, x2: m.left, y1: m.top, y2: m.top + plotH, class: "rep-axis" }),
    svg("line", { x1: m.left, x2: width - m.right, y1: m.top + plotH, y2: m.top + plotH, class: "rep-axis" }));
  const yLabel = svg("text", { x: 14, y: m.top + plotH / 2, "text-anchor": "middle", class: "rep-axis-label",
    transform: `rotate(-90 14 ${m.top + plotH / 2})` }, low > 0 ? `accuracy (axis from ${Math.round(low * 100)}%)` : "accuracy");
  chart.append(yLabel);
  probes.forEach((p, i) => {
    chart.append(svg("text", { x: px(i), y: m.top + plotH + 14, "text-anchor": "end", class: "rep-tick",
      transform: `rotate(-35 ${px(i)} ${m.top + plotH + 14})` }, p.node === "input" ? "pixels" : p.node));
  });
  const series = [["train_accuracy", "rep-line rep-line-train", "training digits"],
    ["test_accuracy", "rep-line rep-line-test", "held-out digits"]];
  for (const [key, cls] of series) {
    chart.append(svg("polyline", { points: probes.map((p, i) => `${px(i)},${py(p[key])}`).join(" "), class: cls }));
  }
  probes.forEach((p, i) => {
    const dot = svg("circle", { cx: px(i), cy: py(p.test_accuracy), r: 4, class: "rep-dot" });
    dot.append(svg("title", {}, `${p.node}: ${pct(p.test_accuracy)} held out, ${pct(p.train_accuracy)} training`));
    chart.append(dot, svg("text", { x: px(i), y: py(p.test_accuracy) - 8, "text-anchor": "middle", class: "rep-value" },
      `${(100 * p.test_accuracy).toFixed(1)}`));
  });
  const legend = el("p", { class: "small rep-chart-legend" },
    el("span", { class: "rep-key rep-key-test" }), " held-out digits (the probe's score)  ",
    el("span", { class: "rep-key rep-key-train" }), " training digits");
  $("rep-probes-chart").replaceChildren(chart, legend);
}

// --- the nearest photos -----------------------------------------------------------------------------------------
function renderNeighbours(answer, photo) {
  const query = el("figure", { class: "rep-neighbour rep-query" },
    el("img", { src: photo.url, alt: `Your photo: ${photo.name}` }),
    el("figcaption", { text: `Compared: ${photo.name}` }));
  const cards = answer.neighbours.map((n) => {
    const fill = el("span");
    fill.style.width = `${Math.max(0, n.similarity) * 100}%`;
    return el("figure", { class: "rep-neighbour", "data-file": n.file },
      el("img", { src: n.url, alt: `Sample photo ${n.name}` }),
      el("figcaption", {}, el("strong", { text: `${n.rank}. ${n.name}` }), el("br"),
        el("span", { class: "mono rep-cosine", text: `cosine ${n.similarity.toFixed(4)}` }),
        el("span", { class: "rep-similarity", "aria-hidden": "true" }, fill)));
  });
  const note = el("p", { class: "small muted", text: `At ${answer.node}: ${answer.features.description}; ` +
    `${answer.gallery} sample photos compared.` });
  $("rep-neighbours-list").replaceChildren(el("div", { class: "rep-neighbour-row" }, query, ...cards), note);
}
