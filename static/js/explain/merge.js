// add / mul: each input's number at the unit's position, added or multiplied.
import { checkLine, el, esc, fmt } from "./common.js";

export function mergeView(e) {
  const add = e.kind === "add";
  return el("div", {},
    el("p", { class: "step-text", html: `${e.operands.map(({ node, value }) => `${fmt(value)} <span class="muted">(${esc(node)})</span>`).join(add ? " + " : " × ")} = <span class="result">${fmt(e.result)}</span>` }),
    checkLine(e.result, e.engine_value));
}
