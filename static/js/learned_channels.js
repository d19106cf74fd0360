// What each channel detects: the atlas of one layer of a digit model. One cell per channel with its top examples
// (GET /api/models/{id}/nodes/{node}/top-examples: the shipped digits that activate it most, cropped to the receptive
// field of the unit where it peaks) and, on demand, its feature visualisation (POST .../feature-visualisation, a job
// whose preview improves as it runs; its objective is the channel's mean over positions, where the examples rank by
// the maximum). A channel opens its maps in the explorer; "all 16" shows its examples whole,
// with the box the unit reads. The first request for a model ranks all 10,000 digits once (a job with progress).
//
// Which models and layers have top examples is the API's to say (GET /api/top-examples/models). The state (ch_*) is
// in the URL beside the page's `view`, so the explorer can link to a layer's atlas.
import { api, clearError, showError } from "./api.js";
import { el, fmt } from "./explain/common.js";
import { progressText, runJob } from "./jobs.js";
import { createState } from "./state.js";
import { within } from "./dom.js";

// ch_channel: the channel opened in the detail (-1: none)
const DEFAULTS = { ch_model: "", ch_layer: "", ch_k: 6, ch_channel: -1 };
const PREFERRED_MODEL = "digits_classic";
const DETAIL_K = 16;
const FEATURE_VIS = { steps: 128, seed: 0 };

let root = null;
let state = null;
let models = []; // [{ id, name, layers: [{ node, op, output_shape, channels }] }]
let layerAnswer = null; // the API's LayerTopExamples for the layer shown
let layerToken = 0;
let layerAbort = null; // stops following the top-examples job when the layer changes
const visualisations = new Map(); // "model/node/channel" -> { result } or { running: Promise }
let queue = null; // { abort: AbortController } while "Visualise every channel" runs

const $ = within(() => root);

export function mount(element) {
  root = element;
  root.dataset.mounted = "1";
  state = createState(DEFAULTS, (changed) => {
    // Back / Forward (the view's own changes are silent and act directly)
    if (changed.includes("ch_model") || changed.includes("ch_layer") || changed.includes("ch_k")) showModel();
    else if (changed.includes("ch_channel")) showDetail();
  });
  $("ch-model").addEventListener("change", () => {
    state.set({ ch_model: $("ch-model").value, ch_layer: "", ch_channel: -1 }, { push: true, silent: true });
    showModel();
  });
  $("ch-layer").addEventListener("change", () => {
    state.set({ ch_layer: $("ch-layer").value, ch_channel: -1 }, { push: true, silent: true });
    showLayer();
  });
  $("ch-k").addEventListener("change", () => {
    state.set({ ch_k: Number($("ch-k").value) }, { silent: true });
    showLayer();
  });
  $("ch-visualise-all").addEventListener("click", () => (queue ? stopQueue() : visualiseAll()));
  $("ch-detail-close").addEventListener("click", () => {
    state.set({ ch_channel: -1 }, { push: true, silent: true });
    showDetail();
  });
  init();
}

async function init() {
  try {
    models = (await api("/api/top-examples/models", { label: "Loading the digit models…" })).models;
  } catch (err) {
    showError(err, "loading the digit models");
    return;
  }
  $("ch-model").replaceChildren(...models.map((m) => new Option(`${m.name} (${m.id})`, m.id)));
  if (!models.length) {
    $("ch-summary").textContent = "No model you may use takes the shipped digits: top examples need one.";
    return;
  }
  showModel();
}

function currentModel() {
  const wanted = models.find((m) => m.id === state.values.ch_model);
  return wanted ?? models.find((m) => m.id === PREFERRED_MODEL) ?? models[0];
}

function showModel() {
  const model = currentModel();
  if (!model) return;
  if (state.values.ch_model && state.values.ch_model !== model.id) {
    showError(`model '${state.values.ch_model}' has no top examples (it does not take the shipped digits, or you ` +
      `may not use it): showing ${model.id}`);
  }
  state.set({ ch_model: model.id }, { silent: true });
  $("ch-model").value = model.id;
  $("ch-layer").replaceChildren(...model.layers.map((l) => new Option(
    `${l.node} (${l.op}, ${l.output_shape.join("×")}: ${l.channels} channel${l.channels === 1 ? "" : "s"})`, l.node)));
  showLayer();
}

function currentLayer(model) {
  return model.layers.find((l) => l.node === state.values.ch_layer) ?? model.layers[0];
}

