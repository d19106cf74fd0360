// max_pool2d / avg_pool2d: the window on one channel, cell by cell with the running maximum or sum, then the
// maximum (outlined) or the sum over the divisor.
import { checkLine, el, esc, fmt, gridBlock } from "./common.js";

export function poolView(e, { unit, animate }) {
  const [kh, kw] = e.kernel_size;
  const [sh] = e.stride;
  const max = e.argmax !== undefined; // max pooling names its maximum; average pooling its divisor
  const cells = e.values.flatMap((row, i) => row.map((v, j) => ({
    i, j, v, inside: !e.row_in_padding[i] && !e.col_in_padding[j], running: e.running[i][j],
  })));
  const inside = cells.filter((c) => c.inside).map((c) => c.v);
  const intro = `Pooling looks at one channel at a time: a ${kh}×${kw} window of channel ${unit.channel} of ` +
    `<code>${esc(e.input)}</code>, moving ${sh} at a time, so the map shrinks (down-sampling). No weights to learn.`;
  // one step per number in the window (the running max or sum), then the result
  return animate(cells.length + 1, (step, stage) => {
    const block = gridBlock(`window on channel ${unit.channel}`, e.values.map((r) => r.map((v) => v ?? NaN)));
    const grid = block.querySelector(".grid");
    cells.slice(0, step + 1).forEach((c, k) => {
      grid.children[c.i * kw + c.j]?.classList.add(k === step ? "current" : "done");
    });
    let text;
    if (step < cells.length) {
      const seen = cells.slice(0, step + 1).filter((c) => c.inside).map((c) => fmt(c.v));
      const so = cells[step].running;
      text = so === null ? "this cell lies in the padding: nothing read yet"
        : max ? `largest so far: max(${seen.join(", ")}) = <strong>${fmt(so)}</strong>`
          : `sum so far: ${seen.join(" + ")} = <strong>${fmt(so)}</strong>`;
    } else {
      if (max) grid.children[e.argmax[0] * kw + e.argmax[1]]?.classList.add("argmax");
      text = max
        ? `max of the window = <span class="result">${fmt(e.result)}</span>`
        : `(${inside.map(fmt).join(" + ")}) / ${e.divisor} = <span class="result">${fmt(e.result)}</span>`;
    }
    stage.replaceChildren(block, el("p", { class: "step-text", html: text }));
    if (step === cells.length) stage.append(checkLine(e.result, e.engine_value));
  }, intro);
}
