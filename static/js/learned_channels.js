// What each channel detects: the atlas of one layer of a digit model. One cell per channel with its top examples
// (GET /api/models/{id}/nodes/{node}/top-examples: the shipped digits that activate it most, cropped to the receptive
// field of the unit where it peaks) and, on demand, its feature visualisation (POST .../feature-visualisation, a job
// whose preview improves as it runs; its objective is the channel's mean over positions, where the examples rank by
// the maximum). A channel opens its maps in the explorer; "all 16" shows its examples whole,
// with the box the unit reads. The first request for a model ranks all 10,000 digits once (a job with progress).
//
// Which models and layers have top examples is the API's to say (GET /api/top-examples/models). The state (ch_*) is
// in the URL beside the page's `view`, so the explorer can link to a layer's atlas.
//
// state -> data -> render: handlers only change the state (or start feature visualisations), the loaders only fill
// `data` with the API's answers, and `render(state, data)` brings the view in line with both.
import { api, clearError, showError } from "./api.js";
import { el, fmt } from "./explain/common.js";
import { progressText, runJob } from "./jobs.js";
import { changeTracker } from "./redraw.js";
import { createState } from "./state.js";
import { within } from "./dom.js";

// ch_channel: the channel opened in the detail (-1: none)
const DEFAULTS = { ch_model: "", ch_layer: "", ch_k: 6, ch_channel: -1 };
const PREFERRED_MODEL = "digits_classic";
const DETAIL_K = 16;
const FEATURE_VIS = { steps: 128, seed: 0 };

let root = null;
let state = null;
// what the view knows from the API
const data = {
  models: null, // [{ id, name, layers: [{ node, op, output_shape, channels }] }]
  layer: null, // the API's LayerTopExamples for the layer shown
  layerRequest: 0,
  job: null, // { model, summary }: the ranking job the layer waits for
  detail: null, // { answer, channel, one }: one channel's top digits, whole (answer: the layer it belongs to)
  detailRequest: 0,
  visualisations: new Map(), // "model/node/channel" -> { result } or { running: Promise, last: the job's summary }
  queue: null, // { abort: AbortController, channel } while "Visualise every channel" runs
};
let layerAbort = null; // stops following the top-examples job when the layer changes
const fresh = changeTracker();

const $ = within(() => root);

export function mount(element) {
  root = element;
  root.dataset.mounted = "1";
  state = createState(DEFAULTS, (changed) => {
    if (changed.includes("ch_model") || changed.includes("ch_layer") || changed.includes("ch_k")) loadLayer();
    else if (changed.includes("ch_channel")) loadDetail();
    render(state, data);
  });
  $("ch-model").addEventListener("change", () => state.set({ ch_model: $("ch-model").value, ch_layer: "", ch_channel: -1 }, { push: true }));
  $("ch-layer").addEventListener("change", () => state.set({ ch_layer: $("ch-layer").value, ch_channel: -1 }, { push: true }));
  $("ch-k").addEventListener("change", () => state.set({ ch_k: Number($("ch-k").value) }));
  $("ch-visualise-all").addEventListener("click", () => (data.queue ? stopQueue() : visualiseAll()));
  $("ch-detail-close").addEventListener("click", () => state.set({ ch_channel: -1 }, { push: true }));
  init();
}

async function init() {
  try {
    data.models = (await api("/api/top-examples/models", { label: "Loading the digit models…" })).models;
  } catch (err) {
    showError(err, "loading the digit models");
    return;
  }
  render(state, data);
  if (data.models.length) loadLayer();
}

function currentModel() {
  const models = data.models ?? [];
  const wanted = models.find((m) => m.id === state.values.ch_model);
  return wanted ?? models.find((m) => m.id === PREFERRED_MODEL) ?? models[0];
}

function currentLayer(model) {
  return model.layers.find((l) => l.node === state.values.ch_layer) ?? model.layers[0];
}

