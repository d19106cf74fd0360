// linear: every input number times its own weight, the largest products as bars, summed, plus a bias.
import { el, esc, weightedSum } from "./common.js";

export function linearView(e) {
  const intro = `A fully connected neuron: all ${e.in_features} numbers of <code>${esc(e.input)}</code>, each times its own weight, summed, plus a bias.`;
  const terms = e.terms.map((t) => ({ i: t.index, xi: t.input, wi: t.weight, p: t.product }));
  return el("div", {}, el("p", { class: "small", html: intro }), ...weightedSum(terms, e, e.in_features, "x"));
}
