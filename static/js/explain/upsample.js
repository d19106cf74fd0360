// upsample: nearest copies one input number into a whole block; bilinear mixes the 4 numbers around a point between
// pixels, weighted by how close they are.
import { chainAfter, checkLine, el, esc, fmt, neighbourhoodBlock, signed, sourceText } from "./common.js";

export function upsampleView(e) {
  return e.mode === "bilinear" ? bilinearView(e) : nearestView(e);
}

/** "output row 5 → ⌊5 / 2⌋ = 2", one axis a line. */
function rulesLine(e) {
  return el("p", { class: "step-text", "data-role": "rules", html: e.axes.map((a) => `output ${esc(a.rule)}`).join("<br>") });
}

function nearestView(e) {
  const [sh, sw] = e.scale_factor;
  const [rows, cols] = e.axes.map((a) => a.block);
  const intro = `Upsampling (${esc(e.mode)}) by ${sh}×${sw}: each number of <code>${esc(e.input)}</code> ` +
    `(${e.spatial_shape[0]}×${e.spatial_shape[1]}) is repeated in a ${sh}×${sw} block. No weights and nothing ` +
    "computed: each number is copied.";
  return el("div", { "data-kind": "upsample" },
    el("p", { class: "small", html: intro }),
    rulesLine(e),
    neighbourhoodBlock(e),
    el("p", { class: "step-text", html: `it copies input ${sourceText(e)} = <span class="result">${fmt(e.result)}</span>, ` +
      `as do all the outputs of its block, rows ${rows[0]}…${rows[1]} and columns ${cols[0]}…${cols[1]}` }),
    checkLine(e.result, e.engine_value),
    ...chainAfter(e, "the upsampled value"));
}

/** Bilinear upsampling: per axis the source coordinate and its two neighbours, then the 4 weighted values. */
function bilinearView(e) {
  const [sh, sw] = e.scale_factor;
  const n = e.neighbourhood;
  const intro = `Bilinear upsampling by ${sh}×${sw} ` +
    `(${e.align_corners ? "align_corners: the corner pixels stay on the corners" : "half-pixel centres"}): each ` +
    `output number samples <code>${esc(e.input)}</code> (${e.spatial_shape[0]}×${e.spatial_shape[1]}) between ` +
    "pixels and mixes the 4 numbers around that point, weighted by how close they are (the weights add up to 1). " +
    "No learned weights.";
  const block = neighbourhoodBlock(e);
  const cells = block.querySelector(".grid").children;
  for (const x of e.samples) cells[(x.row - n.rows[0]) * n.cols.length + (x.col - n.cols[0])]?.classList.add("current");
  const table = el("table", { class: "data" },
    el("thead", {}, el("tr", {}, el("th", { text: "input (row, column)" }), el("th", { class: "num", text: "value" }),
      el("th", { class: "num", text: "weight" }), el("th", { class: "num", text: "value × weight" }))),
    el("tbody", {}, ...e.samples.map((x) => el("tr", {},
      el("td", { text: `(${x.row}, ${x.col})` }), el("td", { class: "num", text: fmt(x.value) }),
      el("td", { class: "num", text: fmt(x.weight) }), el("td", { class: "num", text: fmt(x.product) })))));
  return el("div", { "data-kind": "upsample" },
    el("p", { class: "small", html: intro }),
    rulesLine(e),
    block, table,
    el("p", { class: "step-text", html: `Σ value × weight = ${e.samples.map((x) => signed(x.product)).join(" + ")} = ` +
      `<span class="result">${fmt(e.result)}</span>` }),
    checkLine(e.result, e.engine_value),
    ...chainAfter(e, "the upsampled value"));
}
