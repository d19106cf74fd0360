// The explorer drawn from its state (the address) and its data (explorer_data.js): `render(state, data)` brings the
// whole page in line with both, and calling it again changes nothing. The costly views (NetworkView, OverviewView,
// DetailView, CompareView) keep their own caches: they are told the state and data, and redraw only what changed.
import { Animator, bindAnimatorControls } from "./animator.js";
import { clearError, showError } from "./api.js";
import { CompareView } from "./compare.js";
import { DetailView } from "./detail.js";
import { $ } from "./dom.js";
import { Guide } from "./guide.js";
import { NetworkView } from "./network.js";
import { OverviewView } from "./overview.js";
import { projectorOn } from "./presenter.js";
import { changeTracker } from "./redraw.js";
import { modelInfo } from "./explorer_data.js";
import { renderSidebar, setAttr, setHidden, setText } from "./explorer_sidebar.js";
import { columnsFor, stepIndex, stepLesson, unitOf } from "./explorer_steps.js";

const PLAY_MS = 900; // one step of Play at speed 1×
// The lesson panel is always there, at a fixed height, so pressing Play, stepping or a lesson of another length
// never moves the maps.
const LESSON_IDLE = "Press ▶ Play (or Space) to walk through the forward pass, one layer per step; → and PageDown step.";

const fresh = changeTracker();
let views = null;
let syncing = false; // the animator is being brought in line with the state: its step is no user's step
let rendering = false;
let again = false;

/**
 * Make the explorer's views, their events going to the handlers `on`: { unit(unit) a neuron picked, layer(id) a
 * layer picked in the overview, step(index) a step of the animator (a key, a button, Play), play(playing), loaded
 * (column) a column's maps painted, overview(open) the overview opened or closed }.
 */
export function mountViews(on) {
  const network = new NetworkView($("network"), {
    onSelect: (column, hit) => on.unit({ node: column.node.id, ...hit }),
    onLoaded: on.loaded,
  });
  const detail = new DetailView({
    panel: $("detail"), body: $("detail-body"), canvas: $("unit-canvas"), caption: $("unit-caption"),
    title: $("detail-title"), onUnit: on.unit,
  });
  // the whole graph above the strip (overview.js): it marks the strip's current column; a click selects that layer
  const overview = new OverviewView($("overview"), { onSelect: on.layer, onToggle: on.overview });
  // a second input beside the first (compare.js): its maps and the API's difference A − B for the selected layer
  const compare = new CompareView({ select: $("compare"), panel: $("compare-panel"), onUnit: on.unit });
  const animator = new Animator({ figure: $("network"), render: (index) => { if (!syncing) on.step(index); }, interval: PLAY_MS });
  bindAnimatorControls(animator, $("toolbar"));
  const showPlaying = animator.onPlayChange;
  animator.onPlayChange = (playing) => {
    showPlaying(playing);
    on.play(playing);
  };
  views = { network, detail, overview, compare, animator, guide: new Guide() };
  window.cnnVis = { firstFeatureMapMs: null, responseMs: null, network };
  return views;
}

/** The whole page from the state and data. A render asked for while one runs (a view's event) follows it. */
export function render(state, data) {
  if (rendering) {
    again = true;
    return;
  }
  rendering = true;
  try {
    do {
      again = false;
      renderSidebar(state, data);
      renderError(state, data);
      renderModes(state, data);
      renderOverview(state, data);
      renderStrip(state, data);
      renderSteps(state, data);
      renderLesson(state, data);
      renderDetail(state, data);
      renderHighlight(state, data);
      renderAtlas(state, data);
      renderCompare(state, data);
      renderTiming(state, data);
      renderFit(state, data);
    } while (again);
  } finally {
    rendering = false;
  }
}

/** The banner: the latest load's error, shown once; a new input clears it (and any view's error before it). */
function renderError(state, data) {
  if (!fresh("error", [data.error])) return;
  if (data.error.err) showError(data.error.err, data.error.context);
  else clearError();
}

