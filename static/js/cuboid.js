// The one cuboid drawer: a layer as a volume of neurons, width (right) × height (down) × depth (channels, drawn
// up and to the right), as the lecture's 3D neuron volumes. The network strip, the arithmetic page's 3D panel and
// the overview draw with it.
import { svg } from "./dom.js";

export const VOLUME_COLOURS = {
  input: { front: "#cfe0f7", top: "#e6effb", side: "#a9c4ea" },
  filter: { front: "#f6c667", top: "#fbe0a6", side: "#e0a637" },
  output: { front: "#f2b8b0", top: "#f8d7d2", side: "#df8f84" },
};

/** How far a depth of `d` reaches right (dx) and up (dy, negative) on the page. */
export function depthOffset(d) {
  return { dx: d * 0.7, dy: -d * 0.5 };
}

/**
 * A cuboid whose front face is the rectangle (x, y, w, h), of drawn depth d, as an SVG group.
 * `slices` draws that many channel lines on the top and side faces (at most 32), `stroke` the edges' width.
 */
export function cuboid(x, y, w, h, d, colours = VOLUME_COLOURS.input, { slices = 1, stroke = 1 } = {}) {
  const g = svg("g");
  const { dx, dy } = depthOffset(d);
  const line = { stroke: "#2b3445", "stroke-width": stroke };
  g.append(svg("polygon", { points: `${x},${y} ${x + dx},${y + dy} ${x + w + dx},${y + dy} ${x + w},${y}`, fill: colours.top, ...line }));
  g.append(svg("polygon", { points: `${x + w},${y} ${x + w + dx},${y + dy} ${x + w + dx},${y + h + dy} ${x + w},${y + h}`, fill: colours.side, ...line }));
  for (let i = 1; i < Math.min(slices, 32); i += 1) {
    const t = i / slices;
    const faint = { ...line, "stroke-opacity": 0.35 };
    g.append(svg("line", { x1: x + dx * t, y1: y + dy * t, x2: x + w + dx * t, y2: y + dy * t, ...faint }));
    g.append(svg("line", { x1: x + w + dx * t, y1: y + dy * t, x2: x + w + dx * t, y2: y + h + dy * t, ...faint }));
  }
  g.append(svg("rect", { x, y, width: w, height: h, fill: colours.front, ...line }));
  return g;
}

/** The side of a map of n neurons drawn on a log scale, so 7 and 224 both fit: lo + step·log2(n), at most hi. */
export function logSide(n, { lo = 4, step = 3, hi = 26 } = {}) {
  return Math.max(lo, Math.min(hi, lo + step * Math.log2(Math.max(1, n))));
}
