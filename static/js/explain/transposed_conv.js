// conv_transpose2d: per axis the (input position, kernel offset) pairs that land on the unit (the API's rules),
// then the terms input × weight of each input channel of its group, their sum, the bias and the check.
import { chainAfter, checkLine, count, el, esc, fmt, signed } from "./common.js";

export function transposedConvView(e, { unit }) {
  const [kh, kw] = e.kernel_size;
  const [sh, sw] = e.stride;
  const [H, W] = e.spatial_shape;
  const padded = e.output_padding.some((n) => n > 0) ? `, output_padding ${e.output_padding.join("×")}` : "";
  const dilated = e.dilation.some((n) => n > 1) ? `, dilation ${e.dilation.join("×")}` : "";
  const [[top, bottom], [left, right]] = e.padding;
  const cropped = top || bottom || left || right
    ? ` Its padding crops the output instead: ${count(top, "row")} above, ${bottom} below, ${count(left, "column")} ` +
      `left, ${right} right.` : "";
  const intro = `A transposed convolution (${kh}×${kw} kernel, stride ${sh}×${sw}${dilated}${padded}) runs a ` +
    `convolution backwards: each number of <code>${esc(e.input)}</code> (${H}×${W}) is multiplied by the whole ` +
    `kernel and added onto the output ${sh}×${sw} apart, so the map grows. Output ${unit.channel} collects what ` +
    `lands on it from ${e.channels_in_group === 1 ? "one input channel" : `each of the ${e.channels_in_group} input channels`}` +
    `${e.groups > 1 ? ` of group ${e.group}` : ""}, each input number times the kernel weight that meets it there.` +
    cropped +
    (e.omitted?.note ? ` Only part is listed: ${esc(e.omitted.note)}.` : "");
  const cell = (text, cls = "num") => el("td", { class: cls, text });
  const rows = e.channel_terms.flatMap((c) => [
    ...c.terms.map((t) => el("tr", { "data-role": "term" },
      cell(String(c.channel), ""), cell(`(${t.row}, ${t.col})`, ""), cell(`(${t.kernel_row}, ${t.kernel_col})`, ""),
      cell(fmt(t.input)), cell(fmt(t.weight)), cell(fmt(t.product)))),
    el("tr", { "data-role": "channel-sum", class: "muted" },
      el("td", { colspan: "5", text: `channel ${c.channel}: Σ of its ${count(c.terms.length, "product")} (right); running total over channels so far ${fmt(c.running)}` }),
      cell(fmt(c.sum))),
  ]);
  const table = el("table", { class: "data" },
    el("thead", {}, el("tr", {}, el("th", { text: "channel" }), el("th", { text: "input (row, column)" }),
      el("th", { text: "kernel (row, column)" }), el("th", { class: "num", text: "input" }),
      el("th", { class: "num", text: "weight" }), el("th", { class: "num", text: "input × weight" }))),
    el("tbody", {}, ...rows));
  const rest = e.omitted?.count ? ` + the other ${e.omitted.count} channels ${signed(e.omitted.sum)}` : "";
  const listed = e.channel_terms.length;
  const sums = rest ? `Σ over the ${listed} channels listed ${fmt(e.channel_terms.at(-1)?.running ?? 0)}${rest} = `
    : `Σ over ${count(listed, "channel")} = `;
  return el("div", { "data-kind": "conv_transpose2d" },
    el("p", { class: "small", html: intro }),
    el("p", { class: "step-text", "data-role": "rules", html: e.axes.map((a) => esc(a.rule)).join("<br>") }),
    ...(e.reached ? [table] : [el("p", { class: "step-text", "data-role": "unreached",
      text: "No input number lands on this output: it is the bias alone." })]),
    el("p", { class: "step-text", "data-role": "total",
      html: `${e.reached ? sums : "Σ of no products = "}${fmt(e.total)} + bias ${fmt(e.bias)} = <span class="result">${fmt(e.result)}</span>` }),
    checkLine(e.result, e.engine_value),
    ...chainAfter(e, "the transposed convolution's output"));
}
