// conv2d: per input channel the window, the kernel and their products, step by step, then the sum over the
// channels plus the bias; a 1×1 convolution over many channels as a weighted sum.
import { chainAfter, chainBlock, checkLine, el, esc, fmt, gridBlock, signed, weightedSum } from "./common.js";
import { kernelSlide } from "./slide.js";

/** Each input channel's contribution as a bar (red +, blue −); `current`: the channel being shown. */
function channelSums(windows, current) {
  const max = Math.max(1e-9, ...windows.map((w) => Math.abs(w.sum)));
  const strip = el("div", { class: "channel-sums", role: "img", "aria-label": "each input channel's contribution" });
  windows.forEach((w, i) => {
    const bar = el("span", { class: `csum${i === current ? " now" : ""}${i > current && current >= 0 ? " later" : ""}`, title: `channel ${w.channel}: ${fmt(w.sum)}` });
    bar.style.height = `${Math.max(2, (Math.abs(w.sum) / max) * 40)}px`;
    bar.style.background = w.sum >= 0 ? "#d6604d" : "#4393c3";
    strip.append(bar);
  });
  return el("div", {}, el("p", { class: "small muted", text: "each input channel's contribution (red +, blue −):" }), strip);
}

/**
 * The view, and below it the kernel sliding over the real input map (`slide.js`) when the detail can fetch the
 * run's maps (`activation`). Built after `animate`'s figure: the slide's animator belongs to this explanation.
 */
export function convView(e, options) {
  const shown = explainConv(e, options);
  if (!options.activation || !options.own) return shown;
  return el("div", { class: "conv-view" }, shown, kernelSlide(e, options));
}

function explainConv(e, { unit, animate }) {
  const [kh, kw] = e.kernel_size;
  const { rows, cols, channels: windows, chain } = e;
  const depthwise = e.groups > 1 && e.channels_in_group === 1;
  const intro = `Output ${unit.channel} reads a ${kh}×${kw} window at rows ${rows[0]}…${rows.at(-1)}, columns ` +
    `${cols[0]}…${cols.at(-1)} of ${depthwise ? "one input channel (a depthwise convolution)" : `each of the ${e.channels_in_group} input channels`}` +
    ` of <code>${esc(e.input)}</code>. The same filter is used at every position of this map (weight sharing).` +
    (e.omitted?.note ? ` Only part is listed: ${esc(e.omitted.note)}.` : "");
  if (kh === 1 && kw === 1 && e.channels_in_group > 4) {
    // a 1×1 convolution is a fully connected layer over the channels, applied at every position
    const terms = windows.map((w) => ({ i: w.channel, xi: w.values[0][0], wi: w.kernel[0][0], p: w.products[0][0] }));
    return el("div", {},
      el("p", { class: "small", html: `A 1×1 convolution: at this position it takes the ${e.channels_in_group} channels of ` +
        `<code>${esc(e.input)}</code>, each times one weight of filter ${unit.channel}, and adds them with a bias: a ` +
        "fully connected layer across the channels, repeated at every position with the same weights." }),
      ...weightedSum(terms, e, e.channels_in_group, "ch"),
      ...chainAfter(e));
  }
  const rest = e.omitted?.count ? ` + the other ${e.omitted.count} channels ${signed(e.omitted.sum)}` : "";
  const steps = windows.length + 1 + (chain.length ? 1 : 0);
  return animate(steps, (i, stage) => {
    stage.replaceChildren();
    if (i < windows.length) {
      const w = windows[i];
      stage.append(
        el("p", { class: "small", text: `Input channel ${w.channel} (${i + 1} of ${windows.length})` }),
        el("div", { class: "row" },
          gridBlock("window (input numbers)", w.values),
          gridBlock("× kernel (weights)", w.kernel),
          gridBlock("= products", w.products)),
        el("p", { class: "step-text", html: `sum of the products: <strong>${fmt(w.sum)}</strong> · running total over channels: ` +
          `<span class="result">${fmt(w.running)}</span>` }));
      if (windows.length > 1) stage.append(channelSums(windows, i));
    } else if (i === windows.length) {
      const sums = windows.length > 1 ? `Σ over ${rest ? `the ${windows.length} channels listed ${fmt(windows.at(-1).running)}${rest} = ` : `${windows.length} channels `}` : "Σ products ";
      stage.append(
        el("p", { class: "step-text", html: `${sums}${fmt(e.total)} + bias ${fmt(e.bias)} = <span class="result">${fmt(e.result)}</span>` }),
        checkLine(e.result, e.engine_value));
      if (windows.length > 1) stage.append(channelSums(windows, -1));
    } else {
      stage.append(chainBlock(e.engine_value, chain));
    }
  }, intro);
}
