// Attention maps of sequences (C, L) and volumes (C, D, H, W), drawn from the API's answers of kind "sequence" and
// "volume" (an image's map is laid over its picture by attention.js). A sequence: the input signal, channel by
// channel, above the map's coloured strip, on one axis of positions with its numbers; a volume: its depth slices
// side by side, each labelled with its index, the map over each frame. Every number, picture and colour scale is
// the API's: the page lays them out.
import { legend, tableOf } from "./colormap.js";
import { Grid, formatNumber } from "./grid.js";
import { el, svg } from "./dom.js";

/** channels of a sequence drawn as lines (the others are named, not drawn: a 64-channel input is a wall of lines) */
export const CHANNELS_DRAWN = 8;
/** the most numbers the layer-resolution panel shows as a grid */
const GRID_NUMBERS = 400;

/** Positions to number on an axis of `n`: multiples of a 1-2-5 step, and the last position. */
export function ticks(n, most = 8) {
  const raw = Math.max(1, (n - 1) / most);
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((f) => f * power).find((s) => s >= raw);
  const out = [];
  for (let i = 0; i < n; i += step) out.push(i);
  if (out[out.length - 1] !== n - 1) {
    if (n - 1 - out[out.length - 1] < step / 2 && out.length > 1) out.pop(); // no two labels on top of each other
    out.push(n - 1);
  }
  return out;
}

function range(values) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return [lo, hi];
}

/** The axis under a sequence: position numbers centred on their strip pixels. */
function positionAxis(length) {
  const axis = el("div", { class: "seq-axis" });
  axis.setAttribute("aria-hidden", "true");
  for (const i of ticks(length)) {
    const tick = el("span", { class: "seq-tick", text: String(i) });
    tick.style.left = `${((i + 0.5) / length) * 100}%`;
    axis.append(tick);
  }
  return axis;
}

/**
 * A sequence's answer: the input (the API's `input_values`) as one line per channel, the map as the API's coloured
 * strip (`input_map_png`, one pixel per position) under it, the positions numbered below; hovering reads the values.
 */
export function sequenceView(answer) {
  const [length] = answer.input_shape;
  const view = el("div", { class: "seq-view" });
  view.dataset.length = String(length);
  const labels = el("div", { class: "seq-labels" });
  const plot = el("div", { class: "seq-plot" });
  const channels = answer.input_values;
  const drawn = channels.slice(0, CHANNELS_DRAWN);
  const rowHeight = 40;
  const lines = svg("svg", { class: "seq-input", viewBox: `0 0 ${length} ${rowHeight * drawn.length}`, preserveAspectRatio: "none",
    role: "img", "aria-label": `the input the model saw: ${channels.length} channel${channels.length === 1 ? "" : "s"} of ${length} positions` });
  lines.style.height = `${2.5 * drawn.length}rem`;
  drawn.forEach((values, c) => {
    const [lo, hi] = range(values);
    const span = hi - lo || 1;
    const top = c * rowHeight;
    if (c > 0) lines.append(svg("line", { x1: 0, x2: length, y1: top, y2: top, class: "seq-separator", "vector-effect": "non-scaling-stroke" }));
    const points = values.map((v, i) => `${i + 0.5},${(top + 3 + (1 - (v - lo) / span) * (rowHeight - 6)).toFixed(2)}`);
    lines.append(svg("polyline", { points: points.join(" "), class: "seq-line", "vector-effect": "non-scaling-stroke" }));
    const label = el("span", { class: "seq-label seq-row-label", text: `channel ${c}` });
    label.title = `channel ${c}: ${formatNumber(lo)} (bottom) to ${formatNumber(hi)} (top)`;
    label.append(el("small", { text: `${formatNumber(lo)}…${formatNumber(hi)}` }));
    labels.append(label);
  });
  const strip = el("img", { class: "seq-strip" });
  strip.src = answer.input_map_png;
  strip.alt = `the map along the ${length} positions, coloured`;
  labels.append(el("span", { class: "seq-label seq-strip-label", text: "map" }), el("span", { class: "seq-label seq-axis-label", text: "position" }));
  const cursor = el("div", { class: "seq-cursor" });
  cursor.hidden = true;
  plot.append(lines, strip, positionAxis(length), cursor);
  view.append(labels, plot);
  const readout = el("p", { class: "seq-readout small muted", text: "Point at the plot to read the values at a position." });
  const wrapper = el("div", { class: "seq-figure" });
  wrapper.append(view, readout);
  if (channels.length > drawn.length) {
    wrapper.append(el("p", { class: "small muted", text: `The first ${drawn.length} of ${channels.length} channels are drawn.` }));
  }
  plot.addEventListener("pointermove", (event) => {
    const rect = plot.getBoundingClientRect();
    const i = Math.max(0, Math.min(length - 1, Math.floor(((event.clientX - rect.left) / rect.width) * length)));
    cursor.hidden = false;
    cursor.style.left = `${((i + 0.5) / length) * 100}%`;
    const map = answer.input_map ? `map ${formatNumber(answer.input_map[i])}` : "";
    const input = channels.map((values) => formatNumber(values[i])).join(", ");
    readout.textContent = `position ${i}: ${map}${map ? "; " : ""}input ${input}`;
  });
  plot.addEventListener("pointerleave", () => { cursor.hidden = true; });
  return wrapper;
}