async function showLayer() {
  const model = currentModel();
  const layer = currentLayer(model);
  if (state.values.ch_layer && state.values.ch_layer !== layer.node) {
    showError(`layer '${state.values.ch_layer}' of ${model.id} has no channels of its own: showing ${layer.node}`);
  }
  state.set({ ch_layer: layer.node }, { silent: true });
  $("ch-layer").value = layer.node;
  if (![4, 6, 9].includes(state.values.ch_k)) state.set({ ch_k: DEFAULTS.ch_k }, { silent: true });
  $("ch-k").value = String(state.values.ch_k);
  stopQueue();
  layerAbort?.abort();
  layerAbort = new AbortController();
  const token = ++layerToken;
  layerAnswer = null;
  updateQueueButton();
  $("ch-grid").replaceChildren();
  $("ch-summary").textContent = "";
  clearError();
  const path = `/api/models/${encodeURIComponent(model.id)}/nodes/${encodeURIComponent(layer.node)}/top-examples` +
    `?k=${state.values.ch_k}`;
  let answer;
  try {
    answer = await topExamples(path, model, layerAbort.signal);
  } catch (err) {
    if (token === layerToken) showError(err, `top examples of ${layer.node}`);
    return;
  } finally {
    if (token === layerToken) $("ch-job").hidden = true;
  }
  if (token !== layerToken) return;
  layerAnswer = answer;
  renderGrid(answer);
  showDetail();
}

