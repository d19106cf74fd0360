// The explorer: pick a model and an image; the network appears as columns of layer volumes with every feature map;
// play animates the forward pass layer by layer; lecture mode shows one layer at a time.
// state → data → render: the state (state.js) is what the address says; `data` (explorer_data.js) what the page knows
// besides, the API's answers first; `render(state, data)` (explorer_render.js) draws the page from both. The handlers
// below only change the state or load data, then render.
import { SCALES } from "./colormap.js";
import { $ } from "./dom.js";
import { DrawingPad, acceptImages } from "./inputs.js";
import { inputChannels } from "./models.js";
import { animatorSteps, presenterKeys } from "./presenter.js";
import { chooseModel } from "./redraw.js";
import { bindControl, createState } from "./state.js";
import { createData, createLoads, modelInfo } from "./explorer_data.js";
import { mountViews, render } from "./explorer_render.js";
import { columnsFor, normalise } from "./explorer_steps.js";

// digit: one of the 10,000 shipped MNIST digits by index (-1: none), as the learned page's atlas links to it
const DEFAULTS = {
  model: "", sample: "", digit: -1, scale: "viridis", range: "map", filter: "auto", lecture: false, layer: "", unit: [],
  overview: false, speed: 1,
};
// The first input, one the model gets right with confidence (tests/browser/test_explorer_scales_inputs.py checks it):
// for a photo model the coffee (EfficientNet-Lite0: espresso, about 95%; the cat's best class has under 40%),
// for a digit model a held-out MNIST "3" that every shipped digit model gives over 99%.
const DEFAULT_PHOTO = "coffee.jpg";
const DEFAULT_DIGIT = 8055;
const PAD_EMPTY = "The pad is empty: draw a digit to see what the network makes of it.";

const state = createState(DEFAULTS, onChange);
const data = createData();
const loads = createLoads(state, data, update);

/** Make the state agree with the data (the columns the run has), then draw the page. */
function update() {
  normalise(state, data);
  render(state, data);
}

const views = mountViews({
  unit: pickUnit,
  layer: pickLayer,
  step: stepTo,
  play: playChanged,
  loaded: mapsLoaded,
  overview: (open) => {
    state.set({ overview: open });
    update();
  },
});

function onChange(changed) {
  if (changed.includes("model")) {
    modelChosen();
  } else {
    if (changed.includes("sample") && state.values.sample) loads.sample(state.values.sample);
    if (changed.includes("digit") && state.values.digit >= 0 && !state.values.sample) loads.digit(state.values.digit);
  }
  // other columns (another mode, range or lecture's blocks): their step is marked again
  if (["filter", "range", "lecture"].some((key) => changed.includes(key))) data.play = { ...data.play, ended: false };
  if (state.values.unit.length) loads.atlas();
  update();
}

// --- models -----------------------------------------------------------------------------------------
async function init() {
  update();
  if (!(await loads.models())) {
    update();
    return;
  }
  state.set({ model: chooseModel(data.models, state.values.model) }, { silent: true });
  if (state.values.unit.length) loads.atlas();
  await modelChosen();
}

/** The state's model: its architecture, then an input for it (the state's, the one shown, or a default one). */
async function modelChosen() {
  const loaded = await loads.model();
  update();
  if (!loaded) return;
  const { sample, digit } = state.values;
  const digits = inputChannels(modelInfo(state, data)) === 1;
  if (sample) loads.sample(sample);
  else if (digits && digit >= 0) loads.digit(digit);
  else if (data.input) loads.image(data.input.blob, data.input.name);
  else if (!digits) {
    const first = document.querySelector(`#samples .sample[data-file="${DEFAULT_PHOTO}"]:not([hidden])`) ??
      document.querySelector("#samples .sample:not([hidden])");
    if (first) state.set({ sample: first.dataset.file });
  } else {
    // a real held-out digit to start from, so the network is never empty; the pad stays free to draw on
    state.set({ digit: DEFAULT_DIGIT });
  }
}

$("model").addEventListener("change", () => state.set({ model: $("model").value, layer: "", unit: [] }, { push: true }));
$("scale").replaceChildren(...Object.entries(SCALES).map(([value, label]) => new Option(label, value)));
bindControl(state, "scale", $("scale"), { event: "change" });
bindControl(state, "range", $("range"), { event: "change", parse: (el) => el.value });
bindControl(state, "filter", $("filter"), { event: "change", parse: (el) => el.value });
bindControl(state, "speed", $("speed"), { event: "change", parse: (el) => Number(el.value) });

// --- inputs -----------------------------------------------------------------------------------------
document.querySelectorAll("#samples .sample").forEach((button) => {
  button.addEventListener("click", () => {
    if (state.values.sample === button.dataset.file) loads.sample(button.dataset.file);
    else state.set({ sample: button.dataset.file, digit: -1, unit: [] }, { push: true });
  });
});

