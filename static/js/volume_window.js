// One filter sliding over a W×W×D volume (the lecture's "same can be done for 3D layers"): the window sits on
// every channel at once, each channel has its own slice of the filter, and the output number is the sum over
// all channels plus one bias. The steps come from the API's playground with a (D, H, W) input.
import { api } from "./api.js";
import { Animator, bindAnimatorControls } from "./animator.js";
import { Grid, formatNumber as fmt } from "./grid.js";
import { el } from "./dom.js";

/** Example numbers for channel d: a different pattern on each channel, so each slice of the filter finds something. */
function channelInput(n, d) {
  if (d === 0) {
    const lo = Math.floor(n / 4);
    const hi = Math.ceil((3 * n) / 4);
    return Array.from({ length: n }, (_, r) => Array.from({ length: n }, (_, c) => (r >= lo && r < hi && c >= lo && c < hi ? 1 : 0)));
  }
  return Array.from({ length: n }, (_, r) => Array.from({ length: n }, (_, c) => ((r * (d + 1) + c * (d + 2)) % 4 === 0 ? 1 : 0)));
}

/** Example filter slice for channel d: vertical edges on even channels, horizontal edges on odd ones. */
function channelKernel(k, d) {
  return Array.from({ length: k }, (_, i) => Array.from({ length: k }, (_, j) => {
    if (k === 1) return 1;
    const t = d % 2 === 0 ? j : i;
    return t === 0 ? 1 : t === k - 1 ? -1 : 0;
  }));
}

export class VolumeWindow {
  constructor(root) {
    this.root = root;
    this.inputs = root.querySelector("[data-role=inputs]");
    this.kernels = root.querySelector("[data-role=kernels]");
    this.output = new Grid(root.querySelector("[data-role=output]"), { label: "output map of the filter", compact: true });
    this.text = root.querySelector("[data-role=text]");
    this.animator = new Animator({ figure: root, render: (i) => this.render(i), interval: 700 });
    bindAnimatorControls(this.animator, root);
    this.shown = null; // the answer of `load` on screen
    this.result = null;
  }

  /** Ask the API for one filter's steps through a volume of these settings: the answer `show` draws. */
  static async load(s, signal) {
    const depth = s.depth;
    const input = Array.from({ length: depth }, (_, d) => channelInput(s.size, d));
    const kernel = Array.from({ length: depth }, (_, d) => channelKernel(s.kernel, d));
    const body = { input, kernel, bias: s.bias, stride: s.stride, padding: s.padding, dilation: s.dilation };
    const result = await api("/api/playground/conv", { json: body, signal, label: "Sliding the filter through the volume…" });
    const [[top, bottom], [left, right]] = result.padding;
    return { input, kernel, result, pad: [top, bottom, left, right] };
  }

  /** Draw an answer of `load` (null: nothing), from its first step; the same answer again changes nothing. */
  show(answer) {
    if (answer === this.shown) return;
    this.shown = answer;
    this.result = answer?.result ?? null;
    const block = (caption, label, values, pad) => {
      const holder = el("div", { class: "grid-block" }, el("p", { class: "grid-caption", text: caption }));
      const scroll = el("div", { class: "grid-scroll" });
      holder.append(scroll);
      const grid = new Grid(scroll, { label, compact: true });
      grid.set(values, { pad });
      return { holder, grid };
    };
    this.inputGrids = (answer?.input ?? []).map((channel, d) => block(`channel ${d}`, `volume channel ${d}`, channel, answer.pad));
    this.inputs.replaceChildren(...this.inputGrids.map((g) => g.holder));
    this.kernels.replaceChildren(...(answer?.kernel ?? []).map((slice, d) => block(`slice ${d}`, `filter slice ${d}`, slice).holder));
    if (!answer) {
      this.animator.pause();
      this.animator.count = 0;
      this.output.set([[null]]);
      this.text.replaceChildren();
      return;
    }
    this.animator.setSteps(answer.result.steps.length, 0);
  }

  render(index) {
    const result = this.result;
    if (!result) return;
    const step = result.steps[index];
    const window = step.rows.flatMap((r) => step.cols.map((c) => [r, c]));
    this.inputGrids.forEach(({ grid }) => grid.mark("window", window));
    const out = result.output.map((row) => row.map(() => null));
    for (let i = 0; i <= index; i += 1) {
      const [r, c] = result.steps[i].out;
      out[r][c] = result.steps[i].result;
    }
    this.output.set(out, { scale: Math.max(1e-9, ...result.output.flat().map(Math.abs)) });
    this.output.markData("current", [step.out]);
    // each channel's share: the sum of that channel's products (the API lists the products per channel)
    const perChannel = step.products.map((slice) => slice.flat().reduce((a, b) => a + b, 0));
    const terms = perChannel.flatMap((v, d) => [...(d ? [" + "] : []), el("span", { class: "term" }, fmt(v), el("sub", { text: `ch ${d}` }))]);
    this.text.replaceChildren(`out[${step.out.join(", ")}] = `, ...terms,
      ` + b(${fmt(step.bias)}) = ${fmt(step.sum)} + ${fmt(step.bias)} = `, el("span", { class: "result", text: fmt(step.result) }));
  }
}
