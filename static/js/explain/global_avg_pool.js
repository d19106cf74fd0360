// global_avg_pool: the mean of one whole map, its sum over its number of positions.
import { checkLine, el, esc, fmt } from "./common.js";

export function globalAvgPoolView(e) {
  const [H, W] = e.spatial_shape;
  return el("div", {},
    el("p", { class: "step-text", html: `mean of the ${H}×${W} map ${e.channel} of ${esc(e.input)}: ${fmt(e.sum)} / ${e.divisor} = <span class="result">${fmt(e.result)}</span>` }),
    checkLine(e.result, e.engine_value));
}
