// What the views of the operation detail share: building elements, numbers in products, the check against the
// engine's own value, a grid of numbers, a weighted sum drawn as bars, the elementwise chain after a unit and the
// input around a copied value. Each family's view (static/js/explain/<family>.js) is built from these.
import { Grid, formatNumber as fmt } from "../grid.js";
import { el, escapeHtml as esc } from "../dom.js";

export { el, fmt, esc };

/** A number for a product: negatives in parentheses, so "2·(−0.4)" reads as one product. */
export function signed(v) {
  return v < 0 ? `(${fmt(v)})` : fmt(v);
}

/** "1 row", "2 rows". */
export function count(n, noun) {
  return `${n} ${noun}${n === 1 ? "" : "s"}`;
}

function matches(a, b) {
  return Math.abs(a - b) <= 1e-3 * Math.max(1, Math.abs(a), Math.abs(b));
}

/** The recomputed number against the engine's own: a tick, or the difference. */
export function checkLine(computed, engine) {
  const ok = matches(computed, engine);
  return el("p", {
    class: `badge ${ok ? "ok" : "warn"}`,
    text: ok ? `matches the engine's value ${fmt(engine)} ✓` : `the engine computed ${fmt(engine)} (difference ${fmt(computed - engine)})`,
  });
}

/** What a bounded explanation left out, in words (null when it listed everything). */
export function omittedNote(e) {
  return e.omitted?.note ? el("p", { class: "small muted", text: `Only part is listed: ${e.omitted.note}.` }) : null;
}

/** A captioned grid of numbers (compact when large). */
export function gridBlock(caption, values) {
  const box = el("div", { class: "grid-block" });
  const holder = el("div", { class: "grid-scroll" });
  box.append(el("p", { class: "grid-caption", text: caption }), holder);
  const grid = new Grid(holder, { label: caption, compact: values.length * (values[0]?.length ?? 0) > 25 });
  grid.set(values);
  return box;
}

/** An elementwise step's formula with its numbers (`step`: a chain step or an elementwise explanation). */
export function formula(step) {
  const x = fmt(step.input_value);
  if (step.op === "batch_norm") {
    return `batch norm: (x − mean) / √(var + ε) · γ + β = (${x} − ${signed(step.running_mean)}) / ` +
      `√(${fmt(step.running_var)} + ${step.eps}) · ${signed(step.weight)} + ${signed(step.bias)}`;
  }
  return {
    relu: `ReLU: max(0, ${x})`, relu6: `ReLU6: min(max(0, ${x}), 6)`, identity: x, dropout: `${x} (inference: unchanged)`,
  }[step.op] ?? `${step.title}(${x})`;
}

/** The elementwise steps after a unit (the API's `chain`): batch norm with its statistics, then the activation. */
export function chainBlock(value, chain, what = "the convolution's output") {
  const lines = [`${what}: <strong>${fmt(value)}</strong>`];
  for (const step of chain) lines.push(`${formula(step)} = <span class="result">${fmt(step.engine_value)}</span> <span class="muted">(${esc(step.node)})</span>`);
  return el("div", { class: "step-text", html: lines.join("<br>") });
}

/** `chainBlock` in a list when the unit has a chain, else nothing (to spread into a view's children). */
export function chainAfter(e, what) {
  return e.chain.length ? [chainBlock(e.engine_value, e.chain, what)] : [];
}

/** A weighted sum shown by its largest products (red +, blue −), then the engine's total, bias and check. */
export function weightedSum(terms, e, total, name) {
  const ranked = [...terms].sort((a, c) => Math.abs(c.p) - Math.abs(a.p));
  const max = Math.max(1e-9, ...ranked.map((t) => Math.abs(t.p)));
  const list = el("div", { class: "bars" }, ...ranked.map((t) => {
    const row = el("div", { class: "bar-row" },
      el("span", { class: "bar-label mono", text: `${name}[${t.i}]·w = ${signed(t.xi)}·${signed(t.wi)}` }),
      el("span", { class: "bar-track" }, el("span", { class: "bar-fill" })),
      el("span", { class: "bar-value", text: fmt(t.p) }));
    const fill = row.querySelector(".bar-fill");
    fill.style.width = `${(Math.abs(t.p) / max) * 100}%`;
    fill.style.background = t.p >= 0 ? "#d6604d" : "#4393c3";
    return row;
  }));
  const rest = e.omitted?.count ? [el("p", { class: "small muted", text: `the other ${e.omitted.count} products add up to ${fmt(e.omitted.sum)}` })] : [];
  return [
    el("p", { class: "small muted", text: ranked.length < total ? `the ${ranked.length} largest of the ${total} products (red +, blue −):` : `the ${total} products, largest first (red +, blue −):` }),
    list, ...rest,
    el("p", { class: "step-text", html: `Σ of all ${total} products ${fmt(e.total)} + bias ${fmt(e.bias)} = <span class="result">${fmt(e.result)}</span>` }),
    checkLine(e.result, e.engine_value),
  ];
}

/** pad / upsample: the input map around the position the unit copies (the API's neighbourhood), that cell outlined. */
export function neighbourhoodBlock(e) {
  const n = e.neighbourhood;
  const block = gridBlock(`${e.input}, channel ${e.channel}: rows ${n.rows[0]}…${n.rows.at(-1)}, ` +
    `columns ${n.cols[0]}…${n.cols.at(-1)}`, n.values);
  if (n.source) block.querySelector(".grid").children[n.source[0] * n.cols.length + n.source[1]]?.classList.add("current");
  return block;
}

/** "(row 2, column 2)" from the API's [row, column]. */
export function sourceText(e) {
  return `(row ${e.source[0]}, column ${e.source[1]})`;
}