// --- loading: fill `data`, then render -----------------------------------------------------------------------------
/** The state's model, layer and k as the API offers them (saying so when a link asked for what it does not offer). */
function settle() {
  const model = currentModel();
  if (state.values.ch_model && state.values.ch_model !== model.id) {
    showError(`model '${state.values.ch_model}' has no top examples (it does not take the shipped digits, or you ` +
      `may not use it): showing ${model.id}`);
  }
  state.set({ ch_model: model.id }, { silent: true });
  const layer = currentLayer(model);
  if (state.values.ch_layer && state.values.ch_layer !== layer.node) {
    showError(`layer '${state.values.ch_layer}' of ${model.id} has no channels of its own: showing ${layer.node}`);
  }
  state.set({ ch_layer: layer.node }, { silent: true });
  if (![4, 6, 9].includes(state.values.ch_k)) state.set({ ch_k: DEFAULTS.ch_k }, { silent: true });
  return { model, layer };
}

/** The top examples of the state's layer (the first time for a model: its ranking job, with progress). */
async function loadLayer() {
  if (!data.models?.length) return;
  const { model, layer } = settle();
  stopQueue();
  layerAbort?.abort();
  layerAbort = new AbortController();
  const request = ++data.layerRequest;
  data.layer = null;
  data.job = null;
  clearError();
  render(state, data);
  const path = `/api/models/${encodeURIComponent(model.id)}/nodes/${encodeURIComponent(layer.node)}/top-examples` +
    `?k=${state.values.ch_k}`;
  let answer;
  try {
    answer = await topExamples(path, model, layerAbort.signal, request);
  } catch (err) {
    if (request === data.layerRequest) showError(err, `top examples of ${layer.node}`);
    return;
  } finally {
    if (request === data.layerRequest) {
      data.job = null;
      render(state, data);
    }
  }
  if (request !== data.layerRequest) return;
  data.layer = answer;
  render(state, data);
  loadDetail();
}

/** The answer of a top-examples route; the first time for a model, follow its job (with progress) and ask again. */
async function topExamples(path, model, signal, request) {
  const response = await api(path, { as: "response", label: "Loading the top examples…", signal });
  const answer = await response.json();
  if (response.status !== 202) return answer;
  const show = (summary) => {
    if (request !== data.layerRequest) return;
    data.job = { model, summary };
    render(state, data);
  };
  show(answer);
  await runJob(answer, { onProgress: show, signal, label: "Ranking the digits…" });
  return api(path, { label: "Loading the top examples…", signal });
}

/** The state's channel's top digits, whole. */
async function loadDetail() {
  const channel = state.values.ch_channel;
  const answer = data.layer;
  if (channel < 0 || !answer) return;
  if (!answer.channels.some((c) => c.channel === channel)) {
    showError(`${answer.node} has no channel ${channel}: it has ${answer.channels.length}`);
    return;
  }
  const request = ++data.detailRequest;
  const path = `/api/models/${encodeURIComponent(answer.model_id)}/nodes/${encodeURIComponent(answer.node)}` +
    `/channels/${channel}/top-examples?k=${DETAIL_K}`;
  let one;
  try {
    one = await api(path, { label: "Loading the channel's examples…" });
  } catch (err) {
    showError(err, `channel ${channel}`);
    return;
  }
  if (request !== data.detailRequest || data.layer !== answer) return;
  data.detail = { answer, channel, one };
  render(state, data);
}

// --- feature visualisation -----------------------------------------------------------------------------------
function visKey(answer, channel) {
  return `${answer.model_id}/${answer.node}/${channel}`;
}

/** Start (or find) the feature visualisation of one channel; its preview improves as the job runs. */
function visualise(answer, channel, { signal, cancel = false } = {}) {
  const key = visKey(answer, channel);
  const known = data.visualisations.get(key);
  if (known?.result) return Promise.resolve(known.result);
  if (known?.running) return known.running;
  const entry = { running: null, last: null };
  data.visualisations.set(key, entry);
  entry.running = (async () => {
    const path = `/api/models/${encodeURIComponent(answer.model_id)}/feature-visualisation`;
    try {
      const response = await api(path, { json: { node: answer.node, channel, ...FEATURE_VIS }, as: "response",
        label: "Starting the feature visualisation…", signal });
      let result = await response.json();
      if (response.status === 202) {
        result = await runJob(result, { signal, cancel, label: "Visualising…", onProgress: (summary) => {
          entry.last = summary;
          render(state, data);
        } });
      }
      data.visualisations.set(key, { result });
      render(state, data);
      return result;
    } catch (err) {
      data.visualisations.delete(key);
      render(state, data);
      if (err.name !== "AbortError") showError(err, `visualising channel ${channel} of ${answer.node}`);
      throw err;
    }
  })();
  render(state, data);
  return entry.running;
}

