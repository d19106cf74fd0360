// An elementwise op (batch norm, ReLU, sigmoid, ...): its formula with the number coming in.
import { checkLine, el, esc, fmt, formula } from "./common.js";

export function elementwiseView(e) {
  return el("div", {},
    el("p", { class: "step-text", html: `${formula(e)} = <span class="result">${fmt(e.result)}</span> <span class="muted">(input from ${esc(e.input)})</span>` }),
    checkLine(e.result, e.engine_value));
}