acceptImages({
  fileInput: $("file"),
  dropTarget: document.body,
  onImage: (blob, name) => {
    state.set({ sample: "", digit: -1, unit: [] });
    loads.image(blob, name);
  },
});

// a file that is not a picture would show the browser's broken-image icon: the figure hides, the error says why
$("input-preview").addEventListener("error", () => {
  if (!data.input?.url || $("input-preview").getAttribute("src") !== data.input.url) return;
  data.input.unreadable = true;
  update();
});

// Each lifted stroke is classified at once (no debounce: a 10 ms answer should not wait 150 ms for a second
// stroke that may never come); a newer stroke's answer replaces an older one's, and the older run's feature-map
// fetches are cancelled so they do not hold the browser's six connections while the new answer waits.
const pad = new DrawingPad($("draw"), { onStroke: () => classifyDrawing() });
async function classifyDrawing() {
  if (pad.empty) return;
  state.set({ sample: "", digit: -1 });
  loads.image(await pad.toBlob28(), "your drawing");
}
$("draw-run").addEventListener("click", () => classifyDrawing());
$("draw-clear").addEventListener("click", () => {
  pad.clear();
  loads.cancel(); // an answer for the drawing just wiped must not arrive after it
  if (data.input?.name === "your drawing") loads.noInput(PAD_EMPTY);
  update();
});

// --- steps: play, the clicker's keys, lecture mode ------------------------------------------------------
/** A step of the animator (its buttons, the range, a key, Play): the layer of that column. */
function stepTo(index) {
  const node = columnsFor(state, data)?.[index];
  if (!node) return;
  data.play = { reveal: views.animator.playing, ended: false };
  data.asked.step += 1;
  state.set({ layer: node.id }, { silent: true });
  update();
}

/** Play started or stopped: run to the last step (outside lecture mode), it marks no step any more. */
function playChanged(playing) {
  const { animator } = views;
  if (!playing && !state.values.lecture && animator.step >= animator.count - 1) data.play = { ...data.play, ended: true };
  update();
}

/** A layer picked in the overview: the strip marks it and scrolls to it, as stepping there would (also when the
 * layer was already the state's, but unmarked after play ended); without a run yet, the run starts there. */
function pickLayer(id) {
  data.play = { reveal: views.animator.playing, ended: false };
  data.asked.step += 1;
  state.set({ layer: id }, { push: true });
  update();
}

/** A column's maps are on screen: the first of this input's is timed; the unit's field is outlined on them. */
function mapsLoaded(column) {
  const { timing } = data;
  if (column.node.id !== "input" && timing.firstMapMs === null && timing.responseMs !== null && views.network.run === data.run) {
    timing.firstMapMs = performance.now() - timing.startedAt;
  }
  update();
}

$("lecture").addEventListener("click", () => state.set({ lecture: !state.values.lecture }, { push: true }));
// projector mode folds the sidebar away (the maps get the width); this button brings it back over the maps
$("sidebar-toggle").addEventListener("click", () => {
  data.sidebar = !data.sidebar;
  update();
});
$("guide-open").addEventListener("click", () => {
  data.asked.guide += 1;
  update();
});
// the maps take the height left under the panels above them: measured again when these change size
const resized = () => {
  data.resized += 1;
  update();
};
window.addEventListener("resize", resized);
window.addEventListener("projectorchange", resized);
new ResizeObserver(resized).observe($("toolbar"));

// the clicker's keys (presenter.js): the layers; Esc closes the detail, then leaves lecture mode
presenterKeys({
  name: "the network's layers (a forward pass, one layer per step)",
  ...animatorSteps(views.animator),
  escape: () => {
    if (!$("detail").hidden) closeDetail();
    else if (state.values.lecture) state.set({ lecture: false });
  },
  // the drawing pad and the detail's map keep their own keys (arrows move the neuron there)
  ignore: "canvas#draw, canvas#unit-canvas",
});

// --- units: the operation detail ------------------------------------------------------------------------
/** A neuron picked (in the columns, the detail's map, the comparison's list): explained, and brought into view. */
function pickUnit(unit) {
  data.softmax = false;
  data.asked.detail += 1;
  state.set({ unit: [unit.node, unit.channel, ...(unit.y === null ? [] : [unit.y, unit.x])] }, { push: true });
  update();
}

function closeDetail() {
  data.softmax = false;
  state.set({ unit: [] });
  update();
}
$("detail-close").addEventListener("click", closeDetail);

$("explain-softmax").addEventListener("click", () => {
  if (!data.run?.classes) return;
  data.softmax = true;
  data.asked.detail += 1;
  state.set({ unit: [] });
  update();
});

window.cnnVis.render = () => render(state, data); // the tests check that drawing again changes nothing
init();