/** "Visualise every channel": one job after another, never all at once; the button stops it. */
async function visualiseAll() {
  const answer = data.layer;
  if (!answer) return;
  const mine = { abort: new AbortController(), channel: null };
  data.queue = mine;
  render(state, data);
  try {
    for (const { channel } of answer.channels) {
      if (mine.abort.signal.aborted || data.layer?.node !== answer.node) break;
      const done = data.visualisations.get(visKey(answer, channel))?.result;
      if (done) continue;
      mine.channel = channel;
      render(state, data);
      try {
        await visualise(answer, channel, { signal: mine.abort.signal, cancel: true });
      } catch {
        break; // stopped, or refused (the banner says why)
      }
    }
  } finally {
    if (data.queue === mine) data.queue = null;
    render(state, data);
  }
}

function stopQueue() {
  if (!data.queue) return;
  data.queue.abort.abort();
  data.queue = null;
  render(state, data);
}

// --- rendering: the view from the state and `data` -----------------------------------------------------------------
/** The whole view from the state and what it knows; calling it again changes nothing. */
function render(state, data) {
  const s = state.values;
  const { models } = data;
  if (models && fresh("models", [models])) $("ch-model").replaceChildren(...models.map((m) => new Option(`${m.name} (${m.id})`, m.id)));
  if (models && !models.length) {
    $("ch-summary").textContent = "No model you may use takes the shipped digits: top examples need one.";
    return;
  }
  const model = models ? currentModel() : null;
  if (model) {
    if ($("ch-model").value !== model.id) $("ch-model").value = model.id;
    if (fresh("layers", [model])) {
      $("ch-layer").replaceChildren(...model.layers.map((l) => new Option(
        `${l.node} (${l.op}, ${l.output_shape.join("×")}: ${l.channels} channel${l.channels === 1 ? "" : "s"})`, l.node)));
    }
    const layer = currentLayer(model);
    if ($("ch-layer").value !== layer.node) $("ch-layer").value = layer.node;
    $("ch-k").value = String(s.ch_k);
  }
  renderJob(data.job);
  if (fresh("grid", [data.layer])) renderGrid(data.layer);
  for (const box of $("ch-grid").querySelectorAll(".channel-cell .feature-vis")) renderVisualisation(box, data);
  renderQueueButton(data);
  renderDetail(s, data);
}

function renderJob(job) {
  $("ch-job").hidden = !job;
  if (!job) return;
  const { model, summary } = job;
  const count = (n) => n.toLocaleString("en-GB");
  const progress = summary.total && summary.status === "running"
    ? `${count(summary.done)} of ${count(summary.total)} digits…` : progressText(summary, "digits");
  $("ch-job-text").textContent = `Ranking the 10,000 shipped digits for every channel of ${model.id}, once (the ` +
    `answer is kept for every layer): ${progress}`;
  const bar = $("ch-job-progress");
  bar.max = summary.total || 1;
  bar.value = summary.done || 0;
}

// --- the grid ------------------------------------------------------------------------------------------------
/** The explorer on `example`'s digit with the unit where the channel peaks selected (its map, its receptive field). */
function explorerLink(answer, channel, example) {
  const unit = [answer.node, channel, ...(example ? example.position : [])];
  const query = new URLSearchParams({ model: answer.model_id, layer: answer.node, unit: unit.join(",") });
  if (example) query.set("digit", example.index);
  return `/?${query}`;
}

function describeField(answer) {
  const rf = answer.receptive_field;
  if (rf.status === "local") {
    const [h, w] = rf.axes;
    return `Each unit of ${answer.node} reads ${h.size}×${w.size} pixels of the digit (receptive field r = ${h.size}, ` +
      `effective stride S = ${h.stride}, padding P = ${h.padding}); a crop with a dashed border reached past the ` +
      "digit's edge and was clipped.";
  }
  return answer.note || `Units of ${answer.node} see the whole digit.`;
}

