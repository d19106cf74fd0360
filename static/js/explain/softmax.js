// softmax / spatial_softmax (and the prediction's softmax over the output scores): the scores, their exponentials,
// the sum, the probabilities.
import { checkLine, el, esc, fmt, omittedNote } from "./common.js";

export function softmaxView(e, { labels }) {
  const what = e.over;
  const index = e.unit;
  const name = (i) => (what === "class" ? labels[i] ?? String(i) : String(i));
  // a label that only repeats the number ("3" for the digit 3) is not said twice: "class 3", not "class 3 (3)"
  const named = (i) => what === "class" && labels[i] !== undefined && String(labels[i]) !== String(i);
  const table = el("table", { class: "data" },
    el("thead", {}, el("tr", {}, el("th", { text: what }), el("th", { class: "num", text: "score z" }),
      el("th", { class: "num", text: "e^(z − max)" }), el("th", { class: "num", text: "probability" }))),
    el("tbody", {}, ...e.entries.map((x) => el("tr", { class: x.index === index ? "selected" : "" },
      el("td", { text: name(x.index) }), el("td", { class: "num", text: fmt(x.logit) }),
      el("td", { class: "num", text: fmt(x.exp) }), el("td", { class: "num", text: fmt(x.probability) })))));
  return el("div", {},
    el("p", { class: "small", text: `Softmax: e to the power of each score (minus the largest, ${fmt(e.max)}, for stability), divided by their sum ${fmt(e.exp_sum)}: positive numbers that add up to 1.` }),
    table,
    ...[omittedNote(e)].filter(Boolean),
    el("p", { class: "step-text", html: `${what} ${index}${named(index) ? ` (${esc(labels[index])})` : ""}: ` +
      `${fmt(e.exp)} / ${fmt(e.exp_sum)} = <span class="result">${fmt(e.result)}</span>` }),
    checkLine(e.result, e.engine_value));
}
