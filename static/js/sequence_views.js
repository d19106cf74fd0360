// Pictures of a sequence read step by step, shared by the recurrent-networks page's figures: a digit drawn row by
// row (the sequence the network reads: row t is step t), a matrix of values per step (the memory after each row),
// the band outlining the step being read, strips of cells (one number per unit: a state or a gate at one step) and
// a small line chart over the steps. Every number drawn is the API's; these only map numbers to colours and places.
import { colorOf } from "./colormap.js";
import { formatNumber as fmt } from "./grid.js";
import { svg } from "./dom.js";

/** [lowest, highest] of a list of numbers or of rows of numbers. */
export function rangeOf(values) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values.flat(Infinity)) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return Number.isFinite(lo) ? [lo, hi] : [0, 0];
}

/**
 * How numbers in [lo, hi] become colours: all ≥ 0 (a gate's activation, a weight) on viridis from 0 to the highest;
 * with negatives (a tanh state, a cell state) on blue–white–red, symmetric around 0, so 0 is white.
 */
export function colourScale([lo, hi]) {
  if (lo >= 0) {
    const top = Math.max(hi, 1e-9);
    return { name: "viridis", signed: false, low: 0, high: top, unit: (v) => v / top };
  }
  const m = Math.max(Math.abs(lo), Math.abs(hi), 1e-9);
  return { name: "rdbu", signed: true, low: -m, high: m, unit: (v) => 0.5 + (0.5 * v) / m };
}

export function colourOf(value, scale) {
  return colorOf(Math.max(0, Math.min(1, scale.unit(value))), scale.name);
}

/** The sequence (T rows of F numbers) as a greyscale picture, darkest = lowest: for a digit, the digit itself. */
export function drawSequence(canvas, rows, { tint = null } = {}) {
  const T = rows.length;
  const F = rows[0]?.length ?? 0;
  canvas.width = F;
  canvas.height = T;
  const [lo, hi] = rangeOf(rows);
  const span = hi - lo || 1;
  const image = new ImageData(Math.max(1, F), Math.max(1, T));
  rows.forEach((row, t) => row.forEach((v, f) => {
    const g = Math.round((255 * (v - lo)) / span);
    let rgb = [g, g, g];
    if (tint) {
      // a row's weight as orange laid over its pixels: the heavier the row, the more orange
      const a = Math.max(0, Math.min(1, tint[t]));
      rgb = [g * (1 - a) + 255 * a, g * (1 - a) + 150 * a, g * (1 - a)];
    }
    image.data.set([...rgb, 255], (t * F + f) * 4);
  }));
  canvas.getContext("2d").putImageData(image, 0, 0);
}

/** A matrix of T steps × U units as a picture: row t is step t, coloured on `scale` (from `colourScale`). */
export function drawMatrix(canvas, values, scale) {
  const T = values.length;
  const U = values[0]?.length ?? 0;
  canvas.width = Math.max(1, U);
  canvas.height = Math.max(1, T);
  const ctx = canvas.getContext("2d");
  values.forEach((row, t) => row.forEach((v, u) => {
    ctx.fillStyle = colourOf(v, scale);
    ctx.fillRect(u, t, 1, 1);
  }));
}

/** Which [step, unit] of a matrix canvas a click fell on. */
export function matrixCellAt(canvas, event) {
  const rect = canvas.getBoundingClientRect();
  const u = Math.floor(((event.clientX - rect.left) / rect.width) * canvas.width);
  const t = Math.floor(((event.clientY - rect.top) / rect.height) * canvas.height);
  return [Math.max(0, Math.min(canvas.height - 1, t)), Math.max(0, Math.min(canvas.width - 1, u))];
}

/** Outline step `t` of `count` (a band over the row) and veil the steps not read yet. */
export function placeBand(band, unread, t, count) {
  if (band) {
    band.style.top = `calc(${(t / count) * 100}% - 2px)`;
    band.style.height = `calc(${100 / count}% + 4px)`;
    band.dataset.row = String(t);
  }
  if (unread) {
    unread.style.top = `${((t + 1) / count) * 100}%`;
    unread.hidden = t >= count - 1;
  }
}

/**
 * One strip of cells, one per unit: a label (with the scale's range), the cells coloured by value. With `onPick`, the
 * cells are buttons (one tab stop; arrow keys move along the strip, Enter or a click picks a unit).
 */