/** The grid of channels of the layer's answer (empty while it loads). */
function renderGrid(answer) {
  if (!answer) {
    $("ch-grid").replaceChildren();
    $("ch-summary").textContent = "";
    return;
  }
  const channels = answer.channels.length;
  $("ch-summary").textContent = `${answer.model_id} · ${answer.node}, output ${answer.output_shape.join("×")}: ` +
    `${channels} channel${channels === 1 ? "" : "s"}, each with the ${answer.k} digits of ${answer.dataset} that ` +
    `activate it most, ranked by ${answer.score}; the number under a crop is that value. ${describeField(answer)}`;
  $("ch-grid").replaceChildren(...answer.channels.map((c) => channelCell(answer, c)));
}

function exampleFigure(answer, channel, example, picture = "crop_url") {
  const where = example.position.length ? ` at (${example.position.join(", ")})` : "";
  const words = `digit ${example.label} (#${example.index}, ${example.split}), value ${fmt(example.value)}${where}`;
  const img = el("img", { src: example[picture], alt: words, loading: "lazy",
    class: `crop${example.box.clipped ? " clipped" : ""}` });
  const link = el("a", { href: explorerLink(answer, channel, example), title: `${words}: open it in the explorer`,
    class: "example-link" }, img);
  return el("figure", { class: "example", "data-index": example.index },
    link, el("figcaption", { class: "value", text: fmt(example.value) }));
}

function channelCell(answer, { channel, examples, tied }) {
  const cell = el("article", { class: "channel-cell", "data-channel": channel,
    "aria-label": `channel ${channel} of ${answer.node}` });
  const title = el("a", { class: "channel-link", href: explorerLink(answer, channel, examples[0]),
    title: `open channel ${channel}'s map in the explorer, on its top digit, at its strongest unit` },
  `Channel ${channel}`);
  const more = el("button", { type: "button", class: "quiet small-button more",
    "aria-label": `channel ${channel}: its ${DETAIL_K} top digits, whole, with the box each unit reads` },
  `all ${DETAIL_K}`);
  more.addEventListener("click", () => state.set({ ch_channel: channel }, { push: true }));
  cell.append(el("header", {}, title, more),
    el("div", { class: "examples" }, ...examples.map((e) => exampleFigure(answer, channel, e))));
  if (tied) {
    const value = examples[0].value;
    // examples[0] is the largest value over all 10,000 digits: 0 means the channel is never positive on them
    const why = value === 0 ? "it is never above 0 on any of the 10,000 digits"
      : "many digits hold exactly the same pixels where it peaks (strokes saturate at full white), so they reach " +
        "the same value";
    cell.append(el("p", { class: "small tied-note",
      text: `All ${examples.length} tied at ${fmt(value)}: ${why}; their order is by index, not by the channel.` }));
  }
  const fv = el("div", { class: "feature-vis" });
  fv.channel = channel;
  cell.append(fv);
  return cell;
}

/** A channel's feature-visualisation box: its button, the job's preview and progress, or the picture found. */
function renderVisualisation(box, data) {
  const answer = data.layer;
  const { channel } = box;
  const known = data.visualisations.get(visKey(answer, channel));
  if (known?.result) {
    if (box.shown !== known) showVisResult(box, known.result);
    box.shown = known;
    return;
  }
  if (!known?.running) {
    if (box.shown !== "button") {
      const button = el("button", { type: "button", class: "secondary small-button visualise",
        "aria-label": `visualise channel ${channel}: the input that excites it most` }, "Visualise");
      button.addEventListener("click", () => visualise(answer, channel).catch(() => {}));
      box.replaceChildren(button);
    }
    box.shown = "button";
    return;
  }
  if (box.shown !== known) {
    box.replaceChildren(
      el("img", { class: "vis-preview", alt: `channel ${channel}: the input being optimised`, hidden: "" }),
      el("progress", { max: "1", value: "0", class: "vis-progress", "aria-label": `feature visualisation of channel ${channel}` }),
      el("p", { class: "small vis-text" }));
    box.shown = known;
  }
  const last = known.last;
  if (!last) return;
  const bar = box.querySelector("progress");
  bar.max = last.total || 1;
  bar.value = last.done || 0;
  box.querySelector(".vis-text").textContent = progressText(last);
  if (last.preview_url) {
    // the same file rewritten as the job runs: a new query per step so that the browser fetches it again
    const img = box.querySelector("img.vis-preview");
    const src = `${last.preview_url}${last.preview_url.includes("?") ? "&" : "?"}v=${last.done}`;
    if (img.getAttribute("src") !== src) img.src = src;
    img.hidden = false;
  }
}