function loadImage(url) {
  const image = new Image();
  image.src = url;
  return image.decode().then(() => image);
}

/** Slice `index` (`width` pixels wide) of a picture whose slices lie side by side, as a canvas. */
function slice(image, index, width, height, className) {
  const canvas = el("canvas", { class: className });
  canvas.width = width;
  canvas.height = height;
  canvas.getContext("2d").drawImage(image, index * width, 0, width, height, 0, 0, width, height);
  return canvas;
}

/** A volume's answer's two pictures (`picture_png`: the frames the model saw; `input_map_png`: the coloured map), decoded. */
export async function volumeImages(answer) {
  const [picture, heat] = await Promise.all([loadImage(answer.picture_png), loadImage(answer.input_map_png)]);
  return { picture, heat };
}

/**
 * A volume's answer: the D depth slices of its pictures (`images`, from `volumeImages`), each slice's map laid over
 * its frame with `opacity`, labelled d = 0, 1, …
 */
export function volumeView(answer, { picture, heat }, opacity) {
  const [depth, height, width] = answer.input_shape;
  const view = el("div", { class: "volume-view" });
  view.dataset.slices = String(depth);
  for (let d = 0; d < depth; d += 1) {
    const figure = el("figure", { class: "slice" });
    figure.dataset.depth = String(d);
    const stack = el("div", { class: "overlay-stack slice-stack" });
    stack.style.aspectRatio = `${width} / ${height}`;
    const map = slice(heat, d, width, height, "heat");
    map.style.opacity = String(opacity);
    stack.append(slice(picture, d, width, height, "picture"), map);
    figure.append(stack, el("figcaption", { class: "small", text: `d = ${d}` }));
    view.append(figure);
  }
  const wrapper = el("div", { class: "volume-figure" });
  wrapper.append(view, el("p", { class: "small muted", text: `${depth} slices along the depth axis D, left to right, each ${height} × ${width}; ` +
    "the frames are scaled together over the clip" }));
  return wrapper;
}

/** The colour legend of a map: the API's scale (`scales` of GET /api/attention/methods) from its ends. */
export function legendView(answer, scales) {
  const stops = answer.signed ? scales.signed : scales.unsigned;
  const box = el("div", { class: "map-legend small" });
  const bar = el("canvas", { class: "legend-bar" });
  bar.width = 160;
  bar.height = 10;
  bar.setAttribute("role", "img");
  legend(bar, tableOf(stops));
  const lo = stops[0].value;
  const hi = stops[stops.length - 1].value;
  bar.setAttribute("aria-label", `colour scale from ${lo} to ${hi}`);
  box.append(el("span", { class: "legend-end", text: formatNumber(lo) }), bar, el("span", { class: "legend-end", text: formatNumber(hi) }),
    el("span", { class: "muted", text: answer.signed ? "normalised map: blue lowers the score, red raises it"
      : "normalised map: dark none, bright contributed most" }));
  return box;
}

/**
 * The raw map at the layer's resolution (a sequence's as one row, a volume's slice by slice) in `container`;
 * returns the caption, or null when the map holds too many numbers to read.
 */
export function layerMapView(container, answer, method) {
  const title = method?.title ?? answer.method;
  const shape = answer.layer_shape;
  if (shape.reduce((a, b) => a * b, 1) > GRID_NUMBERS) return null;
  if (answer.kind === "sequence") {
    new Grid(container, { label: "layer-resolution map", compact: shape[0] > 12 }).set([answer.layer_map]);
    return `${title} at ${answer.layer}, ${shape[0]} positions, raw values (the strip above is this map, normalised ` +
      `and upsampled linearly to the input's ${answer.input_shape[0]}).`;
  }
  const slices = answer.layer_map.map((rows, d) => {
    const box = el("div", { class: "layer-slice" });
    const grid = el("div");
    box.append(el("p", { class: "grid-caption", text: `d = ${d}` }), grid);
    new Grid(grid, { label: `layer-resolution map, slice ${d}`, compact: shape[1] * shape[2] > 49 }).set(rows);
    return box;
  });
  container.replaceChildren(...slices);
  return `${title} at ${answer.layer}, ${shape.join(" × ")} (d × h × w), raw values slice by slice (the slices above ` +
    `are this map, normalised and upsampled trilinearly to the input's ${answer.input_shape.join(" × ")}).`;
}