export class Strip {
  constructor(container, { label, title = "", count, onPick = null, name = "" }) {
    this.count = count;
    this.name = name;
    this.onPick = onPick;
    this.values = [];
    this.selected = -1;
    this.label = document.createElement("span");
    this.label.className = "strip-label";
    this.label.title = title;
    const text = document.createElement("span");
    text.innerHTML = label;
    this.range = document.createElement("span");
    this.range.className = "strip-range";
    this.label.append(text, this.range);
    this.element = document.createElement("div");
    this.element.className = `strip${onPick ? " pick" : ""}`;
    this.element.setAttribute("role", "group");
    this.element.setAttribute("aria-label", title || name);
    this.element.dataset.name = name;
    this.cells = Array.from({ length: count }, (_, u) => {
      const cell = document.createElement(onPick ? "button" : "span");
      cell.className = "cell";
      cell.dataset.unit = String(u);
      if (onPick) {
        cell.type = "button";
        cell.tabIndex = u === 0 ? 0 : -1;
        cell.addEventListener("click", () => onPick(u));
        cell.addEventListener("keydown", (event) => this.moveFocus(event, u));
      }
      return cell;
    });
    this.element.append(...this.cells);
    container.append(this.label, this.element);
  }

  moveFocus(event, u) {
    const moves = { ArrowLeft: -1, ArrowRight: 1 };
    if (!(event.key in moves)) return;
    event.preventDefault();
    const next = Math.max(0, Math.min(this.count - 1, u + moves[event.key]));
    this.cells[u].tabIndex = -1;
    this.cells[next].tabIndex = 0;
    this.cells[next].focus();
  }

  /** Show one number per unit, coloured on `scale`; each cell names its unit and value (tooltip, screen readers). */
  set(values, scale) {
    this.values = values;
    values.forEach((v, u) => {
      const cell = this.cells[u];
      if (!cell) return;
      cell.style.background = colourOf(v, scale);
      const text = `${this.name} unit ${u}: ${fmt(v)}`;
      cell.title = text;
      if (this.onPick) cell.setAttribute("aria-label", text);
      cell.dataset.value = String(v);
    });
    this.range.textContent = `${fmt(scale.low)}…${fmt(scale.high)}`;
  }

  select(u) {
    this.cells[this.selected]?.classList.remove("selected");
    this.selected = u;
    const cell = this.cells[u];
    if (!cell) return;
    cell.classList.add("selected");
    if (this.onPick) {
      this.cells.forEach((c) => { c.tabIndex = -1; });
      cell.tabIndex = 0;
    }
  }
}

/**
 * A line over the steps (values in [0, 1], one per step; null where unknown) with step `t` marked: solid up to t,
 * dashed after it (what is still to come). Drawn in the SVG's own 224 × 104 coordinates.
 */
export function drawStepLine(element, values, t, { label = "" } = {}) {
  const W = 224;
  const H = 104;
  const left = 22;
  const top = 6;
  const bottom = 88;
  const x = (i) => left + ((W - left - 4) * i) / Math.max(1, values.length - 1);
  const y = (v) => bottom - (bottom - top) * v;
  const path = (from, to) => values.slice(from, to + 1).map((v, k) => (v === null ? null : `${x(from + k).toFixed(1)},${y(v).toFixed(1)}`))
    .filter(Boolean).join(" ");
  const children = [
    svg("line", { class: "axis", x1: left, y1: bottom, x2: W - 4, y2: bottom }),
    svg("line", { class: "axis", x1: left, y1: top, x2: left, y2: bottom }),
    svg("polyline", { class: "later", points: path(t, values.length - 1) }),
    svg("polyline", { class: "line", points: path(0, t) }),
  ];
  for (const [v, text] of [[0, "0"], [0.5, "½"], [1, "1"]]) {
    const tick = svg("text", { x: left - 3, y: y(v) + 3, "text-anchor": "end" });
    tick.textContent = text;
    children.push(tick);
  }
  const axisLabel = svg("text", { x: (left + W) / 2, y: H - 2, "text-anchor": "middle" });
  axisLabel.textContent = label;
  children.push(axisLabel);
  if (values[t] !== null && values[t] !== undefined) children.push(svg("circle", { class: "now", cx: x(t), cy: y(values[t]), r: 4 }));
  element.replaceChildren(...children);
}