/** Lecture mode, the folded sidebar opened, the controls and Play's speed. */
function renderModes(state, data) {
  const { lecture, speed } = state.values;
  document.body.classList.toggle("lecture", lecture);
  setAttr($("lecture"), "aria-pressed", String(lecture));
  if (fresh("lecture", [lecture]) && lecture) window.scrollTo(0, 0);
  // projector mode folds the sidebar away (the maps get the width); its button brings it back over the maps
  document.body.classList.toggle("sidebar-open", data.sidebar);
  setAttr($("sidebar-toggle"), "aria-expanded", String(data.sidebar));
  for (const key of ["scale", "range", "filter", "speed"]) {
    if ($(key).value !== String(state.values[key])) $(key).value = String(state.values[key]);
  }
  views.animator.interval = PLAY_MS / speed;
}

function renderOverview(state, data) {
  views.overview.show(data.arch, state.values.filter); // drawn again only for another model or mode
  views.overview.setOpen(state.values.overview);
}

/** The columns of the run (or the message saying why there are none), the current step marked, here and in the overview. */
function renderStrip(state, data) {
  const columns = columnsFor(state, data);
  const index = stepIndex(columns, state.values.layer);
  const marked = index >= 0 && !data.play.ended;
  views.network.render({
    run: data.run, columns, archById: data.archById, labels: data.arch?.labels ?? [], message: data.empty,
    scale: state.values.scale, range: state.values.range,
    step: { index: marked ? index : -1, reveal: data.play.reveal || state.values.lecture, asked: data.asked.step },
  });
  if (!columns && !data.empty) return; // the next answer is on its way: the strip stays as it is
  // a step of the strip that is no node of the graph (the probabilities after the output) marks the node it is from
  const node = marked ? columns[index] : null;
  views.overview.setCurrent(node ? (node.synthetic ? node.from : node.id) : null);
}

/** The animator's steps (its buttons, range and label): one per column, at the state's layer. */
function renderSteps(state, data) {
  const { animator } = views;
  const columns = data.empty ? [] : columnsFor(state, data);
  if (!columns) return;
  if (!columns.length && animator.playing) animator.pause();
  const index = Math.max(0, stepIndex(columns, state.values.layer));
  if (animator.count === columns.length && (!columns.length || animator.step === index)) return;
  syncing = true;
  try {
    animator.setSteps(columns.length, index);
  } finally {
    syncing = false;
  }
}

/** The lesson of the state's step (the first one's while none is marked), or what to do without an input. */
function renderLesson(state, data) {
  const columns = columnsFor(state, data);
  if (!data.empty && !columns) return;
  const index = data.empty ? -1 : Math.max(0, stepIndex(columns, state.values.layer));
  if (!fresh("lesson", [data.empty, columns, index])) return;
  const { title, text } = data.empty ? { title: "", text: LESSON_IDLE } : stepLesson(columns[index], index, data);
  setText($("lesson-title"), title);
  setText($("lesson-text"), text);
}

// --- units: the operation detail, the receptive field outlined, the atlas --------------------------------------
const detailShown = { key: "", asked: 0 };

/** What the detail is to show: the softmax of the prediction, or the state's unit, in a column of the strip. */
function wantedDetail(state, data) {
  const { network } = views;
  const { run } = data;
  if (!run || network.run !== run) return null;
  const unit = unitOf(state.values.unit);
  if (unit) {
    const column = network.byId.get(unit.node);
    return column ? { key: `${network.generation}|${state.values.unit.join(",")}`, column, unit } : null;
  }
  const output = data.softmax && run.classes ? run.nodes[run.nodes.length - 1] : null;
  const column = output && network.byId.get(output.id);
  return column ? { key: `${network.generation}|softmax`, column, unit: null } : null;
}

function renderDetail(state, data) {
  const { detail, network } = views;
  const wanted = wantedDetail(state, data);
  const key = wanted?.key ?? "";
  if (key !== detailShown.key) {
    detailShown.key = key;
    if (wanted) openDetail(state, data, wanted);
    else detail.close();
  } else if (wanted) {
    revealDetail(data);
  }
  // a signed scale is centred on zero with the maps' ranges: the detail's map is repainted once they are there
  const { scale } = state.values;
  if (fresh("detail-scale", [scale])) network.scaled.then(() => { if (state.values.scale === scale) detail.setScale(scale); });
}

