// Neurons arranged in 3D: draw a layer's input volume, one filter and the output volume as cuboids (SVG),
// from the API's volume answer (in_shape W×H×D, filter_shape F×F×D, out_shape W_out×H_out×K).

const NS = "http://www.w3.org/2000/svg";

function el(name, attrs = {}, text) {
  const node = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

/** A cuboid w (right) × h (down) × d (into the page, drawn up-right), front face at (x, y). */
function cuboid(x, y, w, h, d, colors, layers = 1) {
  const g = el("g");
  const dx = d * 0.7;
  const dy = -d * 0.5;
  g.append(el("polygon", { points: `${x},${y} ${x + dx},${y + dy} ${x + w + dx},${y + dy} ${x + w},${y}`, fill: colors.top, stroke: "#2b3445" }));
  g.append(el("polygon", { points: `${x + w},${y} ${x + w + dx},${y + dy} ${x + w + dx},${y + h + dy} ${x + w},${y + h}`, fill: colors.side, stroke: "#2b3445" }));
  // channel slices drawn on the top face: depth is a stack of 2D maps
  for (let i = 1; i < Math.min(layers, 32); i += 1) {
    const t = i / layers;
    g.append(el("line", { x1: x + dx * t, y1: y + dy * t, x2: x + w + dx * t, y2: y + dy * t, stroke: "#2b3445", "stroke-opacity": 0.35 }));
    g.append(el("line", { x1: x + w + dx * t, y1: y + dy * t, x2: x + w + dx * t, y2: y + h + dy * t, stroke: "#2b3445", "stroke-opacity": 0.35 }));
  }
  g.append(el("rect", { x, y, width: w, height: h, fill: colors.front, stroke: "#2b3445" }));
  return g;
}

const INPUT = { front: "#cfe0f7", top: "#e6effb", side: "#a9c4ea" };
const FILTER = { front: "#f6c667", top: "#fbe0a6", side: "#e0a637" };
const OUTPUT = { front: "#f2b8b0", top: "#f8d7d2", side: "#df8f84" };

export function drawVolumes(container, volume) {
  const [W, H, D] = volume.in_shape;
  const [F, , FD] = volume.filter_shape;
  const [Wo, Ho, K] = volume.out_shape;
  const biggest = Math.max(W, H, Wo, Ho, 1);
  const unit = Math.max(4, Math.min(20, 150 / biggest));
  const depthUnit = Math.max(2, Math.min(10, 70 / Math.max(D, K, 1)));
  const width = 620;
  const height = 250;
  const svg = el("svg", { viewBox: `0 0 ${width} ${height}`, width, height });
  const base = 200;
  const inX = 20;
  const inW = W * unit;
  const inH = H * unit;
  svg.append(cuboid(inX, base - inH, inW, inH, D * depthUnit, INPUT, D));
  svg.append(el("text", { x: inX, y: base + 20 }, `input ${W}×${H}×${D}`));
  const fX = inX + inW + D * depthUnit * 0.7 + 40;
  const fS = F * unit;
  svg.append(cuboid(fX, base - fS, fS, fS, FD * depthUnit, FILTER, FD));
  svg.append(el("text", { x: fX, y: base + 20 }, `${K} filter${K === 1 ? "" : "s"} ${F}×${F}×${FD}`));
  const arrowX = fX + fS + FD * depthUnit * 0.7 + 15;
  svg.append(el("text", { x: arrowX, y: base - 20, "font-size": 22 }, "→"));
  const oX = arrowX + 40;
  const oW = Wo * unit;
  const oH = Ho * unit;
  svg.append(cuboid(oX, base - oH, oW, oH, K * depthUnit, OUTPUT, K));
  svg.append(el("text", { x: oX, y: base + 20 }, `output ${Wo}×${Ho}×${K}`));
  svg.append(el("text", { x: 20, y: base + 42, class: "muted" },
    `${volume.params.toLocaleString()} parameters · ${volume.macs.toLocaleString()} multiply-accumulates`));
  svg.setAttribute("viewBox", `0 0 ${Math.max(width, oX + oW + K * depthUnit * 0.7 + 20)} ${height}`);
  container.replaceChildren(svg);
  container.setAttribute("aria-label", `Input ${W}×${H}×${D}, ${K} filters of ${F}×${F}×${FD}, output ${Wo}×${Ho}×${K}`);
}
