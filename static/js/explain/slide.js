// The kernel sliding over the real feature map (CNN Explainer's best figure, with this run's numbers): in a
// convolution's operation detail, one input channel of the layer's input (the run's activation of the conv's input
// node, fetched as .npy from the API) drawn as a heat map, the F×F window moving over it position by position (row
// by row), and beside it the output map (the conv node's own .npy) filling in with the engine's values. The only
// arithmetic done here is the current position's sum of window × kernel for the channel shown (the kernel is the
// API's, from the unit's explanation); every output value is the engine's.
import { Animator, bindAnimatorControls } from "../animator.js";
import { lut } from "../colormap.js";
import { checkLine, el, fmt, signed } from "./common.js";

/** Output maps up to this many positions a side slide whole; larger ones over a REGION×REGION part. */
export const MAX_WHOLE = 32;
export const REGION = 16;
const SIDE = 480; // canvas pixels (drawn at half size in CSS: sharp on a high-density screen)
const PADDING = "#b9bfca"; // the border of zeros
const NOT_YET = "#eef0f3"; // output positions not reached yet
const WINDOW = "#e8a317";
const INK = "#16191f";
const SELECTED = "#d4145a";

/** Output indices [start, end) slid over along one axis: all of them, or `size` around `at`. */
function span(n, at, size, whole) {
  if (whole) return [0, n];
  const length = Math.min(n, size);
  const start = Math.max(0, Math.min(n - length, at - Math.floor(length / 2)));
  return [start, start + length];
}

/** A colour for each value of a map: zero-centred blue–white–red when it has both signs, else `scale`. */
function colouring(values, scale) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  const signedMap = lo < 0 && hi > 0;
  const table = lut(signedMap ? "rdbu" : scale);
  const bound = Math.max(Math.abs(lo), Math.abs(hi), 1e-12);
  const colour = (v) => {
    const t = signedMap ? 0.5 + v / (2 * bound) : (v - lo) / Math.max(hi - lo, 1e-12);
    const i = Math.max(0, Math.min(255, Math.round(t * 255))) * 3;
    return `rgb(${table[i]}, ${table[i + 1]}, ${table[i + 2]})`;
  };
  return { colour, signed: signedMap, lo, hi };
}

/** A small fixed-size table of numbers (the window, the kernel); `pad`: cells that lie in the padding. */
function numberGrid(label, values, pad) {
  const grid = el("div", { class: "slide-cells", role: "group", "aria-label": label });
  grid.style.gridTemplateColumns = `repeat(${values[0].length}, var(--slide-cell))`;
  values.forEach((row, r) => row.forEach((v, c) => {
    grid.append(el("span", { class: `slide-cell${pad?.[r][c] ? " pad" : ""}`, text: fmt(v) }));
  }));
  return el("div", { class: "slide-grid" }, el("p", { class: "slide-label", text: label }), grid);
}

/**
 * The figure for convolution explanation `e` (the API's, for the unit `e.index` = [k, y, x]).
 * `activation(id)`: a node's activation of this run as a parsed .npy; `own(thing)`: the detail disposes `thing`
 * when the explanation is replaced or closed; `scale`: the explorer's colour scale for maps of one sign.
 */
