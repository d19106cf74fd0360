// The explorer's sidebar drawn from its state and data (part of explorer_render.js's render): the model menu and
// what the model is, the input as given and as the model sees it, the note on the input's kind, the prediction, and
// the colour scale's controls. Each part writes only what differs, so drawing it again changes nothing.
import { drawBars } from "./bars.js";
import { SIGNED, legend } from "./colormap.js";
import { $, el } from "./dom.js";
import { showSamplesFor } from "./inputs.js";
import { inputChannels } from "./models.js";
import { changeTracker, showModelOptions } from "./redraw.js";
import { modelInfo } from "./explorer_data.js";

const fresh = changeTracker();

/** Set an element's text, if it is another. */
export function setText(element, text) {
  if (element.textContent !== text) element.textContent = text;
}

/** Show or hide an element, if it is not already so. */
export function setHidden(element, hidden) {
  if (element.hidden !== hidden) element.hidden = hidden;
}

/** Set an attribute, if it has another value. */
export function setAttr(element, name, value) {
  if (element.getAttribute(name) !== value) element.setAttribute(name, value);
}

/** The model menu, what the model is, and the inputs offered for it (the pad and digits, or photos). */
function renderModel(state, data) {
  showModelOptions($("model"), data.models, state.values.model);
  const info = modelInfo(state, data);
  if (!info) return;
  setText($("model-info"), [info.task, info.input_shape && `input ${info.input_shape.join("×")}`,
    info.num_classes && `${info.num_classes} classes`, info.source].filter(Boolean).join(" · "));
  const digits = inputChannels(info) === 1;
  setHidden($("draw-box"), !digits);
  if (fresh("samples", [digits])) showSamplesFor(digits);
  document.querySelectorAll("#samples .sample").forEach((b) => setAttr(b, "aria-pressed", String(b.dataset.file === state.values.sample)));
}

/** The input as it was given, and as the model sees it (GET /api/runs/{id}/input.png, once this input's run is in). */
function renderInput(state, data) {
  const { input } = data;
  const preview = $("input-preview");
  if (input?.url) {
    if (preview.getAttribute("src") !== input.url) preview.src = input.url;
  } else if (preview.hasAttribute("src")) {
    preview.removeAttribute("src");
  }
  const name = input?.name ?? "";
  preview.classList.toggle("pixelated", name === "your drawing" || name.startsWith("shipped digit"));
  // a file that is not a picture would show the browser's broken-image icon: the error says what went wrong
  setHidden($("input-figure"), !input || input.unreadable);
  if (input) setText($("input-caption"), name);
  renderModelInput(state, data);
}

/**
 * The model's input as a picture, beside the file (GET /api/runs/{id}/input.png: the input's numbers with the
 * model's normalisation undone, e.g. EfficientNet's 224 × 224 centre crop); hidden until this input's run is in,
 * and for a model that does not take pictures.
 */
function renderModelInput(state, data) {
  const box = $("input-model-box");
  const caption = $("input-model-caption");
  const picture = $("input-model");
  const info = modelInfo(state, data);
  const run = data.input && data.runInput === data.input ? data.run : null;
  const [, channels, height, width] = run?.input_shape ?? [];
  if (!run || !info?.takes_images || !height) {
    setHidden(box, true);
    setHidden(caption, true);
    if (picture.hasAttribute("src")) picture.removeAttribute("src");
    return;
  }
  const src = `/api/runs/${encodeURIComponent(run.run_id)}/input.png`;
  if (picture.getAttribute("src") !== src) picture.src = src;
  picture.classList.toggle("pixelated", height <= 64);
  setText($("input-model-size"), `what the model sees: ${height} × ${width}`);
  const pre = info.preprocessing;
  const how = data.input.name.toLowerCase().endsWith(".npy") || !pre ? "the tensor sent, its normalisation undone"
    : `the picture's shorter side scaled to ${pre.resize} pixels, the centre ${pre.crop} × ${pre.crop} kept` +
      (pre.grayscale ? ", in grey" : ", in colour (RGB)");
  const parts = channels === 3 ? "its red, green and blue channels are the first column's maps"
    : "its one channel is the first column's map";
  setText(caption, `What the model sees: ${how}; ${parts}.`);
  setHidden(caption, false);
  setHidden(box, false);
}