async function openDetail(state, data, { key, column, unit }) {
  const { detail, network } = views;
  await network.load(column);
  if (detailShown.key !== key) return; // another unit (or none) was asked for meanwhile
  const shown = { model: state.values.model, arch: data.arch, archById: data.archById, run: data.run, column,
    scale: state.values.scale };
  if (unit) detail.open({ ...shown, unit, explain: column.node.chain?.[0] });
  else detail.openSoftmax({ ...shown, classes: data.run.classes });
  revealDetail(data);
}

/** Bring the detail into view when the user asked for it (a neuron picked: not while stepping in the unit view). */
function revealDetail(data) {
  if (data.asked.detail === detailShown.asked) return;
  detailShown.asked = data.asked.detail;
  if (document.activeElement?.id !== "unit-canvas") $("detail").scrollIntoView({ block: "nearest", behavior: "smooth" });
}

/** The unit's receptive field outlined on every earlier layer, redrawn as the columns' maps arrive. */
function renderHighlight(state, data) {
  const { network, detail } = views;
  const run = data.run && network.run === data.run ? data.run : null;
  const unit = unitOf(state.values.unit);
  const spatial = run && unit && unit.y !== null ? unit : null;
  const loaded = spatial ? network.columns.filter((c) => c.grey).length : 0; // each column's maps repaint its overlay
  if (!fresh("highlight", [network.generation, spatial && state.values.unit.join(","), loaded])) return;
  if (!spatial) {
    network.highlight(null, null);
    return;
  }
  const asked = [network.generation, state.values.unit.join(",")].join("|");
  const context = { model: state.values.model, arch: data.arch, archById: data.archById, run };
  detail.fieldBoxes(spatial, context).then((boxes) => {
    // still the unit and the columns asked for
    if ([network.generation, state.values.unit.join(",")].join("|") === asked) network.highlight(boxes, spatial);
  }).catch(() => {}); // the detail says why the field is missing
}

/** The link to the atlas of the unit's layer (the learned page's channels view), when that layer has one. */
function renderAtlas(state, data) {
  const link = $("atlas-link");
  const model = state.values.model;
  const unit = unitOf(state.values.unit);
  const shown = Boolean(unit && data.run && !data.softmax && data.atlas?.get(model)?.has(unit.node));
  if (shown) {
    const query = new URLSearchParams({ view: "channels", ch_model: model, ch_layer: unit.node, ch_channel: unit.channel });
    setAttr(link, "href", `/learned?${query}`);
    setText(link, `What each channel of ${unit.node} detects (atlas) →`);
  }
  setHidden(link, !shown);
}

function renderCompare(state, data) {
  const { model, layer, unit, scale, range } = state.values;
  views.compare.update({ model, info: modelInfo(state, data), run: data.run, layer: layer || unit[0] || "", scale, range,
    inputName: data.input?.name });
}

/** How long this input took (the tests read window.cnnVis), and the guide once the first maps are on screen. */
function renderTiming(state, data) {
  const { timing, run } = data;
  window.cnnVis.firstFeatureMapMs = timing.firstMapMs;
  window.cnnVis.responseMs = timing.responseMs;
  if (timing.firstMapMs !== null) {
    const server = run?.elapsed_ms ? `forward pass ${Math.round(run.elapsed_ms)} ms on the server; ` : "";
    setText($("timing"), `${server}answer after ${Math.round(timing.responseMs)} ms; ` +
      `first feature maps on screen ${Math.round(timing.firstMapMs)} ms after the image was chosen.`);
    // a student's first visit: the guide, once the maps it points at are on screen
    if (fresh("guide", [true])) views.guide.openIfNew({ presenting: state.values.lecture || projectorOn() });
  } else if (data.empty) {
    setText($("timing"), "");
  }
  if (fresh("guide-asked", [data.asked.guide]) && data.asked.guide) views.guide.show(0);
}

/**
 * In lecture and projector modes the maps take the height left under the panels above them (--network-h), measured
 * when the mode, the window, the panels above or the columns change, never while playing.
 */
function renderFit(state, data) {
  if (!fresh("fit", [state.values.lecture, state.values.overview, data.resized, columnsFor(state, data)])) return;
  const network = $("network");
  const top = network.getBoundingClientRect().top + window.scrollY;
  const height = Math.max(240, window.innerHeight - top - 8);
  network.style.setProperty("--network-h", `${Math.round(height)}px`);
}