/** The answer of a top-examples route; the first time for a model, follow its job (with progress) and ask again. */
async function topExamples(path, model, signal) {
  const response = await api(path, { as: "response", label: "Loading the top examples…", signal });
  const answer = await response.json();
  if (response.status !== 202) return answer;
  $("ch-job").hidden = false;
  const show = (summary) => {
    const count = (n) => n.toLocaleString("en-GB");
    const progress = summary.total && summary.status === "running"
      ? `${count(summary.done)} of ${count(summary.total)} digits…` : progressText(summary, "digits");
    $("ch-job-text").textContent = `Ranking the 10,000 shipped digits for every channel of ${model.id}, once (the ` +
      `answer is kept for every layer): ${progress}`;
    const bar = $("ch-job-progress");
    bar.max = summary.total || 1;
    bar.value = summary.done || 0;
  };
  await runJob(answer, { onProgress: show, signal, label: "Ranking the digits…" });
  return api(path, { label: "Loading the top examples…", signal });
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

function renderGrid(answer) {
  const channels = answer.channels.length;
  $("ch-summary").textContent = `${answer.model_id} · ${answer.node}, output ${answer.output_shape.join("×")}: ` +
    `${channels} channel${channels === 1 ? "" : "s"}, each with the ${answer.k} digits of ${answer.dataset} that ` +
    `activate it most, ranked by ${answer.score}; the number under a crop is that value. ${describeField(answer)}`;
  $("ch-grid").replaceChildren(...answer.channels.map((c) => channelCell(answer, c)));
  updateQueueButton();
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
  more.addEventListener("click", () => {
    state.set({ ch_channel: channel }, { push: true, silent: true });
    showDetail();
  });
  const fv = el("div", { class: "feature-vis" });
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
  cell.append(fv);
  drawVisualisation(fv, answer, channel);
  return cell;
}

// --- feature visualisation -----------------------------------------------------------------------------------
function visKey(answer, channel) {
  return `${answer.model_id}/${answer.node}/${channel}`;
}

function drawVisualisation(box, answer, channel) {
  const known = visualisations.get(visKey(answer, channel));
  if (known?.result) {
    showVisResult(box, known.result);
    return;
  }
  const button = el("button", { type: "button", class: "secondary small-button visualise",
    "aria-label": `visualise channel ${channel}: the input that excites it most` }, "Visualise");
  button.addEventListener("click", () => visualise(answer, channel).catch(() => {}));
  box.replaceChildren(button);
  if (known?.running) known.attach(box);
}

/** The channel's feature-visualisation box on screen, if the grid shows that model's layer now. */
function visBox(answer, channel) {
  if (layerAnswer?.model_id !== answer.model_id || layerAnswer?.node !== answer.node) return null;
  return $("ch-grid").querySelector(`.channel-cell[data-channel="${channel}"] .feature-vis`);
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

/** Start (or find) the feature visualisation of one channel; the preview improves as the job runs. */
function visualise(answer, channel, { signal, cancel = false } = {}) {
  const key = visKey(answer, channel);
  const known = visualisations.get(key);
  if (known?.result) return Promise.resolve(known.result);
  if (known?.running) return known.running;
  let last = null; // the latest summary, to draw a box attached later (the grid redrawn meanwhile)
  const draw = (box) => {
    if (!box) return;
    const bar = box.querySelector("progress") ?? el("progress", { max: "1", value: "0", class: "vis-progress",
      "aria-label": `feature visualisation of channel ${channel}` });
    const img = box.querySelector("img.vis-preview") ?? el("img", { class: "vis-preview", alt:
      `channel ${channel}: the input being optimised`, hidden: "" });
    const text = box.querySelector(".vis-text") ?? el("p", { class: "small vis-text" });
    if (!box.contains(bar)) box.replaceChildren(img, bar, text);
    if (last) {
      bar.max = last.total || 1;
      bar.value = last.done || 0;
      text.textContent = progressText(last);
      if (last.preview_url) {
        // the same file rewritten as the job runs: a new query per step so that the browser fetches it again
        img.src = `${last.preview_url}${last.preview_url.includes("?") ? "&" : "?"}v=${last.done}`;
        img.hidden = false;
      }
    }
  };
  const entry = { attach: (box) => draw(box) };
  entry.running = (async () => {
    const path = `/api/models/${encodeURIComponent(answer.model_id)}/feature-visualisation`;
    draw(visBox(answer, channel));
    try {
      const response = await api(path, { json: { node: answer.node, channel, ...FEATURE_VIS }, as: "response",
        label: "Starting the feature visualisation…", signal });
      let result = await response.json();
      if (response.status === 202) {
        result = await runJob(result, { signal, cancel, label: "Visualising…", onProgress: (summary) => {
          last = summary;
          draw(visBox(answer, channel));
        } });
      }
      visualisations.set(key, { result });
      const box = visBox(answer, channel);
      if (box) showVisResult(box, result);
      return result;
    } catch (err) {
      visualisations.delete(key);
      const box = visBox(answer, channel);
      if (box) drawVisualisation(box, answer, channel);
      if (err.name !== "AbortError") showError(err, `visualising channel ${channel} of ${answer.node}`);
      throw err;
    }
  })();
  visualisations.set(key, entry);
  return entry.running;
}

/** "Visualise every channel": one job after another, never all at once; the button stops it. */
async function visualiseAll() {
  const answer = layerAnswer;
  if (!answer) return;
  queue = { abort: new AbortController() };
  updateQueueButton();
  const mine = queue;
  try {
    for (const { channel } of answer.channels) {
      if (mine.abort.signal.aborted || layerAnswer?.node !== answer.node) break;
      const done = visualisations.get(visKey(answer, channel))?.result;
      if (done) continue;
      $("ch-visualise-note").textContent = `visualising channel ${channel} of ${answer.channels.length}…`;
      try {
        await visualise(answer, channel, { signal: mine.abort.signal, cancel: true });
      } catch {
        break; // stopped, or refused (the banner says why)
      }
    }
  } finally {
    if (queue === mine) queue = null;
    updateQueueButton();
  }
}

function stopQueue() {
  if (!queue) return;
  queue.abort.abort();
  queue = null;
  updateQueueButton();
}

function updateQueueButton() {
  const button = $("ch-visualise-all");
  const count = layerAnswer?.channels.length ?? 0;
  button.textContent = queue ? "Stop visualising"
    : `Visualise every channel${count ? ` (${count}, one after another)` : ""}`;
  button.setAttribute("aria-pressed", String(Boolean(queue)));
  button.disabled = !layerAnswer;
  if (!queue) $("ch-visualise-note").textContent = "or one channel at a time with its own button";
}

// --- one channel in detail -----------------------------------------------------------------------------------
let detailToken = 0;

async function showDetail() {
  const channel = state.values.ch_channel;
  const answer = layerAnswer;
  root.querySelectorAll(".channel-cell.selected").forEach((c) => c.classList.remove("selected"));
  if (channel < 0 || !answer) {
    $("ch-detail").hidden = true;
    return;
  }
  const cell = $("ch-grid").querySelector(`.channel-cell[data-channel="${channel}"]`);
  if (!cell) {
    showError(`${answer.node} has no channel ${channel}: it has ${answer.channels.length}`);
    return;
  }
  cell.classList.add("selected");
  const token = ++detailToken;
  const path = `/api/models/${encodeURIComponent(answer.model_id)}/nodes/${encodeURIComponent(answer.node)}` +
    `/channels/${channel}/top-examples?k=${DETAIL_K}`;
  let one;
  try {
    one = await api(path, { label: "Loading the channel's examples…" });
  } catch (err) {
    showError(err, `channel ${channel}`);
    return;
  }
  if (token !== detailToken || layerAnswer !== answer) return;
  $("ch-detail-title").textContent = `Channel ${channel} of ${one.node}: its ${one.examples.length} top digits`;
  $("ch-detail-text").textContent = "Each digit whole, with the box its strongest unit reads outlined in orange; " +
    "the label, the value and where in the map it peaked. Click one to see the channel's map on it in the explorer.";
  $("ch-detail-examples").replaceChildren(...one.examples.map((e) => {
    const figure = exampleFigure(one, channel, e, "digit_url");
    const rows = `rows ${e.box.clipped_start[0]}–${e.box.clipped_end[0]}, columns ${e.box.clipped_start[1]}–` +
      `${e.box.clipped_end[1]}${e.box.clipped ? " (clipped at the edge)" : ""}`;
    figure.querySelector("figcaption").textContent = `#${e.rank}: a ${e.label}, value ${fmt(e.value)}` +
      `${e.position.length ? ` at (${e.position.join(", ")})` : ""}; ${e.box.whole ? "the whole digit" : rows}`;
    return figure;
  }));
  $("ch-detail").hidden = false;
  cell.scrollIntoView({ block: "nearest" });
}