/** What the model was trained on, in words, from the API's task, source and input shape (null: not known). */
function trainedOn(info) {
  const [channels, height, width] = info.input_shape ?? [];
  if (/digit/i.test(info.task ?? "")) {
    return `handwritten digits${/MNIST/.test(info.source ?? "") ? " (MNIST)" : ""}, grey, ${height} × ${width}`;
  }
  if (/imagenet/i.test(info.task ?? "")) return `colour photos (ImageNet${info.num_classes ? `, ${info.num_classes} classes` : ""})`;
  return channels === 1 ? "one-channel (grey) pictures" : channels === 3 ? "colour pictures" : null;
}

const KIND_WORDS = {
  drawing: "a digit drawn by hand, in grey", digit: "a handwritten digit, in grey", photo: "a colour photo",
  colour: "a colour picture", grey: "a picture in grey levels only",
};

/**
 * Beside the prediction, a note when the input is not the kind of picture the model was trained on: a colour photo
 * on a one-channel digit model, a drawn or shipped digit (or any grey picture) on a colour ImageNet model.
 */
function renderKindNote(state, data) {
  const note = $("input-kind-note");
  const model = state.values.model;
  const checked = data.kind && data.kind.input === data.input && data.kind.model === model ? data.kind : null;
  const info = modelInfo(state, data);
  if (!fresh("kind", [checked, info])) return;
  note.hidden = true;
  delete note.dataset.input;
  delete note.dataset.model;
  if (!checked) return;
  note.dataset.input = checked.input.name; // checked (shown or not) for this input and model: what the tests wait for
  note.dataset.model = model;
  const { kind } = checked;
  if (!info || !kind) return;
  const channels = inputChannels(info);
  const wrong = channels === 1 ? kind === "photo" || kind === "colour" : channels === 3 && ["drawing", "digit", "grey"].includes(kind);
  const trained = trainedOn(info);
  if (!wrong || !trained) return;
  const [, height, width] = info.input_shape;
  const read = channels === 1 ? ` The model reads it turned grey and cut to ${height} × ${width}.` : "";
  const classes = info.num_classes ? ` Its answer is still one of its ${info.num_classes} classes.` : "";
  // ImageNet holds a few grey photos among its colour ones: a grey upload is only said to have no colour
  const lead = kind === "grey" ? "No colour in this picture." : "Not the kind of picture this model was trained on.";
  note.replaceChildren(el("strong", { text: lead }),
    ` ${info.name ?? info.id} learned from ${trained}; this is ${KIND_WORDS[kind]}.${read}${classes}`);
  note.hidden = false;
}

/** The prediction's bars (the last answer's, until the next one), or why there are none. */
function renderPredictions(state, data) {
  if (fresh("predictions", [data.classes, data.empty])) {
    if (data.classes) drawBars($("predictions"), data.classes);
    else if (!data.run || data.empty) {
      $("predictions").replaceChildren(el("p", { class: "small muted", text: "Pick an image to see what the network thinks." }));
    }
  }
  setHidden($("explain-softmax"), !data.run?.classes);
}

/** The colour scale's legend and the words for its ends: the scale (signed or not) and the range (each map or the layer). */
function renderScale(state, data) {
  const { scale, range } = state.values;
  if (fresh("legend", [scale])) legend($("scale-legend"), scale);
  const layer = range === "layer";
  const signed = SIGNED.has(scale);
  const whose = layer ? "the layer's" : "each map's";
  setText($("scale-low"), signed ? "−max" : `${whose} minimum`);
  setText($("scale-mid"), signed ? "0 (white)" : "");
  setText($("scale-high"), signed ? "+max" : `${whose} maximum`);
  setText($("scale-whose"), signed ? `max = max |value| of ${layer ? "the layer (one range for all its maps)" : "each map"}`
    : layer ? "one range for all the layer's maps" : "");
}

/** The sidebar: every part of it from the state and data. */
export function renderSidebar(state, data) {
  renderModel(state, data);
  renderInput(state, data);
  renderKindNote(state, data);
  renderPredictions(state, data);
  renderScale(state, data);
}
