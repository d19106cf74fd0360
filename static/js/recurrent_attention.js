// Attention over time, as the lecture defines attention: a weighted sum that locates the contributing parts. A
// sequence_attention node gives each step (a digit's row) a weight a_t, the softmax of its score, summing to 1, and
// outputs Σ_t a_t x_t, where x_t is what it pools at step t (the GRU's state after row t). The figure lays out the
// API's numbers: the weights (GET .../nodes/{attention}/steps) on the digit and as bars, the states it pools and the
// output (the run's activations), and for one feature the sum written out term by term, checked against the
// engine's own output.
import { checkLine, el, esc, fmt, signed } from "./explain/common.js";
import { Strip, colourScale, drawMatrix, drawSequence, matrixCellAt, rangeOf } from "./sequence_views.js";
import { $ } from "./dom.js";

const TERMS_SHOWN = 6;

export class AttentionOverTime {
  /** `onFeature(j)`: a feature was picked (a column of the states, a cell of the output). */
  constructor({ onFeature }) {
    this.onFeature = onFeature;
    this.data = null;
    for (const id of ["att-states", "att-weighted"]) {
      $(id).addEventListener("click", (event) => {
        if (this.data) this.onFeature(matrixCellAt($(id), event)[1]);
      });
    }
  }

  /**
   * `rows`: the digit as the sequence the model reads (T × F); `steps`: the attention node's AttentionSteps;
   * `pooled`: what it pools at each step (T × F'), `output`: its output (F'); `model`: the model's name.
   */
  show({ rows, steps, pooled, output, model, node, pooledFrom }) {
    this.data = { rows, steps, pooled, output, node, pooledFrom };
    const { weights } = steps;
    const top = Math.max(...weights);
    drawSequence($("att-digit"), rows, { tint: weights.map((w) => (0.85 * w) / top) });
    // one bar per row, beside the digit's row; each names its weight on hover and to screen readers
    $("weight-bars").replaceChildren(...weights.map((w, t) => {
      const bar = el("div", { class: "weight-bar", role: "listitem", "data-row": String(t), "data-weight": String(w),
        title: `row ${t}: weight ${w} (score ${steps.scores[t]})`, "aria-label": `row ${t}: weight ${w.toFixed(4)}` },
      el("span", { class: "w-fill" }));
      bar.firstChild.style.width = `${(100 * w) / top}%`;
      return bar;
    }));
    const heaviest = weights.map((w, t) => [w, t]).sort((p, q) => q[0] - p[0]).slice(0, 4)
      .map(([w, t]) => `row ${t} (${w.toFixed(2)})`).join(", ");
    $("weights-sum").innerHTML = `The ${steps.steps} weights add up to Σ<sub>t</sub> a<sub>t</sub> = ` +
      `<strong id="weights-total">${steps.weights_sum.toFixed(4)}</strong>: a softmax of the rows' scores ` +
      `(${esc(steps.score)} attention, node <code>${esc(node)}</code> of ${esc(model)}). The heaviest: ${heaviest}.`;
    drawMatrix($("att-states"), pooled, colourScale(rangeOf(pooled)));
    // each row's state times its weight: the terms the output adds up (on their own colour range: they are small)
    const weighted = pooled.map((row, t) => row.map((v) => weights[t] * v));
    const weightedScale = colourScale(rangeOf(weighted));
    drawMatrix($("att-weighted"), weighted, weightedScale);
    $("att-weighted-range").textContent = `colours from ${fmt(weightedScale.low)} to ${fmt(weightedScale.high)}`;
    const holder = $("att-output");
    holder.replaceChildren();
    this.outputStrip = new Strip(holder, { label: "<b>Σ a<sub>t</sub>h<sub>t</sub></b> output", count: output.length,
      title: "the attention layer's output: one number per feature", name: "output", onPick: (j) => this.onFeature(j) });
    this.outputStrip.set(output, colourScale(rangeOf(output)));
  }

  /** Feature `j` of the output, written out as the weighted sum over the rows, largest terms first. */
  showFeature(j) {
    if (!this.data) return;
    const { steps, pooled, output, pooledFrom } = this.data;
    const feature = Math.max(0, Math.min(output.length - 1, j));
    this.outputStrip.select(feature);
    const terms = steps.weights.map((a, t) => ({ t, a, x: pooled[t][feature], p: a * pooled[t][feature] }));
    const ranked = [...terms].sort((p, q) => Math.abs(q.p) - Math.abs(p.p));
    const shown = ranked.slice(0, TERMS_SHOWN);
    const rest = ranked.slice(TERMS_SHOWN);
    const restSum = rest.reduce((s, term) => s + term.p, 0);
    const total = terms.reduce((s, term) => s + term.p, 0);
    const table = el("table", { class: "data" },
      el("thead", {}, el("tr", {}, el("th", { text: "row t" }), el("th", { class: "num", text: "weight aₜ" }),
        el("th", { class: "num", text: `hₜ[${feature}]` }), el("th", { class: "num", text: "aₜ · hₜ" }))),
      el("tbody", {}, ...shown.map((term) => el("tr", {}, el("td", { text: String(term.t) }),
        el("td", { class: "num", text: fmt(term.a) }), el("td", { class: "num", text: fmt(term.x) }),
        el("td", { class: "num", text: fmt(term.p) })))));
    const written = shown.map((term) => `${fmt(term.a)}·${signed(term.x)}`).join(" + ");
    $("att-sum").replaceChildren(
      el("p", { class: "small", html: `Feature ${feature} of the output (click a column above to follow another): the ` +
        `${terms.length} rows' values of feature ${feature} in <code>${pooledFrom}</code>, each times its row's weight, summed. ` +
        `The ${shown.length} largest terms:` }),
      table,
      el("p", { class: "step-text", html: `out[${feature}] = Σ<sub>t</sub> a<sub>t</sub>·h<sub>t</sub>[${feature}] = ${written}` +
        (rest.length ? ` + (the other ${rest.length} rows: ${fmt(restSum)})` : "") + ` = <span class="result">${fmt(total)}</span>` }),
      checkLine(total, output[feature]));
  }
}