export function kernelSlide(e, { activation, own, scale = "viridis" }) {
  const [k, uy, ux] = e.index;
  const [kh, kw] = e.kernel_size;
  const [sh, sw] = e.stride;
  const [[pt, pb], [pl, pr]] = e.padding;
  const [dh, dw] = e.dilation;
  const listed = e.channels;
  // the channel shown first: the one that adds the most to this unit (of those the API lists with their kernel)
  let chosen = listed.reduce((best, w, i) => (Math.abs(w.sum) > Math.abs(listed[best].sum) ? i : best), 0);
  const several = e.channels_in_group > 1;

  const inputCanvas = el("canvas", { class: "slide-map", width: SIDE, height: SIDE, role: "img" });
  const outputCanvas = el("canvas", { class: "slide-map slide-output", width: SIDE, height: SIDE, role: "img",
    title: "click a position to move the window there" });
  const inputCaption = el("span");
  const inputChannel = el("span");
  const outputCaption = el("div", { class: "slide-label" });
  const select = el("select", { class: "slide-channel", "aria-label": "input channel shown" },
    ...listed.map((w, i) => el("option", { value: String(i), text: String(w.channel) })));
  select.value = String(chosen);
  const stepLabel = el("span", { class: "slide-step" });
  const range = el("input", { type: "range", "data-role": "step", min: "0", max: "0", value: "0",
    "aria-label": "Window position" });
  const home = el("button", { type: "button", class: "secondary", text: "◎ This neuron",
    title: "the window of the neuron explained above" });
  const controls = el("div", { class: "button-row slide-controls" },
    el("button", { type: "button", "data-action": "first", "aria-label": "First position", text: "«" }),
    el("button", { type: "button", "data-action": "prev", "aria-label": "Previous position", text: "◀" }),
    el("button", { type: "button", "data-action": "play", "aria-pressed": "false", "aria-label": "Play the slide",
      text: "▶ Play" }),
    el("button", { type: "button", "data-action": "next", "aria-label": "Next position", text: "▶" }),
    el("button", { type: "button", "data-action": "last", "aria-label": "Last position", text: "»" }),
    home, range, stepLabel);
  const position = el("p", { class: "slide-position" });
  const arithmetic = el("div", { class: "slide-arithmetic" });
  const sums = el("p", { class: "slide-sums" });
  const check = el("div", { class: "slide-check" });
  const note = el("p", { class: "slide-note" });
  const figure = el("figure", { class: "slide-figure", "data-state": "loading" },
    el("h3", { class: "slide-title", text: "Slide the kernel over the map" }),
    note, controls,
    el("div", { class: "slide-maps" },
      el("div", { class: "slide-side" }, el("div", { class: "slide-label" }, inputCaption,
        el("span", { class: "slide-keep" }, inputChannel, several ? select : "")), inputCanvas),
      el("div", { class: "slide-side" }, outputCaption, outputCanvas)),
    el("div", { class: "slide-numbers" }, position, arithmetic, sums, check));
  note.textContent = "Fetching the input and output maps…";

  // the animator runs only when asked (no autoplay) and has no visibility observer of its own: the explanation's
  // step animator is the one that watches the detail; this one is disposed with it (`own`)
  let disposed = false;
  let animator = null;
  own({ dispose() { disposed = true; animator?.dispose(); } });

  // (a mistake in drawing is not caught here: it reaches the console as one, not as a failed fetch)
  Promise.all([activation(e.input), activation(e.node)]).then(([input, output]) => {
    if (!disposed) build(input, output);
  }, (err) => {
    if (disposed) return;
    figure.dataset.state = "error";
    note.textContent = `The maps could not be fetched: ${err?.detail ?? err?.message ?? err}`;
  });

  function build(input, output) {
    const [, , H, W] = input.shape;
    const [, , OH, OW] = output.shape;
    const whole = OH <= MAX_WHOLE && OW <= MAX_WHOLE;
    const [r0, r1] = span(OH, uy, REGION, whole);
    const [c0, c1] = span(OW, ux, REGION, whole);
    const rowsOut = r1 - r0;
    const colsOut = c1 - c0;
    const count = rowsOut * colsOut;
    // the input rows and columns shown: the padded map when sliding whole, else what the region's windows read
    const top = whole ? -pt : r0 * sh - pt;
    const bottom = whole ? H - 1 + pb : (r1 - 1) * sh - pt + (kh - 1) * dh;
    const left = whole ? -pl : c0 * sw - pl;
    const right = whole ? W - 1 + pr : (c1 - 1) * sw - pl + (kw - 1) * dw;
    const rowsIn = bottom - top + 1;
    const colsIn = right - left + 1;
    const inCell = Math.floor(SIDE / Math.max(rowsIn, colsIn));
    const inX = Math.floor((SIDE - inCell * colsIn) / 2);
    const inY = Math.floor((SIDE - inCell * rowsIn) / 2);
    const outCell = Math.floor(SIDE / Math.max(rowsOut, colsOut));
    const outX = Math.floor((SIDE - outCell * colsOut) / 2);
    const outY = Math.floor((SIDE - outCell * rowsOut) / 2);
    const outPlane = output.data.subarray(k * OH * OW, (k + 1) * OH * OW);
    const outColours = colouring(outPlane, scale);
    const valueAt = (oy, ox) => outPlane[oy * OW + ox];
    const homeStep = (uy - r0) * colsOut + (ux - c0);
    const base = document.createElement("canvas");
    base.width = SIDE;
    base.height = SIDE;
    let plane = null;

    const region = whole ? `the whole ${OH}×${OW} output map` :
      `a ${rowsOut}×${colsOut} region of the ${OH}×${OW} output map around this neuron (rows ${r0}…${r1 - 1}, ` +
      `columns ${c0}…${c1 - 1})`;
    const after = e.chain.length ? ` (before ${e.chain.map((s) => s.node).join(" and ")})` : "";
    const amount = [pb, pl, pr].every((p) => p === pt) ? `${pt}`
      : pt === pl && pb === pr ? `${pt} before, ${pb} after` : `rows ${pt}, ${pb}, columns ${pl}, ${pr}`;
    const padding = pt || pb || pl || pr ? ` and padding ${amount} (grey: zeros)` : ", no padding";
    note.textContent = `The same ${kh}×${kw} kernel slides over ${e.input} with stride ${sh === sw ? sh : `${sh}×${sw}`}` +
      `${padding}${dh > 1 || dw > 1 ? `, dilation ${dh}×${dw} (dots: the cells read)` : ""}; each position gives one ` +
      `number of ${e.node}'s map ${k}${after}, the engine's. Shown: ${region}, row by row.` +
      (several ? ` Only the channel picked is multiplied here; the other ${e.channels_in_group - 1} channels' windows ` +
      "are added to it, as above." : "") +
      (e.omitted?.count ? ` The channels offered: the ${listed.length} the explanation lists.` : "");
    outputCaption.replaceChildren(el("span", { text: `output: ${e.node},` }), el("span", { class: "slide-keep", text: `map ${k}` }));
    outputCanvas.setAttribute("aria-label", `output map ${k} of ${e.node}, filled position by position`);

    function paintBase() {
      const w = listed[chosen];
      plane = input.data.subarray(w.channel * H * W, (w.channel + 1) * H * W);
      const { colour } = colouring(plane, scale);
      const ctx = base.getContext("2d");
      ctx.clearRect(0, 0, SIDE, SIDE);
      for (let r = 0; r < rowsIn; r += 1) {
        for (let c = 0; c < colsIn; c += 1) {
          const y = top + r;
          const x = left + c;
          ctx.fillStyle = y < 0 || y >= H || x < 0 || x >= W ? PADDING : colour(plane[y * W + x]);
          ctx.fillRect(inX + c * inCell, inY + r * inCell, inCell, inCell);
        }
      }
      inputCaption.textContent = `input: ${e.input === "input" ? "the image" : e.input},`;
      inputChannel.textContent = `channel${several ? "" : ` ${w.channel}`}`;
      inputCanvas.setAttribute("aria-label", `channel ${w.channel} of ${e.input} with the ${kh}×${kw} window on it`);
    }

    function outline(ctx, x, y, w, h, colour, width) {
      ctx.strokeStyle = colour;
      ctx.lineWidth = width;
      ctx.strokeRect(x + width / 2, y + width / 2, w - width, h - width);
    }

    function render(step) {
      if (disposed) return;
      const oy = r0 + Math.floor(step / colsOut);
      const ox = c0 + (step % colsOut);
      const w = listed[chosen];
      // the window: input rows oy·S − P + i·D and columns ox·S − P + j·D (outside the map: padding, zeros)
      const rows = Array.from({ length: kh }, (_, i) => oy * sh - pt + i * dh);
      const cols = Array.from({ length: kw }, (_, j) => ox * sw - pl + j * dw);
      const pad = rows.map((y) => cols.map((x) => y < 0 || y >= H || x < 0 || x >= W));
      const values = rows.map((y, i) => cols.map((x, j) => (pad[i][j] ? 0 : plane[y * W + x])));
      let sum = 0;
      values.forEach((row, i) => row.forEach((v, j) => { sum += v * w.kernel[i][j]; }));
      const value = valueAt(oy, ox);

      // the input with the window
      const ictx = inputCanvas.getContext("2d");
      ictx.clearRect(0, 0, SIDE, SIDE);
      ictx.drawImage(base, 0, 0);
      const wx = inX + (cols[0] - left) * inCell;
      const wy = inY + (rows[0] - top) * inCell;
      const ww = ((kw - 1) * dw + 1) * inCell;
      const wh = ((kh - 1) * dh + 1) * inCell;
      outline(ictx, wx, wy, ww, wh, INK, Math.max(4, inCell / 3));
      outline(ictx, wx + 1, wy + 1, ww - 2, wh - 2, WINDOW, Math.max(3, inCell / 5));
      if (dh > 1 || dw > 1) {
        ictx.fillStyle = INK;
        rows.forEach((y) => cols.forEach((x) => {
          ictx.beginPath();
          ictx.arc(inX + (x - left + 0.5) * inCell, inY + (y - top + 0.5) * inCell, Math.max(1.5, inCell / 6), 0, 2 * Math.PI);
          ictx.fill();
        }));
      }

      // the output, filled up to this position
      const octx = outputCanvas.getContext("2d");
      octx.clearRect(0, 0, SIDE, SIDE);
      for (let s = 0; s < count; s += 1) {
        const r = Math.floor(s / colsOut);
        const c = s % colsOut;
        octx.fillStyle = s <= step ? outColours.colour(valueAt(r0 + r, c0 + c)) : NOT_YET;
        octx.fillRect(outX + c * outCell, outY + r * outCell, outCell, outCell);
      }
      const hx = outX + (ux - c0) * outCell;
      const hy = outY + (uy - r0) * outCell;
      octx.setLineDash([Math.max(3, outCell / 3), Math.max(2, outCell / 5)]);
      outline(octx, hx, hy, outCell, outCell, SELECTED, Math.max(2, outCell / 6));
      octx.setLineDash([]);
      const cx = outX + (ox - c0) * outCell;
      const cy = outY + (oy - r0) * outCell;
      outline(octx, cx, cy, outCell, outCell, INK, Math.max(4, outCell / 4));
      outline(octx, cx + 1, cy + 1, outCell - 2, outCell - 2, WINDOW, Math.max(3, outCell / 6));

      // the numbers at this position
      Object.assign(figure.dataset, { step: String(step), position: `${oy},${ox}`, window: `${rows[0]},${cols[0]}`,
        filled: String(step + 1), channel: String(w.channel) });
      stepLabel.textContent = `${step + 1} of ${count}`;
      position.replaceChildren(
        el("strong", { text: `position (${oy}, ${ox})` }),
        ` reads ${rows.length > 1 ? `rows ${rows[0]}…${rows.at(-1)}` : `row ${rows[0]}`}, ` +
          `${cols.length > 1 ? `columns ${cols[0]}…${cols.at(-1)}` : `column ${cols[0]}`}` +
          `${step === homeStep ? " · this neuron" : ""}`);
      const grids = kh * kw <= 49
        ? [numberGrid(`window (channel ${w.channel})`, values, pad), el("span", { class: "slide-op", text: "×" }),
          numberGrid("kernel", w.kernel)]
        : [el("p", { class: "slide-label", text: `a ${kh}×${kw} window: too many numbers to list here` })];
      arithmetic.replaceChildren(...grids);
      const total = el("strong", { class: "slide-sum", "data-value": String(sum), text: fmt(sum) });
      const shown = el("strong", { class: "slide-value result", "data-value": String(value), text: fmt(value) });
      if (several) {
        const others = value - sum - e.bias;
        sums.replaceChildren(`Σ window × kernel (channel ${w.channel}) = `, total,
          ` · + the other ${e.channels_in_group - 1} channels ${signed(others)} + bias ${signed(e.bias)} = output `, shown);
        // the other channels are the engine's output minus this one; at the explained neuron the API lists them all
        check.replaceChildren(step === homeStep
          ? checkLine(sum + (e.total - w.sum) + e.bias, value)
          : el("p", { class: "slide-label", text: "the other channels: the engine's output minus this channel and the bias" }));
      } else {
        sums.replaceChildren("Σ window × kernel = ", total, ` · + bias ${signed(e.bias)} = `,
          el("span", { text: fmt(sum + e.bias) }), " · the engine's output: ", shown);
        check.replaceChildren(checkLine(sum + e.bias, value));
      }
    }

    paintBase();
    animator = new Animator({ figure: null, render, interval: Math.max(90, Math.min(700, 24000 / count)) });
    bindAnimatorControls(animator, controls);
    home.addEventListener("click", () => { animator.pause(); animator.goto(homeStep); });
    select.addEventListener("change", () => {
      chosen = Number(select.value);
      paintBase();
      animator.goto(animator.step);
    });
    outputCanvas.addEventListener("click", (event) => {
      const rect = outputCanvas.getBoundingClientRect(); // the drawing fills the client area, inside the border
      const px = ((event.clientX - rect.left - outputCanvas.clientLeft) / outputCanvas.clientWidth) * SIDE;
      const py = ((event.clientY - rect.top - outputCanvas.clientTop) / outputCanvas.clientHeight) * SIDE;
      const c = Math.floor((px - outX) / outCell);
      const r = Math.floor((py - outY) / outCell);
      if (r < 0 || c < 0 || r >= rowsOut || c >= colsOut) return;
      animator.pause();
      animator.goto(r * colsOut + c);
    });
    figure.dataset.state = "ready";
    figure.dataset.count = String(count);
    figure.dataset.region = `${r0},${c0},${rowsOut},${colsOut}`;
    animator.setSteps(count, homeStep);
  }

  return figure;
}
