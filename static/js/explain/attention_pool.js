// attention_pool: one feature map summed over its positions, each weighted by the attention map.
import { checkLine, el, fmt, gridBlock, omittedNote } from "./common.js";

export function attentionPoolView(e) {
  const [featureId, weightId] = e.inputs;
  const [H, W] = e.spatial_shape;
  return el("div", {},
    el("p", { class: "small", text: `Attention pooling: feature ${e.channel} of ${featureId} is summed over its ${H}×${W} positions, each weighted by the attention map (${weightId}, weights adding up to 1): a weighted sum that shows which positions drove the decision.` }),
    ...(e.weights ? [gridBlock("attention weights", e.weights)] : [omittedNote(e)]),
    el("p", { class: "step-text", html: `Σ weight × feature = <span class="result">${fmt(e.result)}</span>` }),
    checkLine(e.result, e.engine_value));
}
