// pad: nothing is computed, each number is copied: per axis the input position the unit sits on and the one its
// value comes from (mirror, clamp), or the constant in the border; the input around it.
import { chainAfter, checkLine, count, el, esc, fmt, neighbourhoodBlock, sourceText } from "./common.js";

export function padView(e) {
  const [[top, bottom], [left, right]] = e.padding;
  const how = {
    constant: `filled with the constant ${fmt(e.value)}`,
    reflect: "the mirror image of the map (the edge itself is not repeated)",
    replicate: "the nearest edge value, repeated",
  }[e.mode] ?? esc(e.mode);
  const intro = `Padding (${esc(e.mode)}) adds a border around each map of <code>${esc(e.input)}</code> ` +
    `(${e.spatial_shape[0]}×${e.spatial_shape[1]}): ${count(top, "row")} above, ${bottom} below, ` +
    `${count(left, "column")} left, ${right} right; the border is ${how}. Nothing is computed: each number is copied.`;
  const rules = e.axes.map((a) => `output ${a.axis} ${a.output}: ${esc(a.rule)}`);
  const result = e.source
    ? `${e.in_border ? "in the border, so it copies" : "inside the map: it copies"} input ${sourceText(e)} = ` +
      `<span class="result">${fmt(e.result)}</span>`
    : `in the border: the constant <span class="result">${fmt(e.result)}</span> (no input number is read)`;
  return el("div", { "data-kind": "pad" },
    el("p", { class: "small", html: intro }),
    el("p", { class: "step-text", "data-role": "rules", html: rules.join("<br>") }),
    neighbourhoodBlock(e),
    el("p", { class: "step-text", html: result }),
    checkLine(e.result, e.engine_value),
    ...chainAfter(e, "the padded value"));
}
