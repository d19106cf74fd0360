// Neurons arranged in 3D: draw a layer's input volume, one filter and the output volume as cuboids (SVG),
// from the API's volume answer (in_shape W×H×D, filter_shape F×F×D, out_shape W_out×H_out×K).
// The letters are the lecture's, one meaning each: W, H input width and height, D input depth (channels),
// F filter (kernel) size, K number of filters (and so the output's depth); dilation, where shown, is d.
import { VOLUME_COLOURS, cuboid } from "./cuboid.js";
import { el as html, svg as el } from "./dom.js";

const { input: INPUT, filter: FILTER, output: OUTPUT } = VOLUME_COLOURS;

/**
 * Draw the volumes into `container`; with `legend` (an element), also write there what each shape is in the
 * lecture's letters: input W×H×D, K filters of F×F×D, output W_out×H_out×K, each with its numbers.
 */
export function drawVolumes(container, volume, legend = null) {
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
  svg.append(cuboid(inX, base - inH, inW, inH, D * depthUnit, INPUT, { slices: D }));
  // each label starts under its cuboid, and a cuboid starts after the label before it (small volumes would overlap)
  const labelWidth = (text) => text.length * 8;
  const inLabel = `input ${W}×${H}×${D}`;
  svg.append(el("text", { x: inX, y: base + 20 }, inLabel));
  const fX = Math.max(inX + inW + D * depthUnit * 0.7 + 40, inX + labelWidth(inLabel) + 12);
  const fS = F * unit;
  svg.append(cuboid(fX, base - fS, fS, fS, FD * depthUnit, FILTER, { slices: FD }));
  const filterLabel = `${K} filter${K === 1 ? "" : "s"} ${F}×${F}×${FD}`;
  svg.append(el("text", { x: fX, y: base + 20 }, filterLabel));
  const arrowX = fX + fS + FD * depthUnit * 0.7 + 15;
  svg.append(el("text", { x: arrowX, y: base - 20, "font-size": 22 }, "→"));
  const oX = Math.max(arrowX + 40, fX + labelWidth(filterLabel) + 12);
  const oW = Wo * unit;
  const oH = Ho * unit;
  svg.append(cuboid(oX, base - oH, oW, oH, K * depthUnit, OUTPUT, { slices: K }));
  svg.append(el("text", { x: oX, y: base + 20 }, `output ${Wo}×${Ho}×${K}`));
  svg.append(el("text", { x: 20, y: base + 42, class: "muted" },
    `${volume.params.toLocaleString()} parameters · ${volume.macs.toLocaleString()} multiply-accumulates`));
  svg.setAttribute("viewBox", `0 0 ${Math.max(width, oX + oW + K * depthUnit * 0.7 + 20)} ${height}`);
  container.replaceChildren(svg);
  container.setAttribute("aria-label", `Input W×H×D = ${W}×${H}×${D}, K = ${K} filters of F×F×D = ${F}×${F}×${FD}, ` +
    `output W_out×H_out×K = ${Wo}×${Ho}×${K}`);
  legend?.replaceChildren(
    html("span", { class: "volume-key" }, html("strong", { text: "input" }), ` W×H×D = ${W}×${H}×${D}`), " · ",
    html("span", { class: "volume-key" }, html("strong", { text: `K = ${K} filter${K === 1 ? "" : "s"}` }),
      `, each F×F×D = ${F}×${F}×${FD}`), " · ",
    html("span", { class: "volume-key" }, html("strong", { text: "output" }), ` W_out×H_out×K = ${Wo}×${Ho}×${K}`),
  );
}