/** A finished FeatureVisualisation (app/schemas/feature_vis.py): the picture, and how far it raised the objective
 * (the channel's mean over its positions) beside the digits' own values. */
function showVisResult(box, result) {
  const ref = result.reference;
  const words = `${result.objective.description}: ${fmt(result.start)} on the starting picture, ${fmt(result.end)} ` +
    `on this one; over ${ref.description}, mean ${fmt(ref.mean)}, best ${fmt(ref.max)}`;
  const ratio = result.ratio === null ? `${fmt(result.end)} (the digits' mean is not above 0)`
    : `×${fmt(result.ratio)} the digits' mean`;
  box.replaceChildren(
    el("img", { class: "vis-image", src: result.image_url, alt: `feature visualisation: ${words}` }),
    el("p", { class: "small vis-text", title: words, text: ratio }));
  if (result.ratio !== null && result.ratio < 1) {
    // a nearly dead channel: zero on the starting picture and on almost every digit, so almost no gradient to climb
    box.append(el("p", { class: "small tied-note vis-failed", text: "Gradient ascent found no picture that " +
      `excites it more than the digits do: averaged over its positions (the objective), it barely fires on any ` +
      `input (best digit ${fmt(ref.max)}, mean ${fmt(ref.mean)}), so it left almost no gradient to climb.` }));
  }
}

function renderQueueButton(data) {
  const button = $("ch-visualise-all");
  const count = data.layer?.channels.length ?? 0;
  button.textContent = data.queue ? "Stop visualising"
    : `Visualise every channel${count ? ` (${count}, one after another)` : ""}`;
  button.setAttribute("aria-pressed", String(Boolean(data.queue)));
  button.disabled = !data.layer;
  const channel = data.queue?.channel ?? null;
  $("ch-visualise-note").textContent = channel !== null ? `visualising channel ${channel} of ${count}…`
    : "or one channel at a time with its own button";
}

// --- one channel in detail -----------------------------------------------------------------------------------
/** The state's channel marked in the grid, and its top digits whole (the last ones stay until the new ones came). */
function renderDetail(s, data) {
  const channel = s.ch_channel;
  const answer = data.layer;
  const cell = channel >= 0 && answer ? $("ch-grid").querySelector(`.channel-cell[data-channel="${channel}"]`) : null;
  root.querySelectorAll(".channel-cell.selected").forEach((c) => { if (c !== cell) c.classList.remove("selected"); });
  cell?.classList.add("selected");
  const detail = data.detail;
  if (channel < 0 || !answer) {
    $("ch-detail").hidden = true;
    return;
  }
  if (!cell || !detail || detail.answer !== answer) return;
  if (!fresh("detail", [detail])) return;
  const { one } = detail;
  $("ch-detail-title").textContent = `Channel ${detail.channel} of ${one.node}: its ${one.examples.length} top digits`;
  $("ch-detail-text").textContent = "Each digit whole, with the box its strongest unit reads outlined in orange; " +
    "the label, the value and where in the map it peaked. Click one to see the channel's map on it in the explorer.";
  $("ch-detail-examples").replaceChildren(...one.examples.map((e) => {
    const figure = exampleFigure(one, detail.channel, e, "digit_url");
    const rows = `rows ${e.box.clipped_start[0]}–${e.box.clipped_end[0]}, columns ${e.box.clipped_start[1]}–` +
      `${e.box.clipped_end[1]}${e.box.clipped ? " (clipped at the edge)" : ""}`;
    figure.querySelector("figcaption").textContent = `#${e.rank}: a ${e.label}, value ${fmt(e.value)}` +
      `${e.position.length ? ` at (${e.position.join(", ")})` : ""}; ${e.box.whole ? "the whole digit" : rows}`;
    return figure;
  }));
  $("ch-detail").hidden = false;
  root.querySelector(`.channel-cell[data-channel="${detail.channel}"]`)?.scrollIntoView({ block: "nearest" });
}
